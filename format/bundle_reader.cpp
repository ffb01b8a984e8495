#include "format/bundle_reader.h"

#include <archive.h>
#include <archive_entry.h>
#include <zstd.h>
#include <zstd_errors.h>

#include <algorithm>
#include <cerrno>
#include <exception>
#include <optional>
#include <utility>
#include <vector>

#include "base/error.h"
#include "format/sha256.h"
#include "format/tar_locator.h"

namespace osup {
namespace {

constexpr size_t kReadBlock = 256 << 10;  // what the reader asks the source for at a time
// Until the signature is read: one tar block at a time, so checking it reads the manifest
// and signature entries and no payload byte (a bundle signed by another key is refused having
// read a few KiB, whatever the source: a file, a pipe, a network stream).
constexpr size_t kHeaderReadBlock = 512;

}  // namespace

struct BundleReader::Impl {
  std::string name;
  ByteSource* src = nullptr;
  archive* a = nullptr;
  std::vector<std::byte> block = std::vector<std::byte>(kReadBlock);  // what libarchive reads into
  std::exception_ptr source_error;  // thrown by src inside a libarchive callback
  bool header_read = false, broken = false, at_end = false;
  bool signature_read = false;  // from here on, reads of kReadBlock
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
  // An uncompressed payload of a random-access source is read with read_at straight into the
  // caller's buffer (the stream's aligned O_DIRECT chunks) instead of through libarchive's
  // buffer: one copy of every byte less. libarchive then skips past the entry.
  std::optional<uint64_t> data_offset;  // in src, of the current "none" payload read in place

  ~Impl() {
    if (a) archive_read_free(a);
  }

  // libarchive's callbacks cannot throw through C code: they park the source's exception,
  // and the failing libarchive call is answered by rethrowing it here.
  void rethrow_source_error() {
    if (source_error) std::rethrow_exception(std::exchange(source_error, nullptr));
  }

  static la_ssize_t read_cb(archive* a, void* self, const void** out) {
    auto* r = static_cast<Impl*>(self);
    try {
      *out = r->block.data();
      const std::span<std::byte> want =
          r->signature_read ? std::span(r->block) : std::span(r->block).first(kHeaderReadBlock);
      return static_cast<la_ssize_t>(r->src->read(want));
    } catch (...) {
      r->source_error = std::current_exception();
      archive_set_error(a, EIO, "read error");
      return -1;
    }
  }

  static la_int64_t skip_cb(archive* a, void* self, la_int64_t n) {
    auto* r = static_cast<Impl*>(self);
    if (!r->src->random_access()) return 0;  // libarchive reads past instead
    try {
      return static_cast<la_int64_t>(r->src->skip(static_cast<uint64_t>(n)));
    } catch (...) {
      r->source_error = std::current_exception();
      archive_set_error(a, EIO, "seek error");
      return -1;
    }
  }

