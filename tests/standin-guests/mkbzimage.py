#!/usr/bin/env python3
"""Wraps a flat 64-bit image (linked at 1 MiB, 64-bit entry at +0x200) in a
minimal bzImage: one setup sector with a Linux boot protocol 2.12 header,
then the protected-mode payload."""
import struct
import sys

payload = open(sys.argv[1], "rb").read()
setup_sects = 1
setup = bytearray(512 * (setup_sects + 1))
setup[0x1F1] = setup_sects
struct.pack_into("<H", setup, 0x1FE, 0xAA55)       # boot_flag
setup[0x202:0x206] = b"HdrS"                       # header
struct.pack_into("<H", setup, 0x206, 0x020C)       # version 2.12
setup[0x211] = 0x01                                # loadflags: LOADED_HIGH
struct.pack_into("<I", setup, 0x214, 0x100000)     # code32_start
struct.pack_into("<I", setup, 0x230, 0x200000)     # kernel_alignment
setup[0x234] = 0                                   # relocatable_kernel
struct.pack_into("<I", setup, 0x238, 4095)         # cmdline_size
struct.pack_into("<I", setup, 0x260, len(payload)) # init_size
open(sys.argv[2], "wb").write(bytes(setup) + payload)
