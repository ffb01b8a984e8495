#include "format/delta.h"

#include <zstd.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/fd.h"
#include "format/json_fields.h"

namespace osup::delta {
namespace {

using json = nlohmann::json;
constexpr std::string_view kDoc = "delta header";

json section_json(const Section& s) { return json{{"offset", s.offset}, {"size", s.size}}; }

Section parse_section(JsonFields& parent, const std::string& key) {
  JsonFields f(parent.get(key), std::string(kDoc), parent.name(key));
  Section s{f.u64("offset"), f.u64("size")};
  f.done();
  if (s.offset > (uint64_t{1} << 40) || s.size > (uint64_t{1} << 40))
    json_field_error(kDoc, parent.name(key), "is out of range");
  return s;
}

std::string method_name(FileMethod m) {
  switch (m) {
    case FileMethod::same:
      return "same";
    case FileMethod::zstd_patch:
      return "zstd-patch";
    case FileMethod::zstd_repack:
      return "zstd-repack";
  }
  return "?";
}

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
         {"root_ops", section_json(root_ops)},
         {"root_literals", section_json(root_literals)},
         {"root_sha256", root_sha256},
         {"blocks",
          {{"copy", copy_blocks},
           {"literal", literal_blocks},
           {"zero", zero_blocks},
           {"reference", reference_blocks}}}};
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
    if (m == "same")
      fd.method = FileMethod::same;
    else if (m == "zstd-patch")
      fd.method = FileMethod::zstd_patch;
    else if (m == "zstd-repack" && fd.kind == PayloadKind::initrd)
      fd.method = FileMethod::zstd_repack;
    else
      json_field_error(kDoc, f.name("method"),
                       "must be same, zstd-patch or (initrd only) zstd-repack");
    fd.source_sha256 = f.sha256_hex("source_sha256");
    fd.data = parse_section(f, "data");
    f.done();
    h.files.push_back(fd);
  }
  h.root_ops = parse_section(top, "root_ops");
  h.root_literals = parse_section(top, "root_literals");
  h.root_sha256 = top.sha256_hex("root_sha256");
  JsonFields b(top.get("blocks"), std::string(kDoc), "blocks");
  h.copy_blocks = b.u64("copy");
  h.literal_blocks = b.u64("literal");
  h.zero_blocks = b.u64("zero");
  h.reference_blocks = b.u64("reference");
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

// ---- the root ----

namespace {

using ZstdC = std::unique_ptr<ZSTD_CCtx, size_t (*)(ZSTD_CCtx*)>;
using ZstdD = std::unique_ptr<ZSTD_DCtx, size_t (*)(ZSTD_DCtx*)>;

ZstdC new_cctx() {
  ZstdC c(ZSTD_createCCtx(), ZSTD_freeCCtx);
  if (!c) fail("out of memory for zstd");
  return c;
}

ZstdD new_dctx() {
  ZstdD d(ZSTD_createDCtx(), ZSTD_freeDCtx);
  if (!d) fail("out of memory for zstd");
  return d;
}

void put_varint(std::string& out, uint64_t v) {
  do {
    auto low = static_cast<uint8_t>(v & 0x7f);
    v >>= 7;
    out.push_back(static_cast<char>(low | (v ? 0x80 : 0)));
  } while (v);
}

// Reads LEB128 numbers from the decompressed operation list.
class VarintReader {
 public:
  explicit VarintReader(std::span<const std::byte> b) : b_(b) {}
  uint64_t next() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos_ == b_.size()) fail("root delta is truncated (its operation list ends early)");
      const auto byte = static_cast<uint8_t>(b_[pos_++]);
      v |= static_cast<uint64_t>(byte & 0x7f) << shift;
      if ((byte & 0x80) == 0) return v;
    }
    fail("root delta is corrupt (a number is too long)");
  }
  [[nodiscard]] bool at_end() const { return pos_ == b_.size(); }

 private:
  std::span<const std::byte> b_;
  size_t pos_ = 0;
};

