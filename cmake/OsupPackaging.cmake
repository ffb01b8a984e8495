# Installation of the boot integration (systemd units, health checks, dracut module) and
# the Debian package (CPack DEB) holding osup, osup-build and that integration.
#
#   cmake --build B --target osup osup-build package   -> B/osup_<version>_<amd64|arm64>.deb
#     (packaging does not build "all" first: name the two tools; see CMakeLists.txt)
#   cmake --install B --component boot --prefix /usr   -> only the boot integration
#     (what an image needs besides the binaries, e.g. to lay out a rootfs by hand)
#
# Paths are relative to the prefix; the package installs under /usr, where systemd and
# dracut look (/usr/lib/systemd/system, /usr/lib/dracut/modules.d).

set(_hooks ${CMAKE_SOURCE_DIR}/bootloader-hooks)

install(FILES
  ${_hooks}/systemd/osup-health-check.service
  ${_hooks}/systemd/osup-health-failed.service
  ${_hooks}/systemd/osup-mark-good.service
  ${_hooks}/systemd/osup-update.service
  ${_hooks}/systemd/osup-update.timer
  ${_hooks}/systemd/osup-apply.service
  ${_hooks}/systemd/osup-backup.service
  ${_hooks}/systemd/osup-backup.timer
  DESTINATION lib/systemd/system COMPONENT boot)
install(FILES ${_hooks}/systemd/80-osup.preset
  DESTINATION lib/systemd/system-preset COMPONENT boot)
install(PROGRAMS
  ${_hooks}/systemd/osup-health-check
  ${_hooks}/systemd/osup-health-failed
  DESTINATION lib/osup COMPONENT boot)
install(PROGRAMS ${_hooks}/systemd/health.d/10-data-partition
  DESTINATION lib/osup/health.d COMPONENT boot)
# The units' Documentation= and the commented update.conf for /etc/osup (all off).
install(FILES ${CMAKE_SOURCE_DIR}/README.md ${_hooks}/systemd/update.conf.example
  DESTINATION share/doc/osup COMPONENT boot)
install(FILES ${_hooks}/dracut/osup-image.conf
  DESTINATION lib/osup RENAME dracut.conf COMPONENT boot)
install(PROGRAMS
  ${_hooks}/dracut/90osup/module-setup.sh
  ${_hooks}/dracut/90osup/osup-initrd-setup.sh
  DESTINATION lib/dracut/modules.d/90osup COMPONENT boot)
install(FILES ${_hooks}/dracut/90osup/osup-initrd-setup.service
  DESTINATION lib/dracut/modules.d/90osup COMPONENT boot)

# --- Debian package ---------------------------------------------------------------
if(CMAKE_SYSTEM_PROCESSOR MATCHES "^(aarch64|arm64|ARM64)$")
  set(_deb_arch arm64)
elseif(CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|amd64|AMD64)$")
  set(_deb_arch amd64)
else()
  message(FATAL_ERROR "osup packaging: unsupported CMAKE_SYSTEM_PROCESSOR '${CMAKE_SYSTEM_PROCESSOR}'; "
                      "build for x86_64 or aarch64 (see CMakePresets.json)")
endif()

# Units are enabled through presets at install time (systemctl works offline, also in
# the image build's chroot); nothing is started: they only act on an osup boot. The
# update timer is enabled too; its service skips unless /etc/osup/update.conf has
# `timer = on`.
set(_deb_scripts ${CMAKE_BINARY_DIR}/deb-scripts)
file(WRITE ${_deb_scripts}/postinst [=[#!/bin/sh
set -e
if [ "$1" = configure ] && command -v systemctl >/dev/null; then
    systemctl --no-reload preset osup-health-check.service osup-mark-good.service osup-update.timer \
        osup-apply.service osup-backup.timer || true
fi
]=])
file(CHMOD ${_deb_scripts}/postinst
  PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE WORLD_READ WORLD_EXECUTE)

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME osup)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "osup maintainers <osup@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "A/B image-based OS updater (osup) and image builder (osup-build)")
set(CPACK_PACKAGE_DESCRIPTION
  "osup writes signed, dm-verity protected OS images into the inactive slot of an A/B disk
and lets systemd-boot fall back to the previous slot when a new one does not come up.
osup-build turns a JSON spec into a root file system, a flashable disk image and a signed
update bundle. Also ships the boot integration for images: health-check and mark-good
units, an update timer (off until /etc/osup/update.conf turns it on) and the dracut
module 'osup' (only used when an image build asks for it).")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)  # osup_<version>_<arch>.deb
set(CPACK_STRIP_FILES ON)  # images carry the package: keep debug info in the build tree
set(CPACK_DEBIAN_PACKAGE_ARCHITECTURE ${_deb_arch})
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# Listed, not computed with dpkg-shlibdeps, so a cross build needs no target sysroot.
# dosfstools: with fsck.vfat present, systemd-gpt-auto-generator's ESP mount runs
# systemd-fsck (fsck.vfat -a) first, the repair osup asks for when a power cut left the
# ESP's FAT inconsistent (boot/fat_check.h); without it systemd skips the check.
set(CPACK_DEBIAN_PACKAGE_DEPENDS
  "libc6, libstdc++6, libgcc-s1, libfdisk1, libblkid1, libzstd1, libssl3, libarchive13, libcurl4, mtools, dosfstools")
# osup-build's tools (the device side needs none of them); the system's CAs for https
# channels that need no --ca.
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS
  "erofs-utils, e2fsprogs, fdisk, cryptsetup-bin, debootstrap, zstd, ca-certificates")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "qemu-user-static, qemu-system-x86, qemu-system-arm, ovmf, qemu-efi-aarch64")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA ${_deb_scripts}/postinst)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
include(CPack)
