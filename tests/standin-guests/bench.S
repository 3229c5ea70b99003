/* Benchmark stand-in: PVH entry, writes one byte to COM1 and resets
 * through the i8042 (then isa-debug-exit at 0xf4, for QEMU microvm, which
 * has no i8042). Built with -DIDLE it halts forever instead, for RSS. */
    .section .note.Xen, "a", @note
    .balign 4
    .long 4, 4, 18
    .asciz "Xen"
    .balign 4
    .long bench_start

    .section .text.start, "ax"
    .code32
    .globl bench_start, _start
_start:
bench_start:
    mov $0x3f8, %dx
    mov $'X', %al
    out %al, %dx
    mov $'\n', %al
    out %al, %dx
#ifdef IDLE
1:  cli
    hlt
    jmp 1b
#else
    mov $0xfe, %al
    out %al, $0x64
    mov $0x1000, %ecx
2:  pause
    loop 2b
    xor %eax, %eax
    out %al, $0xf4
3:  cli
    hlt
    jmp 3b
#endif
