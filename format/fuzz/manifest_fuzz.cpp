// libFuzzer target: Manifest::parse must reject bad input with osup::Error, never crash.
// Also checks that whatever it accepts serializes back to a manifest that parses the same.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "base/error.h"
#include "format/manifest.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    osup::Manifest m = osup::Manifest::parse(text);
    if (!(osup::Manifest::parse(m.to_json()) == m)) std::abort();  // round trip must hold
    (void)osup::compare_versions(m.version, m.boot.kernel_version);
  } catch (const osup::Error&) {
    // expected for invalid manifests
  }
  return 0;
}
