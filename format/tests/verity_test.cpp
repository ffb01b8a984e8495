// dm-verity trees checked against the real veritysetup: it must accept what we build, and
// build byte-identical trees from the same salt and UUID.
#include "format/verity.h"

#include <fcntl.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <regex>

#include "base/error.h"
#include "base/fd.h"
#include "base/process.h"
#include "tests/support/test_support.h"

using namespace osup;
using osup::test::TempDir;

namespace {

constexpr uint64_t kB = verity::kBlockSize;

std::string read_file(const std::string& path) { return read_text_file(path); }

void flip_bit(const std::string& path, uint64_t offset) {
  UniqueFd fd = open_file(path, O_RDWR);
  std::array<std::byte, 1> b{};
  REQUIRE(pread_full(fd.get(), b, offset, path) == 1);
  b[0] ^= std::byte{0x10};
  pwrite_all(fd.get(), b, offset, path);
}

Digest build_files(const std::string& data, const std::string& hash, const verity::Params& p) {
  UniqueFd d = open_file(data, O_RDONLY);
  UniqueFd h = open_file(hash, O_RDWR | O_CREAT | O_TRUNC);
  return verity::build(d.get(), h.get(), p, nullptr);
}

void verify_files(const std::string& data, const std::string& hash, const verity::Params& p,
                  const Digest& root) {
  UniqueFd d = open_file(data, O_RDONLY);
  UniqueFd h = open_file(hash, O_RDONLY);
  verity::verify(d.get(), h.get(), p, root);
}

void verify_tree_file(const std::string& hash, const verity::Params& p, const Digest& root) {
  UniqueFd h = open_file(hash, O_RDONLY);
  verity::verify_tree(h.get(), p, root);
}

RunResult veritysetup_verify(const std::string& data, const std::string& hash, const Digest& root) {
  return run({"veritysetup", "verify", data, hash, to_hex(root)});
}

std::string root_hash_from_output(const std::string& out) {
  std::smatch m;
  REQUIRE(std::regex_search(out, m, std::regex("Root hash:\\s*([0-9a-f]{64})")));
  return m[1];
}

}  // namespace

TEST_CASE("verity geometry follows the kernel's level count", "[unit]") {
  CHECK(verity::hash_device_size(kB) == kB);                // root hash = data block hash
  CHECK(verity::hash_device_size(128 * kB) == 2 * kB);      // one level-0 block
  CHECK(verity::hash_device_size(129 * kB) == 4 * kB);      // 2 + 1 blocks
  CHECK(verity::hash_device_size(16385 * kB) == 133 * kB);  // 129 + 2 + 1 blocks
  CHECK_THROWS_WITH(verity::hash_device_size(kB + 1), Catch::Contains("multiple of 4096"));
  CHECK_THROWS_WITH(verity::hash_device_size(0), Catch::Contains("multiple of 4096"));
  CHECK_THROWS_WITH(verity::make_params(1000), Catch::Contains("1000"));
  verity::Params bad;
  bad.data_size = 3 * kB - 512;
  UniqueFd null = open_file("/dev/null", O_RDWR);
  CHECK_THROWS_WITH((void)verity::build(null.get(), null.get(), bad),
                    Catch::Contains("not a positive multiple of 4096"));
  CHECK_THROWS_WITH(verity::DataVerifier(null.get(), bad), Catch::Contains("multiple of 4096"));
  CHECK_THROWS_WITH(verity::verify_tree(null.get(), bad, Digest{}),
                    Catch::Contains("multiple of 4096"));
}

TEST_CASE("verity params derive from a seed or are random", "[unit]") {
  auto a = verity::make_params(8 * kB, "build-42");
  CHECK(a.data_size == 8 * kB);
  CHECK(a.salt.size() == 32);
  CHECK(a == verity::make_params(8 * kB, "build-42"));
  auto b = verity::make_params(8 * kB, "build-43");
  CHECK(a.salt != b.salt);
  CHECK(a.uuid != b.uuid);
  auto r1 = verity::make_params(8 * kB), r2 = verity::make_params(8 * kB);
  CHECK(r1.salt != r2.salt);
  CHECK(r1.uuid != r2.uuid);
}

