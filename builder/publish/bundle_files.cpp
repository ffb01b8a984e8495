#include "builder/publish/bundle_files.h"

#include <fcntl.h>

#include <filesystem>
#include <vector>

#include "base/byte_source.h"
#include "base/error.h"
#include "base/fd.h"
#include "format/bundle_reader.h"

namespace fs = std::filesystem;

namespace osup::build {

BundleFiles extract_bundle(const std::string& bundle, const sig::TrustStore& trust,
                           const std::string& dir) {
  return with_context("reading bundle " + bundle, [&] {
    fs::create_directories(dir);
    std::unique_ptr<ByteSource> src = open_file_source(bundle);
    BundleReader reader(*src);
    BundleFiles out;
    out.manifest = reader.verify(trust);
    out.manifest_bytes = reader.manifest_bytes();
    out.signature = reader.signature();
    std::vector<std::byte> buf(4 << 20);
    while (const Payload* p = reader.next_payload()) {
      const std::string path = (fs::path(dir) / to_string(p->kind)).string();
      UniqueFd fd = open_file(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      for (size_t n; (n = reader.read(buf)) > 0;)
        write_all(fd.get(), std::span<const std::byte>(buf.data(), n), path);
      out.paths[p->kind] = path;
    }
    return out;
  });
}

}  // namespace osup::build
