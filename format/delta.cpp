#include "format/delta.h"

#include <zstd.h>

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/fd.h"
#include "format/json_fields.h"

namespace osup::delta {
namespace {

using json = nlohmann::json;
constexpr std::string_view kDoc = "delta header";
constexpr int kWindowLog = 24;  // 16 MiB: bounds the device's decompression memory
enum Op : unsigned { kCopy = 0, kLiteral = 1, kZero = 2 };

json section_json(const Section& s) { return json{{"offset", s.offset}, {"size", s.size}}; }

Section parse_section(JsonFields& parent, const std::string& key) {
  JsonFields f(parent.get(key), std::string(kDoc), parent.name(key));
  Section s{f.u64("offset"), f.u64("size")};
  f.done();
  if (s.offset > (uint64_t{1} << 40) || s.size > (uint64_t{1} << 40))
    json_field_error(kDoc, parent.name(key), "is out of range");
  return s;
}

std::string method_name(FileMethod m) { return m == FileMethod::same ? "same" : "zstd-patch"; }

void check_zstd(size_t rc, const char* what) {
  if (ZSTD_isError(rc)) fail(std::string(what) + ": " + ZSTD_getErrorName(rc));
}

}  // namespace

const FileDelta* Header::file(PayloadKind kind) const {
  for (const FileDelta& f : files)
    if (f.kind == kind) return &f;
  return nullptr;
}

std::string Header::to_json() const {
  json fs = json::array();
  for (const FileDelta& f : files)
    fs.push_back({{"kind", to_string(f.kind)},
                  {"method", method_name(f.method)},
                  {"source_sha256", f.source_sha256},
                  {"data", section_json(f.data)}});
  json j{{"format", format},
         {"source",
          {{"version", source_version},
           {"root_hash", source_root_hash},
           {"root_size", source_root_size}}},
         {"manifest", section_json(manifest)},
         {"signature", section_json(signature)},
         {"files", fs},
         {"root", section_json(root)},
         {"root_sha256", root_sha256},
         {"blocks", {{"copy", copy_blocks}, {"literal", literal_blocks}, {"zero", zero_blocks}}}};
  return j.dump(2) + "\n";
}

Header Header::parse(std::string_view text) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    fail("delta header is not valid JSON: " + std::string(e.what()));
  }
  JsonFields top(j, std::string(kDoc), "");
  Header h;
  h.format = top.small_int("format");
  if (h.format != kFormat)
    fail("delta format " + std::to_string(h.format) + " is not one this osup reads (" +
         std::to_string(kFormat) + "); use the full bundle");
  JsonFields src(top.get("source"), std::string(kDoc), "source");
  h.source_version = src.str("version");
  h.source_root_hash = src.sha256_hex("root_hash");
  h.source_root_size = src.u64("root_size");
  src.done();
  h.manifest = parse_section(top, "manifest");
  h.signature = parse_section(top, "signature");
  const json& fs = top.get("files");
  if (!fs.is_array() || fs.size() > 2)
    json_field_error(kDoc, "files", "must be an array of at most 2");
  for (size_t i = 0; i < fs.size(); ++i) {
    JsonFields f(fs[i], std::string(kDoc), "files[" + std::to_string(i) + "]");
    FileDelta fd;
    auto kind = parse_payload_kind(f.str("kind"));
    if (!kind || (*kind != PayloadKind::kernel && *kind != PayloadKind::initrd))
      json_field_error(kDoc, f.name("kind"), "must be kernel or initrd");
    fd.kind = *kind;
    const std::string m = f.str("method");
    if (m != "same" && m != "zstd-patch")
      json_field_error(kDoc, f.name("method"), "must be same or zstd-patch");
    fd.method = m == "same" ? FileMethod::same : FileMethod::zstd_patch;
    fd.source_sha256 = f.sha256_hex("source_sha256");
    fd.data = parse_section(f, "data");
    f.done();
    h.files.push_back(fd);
  }
  h.root = parse_section(top, "root");
  h.root_sha256 = top.sha256_hex("root_sha256");
  JsonFields b(top.get("blocks"), std::string(kDoc), "blocks");
  h.copy_blocks = b.u64("copy");
  h.literal_blocks = b.u64("literal");
  h.zero_blocks = b.u64("zero");
  b.done();
  top.done();
  return h;
}

std::string encode_preamble(const Header& h) {
  const std::string body = h.to_json();
  std::string out(kMagic);
  const auto n = static_cast<uint32_t>(body.size());
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  return out + body;
}

