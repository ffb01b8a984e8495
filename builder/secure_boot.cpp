#include "builder/secure_boot.h"

#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>

#include "base/error.h"
#include "base/fd.h"
#include "base/process.h"
#include "format/uuid.h"

namespace fs = std::filesystem;

namespace osup::build {
namespace {

using Pkey = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;
using Cert = std::unique_ptr<X509, decltype(&X509_free)>;
using Bio = std::unique_ptr<BIO, decltype(&BIO_free)>;

std::string ssl_error() {
  const unsigned long e = ERR_get_error();
  const char* r = e ? ERR_reason_error_string(e) : nullptr;
  ERR_clear_error();
  return r ? r : "unknown OpenSSL error";
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

Bio file_bio(const std::string& path) { return Bio(BIO_new_file(path.c_str(), "r"), BIO_free); }

std::string bio_text(BIO* b) {
  char* data = nullptr;
  const long n = BIO_get_mem_data(b, &data);
  return std::string(data, static_cast<size_t>(n));
}

// A new file that must not exist yet (keys are never overwritten), fsynced.
void write_new(const std::string& path, const std::string& content, int mode) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) fail_errno("create " + path, errno);
  UniqueFd f(fd);
  ::fchmod(f.get(), static_cast<mode_t>(mode));
  write_all(f.get(), std::as_bytes(std::span(content.data(), content.size())), path);
  fsync_fd(f.get(), path);
}

// A self-signed RSA-2048 / SHA-256 certificate for CN=name, valid 10 years, with the
// extensions `openssl req -x509` gives (CA:TRUE, key id): the shape the usual Secure Boot
// enrollment guides make and EDK2/OVMF and sbverify are used to.
std::pair<Pkey, Cert> make_cert(const std::string& name) {
  Pkey key(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(2048)), EVP_PKEY_free);
  Cert cert(X509_new(), X509_free);
  if (!key || !cert) fail("generating the " + name + " key failed: " + ssl_error());
  unsigned char serial[16];
  if (RAND_bytes(serial, sizeof serial) != 1) fail("no random bytes: " + ssl_error());
  serial[0] &= 0x7f;  // a positive INTEGER
  BIGNUM* bn = BN_bin2bn(serial, sizeof serial, nullptr);
  BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert.get()));
  BN_free(bn);
  X509_set_version(cert.get(), 2);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), 0);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 3650L * 24 * 3600);
  X509_NAME* subject = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_UTF8,
                             reinterpret_cast<const unsigned char*>(name.c_str()), -1, -1, 0);
  X509_set_issuer_name(cert.get(), subject);
  X509_set_pubkey(cert.get(), key.get());
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, cert.get(), cert.get(), nullptr, nullptr, 0);
  for (const auto& [nid, value] : {std::pair{NID_basic_constraints, "critical,CA:TRUE"},
                                   std::pair{NID_subject_key_identifier, "hash"}}) {
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
    if (!ext || X509_add_ext(cert.get(), ext, -1) != 1)
      fail("certificate extension for " + name + ": " + ssl_error());
    X509_EXTENSION_free(ext);
  }
  if (X509_sign(cert.get(), key.get(), EVP_sha256()) == 0)
    fail("signing the " + name + " certificate failed: " + ssl_error());
  return {std::move(key), std::move(cert)};
}

// Writes NAME.key (0600), NAME.crt (PEM) and NAME.cer (DER, what firmware menus read).
void write_cert(const std::string& dir, const std::string& var, const std::string& cn,
                std::vector<std::string>& files) {
  auto [key, cert] = make_cert(cn);
  Bio kb(BIO_new(BIO_s_mem()), BIO_free), cb(BIO_new(BIO_s_mem()), BIO_free);
  if (PEM_write_bio_PrivateKey(kb.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr) != 1 ||
      PEM_write_bio_X509(cb.get(), cert.get()) != 1)
    fail("encoding the " + var + " key failed: " + ssl_error());
  unsigned char* der = nullptr;
  const int der_len = i2d_X509(cert.get(), &der);
  if (der_len <= 0) fail("encoding the " + var + " certificate failed: " + ssl_error());
  const std::string der_bytes(reinterpret_cast<const char*>(der), static_cast<size_t>(der_len));
  OPENSSL_free(der);
  const std::string base = dir + "/" + var;
  write_new(base + ".key", bio_text(kb.get()), 0600);
  write_new(base + ".crt", bio_text(cb.get()), 0644);
  write_new(base + ".cer", der_bytes, 0644);
  for (const char* ext : {".key", ".crt", ".cer"}) files.push_back(base + ext);
}

}  // namespace

