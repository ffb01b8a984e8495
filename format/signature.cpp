#include "format/signature.h"

#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <optional>

#include "base/error.h"
#include "base/fd.h"
#include "format/sha256.h"

namespace osup::sig {
namespace {

// The last OpenSSL error as text; clears the queue so later calls start clean.
std::string openssl_error() {
  unsigned long e = ERR_get_error();
  std::string text = e ? ERR_reason_error_string(e) ? ERR_reason_error_string(e) : "unknown error"
                       : "unknown error";
  ERR_clear_error();
  return text;
}

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;

struct MdCtxFree {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, MdCtxFree>;

KeyHandle own(EVP_PKEY* k) { return KeyHandle(k, EVP_PKEY_free); }

BioPtr memory_bio(std::string_view data) {
  BIO* b = BIO_new_mem_buf(data.data(), static_cast<int>(data.size()));
  if (!b) fail("out of memory creating an OpenSSL buffer");
  return BioPtr(b);
}

std::string bio_contents(BIO* b) {
  char* p = nullptr;
  long n = BIO_get_mem_data(b, &p);
  return std::string(p, static_cast<size_t>(n));
}

// Which of our key types an OpenSSL key is, or nullopt for anything else (DSA, P-384, ...).
std::optional<KeyType> classify(EVP_PKEY* k) {
  switch (EVP_PKEY_get_base_id(k)) {
    case EVP_PKEY_ED25519:
      return KeyType::ed25519;
    case EVP_PKEY_RSA:
      // Below 2048 bits is breakable; we generate 3072 but accept any sound size.
      if (EVP_PKEY_get_bits(k) < 2048) return std::nullopt;
      return KeyType::rsa;
    case EVP_PKEY_EC: {
      char group[64] = {};
      size_t len = 0;
      if (EVP_PKEY_get_utf8_string_param(k, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group,
                                         &len) != 1)
        return std::nullopt;
      std::string g(group, len);
      if (g == "prime256v1" || g == "P-256") return KeyType::ecdsa_p256;
      return std::nullopt;
    }
    default:
      return std::nullopt;
  }
}

// Digest and padding for a key type; Ed25519 signs the message itself (no digest).
const EVP_MD* digest_for(KeyType t) { return t == KeyType::ed25519 ? nullptr : EVP_sha256(); }

void configure_pss(EVP_PKEY_CTX* pctx, KeyType t) {
  if (t != KeyType::rsa) return;
  // Salt length = digest length: the common, interoperable PSS choice, checked exactly.
  if (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) != 1 ||
      EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) != 1)
    fail("configuring RSA-PSS failed: " + openssl_error());
}

std::string key_id_of(EVP_PKEY* k) {
  unsigned char* der = nullptr;
  int len = i2d_PUBKEY(k, &der);
  if (len <= 0) fail("encoding a public key failed: " + openssl_error());
  Digest d = sha256(std::string_view(reinterpret_cast<const char*>(der), static_cast<size_t>(len)));
  OPENSSL_free(der);
  return to_hex(d).substr(0, 16);
}

std::string public_pem_of(EVP_PKEY* k) {
  BioPtr b(BIO_new(BIO_s_mem()));
  if (!b || PEM_write_bio_PUBKEY(b.get(), k) != 1)
    fail("encoding a public key failed: " + openssl_error());
  return bio_contents(b.get());
}

std::string unsupported_key(const std::string& what) {
  return what +
         " holds an unsupported key type; use ed25519, ecdsa (P-256) or rsa (>= 2048 bits) keys "
         "from osup-build keygen";
}

// A private or public key from PEM text through `reader` (PEM_read_bio_PrivateKey or
// _PUBKEY); "WHAT <not_a_key>" when it is not one, and only the key types osup signs with.
template <class Reader>
std::pair<KeyHandle, KeyType> read_pem_key(std::string_view pem, const std::string& what,
                                           Reader reader, const char* not_a_key) {
  BioPtr b = memory_bio(pem);
  EVP_PKEY* raw = reader(b.get(), nullptr, nullptr, nullptr);
  if (!raw) {
    ERR_clear_error();
    fail(what + " " + not_a_key);
  }
  KeyHandle k = own(raw);
  const auto t = classify(k.get());
  if (!t) fail(unsupported_key(what));
  return {std::move(k), *t};
}

void write_new_file(const std::string& path, std::string_view content, int mode) {
  // O_EXCL: never clobber an existing key, which may be the only copy of a signing key.
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) {
    if (errno == EEXIST) fail(path + " already exists; refusing to overwrite a key file");
    fail_errno("create " + path, errno);
  }
  UniqueFd f(fd);
  ::fchmod(f.get(), static_cast<mode_t>(mode));  // umask must not widen or narrow it
  write_all(f.get(), std::as_bytes(std::span(content.data(), content.size())), path);
  fsync_fd(f.get(), path);
}

}  // namespace

KeyType parse_key_type(const std::string& name) {
  if (name == "ed25519") return KeyType::ed25519;
  if (name == "ecdsa" || name == "ecdsa-p256") return KeyType::ecdsa_p256;
  if (name == "rsa") return KeyType::rsa;
  fail("unknown key type '" + name + "'; use ed25519, ecdsa or rsa");
}

