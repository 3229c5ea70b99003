/* PVH entry: 32-bit protected mode, paging off, %ebx = hvm_start_info.
 * Switches to long mode with identity-mapped 2 MiB pages over 4 GiB and
 * calls the same C code as the 64-bit entry, with mode 1. */
    .section .note.Xen, "a", @note
    .balign 4
    .long 4             /* name size */
    .long 4             /* descriptor size */
    .long 18            /* XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .balign 4
    .long pvh_start

    .section .text.start, "ax"
    .code32
    .globl pvh_start
pvh_start:
    cli
    mov %ebx, %esi              /* keep the start info pointer */
    /* Build page tables: PML4 -> PDPT -> 4 page directories. */
    lea pml4, %edi
    lea pdpt, %eax
    or $3, %eax
    mov %eax, (%edi)
    lea pdpt, %edi
    lea pds, %eax
    or $3, %eax
    mov $4, %ecx
1:  mov %eax, (%edi)
    add $0x1000, %eax
    add $8, %edi
    loop 1b
    lea pds, %edi
    xor %eax, %eax
    mov $2048, %ecx
2:  mov %eax, %edx
    or $0x83, %edx
    mov %edx, (%edi)
    movl $0, 4(%edi)
    add $0x200000, %eax
    add $8, %edi
    loop 2b
    /* PAE, CR3, EFER.LME, paging. */
    mov %cr4, %eax
    or $0x20, %eax
    mov %eax, %cr4
    lea pml4, %eax
    mov %eax, %cr3
    mov $0xc0000080, %ecx
    rdmsr
    or $0x100, %eax
    wrmsr
    mov %cr0, %eax
    or $0x80000001, %eax
    mov %eax, %cr0
    lgdt gdt_desc
    ljmp $0x08, $long_mode

    .code64
long_mode:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    lea stack_top(%rip), %rsp
    mov $1, %edi                /* mode 1: PVH */
    mov %esi, %esi              /* zero-extend the start info pointer */
    call guest_main
3:  hlt
    jmp 3b

    .section .rodata
    .balign 8
gdt:
    .quad 0
    .quad 0x00af9b000000ffff    /* 64-bit code */
    .quad 0x00cf93000000ffff    /* data */
gdt_desc:
    .word gdt_desc - gdt - 1
    .long gdt

    .bss
    .balign 4096
pml4: .skip 4096
pdpt: .skip 4096
pds:  .skip 4 * 4096
