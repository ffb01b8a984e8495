// Where `osup switch` and `osup info` read a bundle from, as the user named it: "-" is
// stdin, an http:// or https:// URL is streamed (updater/http.h), anything else is a
// file or device. The one place that decides.
#pragma once

#include <memory>
#include <string>

#include "base/byte_source.h"
#include "updater/http.h"

namespace osup {

[[nodiscard]] std::unique_ptr<ByteSource> open_bundle_source(const std::string& what);
// The same, with the HTTP options (--ca, retries) for a URL.
[[nodiscard]] std::unique_ptr<ByteSource> open_bundle_source(const std::string& what,
                                                             const HttpOptions& http);

}  // namespace osup
