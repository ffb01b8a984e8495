// Where `osup switch` and `osup info` read a bundle from, as the user named it: "-" is
// stdin, anything else a file or device (HTTP URLs come with network updates). The one
// place that decides.
#pragma once

#include <memory>
#include <string>

#include "base/byte_source.h"

namespace osup {

[[nodiscard]] std::unique_ptr<ByteSource> open_bundle_source(const std::string& what);

}  // namespace osup
