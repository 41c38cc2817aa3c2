/* A small interpreter loop: a stack-machine bytecode (push, arithmetic, compare, jumps,
 * locals, calls) running a program that counts primes by trial division and sums a
 * Fibonacci sequence; the results are checked against the same computations in C. */
#include "common.h"

enum op { PUSH, LOAD, STORE, ADD, SUB, MUL, MOD, LT, JZ, JMP, CALL, RET, HALT, DUP, DROP };

#define LIMIT 1400
#define FIBS 40
#ifndef ROUNDS
#define ROUNDS 2
#endif

/* locals: 0 = n, 1 = d, 2 = count, 3 = is_prime; the comments give each line's first index. */
static const i32 primes_program[] = {
    PUSH, 2, STORE, 0, PUSH, 0, STORE, 2,                        /* 0: n = 2, count = 0 */
    LOAD, 0, PUSH, LIMIT, LT, JZ, 71,                            /* 8: while n < LIMIT */
    PUSH, 1, STORE, 3, PUSH, 2, STORE, 1,                        /* 15: is_prime = 1, d = 2 */
    LOAD, 1, DUP, MUL, LOAD, 0, PUSH, 1, ADD, LT, JZ, 55,        /* 23: while d * d < n + 1 */
    LOAD, 0, LOAD, 1, MOD, JZ, 51,                               /* 35: if n % d == 0 */
    LOAD, 1, PUSH, 1, ADD, STORE, 1, JMP, 23,                    /* 42: d++ */
    PUSH, 0, STORE, 3,                                           /* 51: is_prime = 0 */
    LOAD, 2, LOAD, 3, ADD, STORE, 2,                             /* 55: count += is_prime */
    LOAD, 0, PUSH, 1, ADD, STORE, 0, JMP, 8,                     /* 62: n++ */
    LOAD, 2, HALT,                                               /* 71: */
};

/* Sum of fib(k) for k < FIBS (mod 2^32), one CALL/RET per term; locals 0 = a, 1 = b,
 * 2 = sum, 3 = k. */
static const i32 fib_program[] = {
    PUSH, 0, STORE, 0, PUSH, 1, STORE, 1,                        /* 0: a = 0, b = 1 */
    PUSH, 0, STORE, 2, PUSH, 0, STORE, 3,                        /* 8: sum = 0, k = 0 */
    LOAD, 3, PUSH, FIBS, LT, JZ, 34,                             /* 16: while k < FIBS */
    CALL, 37,                                                    /* 23: step() */
    LOAD, 3, PUSH, 1, ADD, STORE, 3, JMP, 16,                    /* 25: k++ */
    LOAD, 2, HALT,                                               /* 34: */
    LOAD, 2, LOAD, 0, ADD, STORE, 2,                             /* 37: step: sum += a */
    LOAD, 1, LOAD, 0, LOAD, 1, ADD, STORE, 1, STORE, 0, RET,     /* 44: (a, b) = (b, a + b) */
};

static i32 run(const i32 *code) {
    i32 stack[64], locals[8], calls[16];
    int sp = 0, csp = 0, pc = 0;
    for (;;) {
        i32 op = code[pc++];
        switch (op) {
        case PUSH: stack[sp++] = code[pc++]; break;
        case LOAD: stack[sp++] = locals[code[pc++]]; break;
        case STORE: locals[code[pc++]] = stack[--sp]; break;
        case ADD: sp--; stack[sp - 1] += stack[sp]; break;
        case SUB: sp--; stack[sp - 1] -= stack[sp]; break;
        case MUL: sp--; stack[sp - 1] *= stack[sp]; break;
        case MOD: sp--; stack[sp - 1] %= stack[sp]; break;
        case LT: sp--; stack[sp - 1] = stack[sp - 1] < stack[sp]; break;
        case JZ: if (!stack[--sp]) pc = code[pc]; else pc++; break;
        case JMP: pc = code[pc]; break;
        case CALL: calls[csp++] = pc + 1; pc = code[pc]; break;
        case RET: pc = calls[--csp]; break;
        case DUP: stack[sp] = stack[sp - 1]; sp++; break;
        case DROP: sp--; break;
        case HALT: return stack[sp - 1];
        default: return -1;
        }
    }
}

static i32 primes_in_c(void) {
    i32 count = 0;
    for (i32 n = 2; n < LIMIT; n++) {
        i32 prime = 1;
        for (i32 d = 2; d * d < n + 1; d++)
            if (n % d == 0) { prime = 0; break; }
        count += prime;
    }
    return count;
}

static u32 fib_in_c(void) {
    u32 a = 0, b = 1, sum = 0;
    for (int k = 0; k < FIBS; k++) {
        u32 t = a + b;
        sum += a;
        a = b;
        b = t;
    }
    return sum;
}

u32 workload(void) {
    for (int r = 0; r < ROUNDS; r++) {
        if (run(primes_program) != primes_in_c()) return 1;
        if ((u32)run(fib_program) != fib_in_c()) return 2;
    }
    return 0;
}
