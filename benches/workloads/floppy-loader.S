/* A boot sector that lets a BIOS-based machine (QEMU with SeaBIOS) run a workload image in
 * picoqemu's raw layout: it reads the sectors after itself from the boot floppy to
 * 1000:0000 one at a time (CHS, 18 sectors per track, 2 heads), copies them to 0000:0000 and
 * jumps there. The sector count is patched into `sectors` by scripts/qemu-workloads.py. */
    .code16
    .globl _start
_start:
    cli
    xorw %ax, %ax
    movw %ax, %ds
    movw %ax, %ss
    movw $0x7C00, %sp
    movb %dl, drive
    movw $0x1000, %ax
    movw %ax, %es
    xorw %bx, %bx
    movw $2, %cx            /* cylinder 0, sector 2 */
    xorb %dh, %dh           /* head 0 */
    movw sectors, %si
next:
    testw %si, %si
    jz copy
    movw $0x0201, %ax       /* read one sector */
    movb drive, %dl
    pushw %cx
    pushw %dx
    int $0x13
    popw %dx
    popw %cx
    jc fail
    addw $512, %bx
    decw %si
    incb %cl
    cmpb $19, %cl
    jb next
    movb $1, %cl
    xorb $1, %dh
    jnz next
    incb %ch
    jmp next
copy:
    movw sectors, %cx
    shlw $8, %cx            /* words */
    pushw %es
    popw %ds
    xorw %si, %si
    xorw %ax, %ax
    movw %ax, %es
    xorw %di, %di
    cld
    rep movsw
    ljmp $0, $0
fail:
    movb $0xEE, %al
    outb %al, $0xF4
    hlt
drive:
    .byte 0
    .org 508
sectors:
    .word 0
    .byte 0x55, 0xAA
