/*
 * maxact.h: maximally activating samples of every unit (Chen et al. 2020, "Concept
 * whitening"; the classic "top activating dataset examples" of interpretability work).
 *
 * For every module whose name matches a key pattern (hook.h: relative names, Python re.match),
 * the module's output (B, ..., U) is read as U units (its last dimension). A sample's score
 * for unit u is the unit's largest activation over the middle dimensions (positions): for
 * (B, T, U) the maximum over the T positions, and the position of the maximum is kept (the
 * first position on ties; for (B, H, T, U) the flat index over H * T); for (B, U) the score is
 * the activation and the position is -1. With `absolute`, samples and positions are ranked by
 * |activation| and the signed activation is reported. NaN activations are never selected.
 *
 * Per unit, the k samples with the highest scores are kept, in a total order: score
 * descending, then lower global sample index, then lower position. With fewer than k samples
 * having a (non-NaN) score, the rest of the list is padding: value NaN, sample -1, position -1.
 * A module called several times in one forward counts with its last call (as caching keeps
 * the last call); an output with one row where the batch has several (GPT-2's position
 * embedding) is shared by every sample of the batch.
 *
 * The pass is the data-parallel forward of cache.h (rows split over the ranks, batches on a
 * global grid, one probe forward, early stop after the last hooked call) but nothing is
 * cached: each rank keeps only its own top-k list per unit, O(U k) per module plus one batch,
 * and the lists are merged by one MPI reduction with a user-defined operation. Because the
 * order is total, the merge is exact and the result is identical for any rank count; the
 * activations themselves are bit-identical for a given batch size (cache.h), so the result
 * depends on nothing but the batch size (and only through float rounding).
 */
#ifndef LATENTHOOK_MAXACT_H
#define LATENTHOOK_MAXACT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <mpi.h>

#include "latenthook/h5.h"
#include "latenthook/model.h"
#include "latenthook/status.h"
#include "latenthook/tensor.h"
#include "latenthook/vocab.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lh_maxact_opts {
  const char *key_pattern; /* modules (hook.h, relative names); required */
  int64_t k;               /* samples kept per unit; default 10 */
  bool absolute;           /* rank by |activation|; default false */
  int64_t batch_size;      /* samples per forward on each rank; default 32 */
  bool progress;           /* progress bar on rank 0 */
} lh_maxact_opts;

/* Defaults as commented above. Pure. */
lh_maxact_opts lh_maxact_defaults(void);

typedef struct lh_maxact lh_maxact;

/* Runs `model` over every row of `inputs` ("FILE.h5:/dset", (N, F) features or (N, T) token
 * ids) on the ranks of comm and returns, on every rank, the top-k samples of every unit of
 * every matched module. Collective. Errors (agreed over comm): LH_ERR_USAGE for k < 1 or
 * batch_size < 1; the input errors of lh_cache_run (h5.h, not 2-D, width, token ids); a
 * pattern matching no called module (listing the module names); LH_ERR_VALUE for a matched
 * module whose output has no unit axis (B,); errors of the model. */
LH_NODISCARD lh_status lh_maxact_run(MPI_Comm comm, lh_model *model, const char *inputs,
                                     const lh_maxact_opts *opts, lh_maxact **out);

/* Matched modules, in the model's module order. Local. */
int64_t lh_maxact_count(const lh_maxact *r);
const char *lh_maxact_key(const lh_maxact *r, int64_t i);
/* Per-sample output shape of module i (*k dims into shape; units = shape[k - 1]). Local. */
int lh_maxact_shape(const lh_maxact *r, int64_t i, int64_t *shape);
int64_t lh_maxact_units(const lh_maxact *r, int64_t i);
/* k, N and whether the inputs are token ids (then T = lh_maxact_seq_len). Local. */
int64_t lh_maxact_k(const lh_maxact *r);
int64_t lh_maxact_samples(const lh_maxact *r);
bool lh_maxact_tokens(const lh_maxact *r);
int64_t lh_maxact_seq_len(const lh_maxact *r);
/* The lists of module i, U x k row-major (unit u's rank j at [u k + j]). Borrowed. Local. */
const float *lh_maxact_values(const lh_maxact *r, int64_t i);
const int64_t *lh_maxact_sample_ids(const lh_maxact *r, int64_t i);
const int64_t *lh_maxact_positions(const lh_maxact *r, int64_t i);

/* Writes /<key>/values (U, k) float32, /<key>/samples and /<key>/positions (U, k) int64 for
 * every module, with the key pattern, k and the ranking as attributes of "/" and the module's
 * output shape as an attribute of its group (rank 0 holds the data). Collective. */
LH_NODISCARD lh_status lh_maxact_write(const lh_maxact *r, lh_h5_out *o);

/* Writes the readable table to `path` (rank 0, under a temporary name renamed when complete;
 * nothing is left under either name on failure): a header, then one line per module, unit
 * and rank with the value, sample and position (padding entries are left out), and, when the
 * inputs are token ids and the module's output is (B, T, U) over the input's T positions, the
 * tokens at positions [p - context, p + context] of the sample, the maximising one in
 * brackets ("... the cat [sat] on ..."), decoded by `vocab` when not NULL, else as ids. The
 * tokens of the selected samples only are read from `inputs` (rank 0, one small read per
 * line). Streamed: memory O(context). Collective (status agreed). Errors: LH_ERR_USAGE for
 * context < 0; LH_ERR_IO for an unwritable path or an unreadable inputs file. */
LH_NODISCARD lh_status lh_maxact_write_table(MPI_Comm comm, const lh_maxact *r, const char *inputs,
                                             const lh_vocab *vocab, int64_t context,
                                             const char *path);

/* Frees everything; accepts NULL and NULLs the handle. Local. */
void lh_maxact_destroy(lh_maxact **r);

#ifdef __cplusplus
}
#endif
#endif
