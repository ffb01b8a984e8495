#include "format/block_hash.h"

#include <openssl/evp.h>

#include <algorithm>
#include <cstring>
#include <string>

#include "base/error.h"

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#define OSUP_SHA_NI 1
#else
#define OSUP_SHA_NI 0
#endif

namespace osup {
namespace {

constexpr size_t kChunk = 64;  // SHA-256 block
constexpr uint32_t kInitialState[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                       0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};

const EVP_MD* sha256_md() {
  // Fetched once: an explicit fetch avoids OpenSSL 3's implicit lookup on every init.
  static EVP_MD* md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  if (!md) fail("sha256: cannot fetch the OpenSSL digest");
  return md;
}

#if OSUP_SHA_NI

alignas(16) constexpr uint32_t kRound[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

bool cpu_has_sha_ni() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return false;
  const bool ssse3 = c & (1u << 9), sse41 = c & (1u << 19);
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
  return ssse3 && sse41 && (b & (1u << 29));
}

#define OSUP_SHA_TARGET __attribute__((target("sha,sse4.1,ssse3")))

// The state as the SHA instructions want it: words ABEF and CDGH.
struct NiState {
  __m128i abef, cdgh;
};

OSUP_SHA_TARGET inline NiState ni_load(const uint32_t s[8]) {
  __m128i dcba = _mm_loadu_si128(reinterpret_cast<const __m128i*>(&s[0]));
  __m128i hgfe = _mm_loadu_si128(reinterpret_cast<const __m128i*>(&s[4]));
  __m128i cdab = _mm_shuffle_epi32(dcba, 0xB1);
  __m128i efgh = _mm_shuffle_epi32(hgfe, 0x1B);
  return {_mm_alignr_epi8(cdab, efgh, 8), _mm_blend_epi16(efgh, cdab, 0xF0)};
}

OSUP_SHA_TARGET inline void ni_store(const NiState& st, uint32_t s[8]) {
  __m128i feba = _mm_shuffle_epi32(st.abef, 0x1B);
  __m128i dchg = _mm_shuffle_epi32(st.cdgh, 0xB1);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(&s[0]), _mm_blend_epi16(feba, dchg, 0xF0));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(&s[4]), _mm_alignr_epi8(dchg, feba, 8));
}

// One 64-byte chunk for each of N messages, round by round side by side so the SHA unit
// always has an independent round to start.
template <int N>
OSUP_SHA_TARGET inline void ni_compress(NiState (&st)[N], const uint8_t* const (&chunk)[N]) {
  const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
  NiState saved[N];
  __m128i w[N][4];  // message schedule, four words per vector, a ring of four vectors
  for (int l = 0; l < N; ++l) saved[l] = st[l];
    // Fully unrolled, so the schedule ring indexes are constants and it lives in registers.
#pragma GCC unroll 16
  for (size_t g = 0; g < 16; ++g) {  // 16 groups of 4 rounds
    const __m128i k = _mm_load_si128(reinterpret_cast<const __m128i*>(&kRound[4 * g]));
#pragma GCC unroll 3
    for (int l = 0; l < N; ++l) {
      __m128i& wg = w[l][g & 3];
      if (g < 4)
        wg = _mm_shuffle_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(chunk[l] + 16 * g)),
                              bswap);
      else  // W[g] from W[g-4], W[g-3], W[g-2], W[g-1]
        wg = _mm_sha256msg2_epu32(
            _mm_add_epi32(_mm_sha256msg1_epu32(wg, w[l][(g + 1) & 3]),
                          _mm_alignr_epi8(w[l][(g + 3) & 3], w[l][(g + 2) & 3], 4)),
            w[l][(g + 3) & 3]);
      __m128i msg = _mm_add_epi32(wg, k);
      st[l].cdgh = _mm_sha256rnds2_epu32(st[l].cdgh, st[l].abef, msg);
      msg = _mm_shuffle_epi32(msg, 0x0E);
      st[l].abef = _mm_sha256rnds2_epu32(st[l].abef, st[l].cdgh, msg);
    }
  }
  for (int l = 0; l < N; ++l) {
    st[l].abef = _mm_add_epi32(st[l].abef, saved[l].abef);
    st[l].cdgh = _mm_add_epi32(st[l].cdgh, saved[l].cdgh);
  }
}