void check_secure_boot_key(const SecureBootKey& k, const std::string& what) {
  Bio kb = file_bio(k.key), cb = file_bio(k.cert);
  if (!kb) fail(what + ": cannot read the Secure Boot key " + k.key);
  if (!cb) fail(what + ": cannot read the Secure Boot certificate " + k.cert);
  // No passphrase callback: OpenSSL's default would prompt on the terminal of a CI build.
  auto no_passphrase = [](char*, int, int, void*) { return 0; };
  Pkey key(PEM_read_bio_PrivateKey(kb.get(), nullptr, no_passphrase, nullptr), EVP_PKEY_free);
  if (!key) fail(what + ": " + k.key + " is not a PEM private key (unencrypted)");
  Cert cert(PEM_read_bio_X509(cb.get(), nullptr, nullptr, nullptr), X509_free);
  if (!cert) fail(what + ": " + k.cert + " is not a PEM X.509 certificate");
  if (X509_check_private_key(cert.get(), key.get()) != 1)
    fail(what + ": the key " + k.key + " does not belong to the certificate " + k.cert +
         "; pass db.key with db.crt from osup-build keygen --secure-boot");
  ERR_clear_error();
}

void sign_efi(const SecureBootKey& k, const std::string& in, const std::string& out) {
  with_context("signing " + in + " for Secure Boot", [&] {
    const std::string tmp = out + ".tmp";
    fs::remove(tmp);
    run_checked({"sbsign", "--key", k.key, "--cert", k.cert, "--output", tmp, in});
    fs::rename(tmp, out);
  });
}

bool efi_signature_verifies(const std::string& cert, const std::string& file) {
  return run({"sbverify", "--cert", cert, file}).exit_code == 0;
}

SecureBootKeySet make_secure_boot_keys(const std::string& dir, const std::string& name) {
  static const char* const kVars[] = {"PK", "KEK", "db"};
  // Checks first: no key is ever overwritten, and nothing is written when one exists.
  for (const char* v : kVars)
    for (const char* ext : {".key", ".crt", ".cer", ".esl", ".auth"})
      if (fs::exists(fs::symlink_status(dir + "/" + v + ext)))
        fail(dir + "/" + v + ext + " already exists; refusing to overwrite Secure Boot keys");
  for (const char* tool : {"cert-to-efi-sig-list", "sign-efi-sig-list"}) (void)require_tool(tool);
  fs::create_directories(dir + "/loader/keys/osup");

  SecureBootKeySet set;
  set.guid = Uuid::random().str();
  write_new(dir + "/GUID", set.guid + "\n", 0644);
  set.files.push_back(dir + "/GUID");
  for (const char* v : kVars) {
    write_cert(dir, v, name + " " + v, set.files);
    run_checked(
        {"cert-to-efi-sig-list", "-g", set.guid, dir + "/" + v + ".crt", dir + "/" + v + ".esl"});
    set.files.push_back(dir + "/" + v + ".esl");
  }
  // PK and KEK updates are authorised by PK, db updates by KEK (UEFI 2.x, 8.2.2).
  for (const auto& [var, signer] :
       {std::pair{"PK", "PK"}, std::pair{"KEK", "PK"}, std::pair{"db", "KEK"}}) {
    const std::string base = dir + "/" + var;
    run_checked({"sign-efi-sig-list", "-g", set.guid, "-k", dir + "/" + signer + ".key", "-c",
                 dir + "/" + signer + ".crt", var, base + ".esl", base + ".auth"});
    const std::string enroll = dir + "/loader/keys/osup/" + var + ".auth";
    write_new(enroll, read_file(base + ".auth"), 0644);
    set.files.push_back(base + ".auth");
    set.files.push_back(enroll);
  }
  return set;
}

}  // namespace osup::build
