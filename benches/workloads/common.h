/* Shared by the compiled-C workloads (issue 12): fixed-width types, port output, the
 * freestanding memory functions gcc may call, and a deterministic PRNG.
 * Built with gcc -m16 -O2 -ffreestanding: 16-bit real mode, flat 64 KiB, 32-bit registers.
 * -DSMALL -DROUNDS=1 gives the quick variant the tests run on KVM's slow emulator. */
#ifndef WORKLOAD_COMMON_H
#define WORKLOAD_COMMON_H

typedef unsigned int u32;
typedef int i32;
typedef unsigned short u16;
typedef unsigned char u8;

/* Each workload defines this: returns 0 when its self-checks pass, else a failure code. */
u32 workload(void);

static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }

void *memcpy(void *dst, const void *src, unsigned n);
void *memset(void *dst, int c, unsigned n);
int memcmp(const void *a, const void *b, unsigned n);
unsigned strlen(const char *s);

/* xorshift32: the same sequence on every run. */
static inline u32 next_random(u32 *state) {
    u32 x = *state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *state = x;
    return x;
}

#endif