TEST_CASE("verity trees match veritysetup byte for byte", "[unit]") {
  const uint64_t blocks = GENERATE(as<uint64_t>{}, 1, 127, 128, 129, 1281, 16385);
  DYNAMIC_SECTION("data blocks: " << blocks) {
    TempDir dir;
    const std::string data = dir / "data", ours = dir / "ours", theirs = dir / "theirs";
    test::write_random_file(data, blocks * kB, static_cast<uint32_t>(blocks));
    auto p = verity::make_params(blocks * kB, "seed-" + std::to_string(blocks));

    Digest root = build_files(data, ours, p);
    CHECK(read_file(ours).size() == verity::hash_device_size(p.data_size));

    RunResult accepted = veritysetup_verify(data, ours, root);
    INFO(accepted.err);
    CHECK(accepted.exit_code == 0);

    RunResult formatted = run_checked({"veritysetup", "format", "--salt=" + to_hex(p.salt),
                                       "--uuid=" + p.uuid.str(), data, theirs});
    CHECK(root_hash_from_output(formatted.out) == to_hex(root));
    CHECK(read_file(ours) == read_file(theirs));

    UniqueFd h = open_file(ours, O_RDONLY);
    CHECK(verity::read_superblock(h.get()) == p);
    CHECK_NOTHROW(verity::verify_tree(h.get(), p, root));
    CHECK_NOTHROW(verify_files(data, ours, p, root));
  }
}

TEST_CASE("verity rejects a flipped bit in the data", "[unit]") {
  TempDir dir;
  const uint64_t blocks = 300;
  const std::string data = dir / "data", hash = dir / "hash";
  test::write_random_file(data, blocks * kB, 7);
  auto p = verity::make_params(blocks * kB);
  Digest root = build_files(data, hash, p);
  REQUIRE_NOTHROW(verify_files(data, hash, p, root));

  flip_bit(data, 217 * kB + 100);
  CHECK_THROWS_WITH(verify_files(data, hash, p, root),
                    Catch::Contains("data block 217 does not match its verity hash"));
  CHECK(veritysetup_verify(data, hash, root).exit_code != 0);

  // Streaming in odd chunk sizes finds the same block.
  std::string bytes = read_file(data);
  UniqueFd h = open_file(hash, O_RDONLY);
  verity::DataVerifier v(h.get(), p);
  auto all = std::as_bytes(std::span(bytes.data(), bytes.size()));
  size_t pos = 0, step = 1;
  try {
    while (pos < all.size()) {
      size_t n = std::min(step, all.size() - pos);
      v.update(all.subspan(pos, n));
      pos += n;
      step = step * 3 + 1;
    }
    FAIL("the flipped bit was not detected");
  } catch (const Error& e) {
    CHECK_THAT(e.what(), Catch::Contains("data block 217 does not match"));
    CHECK(v.bytes_checked() == 217 * kB);
  }
}

TEST_CASE("verity DataVerifier catches a bad block in either thread's share, by number", "[unit]") {
  // update() hashes a chunk on two threads, 32-block batches at a time from a shared
  // counter, so any block may be hashed by either; whichever finds it, the error must name
  // the first bad block and bytes_checked() must stop right before it.
  TempDir dir;
  const uint64_t blocks = 3 * 512 + 77;  // three 2 MiB stream chunks and a short tail
  const std::string data = dir / "data", hash = dir / "hash";
  test::write_random_file(data, blocks * kB, 19);
  auto p = verity::make_params(blocks * kB, "halves");
  Digest root = build_files(data, hash, p);
  const std::string good = read_file(data);
  UniqueFd h = open_file(hash, O_RDONLY);

  auto first_error = [&](const std::string& bytes, size_t chunk, uint64_t* checked) {
    verity::DataVerifier v(h.get(), p, root);
    auto all = std::as_bytes(std::span(bytes.data(), bytes.size()));
    try {
      for (size_t pos = 0; pos < all.size(); pos += chunk)
        v.update(all.subspan(pos, std::min(chunk, all.size() - pos)));
      v.finish();
    } catch (const Error& e) {
      *checked = v.bytes_checked();
      return std::string(e.what());
    }
    return std::string("no error");
  };
  // first block, end of a first half, start of a second half, a batch edge inside a chunk,
  // the middle, the last block of a chunk, the last block of the image.
  for (uint64_t bad : {uint64_t{0}, uint64_t{255}, uint64_t{256}, uint64_t{512 + 31},
                       uint64_t{512 + 300}, uint64_t{1023}, blocks - 1}) {
    std::string bytes = good;
    bytes[bad * kB + 4000] ^= 0x01;
    for (size_t chunk : {size_t{2} << 20, size_t{1} << 20, bytes.size(), size_t{65537}}) {
      CAPTURE(bad, chunk);
      uint64_t checked = 0;
      CHECK(first_error(bytes, chunk, &checked) ==
            "data block " + std::to_string(bad) +
                " does not match its verity hash; the image is corrupt or not the one that was "
                "signed");
      CHECK(checked == bad * kB);
    }
  }
  // Two bad blocks in one chunk, whichever thread hashes which: the earlier one is named.
  std::string bytes = good;
  bytes[(512 + 400) * kB] ^= 0x01;
  bytes[(512 + 10) * kB] ^= 0x01;
  uint64_t checked = 0;
  CHECK_THAT(first_error(bytes, size_t{2} << 20, &checked), Catch::StartsWith("data block 522 "));
  CHECK(checked == 522 * kB);
  CHECK(first_error(good, size_t{2} << 20, &checked) == "no error");
}

