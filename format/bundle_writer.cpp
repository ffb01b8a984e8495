#include "format/bundle_writer.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <unistd.h>
#include <zstd.h>

#include <algorithm>
#include <filesystem>
#include <thread>
#include <vector>

#include "base/error.h"
#include "base/fd.h"
#include "base/progress.h"
#include "format/sha256.h"

namespace osup {
namespace {

constexpr size_t kIoChunk = 1 << 20;          // big reads for the compressor
constexpr int kMinLevel = 1, kMaxLevel = 19;  // level 19 uses window log 23; 20+ need more

}  // namespace

struct BundleWriter::Impl {
  std::string out_path, tmp_path, payload_tmp;
  UniqueFd fd;
  archive* a = nullptr;
  Manifest manifest;
  bool header_written = false, finished = false;
  size_t next = 0;

  ~Impl() {
    if (a) archive_write_free(a);
    if (!finished) {
      ::unlink(tmp_path.c_str());
      ::unlink(payload_tmp.c_str());
    }
  }

  void check(la_ssize_t rc, const std::string& what) {
    if (rc < ARCHIVE_OK) fail("writing " + tmp_path + ": " + what + ": " + archive_message(a));
  }

  // One deterministic entry header: owner root, mode 0644, mtime = manifest.created.
  void begin_entry(const std::string& name, uint64_t size) {
    archive_entry* e = archive_entry_new();
    if (!e) fail("out of memory creating a tar entry");
    archive_entry_set_pathname(e, name.c_str());
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    archive_entry_set_uid(e, 0);
    archive_entry_set_gid(e, 0);
    archive_entry_set_size(e, static_cast<la_int64_t>(size));
    archive_entry_set_mtime(e, static_cast<time_t>(manifest.created), 0);
    int rc = archive_write_header(a, e);
    archive_entry_free(e);
    check(rc, "header of " + name);
  }

  void write_data(const void* data, size_t n, const std::string& name) {
    la_ssize_t w = archive_write_data(a, data, n);
    check(w, name);
    if (static_cast<size_t>(w) != n) fail("writing " + tmp_path + ": short write of " + name);
  }

  // Copies a whole file into the current entry; returns bytes copied.
  uint64_t copy_file(int in, const std::string& what, const std::string& name, Sha256* hash,
                     Progress* progress) {
    std::vector<std::byte> buf(kIoChunk);
    uint64_t total = 0;
    for (;;) {
      size_t n = read_full(in, buf, what);
      if (n == 0) break;
      if (hash) hash->update(std::span(buf.data(), n));
      write_data(buf.data(), n, name);
      if (progress) progress->advance(n);
      total += n;
      if (n < buf.size()) break;
    }
    return total;
  }

  // Compresses source into payload_tmp; returns the uncompressed size and its hash.
  std::pair<uint64_t, std::string> compress(const Payload& p, const std::string& source, int level,
                                            Progress* progress) {
    UniqueFd in = open_file(source, O_RDONLY);
    UniqueFd out = open_file(payload_tmp, O_RDWR | O_CREAT | O_TRUNC, 0600);
    std::unique_ptr<ZSTD_CCtx, size_t (*)(ZSTD_CCtx*)> cctx(ZSTD_createCCtx(), ZSTD_freeCCtx);
    if (!cctx) fail("out of memory creating a zstd compressor");
    // nbWorkers >= 1 even on one core: multithreaded zstd output does not depend on the worker
    // count, but differs from single-threaded output; this keeps bundles identical everywhere.
    int workers = std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
    ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_compressionLevel, level);
    ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_checksumFlag, 1);
    if (ZSTD_isError(ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_nbWorkers, workers)))
      fail("libzstd was built without multithreading; install Debian's libzstd1");
    ZSTD_CCtx_setPledgedSrcSize(cctx.get(), p.size);

    std::vector<std::byte> ibuf(kIoChunk), obuf(ZSTD_CStreamOutSize());
    Sha256 hash;
    uint64_t total = 0;
    uint64_t out_off = 0;
    auto drain = [&](ZSTD_inBuffer& input, ZSTD_EndDirective mode) {
      for (;;) {
        ZSTD_outBuffer o{obuf.data(), obuf.size(), 0};
        size_t rem = ZSTD_compressStream2(cctx.get(), &o, &input, mode);
        if (ZSTD_isError(rem))
          fail("compressing " + source + ": " + ZSTD_getErrorName(rem) +
               (total != p.size ? "; did the file change after it was described?" : ""));
        pwrite_all(out.get(), std::span(obuf.data(), o.pos), out_off, payload_tmp);
        out_off += o.pos;
        bool done = mode == ZSTD_e_end ? rem == 0 : input.pos == input.size;
        if (done) return;
      }
    };
    for (;;) {
      size_t n = read_full(in.get(), ibuf, source);
      hash.update(std::span(ibuf.data(), n));
      total += n;
      if (progress) progress->advance(n);
      // Stop early on growth: the pledged size would make zstd fail with a vaguer error.
      if (total > p.size) break;
      ZSTD_inBuffer input{ibuf.data(), n, 0};
      drain(input, n < ibuf.size() ? ZSTD_e_end : ZSTD_e_continue);
      if (n < ibuf.size()) break;
    }
    return {total, to_hex(hash.finish())};
  }
};