Header read_header(int fd, const std::string& what, uint64_t* data_start) {
  std::string pre(kMagic.size() + 4, '\0');
  if (pread_full(fd, std::as_writable_bytes(std::span(pre)), 0, what) != pre.size() ||
      std::string_view(pre).substr(0, kMagic.size()) != kMagic)
    fail(what + " is not an osup delta (no OSUPDLT1 header); use the full bundle");
  uint32_t n = 0;
  for (int i = 3; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(pre[kMagic.size() + i]);
  if (n == 0 || n > kMaxHeader)
    fail(what + ": delta header length " + std::to_string(n) + " is out of range");
  std::string body(n, '\0');
  if (pread_full(fd, std::as_writable_bytes(std::span(body)), pre.size(), what) != n)
    fail(what + " is truncated inside its header");
  *data_start = pre.size() + n;
  return with_context(what, [&] { return Header::parse(body); });
}

// ---- writer ----

struct RootOpWriter::Impl {
  std::function<void(std::span<const std::byte>)> sink;
  ZSTD_CCtx* cctx = nullptr;
  std::vector<std::byte> in, out;
  ~Impl() { ZSTD_freeCCtx(cctx); }
};

RootOpWriter::RootOpWriter(std::function<void(std::span<const std::byte>)> sink, int level)
    : impl_(std::make_unique<Impl>()) {
  impl_->sink = std::move(sink);
  impl_->cctx = ZSTD_createCCtx();
  if (!impl_->cctx) fail("out of memory for zstd");
  check_zstd(ZSTD_CCtx_setParameter(impl_->cctx, ZSTD_c_compressionLevel, level), "zstd level");
  check_zstd(ZSTD_CCtx_setParameter(impl_->cctx, ZSTD_c_windowLog, kWindowLog), "zstd window");
  check_zstd(ZSTD_CCtx_setParameter(impl_->cctx, ZSTD_c_enableLongDistanceMatching, 1), "zstd ldm");
  check_zstd(ZSTD_CCtx_setParameter(impl_->cctx, ZSTD_c_nbWorkers, 2), "zstd workers");
  check_zstd(ZSTD_CCtx_setParameter(impl_->cctx, ZSTD_c_checksumFlag, 1), "zstd checksum");
  impl_->in.reserve(1 << 20);
  impl_->out.resize(ZSTD_CStreamOutSize());
}

RootOpWriter::~RootOpWriter() = default;

void RootOpWriter::flush(bool end) {
  ZSTD_inBuffer in{impl_->in.data(), impl_->in.size(), 0};
  for (;;) {
    ZSTD_outBuffer out{impl_->out.data(), impl_->out.size(), 0};
    size_t left = ZSTD_compressStream2(impl_->cctx, &out, &in, end ? ZSTD_e_end : ZSTD_e_continue);
    check_zstd(left, "compressing the root delta");
    if (out.pos) impl_->sink(std::span(impl_->out.data(), out.pos));
    if (end ? left == 0 : in.pos == in.size) break;
  }
  impl_->in.clear();
}

void RootOpWriter::put(std::span<const std::byte> bytes) {
  while (!bytes.empty()) {
    size_t room = impl_->in.capacity() - impl_->in.size();
    size_t n = std::min(room, bytes.size());
    impl_->in.insert(impl_->in.end(), bytes.begin(), bytes.begin() + static_cast<ptrdiff_t>(n));
    bytes = bytes.subspan(n);
    if (impl_->in.size() == impl_->in.capacity()) flush(false);
  }
}

void RootOpWriter::put_varint(uint64_t v) {
  std::byte b[10];
  size_t n = 0;
  do {
    auto low = static_cast<uint8_t>(v & 0x7f);
    v >>= 7;
    b[n++] = static_cast<std::byte>(low | (v ? 0x80 : 0));
  } while (v);
  put(std::span(b, n));
}

void RootOpWriter::put_op(uint64_t count, unsigned op) { put_varint((count << 2) | op); }

void RootOpWriter::copy(uint64_t source_block, uint64_t count) {
  if (!count) return;
  put_op(count, kCopy);
  put_varint(source_block);
}

void RootOpWriter::literal(std::span<const std::byte> blocks) {
  if (blocks.empty()) return;
  put_op(blocks.size() / kBlock, kLiteral);
  put(blocks);
}

void RootOpWriter::zero(uint64_t count) {
  if (count) put_op(count, kZero);
}

void RootOpWriter::finish() { flush(true); }

// ---- reader ----

struct RootOpReader::Impl {
  std::function<size_t(std::span<std::byte>)> input;
  SourceBlocks* source = nullptr;
  uint64_t total = 0, done = 0;  // blocks
  ZSTD_DCtx* dctx = nullptr;
  std::vector<std::byte> in, out;
  size_t in_pos = 0, in_len = 0, out_pos = 0, out_len = 0;
  bool input_end = false, frame_done = false;
  unsigned op = kCopy;
  uint64_t left = 0, src = 0;  // blocks left in the current op; next source block
  ~Impl() { ZSTD_freeDCtx(dctx); }
};

RootOpReader::RootOpReader(std::function<size_t(std::span<std::byte>)> input, SourceBlocks& source,
                           uint64_t total_blocks)
    : impl_(std::make_unique<Impl>()) {
  impl_->input = std::move(input);
  impl_->source = &source;
  impl_->total = total_blocks;
  impl_->dctx = ZSTD_createDCtx();
  if (!impl_->dctx) fail("out of memory for zstd");
  check_zstd(ZSTD_DCtx_setParameter(impl_->dctx, ZSTD_d_windowLogMax, kWindowLog), "zstd window");
  impl_->in.resize(ZSTD_DStreamInSize());
  impl_->out.resize(1 << 20);
}

RootOpReader::~RootOpReader() = default;

// Up to n decompressed bytes into out (nullptr: only counts them); with `must`, exactly n.
size_t RootOpReader::take(std::byte* out, size_t n, bool must) {
  Impl& s = *impl_;
  size_t got = 0;
  while (got < n) {
    if (s.out_pos == s.out_len) {
      s.out_pos = s.out_len = 0;
      if (s.in_pos == s.in_len && !s.input_end) {
        s.in_len = s.input(std::span(s.in));
        s.in_pos = 0;
        s.input_end = s.in_len == 0;
      }
      ZSTD_inBuffer in{s.in.data(), s.in_len, s.in_pos};
      ZSTD_outBuffer o{s.out.data(), s.out.size(), 0};
      size_t rc = ZSTD_decompressStream(s.dctx, &o, &in);
      if (ZSTD_isError(rc)) fail(std::string("root delta is corrupt: ") + ZSTD_getErrorName(rc));
      const bool moved = o.pos > 0 || in.pos > s.in_pos;
      s.in_pos = in.pos;
      s.out_len = o.pos;
      if (moved) {
        s.frame_done = rc == 0;
      } else if (s.input_end) {
        if (!s.frame_done) fail("root delta is truncated (its zstd stream ends early)");
        break;
      }
      continue;
    }
    size_t k = std::min(n - got, s.out_len - s.out_pos);
    if (out) std::memcpy(out + got, s.out.data() + s.out_pos, k);
    s.out_pos += k;
    got += k;
  }
  if (must && got != n) fail("root delta is truncated (an operation ends early)");
  return got;
}

uint64_t RootOpReader::get_varint() {
  uint64_t v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    std::byte b{};
    take(&b, 1, true);
    v |= static_cast<uint64_t>(static_cast<uint8_t>(b) & 0x7f) << shift;
    if ((static_cast<uint8_t>(b) & 0x80) == 0) return v;
  }
  fail("root delta is corrupt (a number is too long)");
}

