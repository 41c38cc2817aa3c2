/* Start-up stub of the compiled-C workloads: flat real mode (all segments 0), stack below
 * 64 KiB, .bss cleared, then workload(); its result goes to the debug-exit port 0xF4
 * (0 = every self-check passed), and hlt stops a machine without that port. */
    .code16
    .section .text.start, "ax"
    .globl _start
_start:
    cli
    cld
    xorw %ax, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movw %ax, %fs
    movw %ax, %gs
    movl $0xFFF0, %esp
    movl $__bss_start, %edi
    movl $_end, %ecx
    subl %edi, %ecx
    xorb %al, %al
    rep stosb
    calll workload
    outl %eax, $0xF4
1:  hlt
    jmp 1b
    .section .note.GNU-stack, "", @progbits
