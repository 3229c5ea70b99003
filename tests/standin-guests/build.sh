#!/bin/sh
# Builds the stand-in guests into $1 (default: ./out):
#   standin64.elf  64-bit ELF, entered through the Linux boot protocol
#   standin-pvh.elf same code with a PVH note (32-bit entry)
#   standin.bzImage the 64-bit image wrapped in a bzImage setup header
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/out}
mkdir -p "$out"
CFLAGS="-O2 -ffreestanding -nostdlib -mgeneral-regs-only -mno-red-zone -fno-pic -fno-pie \
 -fno-stack-protector -fno-asynchronous-unwind-tables -fcf-protection=none -Wall -Werror"
CFLAGS="$CFLAGS -mcmodel=small"
for f in guest virtio count; do gcc $CFLAGS -c "$here/$f.c" -o "$out/$f.o"; done
gcc -c "$here/entry64.S" -o "$out/entry64.o"
gcc -c "$here/pvh.S" -o "$out/pvh.o"
LDFLAGS="-nostdlib -static -no-pie -Wl,--build-id=none -Wl,-z,max-page-size=4096 -Wl,-z,noexecstack -Wl,--no-warn-rwx-segments -T $here/guest.ld"
gcc $LDFLAGS -o "$out/standin64.elf" "$out/entry64.o" "$out/guest.o" "$out/virtio.o" "$out/count.o"
gcc $LDFLAGS -o "$out/standin-pvh.elf" "$out/entry64.o" "$out/pvh.o" "$out/guest.o" "$out/virtio.o" "$out/count.o"
objcopy -O binary "$out/standin64.elf" "$out/standin64.bin"
python3 "$here/mkbzimage.py" "$out/standin64.bin" "$out/standin.bzImage"
gcc -c "$here/bench.S" -o "$out/bench.o"
gcc -DIDLE -c "$here/bench.S" -o "$out/bench-idle.o"
gcc $LDFLAGS -o "$out/bench.elf" "$out/bench.o"
gcc $LDFLAGS -o "$out/bench-idle.elf" "$out/bench-idle.o"
