// Signing keys and detached signatures (OpenSSL 3 EVP). A bundle's manifest is signed
// with a private key kept by CI; devices carry the public keys they trust.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

// OpenSSL's key type, kept opaque so users of this header need no OpenSSL headers.
struct evp_pkey_st;

namespace osup::sig {

// rsa = 3072-bit RSA-PSS over SHA-256; ecdsa = P-256 over SHA-256; ed25519 = pure Ed25519.
enum class KeyType { ed25519, ecdsa_p256, rsa };

// "ed25519" | "ecdsa" | "ecdsa-p256" | "rsa"; throws naming the choices.
[[nodiscard]] KeyType parse_key_type(const std::string& name);
[[nodiscard]] std::string key_type_name(KeyType t);  // "ed25519" | "ecdsa-p256" | "rsa"

// Writes the private key (PEM PKCS#8, mode 0600) and the public key (PEM
// SubjectPublicKeyInfo). Refuses to overwrite either file.
void generate_keypair(KeyType type, const std::string& private_path,
                      const std::string& public_path);

using KeyHandle = std::shared_ptr<evp_pkey_st>;

class PrivateKey {
 public:
  // Throws "KEY.pem is not a PEM private key; create one with osup-build keygen".
  [[nodiscard]] static PrivateKey load(const std::string& path);
  [[nodiscard]] static PrivateKey from_pem(std::string_view pem, const std::string& what);

  [[nodiscard]] std::string sign(std::string_view data) const;  // raw signature bytes
  [[nodiscard]] std::string public_pem() const;
  [[nodiscard]] std::string key_id() const;
  [[nodiscard]] KeyType type() const { return type_; }

 private:
  PrivateKey(KeyHandle key, KeyType type) : key_(std::move(key)), type_(type) {}
  KeyHandle key_;
  KeyType type_;
};

class PublicKey {
 public:
  // Throws "KEY.pem is not a PEM public key; export one with osup-build keygen".
  [[nodiscard]] static PublicKey load(const std::string& path);
  [[nodiscard]] static PublicKey from_pem(std::string_view pem, const std::string& what);

  // False for a wrong or malformed signature; never throws for bad signature bytes.
  [[nodiscard]] bool verify(std::string_view data, std::string_view signature) const;
  // First 16 hex characters of SHA-256 over the DER SubjectPublicKeyInfo.
  [[nodiscard]] std::string key_id() const;
  [[nodiscard]] KeyType type() const { return type_; }
  [[nodiscard]] const std::string& origin() const { return origin_; }  // file it came from

 private:
  PublicKey(KeyHandle key, KeyType type, std::string origin)
      : key_(std::move(key)), type_(type), origin_(std::move(origin)) {}
  KeyHandle key_;
  KeyType type_;
  std::string origin_;
};

class TrustStore {
 public:
  TrustStore() = default;
  // Every *.pem in dir (sorted by name); throws if the directory has none.
  [[nodiscard]] static TrustStore load_dir(const std::string& dir);

  void add(PublicKey key);
  // The first trusted key under which `sig` is a valid signature of `data`, or nullptr.
  [[nodiscard]] const PublicKey* find_signer(std::string_view data, std::string_view sig) const;
  [[nodiscard]] size_t size() const { return keys_.size(); }
  // Where the keys came from, for "(keys in X)" messages: the directory, or "memory".
  [[nodiscard]] std::string description() const;

 private:
  std::vector<PublicKey> keys_;
  std::string dir_;
};

}  // namespace osup::sig