// SHA-256(salt || block) of N blocks of `len` bytes: the salt's whole chunks are already in
// `prefix`, `tail` is the rest of the salt (< 64 bytes). The chunk that joins the salt tail
// and the block's head, and the last one or two with the padding, are assembled on the
// stack; the chunks between are read from the block where they are.
template <int N>
OSUP_SHA_TARGET void ni_hash(const uint32_t (&prefix)[8], std::span<const uint8_t> tail,
                             uint64_t salt_len, const std::byte* const (&block)[N], size_t len,
                             uint8_t* const (&out)[N]) {
  const size_t head = kChunk - tail.size();  // block bytes in the first chunk
  const size_t mid = (len - head) / kChunk;
  const size_t rest = (len - head) % kChunk;
  const size_t last_chunks = rest + 1 + 8 <= kChunk ? 1 : 2;
  const uint64_t bits = (salt_len + len) * 8;
  alignas(16) uint8_t first[N][kChunk];
  alignas(16) uint8_t last[N][2 * kChunk];
  NiState st[N];
  for (int l = 0; l < N; ++l) {
    const auto* b = reinterpret_cast<const uint8_t*>(block[l]);
    std::memcpy(first[l], tail.data(), tail.size());
    std::memcpy(first[l] + tail.size(), b, head);
    std::memset(last[l], 0, sizeof last[l]);
    std::memcpy(last[l], b + head + mid * kChunk, rest);
    last[l][rest] = 0x80;
    for (int i = 0; i < 8; ++i)
      last[l][last_chunks * kChunk - 1 - i] = static_cast<uint8_t>(bits >> (8 * i));
    st[l] = ni_load(prefix);
  }
  const uint8_t* p[N];
  for (int l = 0; l < N; ++l) p[l] = first[l];
  ni_compress(st, p);
  for (size_t c = 0; c < mid; ++c) {
    for (int l = 0; l < N; ++l)
      p[l] = reinterpret_cast<const uint8_t*>(block[l]) + head + c * kChunk;
    ni_compress(st, p);
  }
  for (size_t c = 0; c < last_chunks; ++c) {
    for (int l = 0; l < N; ++l) p[l] = last[l] + c * kChunk;
    ni_compress(st, p);
  }
  for (int l = 0; l < N; ++l) {
    uint32_t s[8];
    ni_store(st[l], s);
    for (int i = 0; i < 8; ++i)
      for (int j = 0; j < 4; ++j) out[l][4 * i + j] = static_cast<uint8_t>(s[i] >> (24 - 8 * j));
  }
}

// The state after the salt's whole chunks.
OSUP_SHA_TARGET void ni_absorb(uint32_t (&state)[8], std::span<const uint8_t> whole_chunks) {
  NiState st[1] = {ni_load(state)};
  for (size_t off = 0; off < whole_chunks.size(); off += kChunk) {
    const uint8_t* p[1] = {whole_chunks.data() + off};
    ni_compress(st, p);
  }
  ni_store(st[0], state);
}

#endif  // OSUP_SHA_NI

}  // namespace

bool BlockHash::interleaved() {
#if OSUP_SHA_NI
  static const bool yes = cpu_has_sha_ni();
  return yes;
#else
  return false;
#endif
}

BlockHash::BlockHash(std::span<const uint8_t> salt, size_t block_size)
    : salt_(salt.begin(), salt.end()), block_size_(block_size) {
  if (block_size_ < kChunk) fail("block hash: blocks of " + std::to_string(block_size) + " bytes");
  std::copy(std::begin(kInitialState), std::end(kInitialState), prefix_state_);
  const size_t whole = salt_.size() / kChunk * kChunk;
  salt_tail_.assign(salt_.begin() + static_cast<ptrdiff_t>(whole), salt_.end());
#if OSUP_SHA_NI
  if (interleaved()) {
    ni_absorb(prefix_state_, std::span(salt_.data(), whole));
    return;
  }
#endif
  ctx_ = EVP_MD_CTX_new();
  if (!ctx_) fail("sha256: cannot allocate an OpenSSL digest context");
}

BlockHash::~BlockHash() { EVP_MD_CTX_free(ctx_); }

void BlockHash::openssl_hash(const std::byte* block, uint8_t* out) {
  unsigned int len = 0;
  if (EVP_DigestInit_ex2(ctx_, sha256_md(), nullptr) != 1 ||
      EVP_DigestUpdate(ctx_, salt_.data(), salt_.size()) != 1 ||
      EVP_DigestUpdate(ctx_, block, block_size_) != 1 || EVP_DigestFinal_ex(ctx_, out, &len) != 1)
    fail("sha256: OpenSSL digest failed");
}

void BlockHash::hash(const std::byte* block, uint8_t* out) {
#if OSUP_SHA_NI
  if (!ctx_) {
    const std::byte* b[1] = {block};
    uint8_t* o[1] = {out};
    ni_hash(prefix_state_, salt_tail_, salt_.size(), b, block_size_, o);
    return;
  }
#endif
  openssl_hash(block, out);
}

#if OSUP_SHA_NI
template <int N>
void BlockHash::hash_lanes(const std::byte* blocks, uint64_t first, uint8_t* out) {
  const std::byte* b[N];
  uint8_t* o[N];
  for (int l = 0; l < N; ++l) {
    b[l] = blocks + (first + l) * block_size_;
    o[l] = out + (first + l) * 32;
  }
  ni_hash(prefix_state_, salt_tail_, salt_.size(), b, block_size_, o);
}
#endif

void BlockHash::hash_many(const std::byte* blocks, uint64_t count, uint8_t* out) {
  uint64_t i = 0;
#if OSUP_SHA_NI
  if (!ctx_) {
    for (; i + 3 <= count; i += 3) hash_lanes<3>(blocks, i, out);
    if (i + 2 <= count) {
      hash_lanes<2>(blocks, i, out);
      i += 2;
    }
  }
#endif
  for (; i < count; ++i) hash(blocks + i * block_size_, out + i * 32);
}

}  // namespace osup