bool RootOpReader::next_op() {
  Impl& s = *impl_;
  std::byte first{};
  if (take(&first, 1, false) == 0) return false;
  uint64_t v = static_cast<uint8_t>(first) & 0x7f;
  if (static_cast<uint8_t>(first) & 0x80) v |= get_varint() << 7;
  s.op = static_cast<unsigned>(v & 3);
  s.left = v >> 2;
  if (s.op > kZero || s.left == 0 || s.left > s.total - s.done)
    fail("root delta is corrupt (operation " + std::to_string(v & 3) + " of " +
         std::to_string(s.left) + " blocks at block " + std::to_string(s.done) + ")");
  if (s.op == kCopy) {
    s.src = get_varint();
    const uint64_t have = s.source->block_count();
    if (s.src > have || s.left > have - s.src)
      fail("root delta copies blocks " + std::to_string(s.src) + "+" + std::to_string(s.left) +
           " but the source root has " + std::to_string(have) + "; it was made for another source");
  }
  return true;
}

size_t RootOpReader::read(std::span<std::byte> out) {
  Impl& s = *impl_;
  if (out.size() % kBlock) fail("delta reader needs whole blocks");
  size_t filled = 0;
  while (filled < out.size() && s.done < s.total) {
    if (s.left == 0 && !next_op())
      fail("root delta is truncated: it ends at block " + std::to_string(s.done) + " of " +
           std::to_string(s.total));
    const uint64_t n = std::min<uint64_t>(s.left, (out.size() - filled) / kBlock);
    std::byte* dst = out.data() + filled;
    const size_t bytes = static_cast<size_t>(n) * kBlock;
    if (s.op == kCopy) {
      s.source->read(s.src, n, dst);
      s.src += n;
    } else if (s.op == kLiteral) {
      take(dst, bytes, true);
    } else {
      std::memset(dst, 0, bytes);
    }
    s.left -= n;
    s.done += n;
    filled += bytes;
  }
  if (s.done == s.total && s.left == 0 && filled < out.size()) {
    std::byte extra{};
    if (take(&extra, 1, false) != 0) fail("root delta has data past the end of the new root");
  }
  return filled;
}

}  // namespace osup::delta
