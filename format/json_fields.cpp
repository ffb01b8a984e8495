#include "format/json_fields.h"

#include <algorithm>
#include <utility>

#include "base/error.h"

namespace osup {

using json = nlohmann::json;

void json_field_error(std::string_view doc, const std::string& field, const std::string& rule) {
  fail(std::string(doc) + ": field '" + field + "' " + rule);
}

bool all_of_chars(std::string_view s, std::string_view extra) {
  return std::all_of(s.begin(), s.end(), [&](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           extra.find(c) != std::string_view::npos;
  });
}

bool is_lower_hex(std::string_view s) {
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

void check_format(std::string_view doc, int64_t format, int known) {
  if (format > known)
    fail(std::string(doc) + " format " + std::to_string(format) +
         " is newer than this osup understands; update osup first");
  if (format != known) json_field_error(doc, "format", "must be " + std::to_string(known));
}

void check_sha256_hex(std::string_view doc, const std::string& field, const std::string& v) {
  if (v.size() != 64 || !is_lower_hex(v))
    json_field_error(doc, field, "must be a 64-character hex string");
}

JsonFields::JsonFields(const json& j, std::string doc, std::string prefix)
    : j_(j), doc_(std::move(doc)), prefix_(std::move(prefix)) {
  if (!j_.is_object())
    fail(doc_ + ": " + (prefix_.empty() ? "top level" : "field '" + prefix_ + "'") +
         " must be a JSON object");
}

std::string JsonFields::name(const std::string& key) const {
  return prefix_.empty() ? key : prefix_ + "." + key;
}

const json& JsonFields::get(const std::string& key) {
  auto it = j_.find(key);
  if (it == j_.end()) json_field_error(doc_, name(key), "is missing");
  seen_.insert(key);
  return *it;
}

std::string JsonFields::str(const std::string& key) {
  const json& v = get(key);
  if (!v.is_string()) json_field_error(doc_, name(key), "must be a string");
  return v.get<std::string>();
}

const json* JsonFields::opt(const std::string& key) {
  auto it = j_.find(key);
  if (it == j_.end()) return nullptr;
  seen_.insert(key);
  return &*it;
}

std::optional<std::string> JsonFields::opt_str(const std::string& key) {
  if (!has(key)) return std::nullopt;
  return str(key);
}

bool JsonFields::boolean(const std::string& key, bool fallback) {
  const json* v = opt(key);
  if (!v) return fallback;
  if (!v->is_boolean()) json_field_error(doc_, name(key), "must be true or false");
  return v->get<bool>();
}

std::vector<std::string> JsonFields::str_list(const std::string& key) {
  const json* v = opt(key);
  std::vector<std::string> out;
  if (!v) return out;
  if (!v->is_array()) json_field_error(doc_, name(key), "must be a list of strings");
  for (const json& e : *v) {
    if (!e.is_string()) json_field_error(doc_, name(key), "must be a list of strings");
    out.push_back(e.get<std::string>());
  }
  return out;
}

uint64_t JsonFields::u64(const std::string& key) {
  const json& v = get(key);
  if (!v.is_number_unsigned()) json_field_error(doc_, name(key), "must be a non-negative integer");
  return v.get<uint64_t>();
}

uint32_t JsonFields::u32(const std::string& key) {
  uint64_t v = u64(key);
  if (v > UINT32_MAX) json_field_error(doc_, name(key), "is too large");
  return static_cast<uint32_t>(v);
}

int JsonFields::small_int(const std::string& key) {
  const json& v = get(key);
  if (!v.is_number_integer()) json_field_error(doc_, name(key), "must be an integer");
  if (v.is_number_unsigned() ? v.get<uint64_t>() > 1'000'000 : v.get<int64_t>() < -1'000'000)
    json_field_error(doc_, name(key), "is out of range");
  return static_cast<int>(v.get<int64_t>());
}

std::string JsonFields::sha256_hex(const std::string& key) {
  std::string v = str(key);
  if (v.size() != 64 || !is_lower_hex(v))
    json_field_error(doc_, name(key), "must be a 64-character hex string");
  return v;
}

void JsonFields::done() const {
  for (const auto& [k, _] : j_.items())
    if (!seen_.count(k)) fail(doc_ + ": unknown field '" + name(k) + "'");
}

}  // namespace osup
