/* One pass of the bracketed exact top-k (sparsitylab/sparsify/masks.py, _keep_bracketed): every
 * score above `hi` is kept, every score in [lo, hi] is a candidate whose index is listed in order,
 * every other score is pruned; where `alive` (optional) is 0 the entry is pruned and never a
 * candidate. The PyTorch path does the same with two comparisons, two ANDs and a nonzero, each a
 * pass over all scores; sparsitylab/sparsify/native.py compiles this file and the tests compare
 * the two paths. Scores hold no NaN (the callers refuse it). Returns the number of candidates.
 */
#include <stdint.h>

#define BAND(NAME, T)                                                                            \
    int64_t NAME(const T *scores, const uint8_t *alive, int64_t n, T lo, T hi, uint8_t *keep,   \
                 int64_t *band, int64_t *kept_above) {                                          \
        int64_t count = 0, above = 0;                                                           \
        for (int64_t base = 0; base < n; base += 64) {                                          \
            /* a branch-free pass over 64 scores (the compiler vectorises it) sets keep and a  \
               flag per candidate; a branch-free compaction then lists the candidates */       \
            int width = n - base < 64 ? (int)(n - base) : 64;                                   \
            uint8_t candidate[64];                                                              \
            for (int j = 0; j < width; j++) {                                                   \
                T s = scores[base + j];                                                         \
                uint8_t live = alive == 0 ? 1 : alive[base + j];                                \
                uint8_t is_above = live & (s > hi);                                             \
                keep[base + j] = is_above;                                                      \
                above += is_above;                                                              \
                candidate[j] = live & !is_above & (s >= lo);                                    \
            }                                                                                   \
            for (int j = 0; j < width; j++) { /* count <= base + j < n: always inside band */  \
                band[count] = base + j; /* written always, kept only for a candidate */        \
                count += candidate[j];                                                          \
            }                                                                                   \
        }                                                                                       \
        *kept_above = above;                                                                    \
        return count;                                                                           \
    }

BAND(band_select_f32, float)
BAND(band_select_f64, double)
