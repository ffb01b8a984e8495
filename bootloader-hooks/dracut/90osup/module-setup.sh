#!/bin/bash
# dracut module "osup": everything the initrd of an osup image needs beyond stock
# systemd + dm-verity: kernel modules for the root (erofs on dm-verity) and the data
# partition, and osup-initrd-setup.service, which mounts the data partition of the
# booted disk on /sysroot/var and layers a persistent overlay over /sysroot/etc.

check() {
    # Only when asked for (--add osup or add_dracutmodules+=" osup "), so a host that
    # merely has the osup package installed keeps its own initrd unchanged.
    return 255
}

depends() {
    echo systemd systemd-veritysetup dm fs-lib
    return 0
}

installkernel() {
    # Not host-only: the image boots on machines the builder has never seen.
    hostonly='' instmods erofs overlay dm-verity dm-mod ext4 vfat nls_cp437 nls_iso8859_1 \
        efivarfs virtio_blk virtio_scsi virtio_pci virtio_mmio nvme ahci sd_mod \
        xhci_pci xhci_plat_hcd ehci_pci usb_storage uas mmc_block sdhci_pci sdhci_acpi
}

install() {
    inst_multiple sfdisk partx resize2fs e2fsck mkfs.ext4 blkid findmnt mountpoint \
        mount umount cp mkdir touch chmod cat readlink basename dirname grep tail tr
    inst_script "$moddir/osup-initrd-setup.sh" /usr/lib/osup/osup-initrd-setup
    inst_simple "$moddir/osup-initrd-setup.service" \
        "$systemdsystemunitdir/osup-initrd-setup.service"
    mkdir -p "$initdir$systemdsystemunitdir/initrd-fs.target.wants"
    ln_r "$systemdsystemunitdir/osup-initrd-setup.service" \
        "$systemdsystemunitdir/initrd-fs.target.wants/osup-initrd-setup.service"
}
