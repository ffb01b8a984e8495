// Secure Boot keys and signatures, checked with the real tools: sbverify (sbsigntool) for
// the signatures, the efitools-made lists and authenticated variables by their bytes.
#include "builder/secure_boot.h"

#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <filesystem>

#include "base/error.h"
#include "base/fd.h"
#include "boot/uki.h"
#include "tests/support/test_support.h"

namespace fs = std::filesystem;
using namespace osup;
using namespace osup::build;
using namespace osup::test;
using Catch::Matchers::Contains;

namespace {

// EFI_CERT_X509_GUID a5c059a1-94e4-4aa7-87b5-ab155c2bf072, as stored (mixed endian).
const std::string kCertX509Guid("\xa1\x59\xc0\xa5\xe4\x94\xa7\x4a\x87\xb5\xab\x15\x5c\x2b\xf0\x72",
                                16);
// EFI_CERT_TYPE_PKCS7_GUID 4aafd29d-68df-49ee-8aa9-347d375665a7, as stored.
const std::string kPkcs7Guid("\x9d\xd2\xaf\x4a\xdf\x68\xee\x49\x8a\xa9\x34\x7d\x37\x56\x65\xa7",
                             16);

uint32_t le32(const std::string& b, size_t off) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = v << 8 | static_cast<uint8_t>(b[off + static_cast<size_t>(i)]);
  return v;
}

// One key set for the whole file: RSA key generation is the slow part.
const std::string& keys() {
  static TempDir d;
  static const std::string dir = [] {
    (void)make_secure_boot_keys(d / "sb", "osup test");
    return d / "sb";
  }();
  return dir;
}

std::string signed_uki(const TempDir& d, Arch arch) {
  extract_cached_deb("systemd-boot-efi", arch, d.path());
  write_random_file(d / "vmlinuz", 400 * 1024 + 5, 3);
  const std::string uki = d / "uki.efi";
  assemble_uki(
      {uki_stub_in_root(d.path(), arch), "PRETTY_NAME=\"t\"\n", "roothash=x", d / "vmlinuz", ""},
      arch, uki);
  sign_efi({keys() + "/db.key", keys() + "/db.crt"}, uki, d / "uki.signed.efi");
  return d / "uki.signed.efi";
}

}  // namespace

