#!/bin/sh
# osup-initrd-setup: runs in the initrd after the read-only root is mounted on /sysroot.
#
# 1. Finds the data partition on the SAME disk as the booted root (the disk that holds
#    the dm-verity data device of /sysroot): the partition whose GPT name is "data".
#    Never by filesystem label alone: two osup disks in one machine both have one.
# 2. First boot: formats it if blank, grows it to the end of the disk, and seeds it
#    with the image's /var ("factory" /var).
# 3. Mounts it on /sysroot/var and an overlay on /sysroot/etc whose upper layer lives in
#    /var/lib/osup/etc, so /etc changes persist across updates of the read-only root.
# It never fails the boot: if anything goes wrong, /var and the /etc upper layer fall
# back to tmpfs, /run/osup/data-fallback says why, and the health check then refuses to
# mark the boot good (so a trial slot that cannot find its data is rolled back).
set -u

SYSROOT=${OSUP_SYSROOT:-/sysroot}
STATE=/run/osup
DATA_LABEL=data        # GPT partition name (DESIGN.md disk layout)
FS_LABEL=osup-data     # ext4 volume label
GROW_MIN_SECTORS=32768 # grow only when at least 16 MiB are unused after the partition
EFI_LOADER_GUID=4a67b082-0a4c-41cf-b6c7-440b29bb8c4f

log() { echo "osup-initrd-setup: $*" >&2; }

mkdir -p "$STATE"

# Kernel name of the whole disk that holds partition $1 (e.g. vda2 -> vda).
disk_of() {
    [ -e "/sys/class/block/$1/partition" ] || return 1
    basename "$(dirname "$(readlink -f "/sys/class/block/$1")")"
}

# The disk of the device mounted on /sysroot: through dm-verity (dm-N/slaves) or plain.
root_disk() {
    src=$(findmnt -n -o SOURCE --target "$SYSROOT") || return 1
    dev=$(basename "$(readlink -f "$src")")
    if [ -d "/sys/class/block/$dev/slaves" ]; then
        found=""
        for s in /sys/class/block/"$dev"/slaves/*; do
            [ -e "$s" ] || continue
            d=$(disk_of "$(basename "$s")") || continue
            if [ -n "$found" ] && [ "$found" != "$d" ]; then
                log "root data and hash devices are on different disks ($found, $d); using $found"
                continue
            fi
            found=$d
        done
        [ -n "$found" ] && { echo "$found"; return 0; }
        return 1
    fi
    disk_of "$dev"
}

# Warn when the firmware booted from an ESP on another disk than the root's: with two
# identical disks the root partition UUIDs coincide and the kernel may pick either.
check_loader_disk() {
    var=/sys/firmware/efi/efivars/LoaderDevicePartUUID-$EFI_LOADER_GUID
    [ -r "$var" ] || return 0
    # 4 bytes of attributes, then UTF-16LE; efivarfs cannot seek, so read it through a pipe.
    uuid=$(cat "$var" | tail -c +5 | tr -d '\000' | tr 'A-F' 'a-f')
    [ -n "$uuid" ] || return 0
    esp=$(readlink -f "/dev/disk/by-partuuid/$uuid" 2>/dev/null) || return 0
    esp_disk=$(disk_of "$(basename "$esp")") || return 0
    [ "$esp_disk" = "$1" ] ||
        log "warning: booted from the ESP on $esp_disk but the root is on $1; using $1's data partition"
}

# Partition of disk $1 whose GPT name is $DATA_LABEL (from the kernel's uevent).
data_partition_of() {
    for p in /sys/class/block/"$1"/*/partition; do
        [ -e "$p" ] || continue
        dir=$(dirname "$p")
        if grep -qx "PARTNAME=$DATA_LABEL" "$dir/uevent"; then
            basename "$dir"
            return 0
        fi
    done
    return 1
}

