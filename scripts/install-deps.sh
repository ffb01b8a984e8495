#!/usr/bin/env bash
# Installs every build, test and run dependency of osup from Debian 12's archive.
# Idempotent: packages already present are skipped by apt; safe to run repeatedly.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: must run as root (apt-get); try: sudo $0" >&2
  exit 1
fi

packages=(
  # build
  build-essential cmake pkg-config clang clang-format clang-tidy libclang-rt-14-dev
  libfdisk-dev libblkid-dev libzstd-dev libssl-dev nlohmann-json3-dev libarchive-dev libcurl4-openssl-dev catch2
  # image building
  erofs-utils squashfs-tools dosfstools mtools e2fsprogs fdisk debootstrap zstd
  qemu-user-static binfmt-support systemd-boot-efi busybox-static
  # Secure Boot: signing EFI binaries (sbsign/sbverify), enrollment files (efitools)
  sbsigntool efitools
  # network updates: a real HTTP(S) server for the channel tests, casync for bench/delta
  nginx-light openssl casync
  # fleets: a real etcd (v3 JSON gateway) for the reboot-slot and rollout-health tests
  etcd-server
  # apps and one-file restore (docs/machine.md): podman with netavark + aardvark-dns (containers
  # on one network resolve each other by name) and runc (crun 1.8 refuses a hybrid cgroup
  # host such as the CI VM); flatpak and restic for the apps and data slices
  podman runc netavark aardvark-dns iptables flatpak restic
  # a GPG-signed Flatpak remote (keys made offline) and a restic repository on sftp (the
  # test starts its own sshd on 127.0.0.1; the package's ssh.service is not needed)
  gnupg openssh-server
  # a restic repository on S3: the test starts its own one-node Ceph cluster (monitor, OSD
  # on memstore) and RADOS Gateway on 127.0.0.1; the packages' services are not needed
  # (about 70 MB of .debs beyond the rest of this list)
  ceph-mon ceph-osd radosgw
  # oracles used by tests
  cryptsetup-bin systemd-container grub-common u-boot-tools
  # booting images
  qemu-system-x86 qemu-system-arm qemu-utils ovmf qemu-efi-aarch64
  # cross-building the arm64 .deb (the :arm64 libraries are listed in cross_packages)
  dpkg-dev file g++-aarch64-linux-gnu
)
# Target libraries for the arm64 cross build: multiarch -dev packages installed next to
# the host's (headers and .so in /usr/lib/aarch64-linux-gnu). apt pulls their own deps.
cross_packages=(
  libfdisk-dev:arm64 libblkid-dev:arm64 libzstd-dev:arm64 libssl-dev:arm64 libarchive-dev:arm64
  libcurl4-openssl-dev:arm64
)

installed() {  # is package $1 installed?
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

export DEBIAN_FRONTEND=noninteractive
updated=0
apt_update() { [ "$updated" = 1 ] || { apt-get update -qq; updated=1; }; }

missing=()
for p in "${packages[@]}"; do installed "$p" || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  apt_update
  # The tests start their own sshd (restic over sftp) and Ceph daemons (restic on S3) on
  # 127.0.0.1; installing openssh-server must not leave the system's sshd listening on
  # every address, nor the Ceph packages their targets and ceph-crash running (their
  # postinst enables and starts them). Debian's policy-rc.d keeps the packages from
  # starting anything, and their units are not enabled for the next boot.
  quiet_units=()
  [[ " ${missing[*]} " == *" openssh-server "* ]] && quiet_units+=(ssh.service)
  [[ " ${missing[*]} " =~ " "(ceph-mon|ceph-osd|radosgw)" " ]] &&
    quiet_units+=(ceph-crash.service ceph.target ceph-mon.target ceph-osd.target
      ceph-radosgw.target rbdmap.service)
  own_policy=0
  if [ ${#quiet_units[@]} -gt 0 ] && [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    own_policy=1
  fi
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
  [ "$own_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
  for unit in "${quiet_units[@]}"; do systemctl disable --quiet "$unit" 2>/dev/null || true; done
fi

if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  dpkg --add-architecture arm64
  updated=0
fi
missing=()
for p in "${cross_packages[@]}"; do installed "$p" || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  apt_update
  # Multi-Arch: same packages must have one version on both architectures, so the
  # host's amd64 counterparts (and e.g. linux-libc-dev) are upgraded in the same step.
  host_counterparts=("${missing[@]%:arm64}")
  apt-get install -y -qq --no-install-recommends "${missing[@]}" "${host_counterparts[@]}"
fi

# Foreign-architecture packages that tests take files from (busybox for a tiny arm64
# rootfs, systemd-boot's arm64 EFI binary) are fetched as .debs into a cache, not installed.
cache="${OSUP_DEPS_CACHE:-/var/cache/osup-deps}"
mkdir -p "$cache"; chown _apt "$cache" 2>/dev/null || true
for p in busybox-static:arm64 systemd-boot-efi:arm64 busybox-static:amd64 systemd-boot-efi:amd64; do
  name=${p%%:*}; arch=${p##*:}
  if ! ls "$cache/${name}_"*"_${arch}.deb" >/dev/null 2>&1; then
    apt_update
    (cd "$cache" && apt-get download -qq "$p")
  fi
done

# binfmt_misc lets debootstrap's second stage run arm64 binaries through qemu-user-static.
if [ -d /proc/sys/fs/binfmt_misc ] && [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
  mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc || true
fi
if [ -e /proc/sys/fs/binfmt_misc/register ] && [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
  update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
fi
echo "install-deps: all dependencies present"