BundleWriter::BundleWriter(const std::string& out_path) : impl_(std::make_unique<Impl>()) {
  impl_->out_path = out_path;
  impl_->tmp_path = out_path + ".tmp";
  impl_->payload_tmp = out_path + ".payload.tmp";
  impl_->fd = open_file(impl_->tmp_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  impl_->a = archive_write_new();
  if (!impl_->a) fail("out of memory creating a tar writer");
  // pax "restricted": plain ustar headers unless a value needs pax (e.g. a payload > 8 GiB).
  impl_->check(archive_write_set_format_pax_restricted(impl_->a), "setting the tar format");
  impl_->check(archive_write_open_fd(impl_->a, impl_->fd.get()), "opening");
}

BundleWriter::~BundleWriter() = default;

void BundleWriter::write_header(const std::string& manifest_json, const std::string& signature) {
  Impl& w = *impl_;
  if (w.header_written) fail("bundle header written twice");
  if (manifest_json.size() > kMaxManifestSize) fail("manifest is larger than 1 MiB");
  if (signature.empty() || signature.size() > kMaxSignatureSize)
    fail("manifest signature is empty or larger than 64 KiB");
  // Parse what we write so a builder bug cannot produce a bundle the updater rejects later.
  w.manifest = with_context("writing bundle", [&] { return Manifest::parse(manifest_json); });
  w.begin_entry(kManifestEntry, manifest_json.size());
  w.write_data(manifest_json.data(), manifest_json.size(), kManifestEntry);
  w.begin_entry(kSignatureEntry, signature.size());
  w.write_data(signature.data(), signature.size(), kSignatureEntry);
  w.header_written = true;
}

void BundleWriter::add_payload(const Payload& p, const std::string& source_path, int zstd_level,
                               Progress* progress) {
  Impl& w = *impl_;
  if (!w.header_written) fail("bundle payload added before the manifest");
  if (w.next >= w.manifest.payloads.size())
    fail("payload '" + to_string(p.kind) + "' is not in the manifest");
  const Payload& want = w.manifest.payloads[w.next];
  if (!(p == want))
    fail("payload '" + to_string(p.kind) + "' differs from the manifest's next payload '" +
         to_string(want.kind) +
         "'; add payloads in manifest order with the described size and sha256");
  with_context("adding payload '" + to_string(p.kind) + "'", [&] {
    std::pair<uint64_t, std::string> got;
    if (p.compression == Compression::zstd) {
      if (zstd_level < kMinLevel || zstd_level > kMaxLevel)
        fail("zstd level " + std::to_string(zstd_level) + " is out of range; use 1 to 19");
      // A tar header carries the entry size before the data, and the compressed size is only
      // known after compressing: compress to a temp file beside the output, then copy it in.
      // (Holding it in memory would not scale to multi-GiB roots.)
      got = w.compress(p, source_path, zstd_level, progress);
      if (got.first == p.size && got.second == p.sha256) {
        UniqueFd tmp = open_file(w.payload_tmp, O_RDONLY);
        w.begin_entry(p.file, fd_size(tmp.get(), w.payload_tmp));
        (void)w.copy_file(tmp.get(), w.payload_tmp, p.file, nullptr, nullptr);
      }
      ::unlink(w.payload_tmp.c_str());
    } else {
      UniqueFd in = open_file(source_path, O_RDONLY);
      uint64_t size = fd_size(in.get(), source_path);
      if (size != p.size)
        fail(source_path + " is " + std::to_string(size) + " bytes but the manifest says " +
             std::to_string(p.size) + "; did the file change after it was described?");
      w.begin_entry(p.file, size);
      Sha256 h;
      got.first = w.copy_file(in.get(), source_path, p.file, &h, progress);
      got.second = to_hex(h.finish());
    }
    if (got.first != p.size || got.second != p.sha256)
      fail(source_path + " no longer matches its size and sha256 in the manifest; " +
           "did the file change after it was described?");
  });
  ++w.next;
}

void BundleWriter::finish() {
  Impl& w = *impl_;
  if (!w.header_written) fail("bundle finished without a manifest");
  if (w.next != w.manifest.payloads.size())
    fail("bundle finished without payload '" + to_string(w.manifest.payloads[w.next].kind) + "'");
  w.check(archive_write_close(w.a), "closing");
  archive_write_free(w.a);
  w.a = nullptr;
  fsync_fd(w.fd.get(), w.tmp_path);
  w.fd.reset();
  if (::rename(w.tmp_path.c_str(), w.out_path.c_str()) < 0)
    fail_errno("rename " + w.tmp_path + " to " + w.out_path, errno);
  w.finished = true;
  fsync_dir(std::filesystem::path(w.out_path).parent_path().string());
}

Payload describe_payload(PayloadKind kind, std::string file, const std::string& path,
                         Compression compression) {
  Payload p;
  p.kind = kind;
  p.file = std::move(file);
  p.compression = compression;
  UniqueFd fd = open_file(path, O_RDONLY);
  p.size = fd_size(fd.get(), path);
  p.sha256 = to_hex(sha256_file(path));
  return p;
}

}  // namespace osup
