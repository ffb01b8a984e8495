// The osup commands, one function each; main.cpp only parses and dispatches.
#pragma once

#include <string>
#include <vector>

namespace osup {

// Runs "osup ARGS..." and returns the exit code; errors are printed as one line.
int run_osup(const std::vector<std::string>& args);

}  // namespace osup