TEST_CASE("make_secure_boot_keys writes PK, KEK, db and their enrollment files", "[unit]") {
  const std::string& dir = keys();
  for (const char* var : {"PK", "KEK", "db"}) {
    CAPTURE(var);
    const std::string base = dir + "/" + var;
    struct stat st {};
    REQUIRE(::stat((base + ".key").c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0600);
    check_secure_boot_key({base + ".key", base + ".crt"}, var);

    // The EFI signature list: one X.509 entry owned by our GUID holding the DER cert.
    const std::string esl = read_text_file(base + ".esl");
    const std::string der = read_text_file(base + ".cer");
    REQUIRE(esl.size() == 28 + 16 + der.size());
    CHECK(esl.compare(0, 16, kCertX509Guid) == 0);
    CHECK(le32(esl, 16) == esl.size());
    CHECK(esl.compare(44, der.size(), der) == 0);
    CHECK(Uuid::parse(read_text_file(dir + "/GUID").substr(0, 36)).str().size() == 36);

    // The authenticated variable: EFI_TIME, a PKCS#7 WIN_CERTIFICATE_UEFI_GUID, the list.
    const std::string auth = read_text_file(base + ".auth");
    REQUIRE(auth.size() > 16 + 24 + esl.size());
    const uint32_t cert_len = le32(auth, 16);
    CHECK(auth.compare(16 + 4, 4, std::string("\x00\x02\xf1\x0e", 4)) == 0);
    CHECK(auth.compare(16 + 8, 16, kPkcs7Guid) == 0);
    CHECK(auth.size() == 16 + cert_len + esl.size());
    CHECK(auth.compare(16 + cert_len, esl.size(), esl) == 0);
    // Signed by the key the firmware checks it with: PK for PK and KEK, KEK for db.
    const std::string signer =
        read_text_file(dir + "/" + (std::string(var) == "db" ? "KEK" : "PK") + ".cer");
    const std::string p7 = auth.substr(16 + 24, cert_len - 24);
    CHECK(p7.find(signer) != std::string::npos);
    if (std::string(var) == "db")
      CHECK(p7.find(read_text_file(dir + "/PK.cer")) == std::string::npos);

    // systemd-boot's secure-boot-enroll layout: the same bytes.
    CHECK(read_text_file(dir + "/loader/keys/osup/" + var + ".auth") == auth);
  }
}

TEST_CASE("make_secure_boot_keys never overwrites keys", "[unit]") {
  TempDir d;
  fs::create_directories(d / "sb");
  write_random_file(d / "sb/KEK.key", 10, 1);
  CHECK_THROWS_WITH(make_secure_boot_keys(d / "sb", "x"),
                    Contains("KEK.key already exists") && Contains("refusing to overwrite"));
  CHECK_FALSE(fs::exists(d / "sb/PK.key"));
  CHECK(fs::file_size(d / "sb/KEK.key") == 10);
}

TEST_CASE("signed UKIs of both arches verify with the db cert and no other", "[unit]") {
  const Arch arch = GENERATE(Arch::x86_64, Arch::aarch64);
  CAPTURE(arch_name(arch));
  TempDir d;
  const std::string uki = signed_uki(d, arch);
  CHECK(efi_signature_verifies(keys() + "/db.crt", uki));
  CHECK_FALSE(efi_signature_verifies(keys() + "/KEK.crt", uki));
  CHECK_FALSE(efi_signature_verifies(keys() + "/db.crt", d / "uki.efi"));  // unsigned
  // sbsign finds the sections contiguous: what it hashes is what firmware hashes.
  const RunResult sign = run_cmd({"sbsign", "--key", keys() + "/db.key", "--cert",
                                  keys() + "/db.crt", "--output", d / "again.efi", d / "uki.efi"});
  CHECK(sign.exit_code == 0);
  CHECK_THAT(sign.err, !Contains("gap") && !Contains("data remaining"));
  const RunResult list = run_cmd({"sbverify", "--list", uki});
  CHECK(list.exit_code == 0);
  CHECK_THAT(list.out, Contains("signature 1") && Contains("osup test db"));

  // One byte changed in the kernel section: the signature no longer verifies.
  std::string bytes = read_text_file(uki);
  const PeImage img = read_pe(bytes, "uki");
  const PeSection& linux_section = img.sections.at(img.sections.size() - 1);
  REQUIRE(linux_section.name == ".linux");
  bytes[linux_section.raw_offset + 1000] ^= 1;
  atomic_write_file(d / "tampered.efi", bytes);
  CHECK_FALSE(efi_signature_verifies(keys() + "/db.crt", d / "tampered.efi"));
}

TEST_CASE("check_secure_boot_key names the field and the file", "[unit]") {
  TempDir d;
  const std::string& dir = keys();
  CHECK_THROWS_WITH(check_secure_boot_key({dir + "/db.key", dir + "/KEK.crt"}, "field 'x'"),
                    Contains("field 'x'") && Contains("does not belong to the certificate"));
  CHECK_THROWS_WITH(check_secure_boot_key({dir + "/db.crt", dir + "/db.crt"}, "f"),
                    Contains("db.crt is not a PEM private key"));
  CHECK_THROWS_WITH(check_secure_boot_key({dir + "/db.key", dir + "/db.key"}, "f"),
                    Contains("db.key is not a PEM X.509 certificate"));
  CHECK_THROWS_WITH(check_secure_boot_key({d / "nope.key", dir + "/db.crt"}, "f"),
                    Contains("cannot read the Secure Boot key") && Contains("nope.key"));
}

TEST_CASE("assemble_uki refuses a signed stub; an encrypted db key is refused, not prompted for",
          "[unit]") {
  TempDir d;
  extract_cached_deb("systemd-boot-efi", Arch::x86_64, d.path());
  const std::string stub = uki_stub_in_root(d.path(), Arch::x86_64);
  sign_efi({keys() + "/db.key", keys() + "/db.crt"}, stub, d / "signed.stub");
  write_random_file(d / "vmlinuz", 1000, 1);
  CHECK_THROWS_WITH(
      assemble_uki({d / "signed.stub", "", "", d / "vmlinuz", ""}, Arch::x86_64, d / "u.efi"),
      Contains("is already signed"));

  run_checked({"openssl", "pkey", "-in", keys() + "/db.key", "-aes256", "-passout", "pass:x",
               "-out", d / "enc.key"});
  CHECK_THROWS_WITH(check_secure_boot_key({d / "enc.key", keys() + "/db.crt"}, "f"),
                    Contains("enc.key is not a PEM private key (unencrypted)"));
}
