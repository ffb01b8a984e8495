// The bundle's payload compression choice on real images: an erofs lz4hc root keeps zstd,
// a root already compressed with zstd (squashfs) or random data ships uncompressed.
#include "builder/image/bundle_compression.h"

#include <catch2/catch.hpp>
#include <cmath>
#include <filesystem>
#include <fstream>

#include "base/error.h"
#include "builder/image/filesystem.h"
#include "tests/support/test_support.h"

namespace fs = std::filesystem;
using osup::test::TempDir;
namespace b = osup::build;

namespace {

// Share zstd -3 (the CLI, whole file, full window) really saves.
double real_savings(const std::string& path) {
  osup::RunResult r = osup::test::run_cmd({"sh", "-c", "zstd -q -3 -c '" + path + "' | wc -c"});
  REQUIRE(r.exit_code == 0);
  return 1.0 - std::stod(r.out) / static_cast<double>(fs::file_size(path));
}

// A tree of ~40 MiB of real host libraries on top of a busybox rootfs.
void make_tree(const std::string& dir) {
  osup::test::make_busybox_rootfs(osup::Arch::x86_64, dir);
  std::vector<fs::path> libs;
  for (const auto& e : fs::directory_iterator("/usr/lib/x86_64-linux-gnu"))
    if (e.is_regular_file() && !e.is_symlink() && e.file_size() > 100ull * 1024)
      libs.push_back(e.path());
  std::sort(libs.begin(), libs.end());
  fs::create_directories(dir + "/usr/lib/x86_64-linux-gnu");
  uint64_t total = 0;
  for (const fs::path& p : libs) {
    if (total + fs::file_size(p) > (40u << 20)) continue;
    total += fs::file_size(p);
    fs::copy_file(p, dir + "/usr/lib/x86_64-linux-gnu/" + p.filename().string());
  }
  REQUIRE(total > (30u << 20));
}

}  // namespace

TEST_CASE("bundle compression: auto, zstd and none, and nothing else", "[unit]") {
  CHECK(b::parse_bundle_compression("auto", "x") == b::BundleCompression::automatic);
  CHECK(b::parse_bundle_compression("zstd", "x") == b::BundleCompression::zstd);
  CHECK(b::parse_bundle_compression("none", "x") == b::BundleCompression::none);
  CHECK_THROWS_WITH(b::parse_bundle_compression("xz", "--bundle-compression"),
                    "--bundle-compression: 'xz' is not a bundle compression; use auto, zstd or "
                    "none");
  CHECK_THROWS_WITH(b::parse_bundle_compression("", "field 'bundle.compression'"),
                    Catch::StartsWith("field 'bundle.compression': '' is not"));
  for (auto c :
       {b::BundleCompression::automatic, b::BundleCompression::zstd, b::BundleCompression::none})
    CHECK(b::parse_bundle_compression(b::to_string(c), "x") == c);
}

TEST_CASE("bundle compression: the estimate follows real zstd, auto decides by it", "[unit]") {
  TempDir d;
  make_tree(d / "tree");
  const std::string erofs = d / "root.erofs", squashfs = d / "root.squashfs";
  (void)b::make_fs_image(d / "tree", erofs, {"erofs", "lz4hc", 1700000000, "seed"});
  (void)b::make_fs_image(d / "tree", squashfs, {"squashfs", "zstd", 1700000000, ""});
  const std::string random = d / "random";
  osup::test::write_random_file(random, 20u << 20, 5);
  const std::string small = d / "small";  // below 16 MiB: compressed whole, in 1 MiB pieces
  {
    std::ofstream f(small, std::ios::binary);
    for (int i = 0; i < 100000; ++i) f << "line " << i << " of a small compressible file\n";
  }

  for (const std::string& img : {erofs, squashfs, random, small}) {
    CAPTURE(img, fs::file_size(img));
    const double est = b::estimate_zstd_savings(img, b::kBundleZstdLevel);
    const double real = real_savings(img);
    CAPTURE(est, real);
    // Samples compressed apart miss some matches: a little below the real savings.
    CHECK(est <= real + 0.01);
    CHECK(est >= real - 0.05);
    CHECK(b::estimate_zstd_savings(img, b::kBundleZstdLevel) == est);  // reproducible
  }
  REQUIRE(fs::file_size(erofs) > (16u << 20));  // the sampled path, not the whole file

  auto choice = [](b::BundleCompression mode, const std::string& path) {
    return b::choose_compression(mode, path, b::kBundleZstdLevel);
  };
  // erofs lz4hc compresses in 4 KiB clusters and stores what does not shrink: zstd pays.
  CHECK(choice(b::BundleCompression::automatic, erofs).compress);
  CHECK(choice(b::BundleCompression::automatic, erofs).estimated_savings >= b::kAutoMinSavings);
  // A zstd squashfs and random data gain next to nothing: they ship as they are.
  CHECK_FALSE(choice(b::BundleCompression::automatic, squashfs).compress);
  CHECK(choice(b::BundleCompression::automatic, squashfs).estimated_savings < 0.03);
  CHECK_FALSE(choice(b::BundleCompression::automatic, random).compress);
  CHECK(choice(b::BundleCompression::automatic, small).compress);
  // Explicit modes do as told, without estimating.
  CHECK(choice(b::BundleCompression::zstd, random).compress);
  CHECK(choice(b::BundleCompression::zstd, random).estimated_savings < 0);
  CHECK_FALSE(choice(b::BundleCompression::none, erofs).compress);

  const std::string empty = d / "empty";
  std::ofstream(empty).close();
  CHECK(b::estimate_zstd_savings(empty, b::kBundleZstdLevel) == 0);
  CHECK_FALSE(choice(b::BundleCompression::automatic, empty).compress);
  CHECK_THROWS_WITH(choice(b::BundleCompression::automatic, d / "missing"),
                    Catch::Contains("missing"));
}
