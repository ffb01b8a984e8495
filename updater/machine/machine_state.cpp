#include "updater/machine/machine_state.h"

#include <filesystem>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/fd.h"
#include "format/json_fields.h"

using nlohmann::json;

namespace osup::machine {

constexpr int kStateFormat = 1;

MachineState read_machine_state(const std::string& path) {
  MachineState s;
  if (!std::filesystem::exists(path)) return s;
  const json j = json::parse(read_text_file(path), nullptr, false);
  if (j.is_discarded())
    fail(path +
         ": not valid JSON; osup's record of what it installed is damaged (move it "
         "away and run osup apply again; osup then removes nothing it installed before)");
  JsonFields top(j, path, "");
  check_format(path, top.small_int("format"), kStateFormat);
  const json& installed = top.get("installed");
  JsonFields kinds(installed, path, "installed");
  for (const auto& [kind, names] : installed.items()) {
    JsonFields n(kinds.get(kind), path, kinds.name(kind));
    for (const auto& [name, fp] : names.items()) s.installed[kind][name] = n.str(name);
    n.done();
  }
  kinds.done();
  top.done();
  return s;
}

void write_machine_state(const std::string& path, const MachineState& state) {
  json installed = json::object();
  for (const auto& [kind, names] : state.installed)
    if (!names.empty()) installed[kind] = names;
  const json j{{"format", kStateFormat}, {"installed", installed}};
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  atomic_write_file(path, j.dump(2) + "\n");
}

}  // namespace osup::machine
