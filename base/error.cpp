#include "base/error.h"

#include <cstring>

namespace osup {

void fail_errno(const std::string& what, int err) { throw Error(what + ": " + std::strerror(err)); }

}  // namespace osup
