/* A state machine: a tokenizer for a small C-like language run over generated source text,
 * counting identifiers, numbers, operators, strings and comments; the counts are checked
 * against those the generator recorded. */
#include "common.h"

#define TEXT 6000
#ifndef ROUNDS
#define ROUNDS 4
#endif

enum state { START, IDENT, NUMBER, HEX, STRING, ESCAPE, SLASH, LINE_COMMENT, BLOCK_COMMENT, BLOCK_STAR };
enum { T_IDENT, T_NUMBER, T_OP, T_STRING, T_COMMENT, T_KINDS };

static char text[TEXT + 64];

static u32 gen(u32 *seed, u32 *expect) {
    static const char *const pieces[T_KINDS][4] = {
        {"alpha", "x1", "_tmp", "counter"},
        {"12", "0x1F", "7", "65535"},
        {"+", "==", "(", ";"},
        {"\"hi\"", "\"a\\\"b\"", "\"\"", "\"x y\""},
        {"// note\n", "/* c */", "/**/", "/* a*b */"},
    };
    u32 n = 0;
    for (int k = 0; k < T_KINDS; k++) expect[k] = 0;
    while (n < TEXT) {
        u32 r = next_random(seed);
        u32 kind = r % T_KINDS;
        const char *p = pieces[kind][(r >> 8) & 3];
        while (*p) text[n++] = *p++;
        text[n++] = (r >> 12) & 1 ? ' ' : '\n';
        expect[kind]++;
    }
    text[n] = 0;
    return n;
}

static int is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static int is_digit(char c) { return c >= '0' && c <= '9'; }
static int is_hex(char c) { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

static enum state from_start(char c, u32 *count) {
    if (is_alpha(c)) return IDENT;
    if (is_digit(c)) return NUMBER;
    if (c == '"') return STRING;
    if (c == '/') return SLASH;
    if (c == ' ' || c == '\n') return START;
    if (c == '=' || c == '+' || c == '(' || c == ';') count[T_OP]++;
    return START;
}

static void tokenize(const char *s, u32 *count) {
    enum state st = START;
    for (int k = 0; k < T_KINDS; k++) count[k] = 0;
    for (;; s++) {
        char c = *s;
        switch (st) {
        case START: st = from_start(c, count); break;
        case IDENT: if (!is_alpha(c) && !is_digit(c)) { count[T_IDENT]++; st = from_start(c, count); } break;
        case NUMBER: if (c == 'x' && s[-1] == '0') st = HEX; else if (!is_digit(c)) { count[T_NUMBER]++; st = from_start(c, count); } break;
        case HEX: if (!is_hex(c)) { count[T_NUMBER]++; st = from_start(c, count); } break;
        case STRING: if (c == '\\') st = ESCAPE; else if (c == '"') { count[T_STRING]++; st = START; } break;
        case ESCAPE: st = STRING; break;
        case SLASH: if (c == '/') st = LINE_COMMENT; else if (c == '*') st = BLOCK_COMMENT; else { count[T_OP]++; st = from_start(c, count); } break;
        case LINE_COMMENT: if (c == '\n') { count[T_COMMENT]++; st = START; } break;
        case BLOCK_COMMENT: if (c == '*') st = BLOCK_STAR; break;
        case BLOCK_STAR: if (c == '/') { count[T_COMMENT]++; st = START; } else if (c != '*') st = BLOCK_COMMENT; break;
        }
        if (!c) return;
    }
}

u32 workload(void) {
    u32 seed = 99, expect[T_KINDS], got[T_KINDS];
    for (int r = 0; r < ROUNDS; r++) {
        gen(&seed, expect);
        tokenize(text, got);
        /* "==" is one operator piece but two '=' characters: the tokenizer counts characters. */
        for (int k = 0; k < T_KINDS; k++)
            if (k != T_OP && got[k] != expect[k]) return 1 + k;
        if (got[T_OP] < expect[T_OP]) return 10;
    }
    return 0;
}
