// `osup-build inspect`: what a bundle or a disk image holds.
#pragma once

#include <cstdio>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

namespace osup::build {

struct InspectOptions {
  std::optional<std::string> pubkey;  // check signatures (and, for bundles, every payload hash)
  bool json = false;
};

// Describes FILE (a bundle or a GPT disk image) as JSON; the text form is rendered from it.
[[nodiscard]] nlohmann::json inspect_json(const std::string& file, const InspectOptions& opts);
// Prints it to OUT; then throws when a signature is "untrusted" (does not verify with
// --pubkey), so the command exits non-zero after showing what it found.
void inspect(const std::string& file, const InspectOptions& opts, FILE* out);

}  // namespace osup::build
