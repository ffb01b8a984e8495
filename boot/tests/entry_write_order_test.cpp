// The order in which the systemd-boot and GRUB backends change the ESP: no rename ever
// lands on an existing entry or grubenv (on FAT a power cut there can leave the name
// pointing at freed clusters: docs/powerloss.md, finding 2), and stopping after any step
// leaves the loader's pick on the slot it had before or the one the operation wanted, with
// a rerun finishing it.
#include <catch2/catch.hpp>

#include "base/error.h"
#include "base/process.h"
#include "boot/grub_env.h"
#include "boot/systemd_boot.h"
#include "boot/tests/esp_fixture.h"

using namespace osup;
using namespace osup::test;
using layout::Slot;

namespace {

struct PowerCut {};

// Passes every call through; counts the changes and stops before change number `cut_at`;
// records each rename or atomic write whose target already exists.
class CuttingEsp final : public EspAccess {
 public:
  explicit CuttingEsp(std::shared_ptr<EspAccess> esp) : esp_(std::move(esp)) {}
  int cut_at = -1, changes = 0;
  std::vector<std::string> overwritten;

  std::string describe() const override { return esp_->describe(); }
  std::vector<std::string> list(const std::string& dir) const override { return esp_->list(dir); }
  std::optional<std::string> read(const std::string& path) const override {
    return esp_->read(path);
  }
  bool copy_out(const std::string& p, const std::string& h) const override {
    return esp_->copy_out(p, h);
  }
  void write_atomic(const std::string& p, std::string_view c) override {
    change(p);
    esp_->write_atomic(p, c);
  }
  void copy_in(const std::string& h, const std::string& p) override {
    change(p);
    esp_->copy_in(h, p);
  }
  void rename(const std::string& f, const std::string& t) override {
    change(t);
    esp_->rename(f, t);
  }
  void remove(const std::string& p) override {
    step();
    esp_->remove(p);
  }
  void mkdirs(const std::string& d) override { esp_->mkdirs(d); }

 private:
  void step() {
    if (changes++ == cut_at) throw PowerCut{};
  }
  // write_atomic and rename both end in a rename onto `target`.
  void change(const std::string& target) {
    step();
    if ((target.starts_with(kEntriesDir) || target.find("grubenv") != std::string::npos) &&
        esp_->exists(target))
      overwritten.push_back(target);
  }
  std::shared_ptr<EspAccess> esp_;
};

using Step = void (*)(BootControl&, EspAccess&);

// Slot a good, then slot b installed and booted once, then `then`; then `op` is cut.
struct Case {
  const char* name;
  Step then, op;
  Slot before, after;
};

void booted(BootControl& sd, EspAccess& esp, Slot s) {
  REQUIRE(sd.next_boot() == s);
  if (auto* grub = dynamic_cast<GrubEnv*>(&sd))
    REQUIRE(simulate_grub_boot(esp, grub->env_path()));
  else
    REQUIRE(simulate_systemd_boot(esp));
}

void setup(const Case& c, BootControl& sd, EspAccess& esp) {
  sd.install(Slot::a, spec_for(Slot::a, "1"));
  booted(sd, esp, Slot::a);
  sd.mark_good(Slot::a);
  sd.install(Slot::b, spec_for(Slot::b, "2"));
  booted(sd, esp, Slot::b);
  c.then(sd, esp);
}

void nothing(BootControl&, EspAccess&) {}
void good(BootControl& sd, EspAccess&) { sd.mark_good(Slot::b); }
void bad(BootControl& sd, EspAccess&) { sd.mark_bad(Slot::b); }
void twice(BootControl& sd, EspAccess& esp) {  // a on its other name, then back to b
  sd.mark_good(Slot::b);
  sd.make_first(Slot::a);
  sd.make_first(Slot::b);
  booted(sd, esp, Slot::b);
}
void first_a(BootControl& sd, EspAccess&) { sd.make_first(Slot::a); }
void first_b(BootControl& sd, EspAccess&) { sd.make_first(Slot::b); }
void reinstall_a(BootControl& sd, EspAccess&) { sd.install(Slot::a, spec_for(Slot::a, "3")); }
void disable_b(BootControl& sd, EspAccess&) { sd.disable(Slot::b); }

constexpr Case kCases[] = {
    {"rollback to a good slot", good, first_a, Slot::b, Slot::a},
    {"rollback to a slot on its other name", twice, first_a, Slot::b, Slot::a},
    {"forced rollback to a bad slot", bad, first_b, Slot::a, Slot::b},
    {"mark-good", nothing, good, Slot::b, Slot::b},
    {"mark-bad", nothing, bad, Slot::b, Slot::a},
    {"install over a slot's own entry", good, reinstall_a, Slot::b, Slot::a},
    {"disable the other slot", good, disable_b, Slot::b, Slot::a},
};

std::unique_ptr<BootControl> make_loader(const std::string& kind, std::shared_ptr<EspAccess> esp) {
  if (kind == "grub") return std::make_unique<GrubEnv>(std::move(esp), "/grub/grubenv");
  return std::make_unique<SystemdBoot>(std::move(esp));
}

// What the loader reads after a cut is its own: entries it parses as osup's (systemd-boot),
// or a grubenv that grub-editenv lists (GRUB). Returns how many entries slot s has, or
// for GRUB how many of the environment's two names exist.
int check_left(const std::string& kind, BootControl& bc, EspAccess& esp, Slot s,
               const std::string& dir) {
  int n = 0;
  if (kind == "grub") {
    const std::string env = "/grub/grubenv";
    for (const std::string& f : {env, grubenv_alt_path(env)}) n += esp.exists(f) ? 1 : 0;
    const std::string host = dir + "/grubenv.host";
    atomic_write_file(host, *esp.read(dynamic_cast<GrubEnv&>(bc).current_path()));
    CHECK(run({"grub-editenv", host, "list"}).exit_code == 0);
    return n;
  }
  for (const std::string& f : esp.list(kEntriesDir)) {
    CHECK((osup_entry_slot(f) || f.ends_with(".tmp")));
    n += osup_entry_slot(f) == s;
  }
  return n;
}

}  // namespace

