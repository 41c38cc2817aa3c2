/* BIOS-style code: hand-written real-mode interrupt handlers in the style of a PC BIOS, driven
 * by C through software interrupts. INT 10h AH=0Eh (teletype into an 80x25 text buffer, CR/LF,
 * scrolling with REP MOVSW/STOSW), INT 16h AH=00h (a keyboard ring buffer), INT 1Ah AH=00h (a
 * tick counter); 16-bit addressing, PUSH/POP, INT/IRET. The IVT is this program's own table
 * (LIDT: the image itself sits at 0000:0000). The screen the handlers draw is compared with
 * the one a C model draws (REPE CMPSW), and the ticks with their count. */
#include "common.h"

#ifndef ROUNDS
#define ROUNDS 40
#endif
#ifdef SMALL
#define LINES 10
#else
#define LINES 25
#endif

#define COLS 80
#define ROWS 25
#define BLANK 0x0720

/* The handlers' state (read and written by the assembly below). */
u16 screen[ROWS * COLS];
u8 cur_row, cur_col;
u16 kbd_buf[16];
u16 kbd_head, kbd_tail; /* byte offsets into kbd_buf */
u32 ticks;

__asm__(
    "    .globl int10, int16, int1a\n"
    /* INT 10h: AH=0Eh writes AL at the cursor (attribute 07h) and advances it. */
    "int10:\n"
    "    cmpb $0x0e, %ah\n"
    "    jne 9f\n"
    "    pushw %ax\n"
    "    pushw %cx\n"
    "    pushw %si\n"
    "    pushw %di\n"
    "    cmpb $13, %al\n"
    "    je 3f\n"
    "    cmpb $10, %al\n"
    "    je 4f\n"
    "    movzbw cur_row, %di\n"
    "    imulw $80, %di, %di\n"
    "    movzbw cur_col, %cx\n"
    "    addw %cx, %di\n"
    "    addw %di, %di\n"
    "    movb $0x07, %ah\n"
    "    movw %ax, screen(%di)\n"
    "    incb cur_col\n"
    "    cmpb $80, cur_col\n"
    "    jb 8f\n"
    "    movb $0, cur_col\n"
    "    jmp 4f\n"
    "3:  movb $0, cur_col\n"
    "    jmp 8f\n"
    "4:  incb cur_row\n"
    "    cmpb $25, cur_row\n"
    "    jb 8f\n"
    "    movb $24, cur_row\n"
    "    movw $screen+160, %si\n"
    "    movw $screen, %di\n"
    "    movw $24*80, %cx\n"
    "    cld\n"
    "    rep movsw\n"
    "    movw $0x0720, %ax\n"
    "    movw $80, %cx\n"
    "    rep stosw\n"
    "8:  popw %di\n"
    "    popw %si\n"
    "    popw %cx\n"
    "    popw %ax\n"
    "9:  iretw\n"
    /* INT 16h: AH=00h takes the next key from the ring buffer into AX (0 when empty). */
    "int16:\n"
    "    pushw %bx\n"
    "    movw kbd_head, %bx\n"
    "    xorw %ax, %ax\n"
    "    cmpw kbd_tail, %bx\n"
    "    je 1f\n"
    "    movw kbd_buf(%bx), %ax\n"
    "    addw $2, %bx\n"
    "    andw $31, %bx\n"
    "    movw %bx, kbd_head\n"
    "1:  popw %bx\n"
    "    iretw\n"
    /* INT 1Ah: AH=00h returns the tick count in CX:DX, AL=0, and counts one tick. */
    "int1a:\n"
    "    movw ticks, %dx\n"
    "    movw ticks+2, %cx\n"
    "    addw $1, ticks\n"
    "    adcw $0, ticks+2\n"
    "    xorb %al, %al\n"
    "    iretw\n");

extern char int10[], int16[], int1a[];

static u32 ivt[256];
static u16 ref[ROWS * COLS];
static u8 ref_row, ref_col;