# Grows partition $2 of disk $1 to the end of the disk when it is the last one and the
# disk is larger than the image (first boot after flashing). Only the table changes;
# the file system is grown online after mounting.
grow_partition() {
    disk=$1 part=$2
    partn=$(cat "/sys/class/block/$part/partition")
    start=$(cat "/sys/class/block/$part/start")
    size=$(cat "/sys/class/block/$part/size")
    end=$((start + size))
    for p in /sys/class/block/"$disk"/*/start; do
        [ "$(cat "$p")" -gt "$start" ] && return 0 # not the last partition
    done
    disk_size=$(cat "/sys/class/block/$disk/size")
    # 33 sectors of backup GPT sit at the end of the disk.
    [ $((disk_size - end - 33)) -ge $GROW_MIN_SECTORS ] || return 1
    log "growing /dev/$part to the end of /dev/$disk"
    # The image may have been written to a larger disk: move the backup GPT to the end
    # first. --no-reread: the root partitions on this disk are in use.
    sfdisk --quiet --no-reread --no-tell-kernel --relocate gpt-bak-std "/dev/$disk" &&
        echo ', +' | sfdisk --quiet --no-reread --no-tell-kernel -N "$partn" "/dev/$disk" &&
        partx --update --nr "$partn" "/dev/$disk" ||
        { log "could not grow /dev/$part; keeping its size"; return 1; }
    return 0
}

# Mounts the persistent /etc overlay whose upper layer is in $1 (a mounted /var).
mount_etc_overlay() {
    upper=$1/lib/osup/etc/upper work=$1/lib/osup/etc/work
    mkdir -p "$upper" "$work" || return 1
    mount -t overlay osup-etc -o "lowerdir=$SYSROOT/etc,upperdir=$upper,workdir=$work" \
        "$SYSROOT/etc"
}

# Copies the image's /var into a fresh /var once (marker file), then keeps it.
seed_var() {
    target=$1
    if [ ! -e "$target/lib/osup/seeded" ]; then
        log "seeding $2 from the image's /var"
        cp -a "$SYSROOT/var/." "$target/" || return 1
        mkdir -p "$target/lib/osup" && touch "$target/lib/osup/seeded" || return 1
    fi
    mkdir -p "$target/home" "$target/roothome" && chmod 0700 "$target/roothome"
}

fallback() {
    log "WARNING: $1; /var and /etc changes are volatile for this boot"
    echo "$1" >"$STATE/data-fallback"
    mountpoint -q "$SYSROOT/var" && umount "$SYSROOT/var"
    mkdir -p "$STATE/var"
    mount -t tmpfs -o mode=0755 osup-var "$STATE/var" &&
        seed_var "$STATE/var" tmpfs &&
        mount --bind "$STATE/var" "$SYSROOT/var" &&
        mount_etc_overlay "$SYSROOT/var" || log "fallback failed too; /var and /etc are read-only"
    exit 0
}

disk=$(root_disk) || fallback "cannot find the disk of the root file system on $SYSROOT"
check_loader_disk "$disk"
part=$(data_partition_of "$disk") ||
    fallback "no partition named '$DATA_LABEL' on /dev/$disk"
dev=/dev/$part
echo "$dev" >"$STATE/data-device"
log "data partition: $dev (disk /dev/$disk)"

# Grow first: a blank partition then gets its file system at the final size.
grown=0
grow_partition "$disk" "$part" && grown=1

# Only TYPE: on a partition, blkid -p also reports the partition entry and succeeds.
fstype=$(blkid -p -o value -s TYPE "$dev" 2>/dev/null)
rc=$?
[ $rc -eq 0 ] || [ $rc -eq 2 ] || fallback "cannot probe $dev (blkid exit status $rc)"
case $fstype in
ext4) ;;
"")
    log "$dev is blank; creating an ext4 file system labelled $FS_LABEL"
    mkfs.ext4 -q -L "$FS_LABEL" "$dev" || fallback "mkfs.ext4 on $dev failed"
    ;;
*) fallback "$dev holds $fstype, not ext4; leaving it untouched" ;;
esac

e2fsck -p "$dev"
[ $? -lt 4 ] || log "e2fsck found errors on $dev it could not fix; trying to mount anyway"

mkdir -p "$STATE/data"
mount -t ext4 -o rw,relatime "$dev" "$STATE/data" || fallback "cannot mount $dev"
if [ $grown = 1 ]; then
    resize2fs "$dev" >/dev/null 2>&1 || log "resize2fs $dev failed; the file system keeps its size"
fi
seed_var "$STATE/data" "$dev" || { umount "$STATE/data"; fallback "cannot seed $dev"; }
# /sysroot is a shared mount, where "mount --move" is refused: remount instead.
umount "$STATE/data" && mount -t ext4 -o rw,relatime "$dev" "$SYSROOT/var" ||
    fallback "cannot mount $dev on $SYSROOT/var"
mount_etc_overlay "$SYSROOT/var" || log "cannot mount the /etc overlay; /etc stays read-only"
exit 0
