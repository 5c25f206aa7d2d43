/* N:M selection on the CPU: in every row of m values, keep the n largest |values|, ties keeping the
 * earlier position. One pass over the weight: the row's m magnitudes are loaded once and ranked by
 * the m(m-1)/2 pairwise comparisons, in registers. sparsitylab/sparsify/native.py compiles this file
 * with the system C compiler and calls it through ctypes; the PyTorch path of
 * sparsitylab.sparsify.masks.top_n_per_group computes the same mask (the tests compare the two).
 *
 * rank_i = #{j < i : |g_j| >= |g_i|} + #{j > i : !(|g_i| >= |g_j|)}, kept when rank_i < n. Written
 * with the PyTorch path's comparisons, so a NaN ranks exactly as it does there.
 */
#include <math.h>
#include <stdint.h>

#define MAX_M 16

#define SELECT(NAME, T, ABS)                                                                     \
    static inline void NAME##_row(const T *row, int m, int n, uint8_t *keep) {                  \
        T a[MAX_M];                                                                             \
        int rank[MAX_M];                                                                        \
        for (int i = 0; i < m; i++) {                                                           \
            a[i] = ABS(row[i]);                                                                 \
            rank[i] = 0;                                                                        \
        }                                                                                       \
        for (int i = 0; i < m; i++)                                                             \
            for (int j = i + 1; j < m; j++) {                                                   \
                int earlier_wins = a[i] >= a[j];                                                \
                rank[j] += earlier_wins;                                                        \
                rank[i] += !earlier_wins;                                                       \
            }                                                                                   \
        for (int i = 0; i < m; i++) keep[i] = rank[i] < n;                                      \
    }                                                                                           \
    /* m = 4 written out: the six comparisons and four ranks of the formula above, branch-free, \
       which the compiler vectorises across groups (about 2.5x the generic loop at -O3). */      \
    static void NAME##_m4(const T *rows, int64_t count, int n, uint8_t *keep) {                 \
        for (int64_t r = 0; r < count; r++) {                                                   \
            const T *g = rows + 4 * r;                                                          \
            T a0 = ABS(g[0]), a1 = ABS(g[1]), a2 = ABS(g[2]), a3 = ABS(g[3]);                   \
            int c01 = a0 >= a1, c02 = a0 >= a2, c03 = a0 >= a3;                                 \
            int c12 = a1 >= a2, c13 = a1 >= a3, c23 = a2 >= a3;                                 \
            uint8_t *k = keep + 4 * r;                                                          \
            k[0] = 3 - c01 - c02 - c03 < n;                                                     \
            k[1] = c01 + 2 - c12 - c13 < n;                                                     \
            k[2] = c02 + c12 + 1 - c23 < n;                                                     \
            k[3] = c03 + c13 + c23 < n;                                                         \
        }                                                                                       \
    }                                                                                           \
    /* rows: count × m values, row-major; keep: count × m bytes (0 or 1). */                    \
    void NAME(const T *rows, int64_t count, int m, int n, uint8_t *keep) {                      \
        if (m == 4) {                                                                           \
            NAME##_m4(rows, count, n, keep);                                                    \
            return;                                                                             \
        }                                                                                       \
        for (int64_t r = 0; r < count; r++) NAME##_row(rows + m * r, m, n, keep + m * r);       \
    }

SELECT(nm_select_f32, float, fabsf)
SELECT(nm_select_f64, double, fabs)