static inline void tty(u8 c) { __asm__ volatile("int $0x10" : : "a"(0x0E00 | c) : "memory", "cc"); }

static inline u16 getkey(void) {
    u16 k;
    __asm__ volatile("int $0x16" : "=a"(k) : "a"(0) : "memory", "cc");
    return k;
}

static inline u32 get_ticks(void) {
    u16 hi, lo;
    __asm__ volatile("int $0x1a" : "=c"(hi), "=d"(lo) : "a"(0) : "memory", "cc");
    return (u32)hi << 16 | lo;
}

static void set_ivt(u32 base) {
    struct __attribute__((packed)) { u16 limit; u32 base; } d = {0x3FF, base};
    __asm__ volatile("lidtl %0" : : "m"(d) : "memory");
}

/* The C model of the teletype. */
static void model(u8 c) {
    if (c == 13) {
        ref_col = 0;
        return;
    }
    if (c != 10) {
        ref[ref_row * COLS + ref_col] = 0x0700 | c;
        if (++ref_col < COLS) return;
        ref_col = 0;
    }
    if (++ref_row < ROWS) return;
    ref_row = ROWS - 1;
    for (int i = 0; i < (ROWS - 1) * COLS; i++) ref[i] = ref[i + COLS];
    for (int i = 0; i < COLS; i++) ref[(ROWS - 1) * COLS + i] = BLANK;
}

/* Queues one key (a scan code in AH, ASCII in AL, as a BIOS stores them). */
static void press(u8 c) {
    kbd_buf[kbd_tail / 2] = (u16)(c * 3 & 0x7F) << 8 | c;
    kbd_tail = (kbd_tail + 2) & 31;
}

/* Types `text` through the keyboard buffer, eight keys at a time, echoing each key. */
static u32 type(const char *text) {
    u32 bad = 0;
    while (*text) {
        const char *p = text;
        for (int i = 0; i < 8 && *p; i++) press((u8)*p++);
        while (text < p) {
            u16 k = getkey();
            bad |= (k & 0xFF) != (u8)*text;
            tty((u8)k);
            model((u8)k);
            text++;
        }
    }
    return bad | (getkey() != 0);
}

static char *format_u32(char *out, u32 v) {
    char tmp[10];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n) *out++ = tmp[--n];
    return out;
}

u32 workload(void) {
    static const char *const words[] = {"boot ", "sector ", "disk ", "drive ", "A: ", "ready\r\n", "OK "};
    u32 seed = 7, bad = 0, expect_ticks = 0;
    ivt[0x10] = (u32)(u16)(u32)int10;
    ivt[0x16] = (u32)(u16)(u32)int16;
    ivt[0x1A] = (u32)(u16)(u32)int1a;
    for (int i = 0; i < ROWS * COLS; i++) screen[i] = ref[i] = BLANK;
    set_ivt((u32)ivt);
    for (int r = 0; r < ROUNDS; r++) {
        for (int line = 0; line < LINES; line++) {
            char buf[48], *p = format_u32(buf, get_ticks());
            expect_ticks++;
            *p++ = ' ';
            *p = 0;
            bad |= type(buf);
            bad |= type(words[next_random(&seed) % 7]);
            bad |= type(words[next_random(&seed) % 7]);
            bad |= type("\r\n");
        }
    }
    set_ivt(0);
    if (bad) return 1;
    if (ticks != expect_ticks) return 2;
    if (cur_row != ref_row || cur_col != ref_col) return 3;
    /* Compare the two screens with REPE CMPSW. */
    const u16 *a = screen, *b = ref;
    u16 left = ROWS * COLS;
    u8 differ;
    __asm__ volatile("repe cmpsw\n\tsetne %3"
                     : "+S"(a), "+D"(b), "+c"(left), "=q"(differ)
                     :
                     : "cc", "memory");
    return differ ? 4 : 0;
}
