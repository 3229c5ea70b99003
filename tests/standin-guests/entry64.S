/* 64-bit entry through the Linux boot protocol: long mode, paging on,
 * %rsi = the zero page (struct boot_params). */
    .section .head, "ax"
    .code64
    .fill 0x200, 1, 0x90
    .globl _start
_start:
    cli
    lea stack_top(%rip), %rsp
    mov %rsi, %rsi
    xor %edi, %edi          /* mode 0: Linux boot protocol */
    call guest_main
1:  hlt
    jmp 1b

    .bss
    .balign 16
stack: .skip 16384
    .globl stack_top
stack_top:
