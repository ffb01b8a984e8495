// Strict reading of the project's JSON documents (manifest, channel index, delta header):
// every field read by its full dotted name, wrong types and unknown fields refused with
// one line naming the document and the field.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace osup {

[[noreturn]] void json_field_error(std::string_view doc, const std::string& field,
                                   const std::string& rule);
// Letters, digits and the characters in `extra`.
[[nodiscard]] bool all_of_chars(std::string_view s, std::string_view extra);
[[nodiscard]] bool is_lower_hex(std::string_view s);

// A document's format number: a newer one says to update osup, any other than `known` is
// refused naming the field.
void check_format(std::string_view doc, int64_t format, int known);
// A value set in code, validated before it is written: a lowercase 64-character hex SHA-256.
void check_sha256_hex(std::string_view doc, const std::string& field, const std::string& v);

class JsonFields {
 public:
  // doc names the document in errors ("manifest"); prefix is this object's dotted path.
  JsonFields(const nlohmann::json& j, std::string doc, std::string prefix);
  [[nodiscard]] std::string name(const std::string& key) const;
  const nlohmann::json& get(const std::string& key);
  [[nodiscard]] bool has(const std::string& key) const { return j_.contains(key); }
  // An optional field: nullptr when absent (marked read either way).
  const nlohmann::json* opt(const std::string& key);
  std::string str(const std::string& key);
  std::optional<std::string> opt_str(const std::string& key);
  bool boolean(const std::string& key, bool fallback);
  // A list of strings; empty when absent.
  std::vector<std::string> str_list(const std::string& key);
  uint64_t u64(const std::string& key);
  uint32_t u32(const std::string& key);
  int small_int(const std::string& key);  // within +-1,000,000
  // A lowercase 64-character hex SHA-256.
  std::string sha256_hex(const std::string& key);
  // Throws for any field not read.
  void done() const;

 private:
  const nlohmann::json& j_;
  std::string doc_, prefix_;
  std::set<std::string> seen_;
};

}  // namespace osup