TEST_CASE("verity DataVerifier streams any chunking and insists on all the data", "[unit]") {
  TempDir dir;
  const uint64_t blocks = 40000;  // more than one 32768-digest window of level 0
  const std::string data = dir / "data", hash = dir / "hash";
  test::write_random_file(data, blocks * kB, 11);
  auto p = verity::make_params(blocks * kB, "stream");
  Digest root = build_files(data, hash, p);
  std::string bytes = read_file(data);
  auto all = std::as_bytes(std::span(bytes.data(), bytes.size()));
  UniqueFd h = open_file(hash, O_RDONLY);
  verity::verify_tree(h.get(), p, root);

  SECTION("any chunking") {
    for (size_t chunk : {size_t{1000}, size_t{4096}, size_t{65537}, size_t{8} << 20}) {
      INFO("chunk " << chunk);
      verity::DataVerifier v(h.get(), p);
      for (size_t pos = 0; pos < all.size(); pos += chunk)
        v.update(all.subspan(pos, std::min(chunk, all.size() - pos)));
      CHECK_NOTHROW(v.finish());
      CHECK(v.bytes_checked() == p.data_size);
      CHECK_THROWS_WITH(v.update(all.subspan(0, 1)), Catch::Contains("more data than"));
    }
  }
  SECTION("short data") {
    verity::DataVerifier v(h.get(), p);
    v.update(all.subspan(0, all.size() - 10));
    CHECK_THROWS_WITH(v.finish(), Catch::Contains("data ended after " +
                                                  std::to_string(all.size() - 10) + " bytes"));
  }
  SECTION("a data file shorter than the tree") {
    REQUIRE(truncate(data.c_str(), static_cast<off_t>(p.data_size - kB)) == 0);
    CHECK_THROWS_WITH(verify_files(data, hash, p, root), Catch::Contains("data ended after"));
    CHECK_THROWS_WITH(build_files(data, dir / "other", p), Catch::Contains("verity data ends"));
  }
}

TEST_CASE("verity single-block images check against the root hash", "[unit]") {
  TempDir dir;
  const std::string data = dir / "data", hash = dir / "hash";
  test::write_random_file(data, kB, 3);
  auto p = verity::make_params(kB);
  Digest root = build_files(data, hash, p);
  UniqueFd h = open_file(hash, O_RDONLY);
  CHECK_THROWS_WITH(verity::DataVerifier(h.get(), p), Catch::Contains("pass the root hash"));
  CHECK_NOTHROW(verify_files(data, hash, p, root));
  flip_bit(data, 5);
  CHECK_THROWS_WITH(verify_files(data, hash, p, root), Catch::Contains("data block 0"));
}

