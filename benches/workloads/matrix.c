/* Matrix multiply: C = A * B computed row-major and again through B's transpose; checks
 * both agree and that A * I = A. */
#include "common.h"

#define N 28
#ifndef ROUNDS
#define ROUNDS 3
#endif

static i32 A[N][N], B[N][N], BT[N][N], C1[N][N], C2[N][N];

static void multiply(i32 (*x)[N], i32 (*y)[N], i32 (*out)[N]) {
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++) {
            i32 s = 0;
            for (int k = 0; k < N; k++) s += x[i][k] * y[k][j];
            out[i][j] = s;
        }
}

static void multiply_transposed(i32 (*x)[N], i32 (*yt)[N], i32 (*out)[N]) {
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++) {
            const i32 *r = x[i], *c = yt[j];
            i32 s = 0;
            for (int k = 0; k < N; k++) s += r[k] * c[k];
            out[i][j] = s;
        }
}

u32 workload(void) {
    u32 seed = 42;
    for (int r = 0; r < ROUNDS; r++) {
        for (int i = 0; i < N; i++)
            for (int j = 0; j < N; j++) {
                A[i][j] = (i32)(next_random(&seed) % 2001) - 1000;
                B[i][j] = (i32)(next_random(&seed) % 2001) - 1000;
            }
        for (int i = 0; i < N; i++)
            for (int j = 0; j < N; j++) BT[j][i] = B[i][j];
        multiply(A, B, C1);
        multiply_transposed(A, BT, C2);
        if (memcmp(C1, C2, sizeof C1)) return 1;
        for (int i = 0; i < N; i++)
            for (int j = 0; j < N; j++) B[i][j] = i == j;
        multiply(A, B, C1);
        if (memcmp(A, C1, sizeof A)) return 2;
    }
    return 0;
}
