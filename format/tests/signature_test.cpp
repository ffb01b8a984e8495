#include "format/signature.h"

#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>

#include "base/error.h"
#include "base/fd.h"
#include "base/process.h"
#include "format/sha256.h"
#include "tests/support/test_support.h"

using namespace osup;
using namespace osup::sig;
using osup::test::TempDir;

TEST_CASE("key types parse by name", "[unit]") {
  CHECK(parse_key_type("ed25519") == KeyType::ed25519);
  CHECK(parse_key_type("ecdsa") == KeyType::ecdsa_p256);
  CHECK(parse_key_type("ecdsa-p256") == KeyType::ecdsa_p256);
  CHECK(parse_key_type("rsa") == KeyType::rsa);
  CHECK_THROWS_WITH(parse_key_type("dsa"), Catch::Contains("'dsa'") && Catch::Contains("ed25519"));
}

TEST_CASE("every key type signs and verifies, and rejects tampering", "[unit]") {
  auto type = GENERATE(KeyType::ed25519, KeyType::ecdsa_p256, KeyType::rsa);
  CAPTURE(key_type_name(type));
  TempDir d;
  generate_keypair(type, d / "k.pem", d / "k.pub.pem");

  struct stat st {};
  REQUIRE(::stat((d / "k.pem").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  CHECK(read_text_file(d / "k.pem").starts_with("-----BEGIN PRIVATE KEY-----"));  // PKCS#8
  CHECK(read_text_file(d / "k.pub.pem").starts_with("-----BEGIN PUBLIC KEY-----"));

  PrivateKey priv = PrivateKey::load(d / "k.pem");
  PublicKey pub = PublicKey::load(d / "k.pub.pem");
  CHECK(priv.type() == type);
  CHECK(pub.type() == type);
  CHECK(priv.public_pem() == read_text_file(d / "k.pub.pem"));
  CHECK(priv.key_id() == pub.key_id());
  CHECK(pub.key_id().size() == 16);

  const std::string msg = "{\"version\": \"1.0\"}\n";
  std::string s = priv.sign(msg);
  CHECK(pub.verify(msg, s));

  std::string tampered = msg;
  tampered[3] ^= 1;
  CHECK_FALSE(pub.verify(tampered, s));
  std::string bad_sig = s;
  bad_sig[bad_sig.size() / 2] ^= 0x40;
  CHECK_FALSE(pub.verify(msg, bad_sig));
  CHECK_FALSE(pub.verify(msg, ""));
  CHECK_FALSE(pub.verify(msg, s.substr(0, s.size() - 1)));

  // The openssl CLI is the oracle: it must accept our signature with the same parameters.
  std::ofstream(d / "msg", std::ios::binary) << msg;
  std::ofstream(d / "sig", std::ios::binary) << s;
  std::vector<std::string> argv = {"openssl",       "pkeyutl", "-verify", "-pubin",   "-inkey",
                                   d / "k.pub.pem", "-in",     d / "msg", "-sigfile", d / "sig"};
  if (type == KeyType::ed25519) {
    argv.push_back("-rawin");
  } else {
    argv = {"openssl", "dgst", "-sha256", "-verify", d / "k.pub.pem", "-signature", d / "sig"};
    if (type == KeyType::rsa)
      for (const char* o : {"-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:32"})
        argv.push_back(o);
    argv.push_back(d / "msg");
  }
  RunResult r = run(argv);
  CHECK(r.exit_code == 0);
  CHECK((r.out.find("Verified OK") != std::string::npos ||
         r.out.find("Signature Verified Successfully") != std::string::npos));

  // key id = first 16 hex of SHA-256 over the DER SubjectPublicKeyInfo (oracle: openssl pkey).
  RunResult der = run_checked({"openssl", "pkey", "-pubin", "-in", d / "k.pub.pem", "-outform",
                               "DER", "-out", d / "k.der"});
  CHECK(pub.key_id() == to_hex(sha256_file(d / "k.der")).substr(0, 16));
}

TEST_CASE("keygen refuses to overwrite and RSA keys are 3072-bit", "[unit]") {
  TempDir d;
  generate_keypair(KeyType::rsa, d / "r.pem", d / "r.pub");
  RunResult r = run_checked({"openssl", "pkey", "-in", d / "r.pem", "-noout", "-text"});
  CHECK(r.out.find("3072 bit") != std::string::npos);
  std::string before = read_text_file(d / "r.pem");
  CHECK_THROWS_WITH(generate_keypair(KeyType::ed25519, d / "r.pem", d / "other.pub"),
                    Catch::Contains("already exists"));
  CHECK_THROWS_WITH(generate_keypair(KeyType::ed25519, d / "new.pem", d / "r.pub"),
                    Catch::Contains("r.pub already exists"));
  CHECK(read_text_file(d / "r.pem") == before);
  CHECK_FALSE(std::filesystem::exists(d / "new.pem"));
}

TEST_CASE("keys made by the openssl CLI load too", "[unit]") {
  TempDir d;
  run_checked({"openssl", "genpkey", "-algorithm", "ed25519", "-out", d / "ext.pem"});
  run_checked({"openssl", "pkey", "-in", d / "ext.pem", "-pubout", "-out", d / "ext.pub"});
  PrivateKey k = PrivateKey::load(d / "ext.pem");
  CHECK(PublicKey::load(d / "ext.pub").verify("x", k.sign("x")));

  // A P-384 key is a real key but not one we support: say so, not "not a PEM key".
  run_checked({"openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384",
               "-out", d / "p384.pem"});
  CHECK_THROWS_WITH(PrivateKey::load(d / "p384.pem"), Catch::Contains("unsupported key type"));
}

TEST_CASE("files that are not keys give a clear error", "[unit]") {
  TempDir d;
  std::ofstream(d / "KEY.pem") << "hello\n";
  CHECK_THROWS_WITH(PrivateKey::load(d / "KEY.pem"),
                    d / "KEY.pem" + " is not a PEM private key; create one with osup-build keygen");
  CHECK_THROWS_WITH(PublicKey::load(d / "KEY.pem"), Catch::Contains("is not a PEM public key"));
  CHECK_THROWS_WITH(PrivateKey::load(d / "missing.pem"), Catch::Contains("missing.pem"));
  // A public key where a private one is needed, and the other way round.
  generate_keypair(KeyType::ed25519, d / "k.pem", d / "k.pub");
  CHECK_THROWS_WITH(PrivateKey::load(d / "k.pub"), Catch::Contains("is not a PEM private key"));
  CHECK_THROWS_WITH(PublicKey::load(d / "k.pem"), Catch::Contains("is not a PEM public key"));
}

TEST_CASE("trust store finds the signer among several keys", "[unit]") {
  TempDir d;
  std::filesystem::create_directory(d / "keys");
  generate_keypair(KeyType::ed25519, d / "a.pem", d / "keys/a.pem");
  generate_keypair(KeyType::ecdsa_p256, d / "b.pem", d / "keys/b.pem");
  generate_keypair(KeyType::ed25519, d / "stranger.pem", d / "stranger.pub");
  std::ofstream(d / "keys/README") << "not a key, ignored\n";

  TrustStore t = TrustStore::load_dir(d / "keys");
  CHECK(t.size() == 2);
  CHECK(t.description() == d / "keys");

  PrivateKey b = PrivateKey::load(d / "b.pem");
  std::string sig = b.sign("manifest");
  const PublicKey* who = t.find_signer("manifest", sig);
  REQUIRE(who != nullptr);
  CHECK(who->key_id() == b.key_id());
  CHECK(t.find_signer("manifesT", sig) == nullptr);

  PrivateKey stranger = PrivateKey::load(d / "stranger.pem");
  CHECK(t.find_signer("manifest", stranger.sign("manifest")) == nullptr);

  TrustStore mem;
  CHECK(mem.find_signer("manifest", sig) == nullptr);
  mem.add(PublicKey::from_pem(stranger.public_pem(), "stranger"));
  CHECK(mem.find_signer("manifest", stranger.sign("manifest")) != nullptr);
}

TEST_CASE("trust store errors name the directory", "[unit]") {
  TempDir d;
  CHECK_THROWS_WITH(TrustStore::load_dir(d / "nope"), Catch::Contains(d / "nope"));
  CHECK_THROWS_WITH(TrustStore::load_dir(d.path()),
                    Catch::Contains("no trusted keys") && Catch::Contains(d.path()));
  std::ofstream(d / "junk.pem") << "junk";
  CHECK_THROWS_WITH(TrustStore::load_dir(d.path()), Catch::Contains("junk.pem"));
}