TEST_CASE("verity_tree catches a corrupt tree, superblock or root hash", "[unit]") {
  TempDir dir;
  const uint64_t blocks = 16385;  // three levels: 1 + 2 + 129 hash blocks
  const std::string data = dir / "data", hash = dir / "hash";
  test::write_random_file(data, blocks * kB, 5);
  auto p = verity::make_params(blocks * kB, "tamper");
  Digest root = build_files(data, hash, p);
  REQUIRE_NOTHROW(verify_tree_file(hash, p, root));
  const std::string pristine = read_file(hash);
  auto restore = [&] { atomic_write_file(hash, pristine); };

  SECTION("wrong root hash") {
    Digest other = root;
    other[31] ^= 1;
    CHECK_THROWS_WITH(verify_tree_file(hash, p, other),
                      Catch::Contains("level 2 block 0 does not match the root hash"));
  }
  SECTION("flipped bit in each level") {
    // Layout: superblock, level 2 (1 block), level 1 (2 blocks), level 0 (129 blocks).
    flip_bit(hash, 1 * kB + 40);
    CHECK_THROWS_WITH(verify_tree_file(hash, p, root), Catch::Contains("level 2 block 0"));
    restore();
    flip_bit(hash, 3 * kB + 7);
    CHECK_THROWS_WITH(verify_tree_file(hash, p, root),
                      Catch::Contains("level 1 block 1 does not match its hash in level 2"));
    restore();
    flip_bit(hash, (4 + 100) * kB + 4000);
    CHECK_THROWS_WITH(verify_tree_file(hash, p, root),
                      Catch::Contains("level 0 block 100 does not match its hash in level 1"));
    CHECK(veritysetup_verify(data, hash, root).exit_code != 0);
  }
  SECTION("superblock of another image") {
    auto q = p;
    q.salt[0] ^= 1;
    CHECK_THROWS_WITH(verify_tree_file(hash, q, root),
                      Catch::Contains("does not match the expected"));
    q = p;
    q.data_size += kB;
    CHECK_THROWS_WITH(verify_tree_file(hash, q, root), Catch::Contains("data size"));
  }
  SECTION("truncated tree") {
    REQUIRE(truncate(hash.c_str(), static_cast<off_t>(pristine.size() - kB)) == 0);
    CHECK_THROWS_WITH(verify_tree_file(hash, p, root), Catch::Contains("truncated"));
  }
}

TEST_CASE("verity superblocks that are not ours are refused clearly", "[unit]") {
  TempDir dir;
  const std::string hash = dir / "hash";
  auto p = verity::make_params(kB, "sb");
  test::write_random_file(dir / "data", kB, 1);
  (void)build_files(dir / "data", hash, p);
  const std::string good = read_file(hash);
  auto read_sb = [&](const std::string& content) {
    atomic_write_file(hash, content);
    UniqueFd h = open_file(hash, O_RDONLY);
    return verity::read_superblock(h.get());
  };
  CHECK(read_sb(good) == p);
  CHECK_THROWS_WITH(read_sb(""), Catch::Contains("not a dm-verity hash device"));
  CHECK_THROWS_WITH(read_sb(std::string(4096, 'x')),
                    Catch::Contains("not a dm-verity hash device") && Catch::Contains("signature"));
  auto patched = [&](size_t offset, char value) {
    std::string s = good;
    s[offset] = value;
    return s;
  };
  CHECK_THROWS_WITH(read_sb(patched(8, 2)), Catch::Contains("superblock version 2"));
  CHECK_THROWS_WITH(read_sb(patched(12, 0)), Catch::Contains("hash type 0"));
  CHECK_THROWS_WITH(read_sb(patched(36, '1')), Catch::Contains("algorithm 'sha216'"));
  CHECK_THROWS_WITH(read_sb(patched(65, 2)), Catch::Contains("block sizes"));
  CHECK_THROWS_WITH(read_sb(patched(81, 2)), Catch::Contains("salt size 544"));
}

TEST_CASE("verity reads data and tree at offsets inside one disk", "[unit]") {
  // The updater checks slots in place: data and tree are partitions of a single disk file.
  TempDir dir;
  const std::string data = dir / "data", hash = dir / "hash", disk = dir / "disk";
  test::write_random_file(data, 300 * kB, 7);
  verity::Params p = verity::make_params(300 * kB, "offsets");
  Digest root = build_files(data, hash, p);
  const uint64_t data_at = 1 << 20, hash_at = 3 << 20;
  {
    UniqueFd d = open_file(disk, O_RDWR | O_CREAT | O_TRUNC);
    std::string bytes = read_text_file(data), tree = read_text_file(hash);
    pwrite_all(d.get(), std::as_bytes(std::span(bytes.data(), bytes.size())), data_at, disk);
    pwrite_all(d.get(), std::as_bytes(std::span(tree.data(), tree.size())), hash_at, disk);
  }
  UniqueFd fd = open_file(disk, O_RDONLY);
  CHECK(verity::read_superblock(fd.get(), hash_at) == p);
  CHECK_NOTHROW(verity::verify(fd.get(), fd.get(), p, root, nullptr, data_at, hash_at));
  // Without the offsets the same bytes are not a hash device at all.
  CHECK_THROWS_WITH(verity::verify_tree(fd.get(), p, root), Catch::Contains("not a dm-verity"));
  flip_bit(disk, data_at + 123 * kB + 5);
  CHECK_THROWS_WITH(verity::verify(fd.get(), fd.get(), p, root, nullptr, data_at, hash_at),
                    Catch::Contains("data block 123"));
}
