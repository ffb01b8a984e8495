// Human sizes: "2G", "768M", "512K", "4096" (binary units), and back.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace osup {

// Throws "WHAT: invalid size 'x'; use a number with an optional K, M, G or T suffix".
[[nodiscard]] uint64_t parse_size(std::string_view text, const std::string& what);
[[nodiscard]] std::string format_size(uint64_t bytes);  // "1.5 GiB"
[[nodiscard]] constexpr uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

constexpr uint64_t KiB = 1024, MiB = 1024 * KiB, GiB = 1024 * MiB;

}  // namespace osup
