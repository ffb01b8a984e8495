#include "boot/grub_env.h"

#include <strings.h>

#include <algorithm>

#include "base/error.h"

namespace osup {
namespace {

constexpr std::string_view kHeader = "# GRUB Environment Block\n";
// Which of the environment's two files is current (the higher); osup.cfg compares it too.
constexpr const char* kEnvGen = "OSUP_ENV_GEN";

std::string upper(layout::Slot s) {
  return std::string(1, layout::slot_char(s) == 'a' ? 'A' : 'B');
}
std::string var(layout::Slot s, const char* field) { return "OSUP_" + upper(s) + "_" + field; }
std::string ok_var(layout::Slot s) { return upper(s) + "_OK"; }
std::string try_var(layout::Slot s) { return upper(s) + "_TRY"; }

int to_int(const std::string& s, int fallback = 0) {
  if (s.empty() || s.size() > 9 || !std::all_of(s.begin(), s.end(), ::isdigit)) return fallback;
  return std::stoi(s);
}

uint64_t to_u64(const std::string& s) {
  if (s.empty() || s.size() > 19 || !std::all_of(s.begin(), s.end(), ::isdigit)) return 0;
  return std::stoull(s);
}

bool has_entry(const GrubEnvBlock& env, layout::Slot s) {
  return !env.get_or(var(s, "KERNEL"), "").empty();
}

// ORDER as slots, unknown words dropped; unset or empty means "A B", as in osup.cfg.
std::vector<layout::Slot> order_of(const GrubEnvBlock& env) {
  std::vector<layout::Slot> out;
  std::string order = env.get_or("ORDER", "");
  if (order.empty()) order = "A B";
  size_t pos = 0;
  while (pos < order.size()) {
    size_t end = order.find(' ', pos);
    if (end == std::string::npos) end = order.size();
    const std::string w = order.substr(pos, end - pos);
    pos = end + 1;
    for (layout::Slot s : {layout::Slot::a, layout::Slot::b})
      if (w == upper(s) && std::find(out.begin(), out.end(), s) == out.end()) out.push_back(s);
  }
  return out;
}

void put_first(GrubEnvBlock& env, layout::Slot s) {
  env.set("ORDER", upper(s) + " " + upper(layout::other(s)));
}

uint64_t next_generation(const GrubEnvBlock& env) {
  return std::max(to_u64(env.get_or(var(layout::Slot::a, "GEN"), "")),
                  to_u64(env.get_or(var(layout::Slot::b, "GEN"), ""))) +
         1;
}

}  // namespace

GrubEnvBlock GrubEnvBlock::parse(std::string_view block, const std::string& what) {
  if (!block.starts_with(kHeader))
    fail("grub environment block " + what +
         " does not start with '# GRUB Environment Block'; recreate it with grub-editenv FILE "
         "create");
  GrubEnvBlock env;
  size_t pos = kHeader.size();
  while (pos < block.size()) {
    if (block[pos] == '#' || block[pos] == '\n') {  // comment, or the padding at the end
      size_t nl = block.find('\n', pos);
      if (nl == std::string_view::npos) break;
      pos = nl + 1;
      continue;
    }
    // name=value up to an unescaped newline; '\' escapes the next character.
    std::string line;
    size_t i = pos;
    for (; i < block.size() && block[i] != '\n'; ++i) {
      if (block[i] == '\\' && i + 1 < block.size()) ++i;
      line += block[i];
    }
    pos = i + 1;
    size_t eq = line.find('=');
    if (eq == std::string::npos || eq == 0) continue;  // GRUB skips such lines too
    env.set(line.substr(0, eq), line.substr(eq + 1));
  }
  return env;
}

std::string GrubEnvBlock::serialize(size_t min_size) const {
  std::string out(kHeader);
  for (const auto& [name, value] : vars_) {
    out += name + "=";
    for (char c : value) {
      if (c == '\\' || c == '\n') out += '\\';
      out += c;
    }
    out += '\n';
  }
  const size_t size = std::max(min_size, (out.size() + kBlockSize - 1) / kBlockSize * kBlockSize);
  if (size > kMaxBlockSize)
    fail("grub environment block would need " + std::to_string(out.size()) + " bytes, more than " +
         std::to_string(kMaxBlockSize) + "; shorten the kernel command lines");
  out.append(size - out.size(), '#');
  return out;
}

std::optional<std::string> GrubEnvBlock::get(const std::string& name) const {
  for (const auto& [n, v] : vars_)
    if (n == name) return v;
  return std::nullopt;
}

std::string GrubEnvBlock::get_or(const std::string& name, const std::string& fallback) const {
  return get(name).value_or(fallback);
}

void GrubEnvBlock::set(const std::string& name, const std::string& value) {
  if (name.empty() || name.find_first_of("=\n#\\ ") != std::string::npos)
    fail("grub environment variable name '" + name + "' is invalid");
  for (auto& [n, v] : vars_)
    if (n == name) {
      v = value;
      return;
    }
  vars_.emplace_back(name, value);
}

void GrubEnvBlock::unset(const std::string& name) {
  std::erase_if(vars_, [&](const auto& p) { return p.first == name; });
}

std::string grubenv_alt_path(const std::string& env_path) { return env_path + ".1"; }

std::optional<std::string> find_grubenv(const EspAccess& esp) {
  const auto present = [&](const std::string& p) {
    return esp.exists(p) || esp.exists(grubenv_alt_path(p));
  };
  if (present("/grub/grubenv")) return "/grub/grubenv";
  for (const std::string& vendor : esp.list("/EFI")) {
    const std::string p = "/EFI/" + vendor + "/grubenv";
    if (present(p)) return p;
  }
  return std::nullopt;
}

std::optional<layout::Slot> grub_pick(GrubEnvBlock& env) {
  const auto order = order_of(env);
  for (layout::Slot s : order) {
    if (!has_entry(env, s)) continue;
    if (env.get_or(ok_var(s), "0") == "1") return s;
    const int left = to_int(env.get_or(try_var(s), "0"));
    if (left >= 1 && left <= kGrubMaxTries) {
      env.set(try_var(s), std::to_string(left - 1));
      return s;
    }
  }
  for (layout::Slot s : order)
    if (has_entry(env, s)) return s;
  return std::nullopt;
}

std::optional<layout::Slot> simulate_grub_boot(EspAccess& esp, const std::string& env_path) {
  GrubEnv grub(std::shared_ptr<EspAccess>(&esp, [](EspAccess*) {}), env_path);
  const std::string path = grub.current_path();
  GrubEnvBlock env = grub.load();
  auto picked = grub_pick(env);
  // GRUB's save_env rewrites the loaded file's block in place: same name, same size.
  if (picked) esp.write_atomic(path, env.serialize(esp.read(path)->size()));
  return picked;
}

// The environment under one of its two names: nullopt when the file is missing or GRUB
// could not use it (a cut can leave the older name's record on freed clusters).
std::optional<GrubEnvBlock> GrubEnv::load_from(const std::string& path, std::string* error) const {
  std::optional<std::string> text;
  try {
    text = esp_->read(path);
    if (text) return GrubEnvBlock::parse(*text, path + " on the " + esp_->describe());
  } catch (const Error& e) {
    if (error && error->empty()) *error = e.what();
  }
  return std::nullopt;
}

GrubEnv::Current GrubEnv::current() const {
  std::string error;
  const std::string alt = grubenv_alt_path(env_path_);
  auto main = load_from(env_path_, &error), other = load_from(alt, &error);
  const auto gen = [](const GrubEnvBlock& e) { return to_u64(e.get_or(kEnvGen, "")); };
  if (other && (!main || gen(*other) > gen(*main))) return {alt, std::move(*other)};
  if (main) return {env_path_, std::move(*main)};
  if (!error.empty()) fail(error);
  return {"", GrubEnvBlock{}};
}

std::string GrubEnv::current_path() const {
  const std::string p = current().path;
  return p.empty() ? env_path_ : p;
}

GrubEnvBlock GrubEnv::load() const { return current().env; }

// Never over an existing file (on FAT a rename over one frees its clusters apart from
// the directory update: docs/powerloss.md, finding 2): the new block goes, whole and
// synced, to the name not in use with a higher OSUP_ENV_GEN; then the old name goes. A
// cut leaves the old block, or both (osup.cfg and load() take the higher generation).
void GrubEnv::store(const GrubEnvBlock& env) {
  const Current cur = current();
  GrubEnvBlock next = env;
  next.set(kEnvGen, std::to_string(to_u64(cur.env.get_or(kEnvGen, "")) + 1));
  const size_t old_size = cur.path.empty() ? 0 : esp_->read(cur.path).value_or("").size();
  const std::string text = next.serialize(std::max(old_size, GrubEnvBlock::kBlockSize));
  const std::string target = cur.path == env_path_ ? grubenv_alt_path(env_path_) : env_path_;
  with_context("writing " + target + " on the " + esp_->describe(), [&] {
    const std::string dir = env_path_.substr(0, env_path_.rfind('/'));
    if (!dir.empty()) esp_->mkdirs(dir);
    if (esp_->exists(target)) esp_->remove(target);  // an older block a cut left behind
    esp_->write_atomic(target, text);
    if (!cur.path.empty()) esp_->remove(cur.path);
  });
}

void GrubEnv::require_entry(const GrubEnvBlock& env, layout::Slot s, const char* action) const {
  if (!has_entry(env, s))
    fail(std::string("cannot ") + action + " slot " + layout::slot_char(s) +
         ": it has no boot entry in " + env_path_ + " on the " + esp_->describe() +
         "; install it first");
}

SlotBoot GrubEnv::slot(layout::Slot s) const {
  const GrubEnvBlock env = load();
  SlotBoot b;
  b.slot = s;
  if (!has_entry(env, s)) return b;
  const int left = to_int(env.get_or(try_var(s), "0"));
  const int total = to_int(env.get_or(var(s, "TRIES"), "0"));
  if (env.get_or(ok_var(s), "0") == "1") {
    b.state = SlotState::good;
  } else {
    b.state = left > 0 ? SlotState::trying : SlotState::bad;
    b.tries_left = left;
    b.tries_done = std::max(total - left, 0);
  }
  b.generation = to_u64(env.get_or(var(s, "GEN"), ""));
  b.title = env.get_or(var(s, "TITLE"), "");
  b.version = env.get_or(var(s, "VERSION"), "");
  return b;
}

std::optional<layout::Slot> GrubEnv::next_boot() const {
  GrubEnvBlock env = load();
  return grub_pick(env);
}

void GrubEnv::disable(layout::Slot s) {
  GrubEnvBlock env = load();
  for (const char* f : {"KERNEL", "INITRD", "CMDLINE", "TITLE", "VERSION", "TRIES"})
    env.unset(var(s, f));
  env.set(ok_var(s), "0");
  env.set(try_var(s), "0");
  put_first(env, layout::other(s));
  store(env);
}

void GrubEnv::install(layout::Slot s, const EntrySpec& spec) {
  check_entry_spec(spec);
  if (spec.tries > kGrubMaxTries)
    fail("grub boot counting allows at most " + std::to_string(kGrubMaxTries) + " tries, got " +
         std::to_string(spec.tries));
  if (!esp_->exists(spec.kernel))
    fail("kernel " + spec.kernel + " is missing on the " + esp_->describe() +
         "; copy it before installing the boot entry");
  GrubEnvBlock env = load();
  const std::string c(1, layout::slot_char(s));
  env.set(var(s, "KERNEL"), spec.kernel);
  env.set(var(s, "INITRD"), spec.initrd);
  env.set(var(s, "CMDLINE"), entry_cmdline(spec, s));
  env.set(var(s, "TITLE"), entry_title(spec, s));
  env.set(var(s, "VERSION"), spec.version);
  env.set(var(s, "GEN"), std::to_string(next_generation(env)));
  env.set(var(s, "TRIES"), std::to_string(spec.tries));
  env.set(ok_var(s), "0");
  env.set(try_var(s), std::to_string(spec.tries));
  put_first(env, s);
  with_context("installing the boot entry of slot " + c, [&] { store(env); });
}

void GrubEnv::make_first(layout::Slot s) {
  GrubEnvBlock env = load();
  require_entry(env, s, "make first");
  env.set(var(s, "GEN"), std::to_string(next_generation(env)));
  env.set(ok_var(s), "1");
  env.set(try_var(s), "0");
  put_first(env, s);
  store(env);
}

void GrubEnv::mark_good(layout::Slot s) {
  GrubEnvBlock env = load();
  require_entry(env, s, "mark good");
  if (env.get_or(ok_var(s), "0") == "1") {  // nothing to change; a cut's older block goes
    const std::string cur = current_path(), alt = grubenv_alt_path(env_path_);
    const std::string stale = cur == env_path_ ? alt : env_path_;
    if (esp_->exists(stale)) esp_->remove(stale);
    return;
  }
  env.set(ok_var(s), "1");
  env.set(try_var(s), "0");
  store(env);
}

void GrubEnv::mark_bad(layout::Slot s) {
  GrubEnvBlock env = load();
  require_entry(env, s, "mark bad");
  env.set(ok_var(s), "0");
  env.set(try_var(s), "0");
  store(env);
}

}  // namespace osup