std::string key_type_name(KeyType t) {
  switch (t) {
    case KeyType::ed25519:
      return "ed25519";
    case KeyType::ecdsa_p256:
      return "ecdsa-p256";
    case KeyType::rsa:
      return "rsa";
  }
  return "?";
}

void generate_keypair(KeyType type, const std::string& private_path,
                      const std::string& public_path) {
  for (const std::string& p : {private_path, public_path})
    if (std::filesystem::exists(std::filesystem::symlink_status(p)))
      fail(p + " already exists; refusing to overwrite a key file");
  EVP_PKEY* raw = nullptr;
  switch (type) {
    case KeyType::ed25519:
      raw = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
      break;
    case KeyType::ecdsa_p256:
      raw = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
      break;
    case KeyType::rsa:
      raw = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(3072));
      break;
  }
  if (!raw) fail("generating a " + key_type_name(type) + " key failed: " + openssl_error());
  KeyHandle key = own(raw);

  BioPtr b(BIO_new(BIO_s_mem()));
  // PEM_write_bio_PrivateKey writes PKCS#8 ("BEGIN PRIVATE KEY") in OpenSSL 3.
  if (!b ||
      PEM_write_bio_PrivateKey(b.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr) != 1)
    fail("encoding the private key failed: " + openssl_error());
  std::string priv = bio_contents(b.get());
  std::string pub = public_pem_of(key.get());
  write_new_file(private_path, priv, 0600);
  try {
    write_new_file(public_path, pub, 0644);
  } catch (...) {
    ::unlink(private_path.c_str());  // no half key pair
    throw;
  }
  OPENSSL_cleanse(priv.data(), priv.size());
}

PrivateKey PrivateKey::load(const std::string& path) {
  std::string pem = read_text_file(path);
  PrivateKey k = from_pem(pem, path);
  OPENSSL_cleanse(pem.data(), pem.size());
  return k;
}

PrivateKey PrivateKey::from_pem(std::string_view pem, const std::string& what) {
  auto [k, t] = read_pem_key(pem, what, PEM_read_bio_PrivateKey,
                             "is not a PEM private key; create one with osup-build keygen");
  return PrivateKey(std::move(k), t);
}

std::string PrivateKey::sign(std::string_view data) const {
  MdCtxPtr ctx(EVP_MD_CTX_new());
  EVP_PKEY_CTX* pctx = nullptr;
  if (!ctx || EVP_DigestSignInit(ctx.get(), &pctx, digest_for(type_), nullptr, key_.get()) != 1)
    fail("signing failed: " + openssl_error());
  configure_pss(pctx, type_);
  const auto* in = reinterpret_cast<const unsigned char*>(data.data());
  size_t len = 0;
  if (EVP_DigestSign(ctx.get(), nullptr, &len, in, data.size()) != 1)
    fail("signing failed: " + openssl_error());
  std::string out(len, '\0');
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(out.data()), &len, in,
                     data.size()) != 1)
    fail("signing failed: " + openssl_error());
  out.resize(len);  // ECDSA signatures (DER) vary in length
  return out;
}

std::string PrivateKey::public_pem() const { return public_pem_of(key_.get()); }
std::string PrivateKey::key_id() const { return key_id_of(key_.get()); }

PublicKey PublicKey::load(const std::string& path) { return from_pem(read_text_file(path), path); }

PublicKey PublicKey::from_pem(std::string_view pem, const std::string& what) {
  auto [k, t] = read_pem_key(pem, what, PEM_read_bio_PUBKEY,
                             "is not a PEM public key; export one with osup-build keygen");
  return PublicKey(std::move(k), t, what);
}

bool PublicKey::verify(std::string_view data, std::string_view signature) const {
  MdCtxPtr ctx(EVP_MD_CTX_new());
  EVP_PKEY_CTX* pctx = nullptr;
  if (!ctx || EVP_DigestVerifyInit(ctx.get(), &pctx, digest_for(type_), nullptr, key_.get()) != 1)
    fail("verifying a signature failed: " + openssl_error());
  configure_pss(pctx, type_);
  int rc = EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(signature.data()),
                            signature.size(), reinterpret_cast<const unsigned char*>(data.data()),
                            data.size());
  ERR_clear_error();  // a bad signature leaves decoder errors behind; they are not ours to report
  return rc == 1;
}

std::string PublicKey::key_id() const { return key_id_of(key_.get()); }

TrustStore TrustStore::load_dir(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    fail("trusted key directory " + dir + " does not exist; install the public keys bundles " +
         "are signed with there");
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.path().extension() == ".pem" && e.is_regular_file()) files.push_back(e.path().string());
  if (ec) fail("reading " + dir + ": " + ec.message());
  if (files.empty())
    fail("no trusted keys (*.pem) in " + dir + "; install the public keys bundles are signed with");
  std::sort(files.begin(), files.end());
  TrustStore store;
  store.dir_ = dir;
  for (const auto& f : files) store.add(PublicKey::load(f));
  return store;
}

void TrustStore::add(PublicKey key) { keys_.push_back(std::move(key)); }

const PublicKey* TrustStore::find_signer(std::string_view data, std::string_view sig) const {
  for (const auto& k : keys_)
    if (k.verify(data, sig)) return &k;
  return nullptr;
}

std::string TrustStore::description() const { return dir_.empty() ? "memory" : dir_; }

}  // namespace osup::sig
