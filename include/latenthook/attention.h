/*
 * attention.h: attention rollout (rollout.h) over a dataset, on the data-parallel hooked
 * forward pass, and the attention maps of chosen samples for heatmaps.
 *
 * The modules whose names match the key pattern (default LH_ATTENTION_GPT2_PATTERN: GPT-2's
 * attention dropout, whose output is the attention probabilities (B, H, T, T)) are the layers,
 * in the order the forward calls them (a module called twice is two layers). Their per-sample
 * output must be (H, T, T) or (T, T) (one head), square, with the same H and T in every layer.
 *
 * Samples are split over the ranks as lh_dmat rows are, and run in batches on the global grid
 * of cache.h (bit-identical results for any rank count at a given batch size). Inside each
 * layer's hook the rank folds that layer into the running rollout of each of its samples in
 * the batch (lh_rollout_step), so a rank holds one rollout per sample of its current batch
 * (batch_size x T x T float64) and never a whole layer stack; the forwards stop after the last
 * attention module (the LM head is not computed). After each batch the ranks write their rows
 * of OUT:/rollout (N, T, T) float64 collectively. The chosen samples' maps of the chosen
 * (layer, head) pairs are kept by the rank that owns the sample and sent to rank 0 at the end.
 *
 * Written to the output file (all float64):
 *   /rollout                 (N, T, T); attributes key_pattern, alpha, heads ("all" or
 *                            "[0, 2]"), layers (the module names, JSON list)
 *   /attention/sample_<i>    (L', H', T, T) for each chosen sample i: the chosen layers
 *                            (L') and heads (H'; H' = 1 with head_mean: the mean of all heads)
 *   /attention/layers, /attention/heads   int64 (L'), (H') the indices shown (heads -1: mean)
 */
#ifndef LATENTHOOK_ATTENTION_H
#define LATENTHOOK_ATTENTION_H

#include <stdbool.h>
#include <stdint.h>
#include <mpi.h>

#include "latenthook/h5.h"
#include "latenthook/model.h"
#include "latenthook/rollout.h"
#include "latenthook/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define LH_ATTENTION_GPT2_PATTERN "transformer\\.h\\.\\d+\\.attn\\.attn_dropout$"

typedef struct lh_attention_opts {
  const char *key_pattern; /* relative module names, re.match; default the GPT-2 pattern */
  lh_rollout_opts rollout; /* alpha and the heads averaged in the rollout (default all) */
  const int64_t *samples;  /* global sample indices kept for heatmaps (may repeat); may be NULL */
  int64_t nsamples;
  const int64_t *layers; /* layers shown for those samples (indices in call order); NULL: all */
  int64_t nlayers;
  const int64_t *heads; /* heads shown; NULL: all (ignored with head_mean) */
  int64_t nheads;
  bool head_mean;     /* show the mean of all heads instead of single heads */
  int64_t batch_size; /* samples per forward; default 32 */
  bool progress;      /* progress bar on rank 0 */
} lh_attention_opts;

/* Defaults as commented above. Pure. */
lh_attention_opts lh_attention_defaults(void);

/* What a run found, and the chosen samples' matrices (on rank 0 only; NULL elsewhere). */
typedef struct lh_attention_result {
  int64_t N, T, L, H; /* samples, positions, layers, heads per layer */
  char **layer_names; /* (L) module names in call order (every rank) */
  int64_t nshow_layers, nshow_heads;
  int64_t *show_layers; /* (nshow_layers) layer indices */
  int64_t *show_heads;  /* (nshow_heads) head indices, or {-1} for the mean */
  int64_t nsamples;
  int64_t *samples;  /* (nsamples) as given */
  double *rollout;   /* rank 0: (nsamples, T, T) */
  double *attention; /* rank 0: (nsamples, nshow_layers, nshow_heads, T, T) */
  double *inputs;    /* rank 0: (nsamples, T) the samples' token ids when the model takes
                      * tokens and the attention covers the input positions; else NULL */
  double seconds;    /* the pass, max over ranks */
} lh_attention_result;

/* Runs `model` over every row of `inputs` ("FILE.h5:/dset") on the ranks of comm and writes
 * the datasets listed above into o (o may be NULL: nothing written, only the result).
 * Collective. Errors (agreed over comm; nothing is written to o after the first error, the
 * caller discards it): those of lh_cache_run's inputs (h5.h, not 2-D, token ids, widths);
 * LH_ERR_VALUE for a pattern matching no module that the forward calls (the message lists the
 * modules), an attention output that is not (H, T, T) / (T, T) or changes shape between
 * layers, a sample index outside [0, N), a layer outside [0, L) or a head outside [0, H)
 * (shown or averaged), alpha outside [0, 1], batch_size < 1 (LH_ERR_USAGE), a rollout row
 * that cannot be renormalised; errors of the model and of HDF5. */
LH_NODISCARD lh_status lh_attention_run(MPI_Comm comm, lh_model *model, const char *inputs,
                                        const lh_attention_opts *opts, lh_h5_out *o,
                                        lh_attention_result *out);

/* Frees the result's arrays; accepts a zeroed struct and leaves one. Local. */
void lh_attention_result_free(lh_attention_result *r);

#ifdef __cplusplus
}
#endif
#endif
