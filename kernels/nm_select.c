/* N:M selection on the CPU: in every row of m values, keep the n largest |values|, ties keeping the
 * earlier position. One pass over the weight: the row's m magnitudes are loaded once and ranked by
 * the m(m-1)/2 pairwise comparisons, in registers. sparsitylab/sparsify/native.py compiles this file
 * with the system C compiler and calls it through ctypes; the PyTorch paths of
 * sparsitylab.sparsify.masks.top_n_per_group and sparsitylab.reparam.nm compute the same results
 * (the tests compare them bit for bit).
 *
 * rank_i = #{j < i : |g_j| >= |g_i|} + #{j > i : !(|g_i| >= |g_j|)}, kept when rank_i < n. Written
 * with the PyTorch path's comparisons, so a NaN ranks exactly as it does there.
 *
 * nm_select_*: the keep-mask and, when `product` is not NULL, STE's forward W ⊙ E (row * keep, so a
 * pruned negative weight gives -0.0 and a pruned infinity NaN, as the PyTorch product does) in the
 * same pass; then it returns 1 when a row holds a NaN (the training forward refuses it), else 0.
 * nm_refine_*: SR-STE's gradient G + decay * (W - W ⊙ E), the PyTorch path's operations in its order.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#define MAX_M 16

/* m = 4, float32, four groups at a time with GCC/Clang vector extensions: the 16 values are
 * transposed so that lane g of A_i holds entry i of group g, and the six comparisons and four ranks
 * of the formula are lane-wise. The ranks come out as one 32-bit lane per group whose four bytes are
 * the group's keep flags (little-endian), and the product is transposed back. Measured on one
 * thread of this project's CPU, a 784x784 weight: the mask alone as fast as one pass of |w| into a
 * buffer (the memory floor), mask and product 1.5x that; the scalar loop below, which the compiler
 * vectorises with generic shuffles, 2.4x for the mask alone. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ && \
    (defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 12))
#define HAVE_BLOCK4 1
typedef float v4f __attribute__((vector_size(16)));
typedef int32_t v4i __attribute__((vector_size(16)));
#define SHUFFLE(a, b, i, j, k, l) __builtin_shufflevector(a, b, i, j, k, l)

/* (x0, x1, x2, x3) rows of a 4x4 block -> its columns, in place */
static inline void transpose4(v4f *x0, v4f *x1, v4f *x2, v4f *x3) {
    v4f t0 = SHUFFLE(*x0, *x1, 0, 4, 1, 5), t1 = SHUFFLE(*x0, *x1, 2, 6, 3, 7);
    v4f t2 = SHUFFLE(*x2, *x3, 0, 4, 1, 5), t3 = SHUFFLE(*x2, *x3, 2, 6, 3, 7);
    *x0 = SHUFFLE(t0, t2, 0, 1, 4, 5);
    *x1 = SHUFFLE(t0, t2, 2, 3, 6, 7);
    *x2 = SHUFFLE(t1, t3, 0, 1, 4, 5);
    *x3 = SHUFFLE(t1, t3, 2, 3, 6, 7);
}

