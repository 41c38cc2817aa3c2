/* String handling: building lines with a decimal formatter, reversing, searching with a
 * naive and a Horspool matcher (which must agree), upper-casing and comparing. */
#include "common.h"

#define LINES 220
#ifndef ROUNDS
#define ROUNDS 3
#endif

static char text[LINES * 24 + 1];

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

static void reverse(char *s, unsigned n) {
    for (unsigned i = 0, j = n - 1; i < j; i++, j--) {
        char t = s[i];
        s[i] = s[j];
        s[j] = t;
    }
}

static u32 count_naive(const char *hay, const char *needle) {
    unsigned n = strlen(hay), m = strlen(needle);
    u32 hits = 0;
    for (unsigned i = 0; i + m <= n; i++)
        if (!memcmp(hay + i, needle, m)) hits++;
    return hits;
}

static u32 count_horspool(const char *hay, const char *needle) {
    unsigned n = strlen(hay), m = strlen(needle), shift[256];
    u32 hits = 0;
    for (int c = 0; c < 256; c++) shift[c] = m;
    for (unsigned i = 0; i + 1 < m; i++) shift[(u8)needle[i]] = m - 1 - i;
    for (unsigned i = 0; i + m <= n; i += shift[(u8)hay[i + m - 1]]) {
        unsigned j = m;
        while (j && hay[i + j - 1] == needle[j - 1]) j--;
        if (!j) hits++;
    }
    return hits;
}

static void upper(char *s) {
    for (; *s; s++)
        if (*s >= 'a' && *s <= 'z') *s = (char)(*s - 32);
}

u32 workload(void) {
    static const char *const needles[] = {"12", "line 7", "99\n", "ENIL", "0"};
    u32 seed = 3;
    for (int r = 0; r < ROUNDS; r++) {
        char *p = text;
        for (int i = 0; i < LINES; i++) {
            const char *word = "line ";
            while (*word) *p++ = *word++;
            p = format_u32(p, next_random(&seed) % 100000);
            *p++ = '\n';
        }
        *p = 0;
        unsigned len = strlen(text);
        if (len != (unsigned)(p - text)) return 1;
        for (unsigned k = 0; k < sizeof needles / sizeof needles[0]; k++)
            if (count_naive(text, needles[k]) != count_horspool(text, needles[k])) return 2 + k;
        if (count_naive(text, "line ") != LINES) return 8;
        reverse(text, len);
        upper(text);
        if (count_horspool(text, " ENIL") != LINES) return 9;
        reverse(text, len);
        if (memcmp(text, "LINE ", 5)) return 10;
    }
    return 0;
}
