// One error type for the whole project: exceptions carrying a one-line, user-facing
// message. Each layer adds its context in front ("installing slot b: writing root: ...").
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

namespace osup {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

[[noreturn]] inline void fail(const std::string& message) { throw Error(message); }

// "open /dev/sdb: Permission denied" from errno.
[[noreturn]] void fail_errno(const std::string& what, int err);

// Runs fn; an osup::Error escaping it is rethrown with "context: " in front.
template <class Fn>
decltype(auto) with_context(std::string_view context, Fn&& fn) {
  try {
    return std::forward<Fn>(fn)();
  } catch (const Error& e) {
    throw Error(std::string(context) + ": " + e.what());
  }
}

}  // namespace osup
