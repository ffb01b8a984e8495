# Cross-compiling osup for arm64 on a Debian amd64 host with multiarch -dev packages
# (apt-get install g++-aarch64-linux-gnu libfdisk-dev:arm64 libblkid-dev:arm64
#  libzstd-dev:arm64 libssl-dev:arm64 libarchive-dev:arm64 libcurl4-openssl-dev:arm64;
#  scripts/install-deps.sh installs them all; see qemu-tests/README.md).
# The arm64 libraries live in /usr/lib/aarch64-linux-gnu of the host itself, so there
# is no separate sysroot: CMake and pkg-config are pointed at the multiarch paths.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)

# Only arm64 .pc files (plus arch-independent ones), never the host's amd64 ones.
set(ENV{PKG_CONFIG_LIBDIR} "/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig")
set(ENV{PKG_CONFIG_PATH} "")

# Libraries and headers: the multiarch directories first; programs: the host's.
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_IGNORE_PATH /usr/lib/x86_64-linux-gnu /lib/x86_64-linux-gnu)

# Test binaries run through qemu-user (qemu-user-static) when ctest runs them.
find_program(OSUP_QEMU_AARCH64 NAMES qemu-aarch64-static qemu-aarch64)
if(OSUP_QEMU_AARCH64)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${OSUP_QEMU_AARCH64} -L /usr/aarch64-linux-gnu)
endif()
