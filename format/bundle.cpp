#include "format/bundle.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>
#include <zstd_errors.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstring>
#include <filesystem>
#include <optional>
#include <thread>
#include <vector>

#include "base/error.h"
#include "base/fd.h"
#include "base/progress.h"
#include "format/sha256.h"

namespace osup {
namespace {

constexpr size_t kIoChunk = 1 << 20;          // writer: big reads for the compressor
constexpr size_t kReadBlock = 256 << 10;      // reader: libarchive's read size
constexpr int kMaxWindowLog = 23;             // 8 MiB: bounds the reader's zstd memory
constexpr int kMinLevel = 1, kMaxLevel = 19;  // level 19 uses window log 23; 20+ need more

// An entry name fit for a one-line message, whatever bytes the tar holds.
std::string printable(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 80)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
  if (s.size() > 80) out += "...";
  return out;
}

std::string archive_err(archive* a) {
  const char* e = archive_error_string(a);
  std::string s = e ? e : "unknown error";
  if (!s.empty()) s[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(s[0])));
  return printable(s);
}

}  // namespace

// ---------------------------------------------------------------------------------------
// Writer

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
    if (rc < ARCHIVE_OK) fail("writing " + tmp_path + ": " + what + ": " + archive_err(a));
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
    fail("payload '" + printable(p.name) + "' is not in the manifest");
  const Payload& want = w.manifest.payloads[w.next];
  if (!(p == want))
    fail("payload '" + printable(p.name) + "' differs from the manifest's next payload '" +
         want.name + "'; add payloads in manifest order with the described size and sha256");
  with_context("adding payload '" + p.name + "'", [&] {
    std::pair<uint64_t, std::string> got;
    if (p.compression == "zstd") {
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
    fail("bundle finished without payload '" + w.manifest.payloads[w.next].name + "'");
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

Payload describe_payload(std::string name, std::string file, const std::string& path,
                         bool compress) {
  Payload p;
  p.name = std::move(name);
  p.file = std::move(file);
  p.compression = compress ? "zstd" : "none";
  UniqueFd fd = open_file(path, O_RDONLY);
  p.size = fd_size(fd.get(), path);
  p.sha256 = to_hex(sha256_file(path));
  return p;
}

// ---------------------------------------------------------------------------------------
// Reader

struct BundleReader::Impl {
  std::string name;
  int fd = -1;
  archive* a = nullptr;
  bool header_read = false, broken = false, at_end = false;
  std::string manifest_bytes, signature;
  std::optional<Manifest> manifest;  // set by verify()
  // The payload being read.
  const Payload* cur = nullptr;
  size_t next = 0;  // index of the next expected payload
  uint64_t produced = 0;
  Sha256 hash;
  bool skip_hash = false;  // the caller checks this payload otherwise (verity)
  std::unique_ptr<ZSTD_DCtx, size_t (*)(ZSTD_DCtx*)> dctx{nullptr, ZSTD_freeDCtx};
  ZSTD_inBuffer zin{nullptr, 0, 0};
  la_int64_t entry_offset = 0;  // of the next compressed byte in the current entry
  bool entry_eof = false, frame_complete = false;
  // An uncompressed payload in a regular file is read with pread straight into the caller's
  // buffer (the stream's aligned O_DIRECT chunks) instead of through libarchive's buffer: one
  // copy of every byte less. libarchive then seeks past the entry.
  int64_t file_base = -1;               // where the tar starts in fd when fd is a regular file
  std::optional<uint64_t> data_offset;  // in fd, of the current "none" payload read in place

  ~Impl() {
    if (a) archive_read_free(a);
  }

  // The next tar entry, or nullptr at the end of the archive.
  archive_entry* next_entry(const char* what) {
    archive_entry* e = nullptr;
    int rc = archive_read_next_header(a, &e);
    if (rc == ARCHIVE_EOF) return nullptr;
    if (rc < ARCHIVE_WARN) {
      if (!header_read && std::string(what) == "first")
        fail(name + " is not an osup bundle: " + archive_err(a));
      fail("reading " + name + ": " + archive_err(a) + "; the bundle is truncated or corrupt");
    }
    return e;
  }

  static std::string entry_name(archive_entry* e) {
    const char* p = archive_entry_pathname(e);
    if (!p) p = archive_entry_pathname_utf8(e);
    return p ? p : "";
  }

  static bool plain_file(archive_entry* e) {
    return archive_entry_filetype(e) == AE_IFREG && !archive_entry_hardlink(e) &&
           archive_entry_sparse_count(e) == 0 && archive_entry_size_is_set(e);
  }

  // Reads a whole small entry (manifest or signature), refusing anything over `cap`.
  std::string read_small(archive_entry* e, size_t cap, const std::string& entry) {
    if (archive_entry_size(e) > static_cast<la_int64_t>(cap))
      fail(name + ": " + entry + " is larger than " + std::to_string(cap) +
           " bytes; this is not an osup bundle");
    std::string out(static_cast<size_t>(archive_entry_size(e)), '\0');
    size_t got = 0;
    for (;;) {
      char scratch[1];  // reads to EOF to catch data beyond the declared size
      char* dst = got < out.size() ? out.data() + got : scratch;
      size_t want = got < out.size() ? out.size() - got : sizeof scratch;
      la_ssize_t n = archive_read_data(a, dst, want);
      if (n < 0) fail("reading " + entry + " from " + name + ": " + archive_err(a));
      if (n == 0) break;
      if (got >= out.size()) fail(name + ": " + entry + " is longer than its tar header says");
      got += static_cast<size_t>(n);
    }
    if (got != out.size()) fail(name + " is truncated in " + entry);
    return out;
  }

  // Points zin at libarchive's own buffer: no copy of the compressed stream. The block stays
  // valid until the next libarchive call, which comes only once zin is used up.
  void fill() {
    const void* block = nullptr;
    size_t len = 0;
    la_int64_t offset = 0;
    int rc = archive_read_data_block(a, &block, &len, &offset);
    if (rc == ARCHIVE_EOF) {
      entry_eof = true;
      zin = {nullptr, 0, 0};
      return;
    }
    if (rc < ARCHIVE_OK)
      fail("payload '" + cur->name + "': reading " + name + ": " + archive_err(a) +
           "; the bundle is truncated or corrupt");
    if (offset != entry_offset)  // plain_file() rules out sparse entries; be sure anyway
      fail("payload '" + cur->name + "': unexpected hole in " + name + "; the bundle is corrupt");
    entry_offset += static_cast<la_int64_t>(len);
    zin = {block, len, 0};
  }

  size_t finish_payload() {
    if (produced != cur->size)
      fail("payload '" + cur->name + "' is truncated: " + std::to_string(produced) + " of " +
           std::to_string(cur->size) + " bytes; the bundle is corrupt");
    if (!skip_hash && to_hex(hash.finish()) != cur->sha256)
      fail("payload '" + cur->name + "': sha256 mismatch; the bundle is corrupt");
    cur = nullptr;
    ++next;
    return 0;
  }

  // Where the data of the entry just read starts in fd, or nullopt when the headers at
  // archive_read_header_position() are not one plain ustar header (optionally after a pax
  // header) naming this entry: then libarchive reads it. Either way what is read is checked
  // (sha256 or verity), so a wrong offset could only fail an install, never corrupt one.
  std::optional<uint64_t> locate_data(archive_entry* e) {
    if (file_base < 0) return std::nullopt;
    uint64_t pos = static_cast<uint64_t>(file_base + archive_read_header_position(a));
    std::array<char, 512> h{};
    auto octal = [&](size_t at, size_t len) -> std::optional<uint64_t> {
      uint64_t v = 0;
      size_t i = at;
      while (i < at + len && h[i] == ' ') ++i;
      if (i == at + len || h[i] < '0' || h[i] > '7') return std::nullopt;
      for (; i < at + len && h[i] >= '0' && h[i] <= '7'; ++i)
        v = v * 8 + static_cast<uint64_t>(h[i] - '0');
      return v;
    };
    auto load = [&]() {
      if (pread_full(fd, std::as_writable_bytes(std::span(h)), pos, name) != h.size()) return false;
      unsigned sum = 0;
      for (size_t i = 0; i < h.size(); ++i)
        sum += (i >= 148 && i < 156) ? ' ' : static_cast<unsigned char>(h[i]);
      return std::memcmp(h.data() + 257, "ustar", 5) == 0 && octal(148, 8) == sum;
    };
    if (!load()) return std::nullopt;
    if (h[156] == 'x') {  // pax attributes (e.g. a size over 8 GiB), then the real header
      auto pax = octal(124, 12);
      if (!pax) return std::nullopt;
      pos += 512 + (*pax + 511) / 512 * 512;
      if (!load()) return std::nullopt;
    }
    const std::string entry = entry_name(e);
    const auto size = static_cast<uint64_t>(archive_entry_size(e));
    if ((h[156] != '0' && h[156] != '\0') ||
        std::string(h.data(), strnlen(h.data(), 100)) != entry ||
        (size < (uint64_t{1} << 33) && octal(124, 12) != size))
      return std::nullopt;
    return pos + 512;
  }

  size_t read(std::span<std::byte> buf) {
    if (!cur) {
      if (next > 0) return 0;  // reading again after a payload's end stays at its end
      fail("no bundle payload is open for reading; call next_payload() first");
    }
    if (buf.empty()) fail("bundle read with an empty buffer");
    size_t n = 0;
    if (data_offset) {
      const size_t want = static_cast<size_t>(std::min<uint64_t>(buf.size(), cur->size - produced));
      if (want == 0) return finish_payload();
      n = pread_full(fd, buf.first(want), *data_offset + produced, name);
      if (n < want)
        fail("payload '" + cur->name + "': " + name + " ends early; the bundle is truncated");
    } else if (cur->compression == "none") {
      la_ssize_t r = archive_read_data(a, buf.data(), buf.size());
      if (r < 0)
        fail("payload '" + cur->name + "': reading " + name + ": " + archive_err(a) +
             "; the bundle is truncated or corrupt");
      if (r == 0) return finish_payload();
      n = static_cast<size_t>(r);
    } else {
      ZSTD_outBuffer out{buf.data(), buf.size(), 0};
      for (;;) {
        if (zin.pos == zin.size && !entry_eof) fill();
        bool no_more_input = zin.pos == zin.size && entry_eof;
        if (no_more_input && frame_complete) return finish_payload();
        size_t rc = ZSTD_decompressStream(dctx.get(), &out, &zin);
        if (ZSTD_getErrorCode(rc) == ZSTD_error_frameParameter_windowTooLarge)
          fail("payload '" + cur->name + "': its zstd window is larger than " +
               std::to_string((1 << kMaxWindowLog) >> 20) +
               " MiB; rebuild the bundle with osup-build (zstd level at most 19, no --long)");
        if (ZSTD_isError(rc))
          fail("payload '" + cur->name + "': zstd: " + ZSTD_getErrorName(rc) +
               "; the bundle is corrupt");
        frame_complete = rc == 0;
        if (out.pos > 0) break;
        if (no_more_input) {
          if (frame_complete) return finish_payload();
          fail("payload '" + cur->name + "' is truncated: its zstd stream ends early");
        }
      }
      n = out.pos;
    }
    if (produced + n > cur->size)
      fail("payload '" + cur->name + "' is longer than declared; the bundle is corrupt");
    produced += n;
    if (!skip_hash) hash.update(buf.first(n));
    return n;
  }

  const Payload* next_payload() {
    if (!manifest) fail("bundle payloads read before the signature was verified");
    if (cur) {  // the caller skipped the rest: read and check it anyway
      std::vector<std::byte> scratch(kReadBlock);
      while (read(scratch) > 0) {
      }
    }
    if (at_end) return nullptr;
    const auto& ps = manifest->payloads;
    archive_entry* e = next_entry("payload");
    if (!e) {
      if (next < ps.size()) fail("bundle is truncated: payload '" + ps[next].name + "' missing");
      at_end = true;
      return nullptr;
    }
    const std::string entry = entry_name(e);
    auto it = std::find_if(ps.begin(), ps.end(), [&](const Payload& p) { return p.file == entry; });
    if (it == ps.end()) fail("unexpected entry '" + printable(entry) + "' in bundle");
    size_t idx = static_cast<size_t>(it - ps.begin());
    if (idx < next) fail("duplicate entry '" + printable(entry) + "' in bundle");
    if (idx > next)
      fail("entry '" + entry + "' is out of order in bundle; expected '" + ps[next].file + "'");
    if (!plain_file(e)) fail("bundle entry '" + entry + "' is not a plain file");
    if (it->compression == "none" && archive_entry_size(e) != static_cast<la_int64_t>(it->size))
      fail("payload '" + it->name + "': entry is " + std::to_string(archive_entry_size(e)) +
           " bytes, the manifest says " + std::to_string(it->size) + "; the bundle is corrupt");
    cur = &*it;
    produced = 0;
    hash = Sha256();
    skip_hash = false;
    entry_eof = false;
    frame_complete = false;
    zin = {nullptr, 0, 0};
    entry_offset = 0;
    data_offset = cur->compression == "none" ? locate_data(e) : std::nullopt;
    if (cur->compression == "zstd") ZSTD_DCtx_reset(dctx.get(), ZSTD_reset_session_only);
    return cur;
  }

  void read_header() {
    if (header_read) return;
    struct stat st {};
    if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) file_base = ::lseek(fd, 0, SEEK_CUR);
    // Opening reads the first block to recognize the format: that is where junk fails.
    if (archive_read_open_fd(a, fd, kReadBlock) != ARCHIVE_OK)
      fail(name + " is not an osup bundle: " + archive_err(a));
    archive_entry* e = next_entry("first");
    if (!e) fail(name + " is not an osup bundle: it is empty");
    std::string first = entry_name(e);
    if (first != kManifestEntry || !plain_file(e))
      fail(name + " is not an osup bundle: first entry is '" + printable(first) +
           "', expected manifest.json");
    manifest_bytes = read_small(e, kMaxManifestSize, kManifestEntry);
    header_read = true;  // from here on, header errors are about a damaged osup bundle
    e = next_entry("second");
    if (!e)
      fail(name + " is not a signed osup bundle: it ends after manifest.json; sign it with " +
           "osup-build");
    std::string second = entry_name(e);
    if (second != kSignatureEntry || !plain_file(e))
      fail(name + " is not a signed osup bundle: second entry is '" + printable(second) +
           "', expected manifest.json.sig");
    signature = read_small(e, kMaxSignatureSize, kSignatureEntry);
  }
};

BundleReader::BundleReader(int fd, std::string source_name) : impl_(std::make_unique<Impl>()) {
  Impl& r = *impl_;
  r.name = source_name == "-" ? "stdin" : std::move(source_name);
  r.dctx.reset(ZSTD_createDCtx());
  r.a = archive_read_new();
  if (!r.a || !r.dctx) fail("out of memory creating a bundle reader");
  // Bound what a hostile zstd frame can make us allocate (the updater targets < 32 MiB RSS).
  ZSTD_DCtx_setParameter(r.dctx.get(), ZSTD_d_windowLogMax, kMaxWindowLog);
  // Only tar, and no outer compression filters: a bundle is exactly what BundleWriter makes.
  archive_read_support_format_tar(r.a);
  archive_read_support_format_empty(r.a);  // so empty input says "empty", not "unrecognized"
  r.fd = fd;
}

BundleReader::~BundleReader() = default;

// Any error leaves the stream at an unknown position: refuse further use.
template <class Fn>
static decltype(auto) guarded(bool& broken, Fn&& fn) {
  if (broken) fail("bundle reading stopped after an earlier error");
  try {
    return fn();
  } catch (...) {
    broken = true;
    throw;
  }
}

void BundleReader::read_header() {
  guarded(impl_->broken, [&] { impl_->read_header(); });
}

const std::string& BundleReader::manifest_bytes() const {
  if (!impl_->header_read) fail("bundle manifest requested before read_header()");
  return impl_->manifest_bytes;
}

const std::string& BundleReader::signature() const {
  if (impl_->signature.empty()) fail("bundle signature requested before read_header()");
  return impl_->signature;
}

const Manifest& BundleReader::verify(const sig::TrustStore& trust, std::string* signer_key_id) {
  return guarded(impl_->broken, [&]() -> const Manifest& {
    Impl& r = *impl_;
    r.read_header();
    const sig::PublicKey* key = trust.find_signer(r.manifest_bytes, r.signature);
    if (!key)
      fail("bundle signature does not match any trusted key (keys in " + trust.description() +
           "); was it signed with the right key?");
    if (signer_key_id) *signer_key_id = key->key_id();
    if (!r.manifest) r.manifest = Manifest::parse(r.manifest_bytes);
    return *r.manifest;
  });
}

Manifest BundleReader::parse_unverified() const { return Manifest::parse(manifest_bytes()); }

const Payload* BundleReader::next_payload() {
  return guarded(impl_->broken, [&] { return impl_->next_payload(); });
}

bool BundleReader::reads_in_place() const { return impl_->data_offset.has_value(); }

void BundleReader::skip_sha256_for_current() {
  Impl& r = *impl_;
  if (!r.cur) fail("no bundle payload is open; call next_payload() before skipping its sha256");
  if (r.produced > 0)
    fail("payload '" + r.cur->name + "': sha256 can only be skipped before reading it");
  r.skip_hash = true;
}

size_t BundleReader::read(std::span<std::byte> buf) {
  return guarded(impl_->broken, [&] { return impl_->read(buf); });
}

}  // namespace osup