[[noreturn]] void corrupt(const std::string& what) {
  fail("root delta is corrupt (" + what + "); download it again or use the full bundle");
}

}  // namespace

int patch_level(uint64_t bytes) {
  if (bytes <= (uint64_t{48} << 20)) return 19;
  if (bytes <= (uint64_t{160} << 20)) return 15;
  return 9;
}

std::string encode_ops(const RootPlan& plan) {
  std::string raw;
  put_varint(raw, plan.reference.size());
  uint64_t end = 0;
  for (const BlockRange& r : plan.reference) {
    if (r.first < end || r.count == 0) fail("reference ranges must ascend and not overlap");
    put_varint(raw, r.first - end);
    put_varint(raw, r.count);
    end = r.first + r.count;
  }
  for (const Op& op : plan.ops) {
    put_varint(raw, (op.count << 2) | static_cast<unsigned>(op.kind));
    if (op.kind == OpKind::copy) put_varint(raw, op.source);
  }
  ZstdC c = new_cctx();
  check_zstd(ZSTD_CCtx_setParameter(c.get(), ZSTD_c_compressionLevel, 19), "zstd level");
  check_zstd(ZSTD_CCtx_setParameter(c.get(), ZSTD_c_checksumFlag, 1), "zstd checksum");
  std::string out(ZSTD_compressBound(raw.size()), '\0');
  const size_t n = ZSTD_compress2(c.get(), out.data(), out.size(), raw.data(), raw.size());
  check_zstd(n, "compressing the root operations");
  out.resize(n);
  return out;
}

RootPlan decode_ops(std::span<const std::byte> frame, const RootShape& shape) {
  const unsigned long long size = ZSTD_getFrameContentSize(frame.data(), frame.size());
  if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN)
    corrupt("its operation list is no zstd frame");
  // Each block needs at most one operation of two numbers; each reference range two.
  const uint64_t limit = 64 + 22 * (shape.new_blocks + kMaxReferenceRanges);
  if (size > limit) corrupt("its operation list is too long for the new root");
  std::vector<std::byte> raw(static_cast<size_t>(size));
  ZstdD d = new_dctx();
  const size_t n = ZSTD_decompressDCtx(d.get(), raw.data(), raw.size(), frame.data(), frame.size());
  if (ZSTD_isError(n)) corrupt(std::string("operation list: ") + ZSTD_getErrorName(n));
  if (n != raw.size()) corrupt("operation list has the wrong size");

  VarintReader in(raw);
  RootPlan plan;
  const uint64_t ranges = in.next();
  if (ranges > kMaxReferenceRanges) corrupt("too many reference ranges");
  uint64_t end = 0, ref_blocks = 0;
  for (uint64_t i = 0; i < ranges; ++i) {
    const uint64_t gap = in.next(), count = in.next();
    if (count == 0 || gap > shape.source_blocks - end || count > shape.source_blocks - end - gap)
      fail(
          "root delta refers to blocks past the end of the source root; it was made for "
          "another source");
    plan.reference.push_back({end + gap, count});
    end += gap + count;
    ref_blocks += count;
  }
  if (ref_blocks != shape.reference_blocks || ref_blocks * kBlock > kMaxReferenceBytes)
    corrupt("its reference is not the size its header says");
  uint64_t out_blocks = 0, lit_blocks = 0;
  while (!in.at_end()) {
    const uint64_t v = in.next();
    Op op{static_cast<OpKind>(v & 3), v >> 2, 0};
    if ((v & 3) > 2 || op.count == 0 || op.count > shape.new_blocks - out_blocks)
      corrupt("operation " + std::to_string(v & 3) + " of " + std::to_string(op.count) +
              " blocks at block " + std::to_string(out_blocks));
    if (op.kind == OpKind::copy) {
      op.source = in.next();
      if (op.source > shape.source_blocks || op.count > shape.source_blocks - op.source)
        fail("root delta copies blocks " + std::to_string(op.source) + "+" +
             std::to_string(op.count) + " but the source root has " +
             std::to_string(shape.source_blocks) + "; it was made for another source");
    }
    if (op.kind == OpKind::literal) lit_blocks += op.count;
    out_blocks += op.count;
    plan.ops.push_back(op);
  }
  if (out_blocks != shape.new_blocks)
    fail("root delta is truncated: its operations make " + std::to_string(out_blocks) + " of " +
         std::to_string(shape.new_blocks) + " blocks");
  if (lit_blocks != shape.literal_blocks)
    corrupt("its operations take " + std::to_string(lit_blocks) + " literal blocks, its header " +
            std::to_string(shape.literal_blocks));
  return plan;
}

