#include "updater/machine/apply_stamp.h"

#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "base/fd.h"
#include "format/sha256.h"

using nlohmann::json;

namespace osup::machine {
namespace {

std::string value_of(const std::string& text, const std::string& key) {
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (!line.starts_with(key + "=")) continue;
    std::string v = line.substr(key.size() + 1);
    if (v.size() >= 2 && (v.front() == '"' || v.front() == '\'') && v.back() == v.front())
      v = v.substr(1, v.size() - 2);
    return v;
  }
  return "";
}

}  // namespace

std::string os_identity(const std::string& os_release_path) {
  if (!std::filesystem::exists(os_release_path)) return "";
  const std::string text = read_text_file(os_release_path);
  const std::string id = value_of(text, "IMAGE_ID"), version = value_of(text, "IMAGE_VERSION");
  return id.empty() && version.empty() ? "" : id + " " + version;
}

ApplyStamp current_stamp(const std::string& machine_file, const std::string& os_release_path) {
  return {to_hex(sha256(read_text_file(machine_file))), os_identity(os_release_path)};
}

ApplyStamp read_stamp(const std::string& path) {
  if (!std::filesystem::exists(path)) return {};
  const json j = json::parse(read_text_file(path), nullptr, false);
  if (!j.is_object() || !j.value("file_sha256", json()).is_string() ||
      !j.value("os", json()).is_string())
    return {};  // unreadable: the next boot applies again, which is always safe
  return {j["file_sha256"].get<std::string>(), j["os"].get<std::string>()};
}

void write_stamp(const std::string& path, const ApplyStamp& stamp) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  atomic_write_file(path,
                    json({{"file_sha256", stamp.file_sha256}, {"os", stamp.os}}).dump() + "\n");
}

}  // namespace osup::machine
