// osup: A/B updates on the device (see README.md).
#include <string>
#include <vector>

#include "updater/commands.h"

int main(int argc, char** argv) {
  return osup::run_osup(std::vector<std::string>(argv + 1, argv + argc));
}