TEST_CASE("entries and grubenv: no rename over one, any cut leaves the old or new pick", "[unit]") {
  const std::string kind = GENERATE(as<std::string>{}, "systemd-boot", "grub");
  for (const Case& c : kCases) {
    int steps = 0;
    for (int cut = 0;; ++cut) {
      INFO(kind << ": " << c.name << ", cut before change " << cut);
      Esp e("mounted");
      add_kernels(*e.esp);
      auto plain = make_loader(kind, e.esp);
      setup(c, *plain, *e.esp);
      REQUIRE(plain->next_boot() == c.before);
      auto cutting = std::make_shared<CuttingEsp>(e.esp);
      cutting->cut_at = cut;
      auto sd = make_loader(kind, cutting);
      bool finished = true;
      try {
        c.op(*sd, *cutting);
      } catch (const PowerCut&) {
        finished = false;
      }
      CHECK(cutting->overwritten.empty());
      const auto now = sd->next_boot();
      CHECK((now == c.before || now == c.after));
      (void)check_left(kind, *sd, *e.esp, Slot::a, e.dir.path());
      if (finished) {
        steps = cut;
        CHECK(now == c.after);
        break;
      }
      // The rerun finishes the job, without overwriting either.
      cutting->cut_at = -1;
      c.op(*sd, *cutting);
      CHECK(cutting->overwritten.empty());
      CHECK(sd->next_boot() == c.after);
      for (Slot s : {Slot::a, Slot::b}) CHECK(check_left(kind, *sd, *e.esp, s, e.dir.path()) <= 1);
    }
    INFO(kind << ": " << c.name);
    CHECK(steps >= 1);
  }
}

TEST_CASE("systemd-boot entries: both names of a slot parse as that slot", "[unit]") {
  CHECK(osup_entry_slot("osup-a.conf") == Slot::a);
  CHECK(osup_entry_slot("osup-a~1.conf") == Slot::a);
  CHECK(osup_entry_slot("osup-b~1+3.conf") == Slot::b);
  CHECK(osup_entry_slot("OSUP-B~1+0-3.CONF") == Slot::b);
  CHECK(osup_entry_slot("osup-b+2-1.conf") == Slot::b);
  CHECK_FALSE(osup_entry_slot("osup-a~2.conf"));
  CHECK_FALSE(osup_entry_slot("osup-ab.conf"));
  CHECK_FALSE(osup_entry_slot("osup-a~1.conf.tmp"));
  CHECK_FALSE(osup_entry_slot("osup-c.conf"));
  CHECK_FALSE(osup_entry_slot("debian.conf"));
  // The loader counts tries on the second name as on the first.
  auto e = parse_loader_entry("osup-b~1+2-1.conf", "version 3\nlinux /k\n");
  REQUIRE(e);
  CHECK(e->tries_left == 2);
  CHECK(e->tries_done == 1);
}
