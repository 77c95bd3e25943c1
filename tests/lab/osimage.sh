#!/usr/bin/env bash
# Builds the bootable raw disk image the end-to-end test writes onto lab machines with
# image2disk: an MBR disk with one active FAT partition (label TINKOS) holding a kernel, an
# initramfs and two boot loaders, so the same image boots under SeaBIOS and OVMF:
#   * BIOS: syslinux (mbr.bin in the MBR, ldlinux.sys in the partition, syslinux.cfg);
#   * UEFI: GRUB built with grub-mkstandalone as \EFI\BOOT\BOOTX64.EFI, its grub.cfg embedded
#     (the removable-media path, which OVMF tries on any disk without boot entries).
# Both boot the same kernel command line, which carries e2e_os=1 and BUILD_ID so the test can
# tell the installed OS from HookOS on the console. Nothing is mounted and no root is needed:
# sfdisk, mkfs.vfat and mtools work on files.
#
#   tests/lab/osimage.sh --kernel VMLINUZ --initrd INITRAMFS --out DISK.raw [--size-mib N]
set -euo pipefail
kernel="" initrd="" out="" size=64
while [ $# -gt 0 ]; do
  case $1 in
    --kernel) kernel=$2; shift 2 ;;
    --initrd) initrd=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --size-mib) size=$2; shift 2 ;;
    *) echo "osimage.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -f "$kernel" ] && [ -f "$initrd" ] && [ -n "$out" ] || { echo "osimage.sh: need --kernel, --initrd and --out" >&2; exit 2; }
for t in sfdisk mkfs.vfat mcopy mmd syslinux grub-mkstandalone; do
  command -v $t >/dev/null || { echo "osimage.sh: $t missing (scripts/install-deps.sh installs it)" >&2; exit 1; }
done
mbr=/usr/lib/syslinux/mbr/mbr.bin
[ -f $mbr ] || { echo "osimage.sh: $mbr missing (syslinux-common)" >&2; exit 1; }

work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
build_id=$(cat "$kernel" "$initrd" | sha256sum | cut -c1-12)
cmdline="console=ttyS0 panic=-1 e2e_os=1 e2e_build=$build_id"

part_start=2048                         # sectors: 1 MiB
part_sectors=$(( size * 2048 - part_start ))
truncate -s 0 "$out"; truncate -s "${size}M" "$out"
printf 'label: dos\nstart=%s, size=%s, type=e, bootable\n' $part_start $part_sectors | sfdisk -q "$out"
dd if=$mbr of="$out" bs=440 count=1 conv=notrunc status=none

fat=$work/part.img
truncate -s $(( part_sectors * 512 )) "$fat"
mkfs.vfat -n TINKOS "$fat" > /dev/null
export MTOOLS_SKIP_CHECK=1
mcopy -i "$fat" "$kernel" ::/vmlinuz
mcopy -i "$fat" "$initrd" ::/initrd
cat > "$work/syslinux.cfg" <<CFG
DEFAULT os
PROMPT 0
TIMEOUT 0
SERIAL 0 115200
LABEL os
  LINUX /vmlinuz
  INITRD /initrd
  APPEND $cmdline
CFG
mcopy -i "$fat" "$work/syslinux.cfg" ::/syslinux.cfg
syslinux --install "$fat"
cat > "$work/grub.cfg" <<CFG
set timeout=0
serial --unit=0 --speed=115200
terminal_output serial console
search --no-floppy --label TINKOS --set=root
linux (\$root)/vmlinuz $cmdline
initrd (\$root)/initrd
boot
CFG
grub-mkstandalone -O x86_64-efi -o "$work/BOOTX64.EFI" \
  --modules="part_msdos fat search search_label linux serial normal echo" \
  --locales= --fonts= --themes= "boot/grub/grub.cfg=$work/grub.cfg"
mmd -i "$fat" ::/EFI ::/EFI/BOOT ::/tinkerbell
mcopy -i "$fat" "$work/BOOTX64.EFI" ::/EFI/BOOT/BOOTX64.EFI
echo "written by tests/lab/osimage.sh; the workflow's writefile adds metadata-url" > "$work/README"
mcopy -i "$fat" "$work/README" ::/tinkerbell/README
dd if="$fat" of="$out" bs=1M seek=1 conv=notrunc status=none
echo "osimage.sh: $out (${size} MiB, build $build_id)"
