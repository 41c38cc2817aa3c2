/* Sorting: quicksort (recursive, median of three) and insertion sort of the same random
 * arrays; checks that both agree and that the result is ordered. */
#include "common.h"

#ifdef SMALL
#define N 300
#else
#define N 1500
#endif
#ifndef ROUNDS
#define ROUNDS 2
#endif

static u32 a[N], b[N];

static void insertion_sort(u32 *v, int n) {
    for (int i = 1; i < n; i++) {
        u32 x = v[i];
        int j = i - 1;
        while (j >= 0 && v[j] > x) {
            v[j + 1] = v[j];
            j--;
        }
        v[j + 1] = x;
    }
}

static void swap(u32 *x, u32 *y) {
    u32 t = *x;
    *x = *y;
    *y = t;
}

static void quicksort(u32 *v, int lo, int hi) {
    while (hi - lo > 12) {
        int mid = lo + (hi - lo) / 2;
        if (v[mid] < v[lo]) swap(&v[mid], &v[lo]);
        if (v[hi] < v[lo]) swap(&v[hi], &v[lo]);
        if (v[hi] < v[mid]) swap(&v[hi], &v[mid]);
        u32 pivot = v[mid];
        int i = lo, j = hi;
        while (i <= j) {
            while (v[i] < pivot) i++;
            while (v[j] > pivot) j--;
            if (i <= j) swap(&v[i++], &v[j--]);
        }
        if (j - lo < hi - i) {
            quicksort(v, lo, j);
            lo = i;
        } else {
            quicksort(v, i, hi);
            hi = j;
        }
    }
    insertion_sort(v + lo, hi - lo + 1);
}

u32 workload(void) {
    u32 seed = 0x12345678;
    for (int r = 0; r < ROUNDS; r++) {
        u32 sum = 0;
        for (int i = 0; i < N; i++) {
            a[i] = next_random(&seed) % (r & 1 ? 100000u : 0xFFFFFFFFu);
            b[i] = a[i];
            sum += a[i];
        }
        quicksort(a, 0, N - 1);
        insertion_sort(b, N);
        for (int i = 0; i < N; i++) {
            if (a[i] != b[i]) return 1;
            if (i && a[i - 1] > a[i]) return 2;
            sum -= a[i];
        }
        if (sum) return 3;
    }
    return 0;
}
