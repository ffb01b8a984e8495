// The plan of `osup apply`: from what the file wants, what osup recorded and what the
// backends see, what to add, update, remove or leave (docs/machine.md "The plan").
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "updater/machine/machine_state.h"
#include "updater/machine/resources.h"

namespace osup::machine {

// Per kind, what exists now: name -> the fingerprint it carries ("" when the kind cannot
// carry one, like a Flatpak; the recorded fingerprint stands in for it then).
using Observation = std::map<Kind, std::map<std::string, std::string>>;

enum class Action { add, update, remove, unchanged };
[[nodiscard]] std::string to_string(Action a);

struct Step {
  Action action = Action::unchanged;
  Resource resource;  // for a removal, the recorded fingerprint
  std::string note;   // why, in a few words
  bool operator==(const Step&) const = default;
};

struct Plan {
  std::vector<Step> steps;  // adds and updates in kind order, removals after, in reverse
  [[nodiscard]] size_t changes() const;
  [[nodiscard]] bool nothing_to_do() const { return changes() == 0; }
};

// Throws, before anything is changed, when the file names a resource that exists but
// that osup did not create.
[[nodiscard]] Plan make_plan(const std::vector<Resource>& desired, const MachineState& recorded,
                             const Observation& observed);

[[nodiscard]] nlohmann::json plan_json(const Plan& plan);
[[nodiscard]] std::string plan_text(const Plan& plan);

}  // namespace osup::machine
