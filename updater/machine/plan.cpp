#include "updater/machine/plan.h"

#include <algorithm>

#include "base/error.h"

namespace osup::machine {
namespace {

const std::string* find(const std::map<std::string, std::string>* m, const std::string& name) {
  if (!m) return nullptr;
  auto it = m->find(name);
  return it == m->end() ? nullptr : &it->second;
}

template <class Map, class Key>
const typename Map::mapped_type* find_kind(const Map& m, const Key& k) {
  auto it = m.find(k);
  return it == m.end() ? nullptr : &it->second;
}

Step plan_wanted(const Resource& want, const std::string* recorded, const std::string* seen) {
  const std::string kind = to_string(want.kind);
  if (!seen) return {Action::add, want, recorded ? "recorded but missing: created again" : "new"};
  const std::string now = !seen->empty() ? *seen : recorded ? *recorded : "";
  if (now == want.fingerprint) return {Action::unchanged, want, ""};
  if (!recorded && seen->empty())
    fail(kind + " '" + want.name +
         "' exists but osup did not create it; remove or rename it, "
         "or give it another name in the machine file");
  return {Action::update, want, "configuration changed: recreated"};
}

}  // namespace

std::string to_string(Action a) {
  switch (a) {
    case Action::add:
      return "add";
    case Action::update:
      return "update";
    case Action::remove:
      return "remove";
    case Action::unchanged:
      return "unchanged";
  }
  return "?";
}

size_t Plan::changes() const {
  return static_cast<size_t>(std::count_if(
      steps.begin(), steps.end(), [](const Step& s) { return s.action != Action::unchanged; }));
}

Plan make_plan(const std::vector<Resource>& desired, const MachineState& recorded,
               const Observation& observed) {
  Plan plan;
  for (Kind kind : all_kinds()) {
    const auto* rec = find_kind(recorded.installed, to_string(kind));
    const auto* seen = find_kind(observed, kind);
    for (const Resource& want : desired)
      if (want.kind == kind)
        plan.steps.push_back(plan_wanted(want, find(rec, want.name), find(seen, want.name)));
  }
  for (auto k = all_kinds().rbegin(); k != all_kinds().rend(); ++k) {
    const auto* rec = find_kind(recorded.installed, to_string(*k));
    if (!rec) continue;
    const auto* seen = find_kind(observed, *k);
    for (const auto& [recorded_name, fp] : *rec) {
      const std::string& name = recorded_name;  // a lambda cannot capture a structured binding
      const bool wanted = std::any_of(desired.begin(), desired.end(), [&](const Resource& r) {
        return r.kind == *k && r.name == name;
      });
      if (wanted) continue;
      plan.steps.push_back({Action::remove,
                            {*k, name, fp},
                            find(seen, name) ? "installed by osup, no longer in the file"
                                             : "already gone: only forgotten"});
    }
  }
  return plan;
}

nlohmann::json plan_json(const Plan& plan) {
  nlohmann::json steps = nlohmann::json::array();
  for (const Step& s : plan.steps)
    steps.push_back({{"action", to_string(s.action)},
                     {"kind", to_string(s.resource.kind)},
                     {"name", s.resource.name},
                     {"fingerprint", s.resource.fingerprint},
                     {"note", s.note}});
  return {{"changes", plan.changes()}, {"steps", steps}};
}

std::string plan_text(const Plan& plan) {
  if (plan.nothing_to_do())
    return "nothing to do: all " + std::to_string(plan.steps.size()) +
           " resources are as the file says\n";
  std::string out;
  for (const Step& s : plan.steps) {
    static const char* const marks[] = {"+", "~", "-", "="};
    out += std::string("  ") + marks[static_cast<int>(s.action)] + " " +
           to_string(s.resource.kind) + " " + s.resource.name +
           (s.note.empty() ? "" : " (" + s.note + ")") + "\n";
  }
  return out + std::to_string(plan.changes()) + " change(s)\n";
}

}  // namespace osup::machine