std::string compress_literals(std::span<const std::byte> literals,
                              std::span<const std::byte> reference) {
  ZstdC c = new_cctx();
  const uint64_t total = literals.size() + reference.size();
  const int window = std::clamp(static_cast<int>(std::bit_width(total)), 10, 31);
  check_zstd(ZSTD_CCtx_setParameter(c.get(), ZSTD_c_compressionLevel, patch_level(total)),
             "zstd level");
  check_zstd(ZSTD_CCtx_setParameter(c.get(), ZSTD_c_windowLog, window), "zstd window");
  check_zstd(ZSTD_CCtx_setParameter(c.get(), ZSTD_c_enableLongDistanceMatching, 1), "zstd ldm");
  check_zstd(ZSTD_CCtx_setParameter(c.get(), ZSTD_c_checksumFlag, 1), "zstd checksum");
  if (!reference.empty())
    check_zstd(ZSTD_CCtx_refPrefix(c.get(), reference.data(), reference.size()), "zstd prefix");
  std::string out(ZSTD_compressBound(literals.size()), '\0');
  const size_t n =
      ZSTD_compress2(c.get(), out.data(), out.size(), literals.data(), literals.size());
  check_zstd(n, "compressing the literal blocks");
  out.resize(n);
  return out;
}

void decompress_literals(std::span<const std::byte> frame, std::span<const std::byte> reference,
                         std::span<std::byte> out) {
  ZstdD d = new_dctx();
  check_zstd(ZSTD_DCtx_setParameter(d.get(), ZSTD_d_windowLogMax, 31), "zstd window");
  if (!reference.empty())
    check_zstd(ZSTD_DCtx_refPrefix(d.get(), reference.data(), reference.size()), "zstd prefix");
  const size_t n = ZSTD_decompressDCtx(d.get(), out.data(), out.size(), frame.data(), frame.size());
  if (ZSTD_isError(n)) corrupt(std::string("literal blocks: ") + ZSTD_getErrorName(n));
  if (n != out.size()) corrupt("literal blocks have the wrong size");
}

RootAssembler::RootAssembler(const RootPlan& plan, std::span<const std::byte> literals,
                             SourceBlocks& source)
    : plan_(plan), literals_(literals), source_(source) {}

size_t RootAssembler::read(std::span<std::byte> out) {
  if (out.size() % kBlock) fail("delta reader needs whole blocks");
  size_t filled = 0;
  while (filled < out.size() && op_ < plan_.ops.size()) {
    const Op& op = plan_.ops[op_];
    const uint64_t n = std::min<uint64_t>(op.count - done_in_op_, (out.size() - filled) / kBlock);
    std::byte* dst = out.data() + filled;
    const size_t bytes = static_cast<size_t>(n) * kBlock;
    if (op.kind == OpKind::copy) {
      source_.read(op.source + done_in_op_, n, dst);
    } else if (op.kind == OpKind::literal) {
      if (literal_pos_ + bytes > literals_.size()) corrupt("it runs out of literal blocks");
      std::memcpy(dst, literals_.data() + literal_pos_, bytes);
      literal_pos_ += bytes;
    } else {
      std::memset(dst, 0, bytes);
    }
    done_in_op_ += n;
    filled += bytes;
    if (done_in_op_ == op.count) {
      ++op_;
      done_in_op_ = 0;
    }
  }
  return filled;
}

}  // namespace osup::delta
