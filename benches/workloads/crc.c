/* Checksums: table-driven CRC-32 and a bitwise CRC-32 of the same buffer must agree, and
 * Adler-32 of the buffer must match a second, blockwise computation. */
#include "common.h"

#define LEN 4096
#ifndef ROUNDS
#define ROUNDS 3
#endif

static u8 buf[LEN];
static u32 table[256];

static void make_table(void) {
    for (u32 n = 0; n < 256; n++) {
        u32 c = n;
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        table[n] = c;
    }
}

static u32 crc_table(const u8 *p, u32 n) {
    u32 c = 0xFFFFFFFFu;
    while (n--) c = table[(c ^ *p++) & 0xFF] ^ (c >> 8);
    return ~c;
}

static u32 crc_bitwise(const u8 *p, u32 n) {
    u32 c = 0xFFFFFFFFu;
    for (u32 i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1)));
    }
    return ~c;
}

static u32 adler(const u8 *p, u32 n) {
    u32 a = 1, b = 0;
    for (u32 i = 0; i < n; i++) {
        a = (a + p[i]) % 65521;
        b = (b + a) % 65521;
    }
    return (b << 16) | a;
}

static u32 adler_blocks(const u8 *p, u32 n) {
    u32 a = 1, b = 0;
    while (n) {
        u32 k = n < 512 ? n : 512;
        n -= k;
        while (k--) {
            a += *p++;
            b += a;
        }
        a %= 65521;
        b %= 65521;
    }
    return (b << 16) | a;
}

u32 workload(void) {
    u32 seed = 0xC0FFEE;
    make_table();
    /* The CRC-32 of "123456789" is the standard check value. */
    if (crc_table((const u8 *)"123456789", 9) != 0xCBF43926u) return 1;
    for (int r = 0; r < ROUNDS; r++) {
        for (int i = 0; i < LEN; i++) buf[i] = (u8)next_random(&seed);
        if (crc_table(buf, LEN) != crc_bitwise(buf, LEN)) return 2;
        if (adler(buf, LEN) != adler_blocks(buf, LEN)) return 3;
    }
    return 0;
}
