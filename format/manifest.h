// The signed description of one OS version: what the bundle holds and how to check it.
// Its exact bytes are what the signature covers, so to_json() must be deterministic.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace osup {

// What a payload is for; in the JSON as its "name". Bundles carry them in this order.
// uki_a / uki_b ("uki-a", "uki-b"): the signed Unified Kernel Image of each slot, only in
// bundles of Secure Boot images (one per slot: its signed command line names the slot).
enum class PayloadKind { kernel, initrd, uki_a, uki_b, verity, root };
// How a payload is stored in the bundle; in the JSON as "none" | "zstd".
enum class Compression { none, zstd };

[[nodiscard]] std::string to_string(PayloadKind k);  // "kernel", ...
[[nodiscard]] std::string to_string(Compression c);  // "none", "zstd"
[[nodiscard]] std::optional<PayloadKind> parse_payload_kind(std::string_view name);
[[nodiscard]] std::optional<Compression> parse_compression(std::string_view name);

struct Payload {
  PayloadKind kind = PayloadKind::root;
  std::string file;  // tar entry name, e.g. "root.erofs.zst"
  Compression compression = Compression::none;
  uint64_t size = 0;   // uncompressed bytes
  std::string sha256;  // hex, of the uncompressed bytes
  bool operator==(const Payload&) const = default;
};

struct VerityInfo {
  std::string root_hash, salt, uuid;
  uint64_t data_size = 0, hash_size = 0;
  uint32_t data_block_size = 4096, hash_block_size = 4096;
  std::string algorithm = "sha256";
  bool operator==(const VerityInfo&) const = default;
};

struct BootInfo {
  std::string cmdline;
  int tries = 3;
  std::string kernel_version;  // "" = the bundle carries no kernel
  bool operator==(const BootInfo&) const = default;
};

struct Manifest {
  static constexpr int kFormat = 1;  // the newest manifest format this osup understands

  int format = kFormat;
  std::string name, version, arch, compatible, filesystem;
  uint64_t created = 0;  // seconds since the epoch (SOURCE_DATE_EPOCH for reproducible builds)
  VerityInfo verity;
  BootInfo boot;
  std::vector<Payload> payloads;

  // Deterministic bytes: sorted keys, indent 2, trailing newline. Validates first, so a
  // builder can never sign a manifest the updater would reject.
  [[nodiscard]] std::string to_json() const;
  // Strict: unknown or missing fields, wrong types and unsafe values are errors naming the field.
  [[nodiscard]] static Manifest parse(std::string_view json);
  [[nodiscard]] const Payload* find(PayloadKind kind) const;
  // Whether the bundle carries signed UKIs (a Secure Boot image: Type #2 boot entries).
  [[nodiscard]] bool has_ukis() const { return find(PayloadKind::uki_a) != nullptr; }
  // Throws the first rule the manifest breaks (the checks parse() applies).
  void validate() const;
  bool operator==(const Manifest&) const = default;
};

// Version ordering for downgrade checks: digit runs compare numerically, other runs like
// dpkg --compare-versions ('~' sorts before anything, even the end). Returns <0, 0, >0.
[[nodiscard]] int compare_versions(std::string_view a, std::string_view b);

}  // namespace osup