/* groups g[0..15] (four of 4); returns a lane mask of the NaNs seen */
static inline v4i block4_f32(const float *g, int n, uint8_t *keep, float *product) {
    const v4i magnitude = {0x7fffffff, 0x7fffffff, 0x7fffffff, 0x7fffffff};
    const v4i one = {0x3f800000, 0x3f800000, 0x3f800000, 0x3f800000}; /* 1.0f */
    const v4i bit = {1, 1, 1, 1}, limit = {n, n, n, n};
    v4f e0, e1, e2, e3;
    memcpy(&e0, g, 16);
    memcpy(&e1, g + 4, 16);
    memcpy(&e2, g + 8, 16);
    memcpy(&e3, g + 12, 16);
    transpose4(&e0, &e1, &e2, &e3);
    v4f a0 = (v4f)((v4i)e0 & magnitude), a1 = (v4f)((v4i)e1 & magnitude);
    v4f a2 = (v4f)((v4i)e2 & magnitude), a3 = (v4f)((v4i)e3 & magnitude);
    /* a comparison is -1 where true: rank_0 = 3 - c01 - c02 - c03 becomes 3 + c01 + c02 + c03 */
    v4i c01 = a0 >= a1, c02 = a0 >= a2, c03 = a0 >= a3;
    v4i c12 = a1 >= a2, c13 = a1 >= a3, c23 = a2 >= a3;
    v4i k0 = (3 + c01 + c02 + c03) < limit, k1 = (2 - c01 + c12 + c13) < limit;
    v4i k2 = (1 - c02 - c12 + c23) < limit, k3 = (0 - c03 - c13 - c23) < limit;
    v4i bytes = (k0 & bit) | ((k1 & bit) << 8) | ((k2 & bit) << 16) | ((k3 & bit) << 24);
    memcpy(keep, &bytes, 16);
    if (product) {
        v4f p0 = e0 * (v4f)(k0 & one), p1 = e1 * (v4f)(k1 & one);
        v4f p2 = e2 * (v4f)(k2 & one), p3 = e3 * (v4f)(k3 & one);
        transpose4(&p0, &p1, &p2, &p3);
        memcpy(product, &p0, 16);
        memcpy(product + 4, &p1, 16);
        memcpy(product + 8, &p2, 16);
        memcpy(product + 12, &p3, 16);
    }
    return (e0 != e0) | (e1 != e1) | (e2 != e2) | (e3 != e3);
}
#endif

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
    /* the product and the NaN check as a second pass (vectorised) */                          \
    static int NAME##_product(const T *rows, int64_t size, const uint8_t *keep, T *product) {   \
        int seen_nan = 0;                                                                       \
        for (int64_t i = 0; i < size; i++) {                                                    \
            product[i] = rows[i] * (T)keep[i];                                                  \
            seen_nan |= rows[i] != rows[i];                                                     \
        }                                                                                       \
        return seen_nan;                                                                        \
    }                                                                                           \
    static int NAME##_generic(const T *rows, int64_t count, int m, int n, uint8_t *keep,       \
                              T *product) {                                                     \
        if (m == 4)                                                                             \
            NAME##_m4(rows, count, n, keep);                                                    \
        else                                                                                    \
            for (int64_t r = 0; r < count; r++) NAME##_row(rows + m * r, m, n, keep + m * r);   \
        return product ? NAME##_product(rows, count * m, keep, product) : 0;                    \
    }

SELECT(nm_select_f64, double, fabs)
SELECT(nm_select_f32, float, fabsf)

#define REFINE(NAME, T)                                                                          \
    void NAME(const T *grad, const T *w, const uint8_t *keep, int64_t size, T decay, T *out) {  \
        for (int64_t i = 0; i < size; i++)                                                      \
            out[i] = grad[i] + decay * (w[i] - w[i] * (T)keep[i]);                              \
    }

REFINE(nm_refine_f64, double)
REFINE(nm_refine_f32, float)

/* rows: count × m values, row-major; keep: count × m bytes (0 or 1); product: NULL or count × m
   values. */

int nm_select_f64(const double *rows, int64_t count, int m, int n, uint8_t *keep,
                  double *product) {
    return nm_select_f64_generic(rows, count, m, n, keep, product);
}

int nm_select_f32(const float *rows, int64_t count, int m, int n, uint8_t *keep, float *product) {
#ifdef HAVE_BLOCK4
    if (m == 4) {
        v4i seen = {0, 0, 0, 0};
        int64_t blocked = count - count % 4;
        if (product) /* two loops: in each, block4_f32 inlines with its product branch resolved */
            for (int64_t r = 0; r < blocked; r += 4)
                seen |= block4_f32(rows + 4 * r, n, keep + 4 * r, product + 4 * r);
        else
            for (int64_t r = 0; r < blocked; r += 4)
                seen |= block4_f32(rows + 4 * r, n, keep + 4 * r, 0);
        int tail = nm_select_f32_generic(rows + 4 * blocked, count - blocked, 4, n,
                                         keep + 4 * blocked, product ? product + 4 * blocked : 0);
        return tail | (product && (seen[0] | seen[1] | seen[2] | seen[3]) != 0);
    }
#endif
    return nm_select_f32_generic(rows, count, m, n, keep, product);
}