  // The next tar entry, or nullptr at the end of the archive.
  archive_entry* next_entry(const char* what) {
    archive_entry* e = nullptr;
    int rc = archive_read_next_header(a, &e);
    if (rc == ARCHIVE_EOF) return nullptr;
    if (rc < ARCHIVE_WARN) {
      rethrow_source_error();
      if (!header_read && std::string(what) == "first")
        fail(name + " is not an osup bundle: " + archive_message(a));
      fail("reading " + name + ": " + archive_message(a) + "; the bundle is truncated or corrupt");
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
      if (n < 0) rethrow_source_error();
      if (n < 0) fail("reading " + entry + " from " + name + ": " + archive_message(a));
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
    if (rc < ARCHIVE_OK) rethrow_source_error();
    if (rc < ARCHIVE_OK)
      fail("payload '" + to_string(cur->kind) + "': reading " + name + ": " + archive_message(a) +
           "; the bundle is truncated or corrupt");
    if (offset != entry_offset)  // plain_file() rules out sparse entries; be sure anyway
      fail("payload '" + to_string(cur->kind) + "': unexpected hole in " + name +
           "; the bundle is corrupt");
    entry_offset += static_cast<la_int64_t>(len);
    zin = {block, len, 0};
  }

  size_t finish_payload() {
    if (produced != cur->size)
      fail("payload '" + to_string(cur->kind) + "' is truncated: " + std::to_string(produced) +
           " of " + std::to_string(cur->size) + " bytes; the bundle is corrupt");
    if (!skip_hash && to_hex(hash.finish()) != cur->sha256)
      fail("payload '" + to_string(cur->kind) + "': sha256 mismatch; the bundle is corrupt");
    cur = nullptr;
    ++next;
    return 0;
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
      n = src->read_at(buf.first(want), *data_offset + produced);
      if (n < want)
        fail("payload '" + to_string(cur->kind) + "': " + name +
             " ends early; the bundle is truncated");
    } else if (cur->compression == Compression::none) {
      la_ssize_t r = archive_read_data(a, buf.data(), buf.size());
      if (r < 0) rethrow_source_error();
      if (r < 0)
        fail("payload '" + to_string(cur->kind) + "': reading " + name + ": " + archive_message(a) +
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
          fail("payload '" + to_string(cur->kind) + "': its zstd window is larger than " +
               std::to_string((1 << kMaxZstdWindowLog) >> 20) +
               " MiB; rebuild the bundle with osup-build (zstd level at most 19, no --long)");
        if (ZSTD_isError(rc))
          fail("payload '" + to_string(cur->kind) + "': zstd: " + ZSTD_getErrorName(rc) +
               "; the bundle is corrupt");
        frame_complete = rc == 0;
        if (out.pos > 0) break;
        if (no_more_input) {
          if (frame_complete) return finish_payload();
          fail("payload '" + to_string(cur->kind) + "' is truncated: its zstd stream ends early");
        }
      }
      n = out.pos;
    }
    if (produced + n > cur->size)
      fail("payload '" + to_string(cur->kind) + "' is longer than declared; the bundle is corrupt");
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
      if (next < ps.size())
        fail("bundle is truncated: payload '" + to_string(ps[next].kind) + "' missing");
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
    if (it->compression == Compression::none &&
        archive_entry_size(e) != static_cast<la_int64_t>(it->size))
      fail("payload '" + to_string(it->kind) + "': entry is " +
           std::to_string(archive_entry_size(e)) + " bytes, the manifest says " +
           std::to_string(it->size) + "; the bundle is corrupt");
    cur = &*it;
    produced = 0;
    hash = Sha256();
    skip_hash = false;
    entry_eof = false;
    frame_complete = false;
    zin = {nullptr, 0, 0};
    entry_offset = 0;
    data_offset = std::nullopt;
    if (cur->compression == Compression::none)
      data_offset = locate_tar_data(*src, static_cast<uint64_t>(archive_read_header_position(a)),
                                    entry, cur->size);
    if (cur->compression == Compression::zstd) ZSTD_DCtx_reset(dctx.get(), ZSTD_reset_session_only);
    return cur;
  }

  void read_header() {
    if (header_read) return;
    // Opening reads the first block to recognize the format: that is where junk fails.
    if (archive_read_open2(a, this, nullptr, read_cb, skip_cb, nullptr) != ARCHIVE_OK) {
      rethrow_source_error();
      fail(name + " is not an osup bundle: " + archive_message(a));
    }
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
    signature_read = true;
  }
};

BundleReader::BundleReader(ByteSource& source) : impl_(std::make_unique<Impl>()) {
  Impl& r = *impl_;
  r.src = &source;
  r.name = source.name();
  r.dctx.reset(ZSTD_createDCtx());
  r.a = archive_read_new();
  if (!r.a || !r.dctx) fail("out of memory creating a bundle reader");
  // Bound what a hostile zstd frame can make us allocate (the updater targets < 32 MiB RSS).
  ZSTD_DCtx_setParameter(r.dctx.get(), ZSTD_d_windowLogMax, kMaxZstdWindowLog);
  // Only tar, and no outer compression filters: a bundle is exactly what BundleWriter makes.
  archive_read_support_format_tar(r.a);
  archive_read_support_format_empty(r.a);  // so empty input says "empty", not "unrecognized"
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
    fail("payload '" + to_string(r.cur->kind) + "': sha256 can only be skipped before reading it");
  r.skip_hash = true;
}

size_t BundleReader::read(std::span<std::byte> buf) {
  return guarded(impl_->broken, [&] { return impl_->read(buf); });
}

}  // namespace osup
