// Secure Boot on the build side: signing EFI binaries (UKIs, systemd-boot) with a db key,
// and making a set of platform keys for machines the owner enrolls himself.
//
// Signing runs sbsign (Debian's sbsigntool), not OpenSSL directly: an Authenticode
// signature hashes the PE image in a specific order with holes (checksum, certificate
// directory) and wraps a PKCS#7 SignedData in a WIN_CERTIFICATE; sbsign is the tool
// Debian's own signed shim and kernels are checked with, and sbverify is its oracle.
// The enrollment files (EFI signature lists, time-based authenticated variables) come
// from efitools for the same reason: their byte format is what firmware parses.
#pragma once

#include <string>
#include <vector>

namespace osup::build {

// A Secure Boot db key and its certificate (PEM files).
struct SecureBootKey {
  std::string key, cert;
};

// Key enrollment by systemd-boot on the disk image's first boot (spec secure_boot.enroll).
struct SecureBootEnroll {
  std::string keys;             // a keygen --secure-boot directory: PK.auth, KEK.auth, db.auth
  std::string mode = "manual";  // manual | force
};

// Checks that both files exist and are a PEM private key and an X.509 certificate that
// belong together; throws naming `what` (the spec field) and the file.
void check_secure_boot_key(const SecureBootKey& k, const std::string& what);

// Signs the PE image `in` into `out` (replaced) with sbsign.
void sign_efi(const SecureBootKey& k, const std::string& in, const std::string& out);

// Whether `file` carries a signature that verifies with `cert` (sbverify --cert).
[[nodiscard]] bool efi_signature_verifies(const std::string& cert, const std::string& file);

struct SecureBootKeySet {
  std::string guid;                // owner GUID in the signature lists
  std::vector<std::string> files;  // everything written, in DIR
};

// Makes DIR/{PK,KEK,db}.{key,crt,cer,esl,auth}, DIR/GUID and the layout systemd-boot's
// `secure-boot-enroll` reads, DIR/loader/keys/osup/{PK,KEK,db}.auth. RSA-2048 keys
// (what UEFI requires firmware to support), self-signed certificates valid 10 years
// named "<name> PK" etc. PK.auth and KEK.auth are signed by PK, db.auth by KEK.
// Refuses a DIR that already holds any of these keys.
SecureBootKeySet make_secure_boot_keys(const std::string& dir, const std::string& name);

}  // namespace osup::build
