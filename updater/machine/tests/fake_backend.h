// A MachineBackend that keeps its resources in memory, for the plan and apply unit tests
// (the real podman backend has its own tests in podman_test.cpp).
#pragma once

#include <map>
#include <string>
#include <vector>

#include "base/error.h"
#include "updater/machine/backend.h"

namespace osup::machine::test {

class FakeBackend : public MachineBackend {
 public:
  explicit FakeBackend(std::vector<Kind> kinds) : kinds_(std::move(kinds)) {}
  std::map<Kind, std::map<std::string, std::string>> have;  // what "exists"
  std::vector<std::string> calls;                           // "create container web", ...
  std::string fail_on;                                      // a call that throws

  [[nodiscard]] std::vector<Kind> kinds() const override { return kinds_; }
  [[nodiscard]] std::map<std::string, std::string> observe(Kind kind) override {
    return have[kind];
  }
  void create(const Resource& r, const MachineConfig&) override {
    note("create", r.kind, r.name);
    have[r.kind][r.name] = r.fingerprint;
  }
  void update(const Resource& r, const MachineConfig&) override {
    note("update", r.kind, r.name);
    have[r.kind][r.name] = r.fingerprint;
  }
  void remove(Kind kind, const std::string& name) override {
    note("remove", kind, name);
    have[kind].erase(name);
  }

 private:
  void note(const std::string& what, Kind kind, const std::string& name) {
    const std::string call = what + " " + to_string(kind) + " " + name;
    if (call == fail_on) fail("fake failure: " + call);
    calls.push_back(call);
  }
  std::vector<Kind> kinds_;
};

}  // namespace osup::machine::test
