/*
 * patch.h: ActivationPatching (SPEC 2.2), the interchange intervention of causal mediation
 * analysis, over the data-parallel hooked forward pass (cache.h), and a patching sweep.
 *
 * A clean run over the clean inputs records what each listed module outputs (the last call of
 * a module called twice, as tdhook's caching hook keeps); a patched run over other inputs with
 * the same shape (N, F) or (N, T) replaces those modules' outputs, sample by sample, by the
 * clean ones: fully by default, or through a patch function that sees the module key, the
 * patched run's own output (writable) and the clean output (read-only) of the same samples.
 * Every call of a patched module is replaced by the recorded (last) clean call; the clean run
 * itself is never altered (tdhook's setting hook already fires in the clean pass once the
 * first call of a module called twice is cached, replacing the second call by the first: a
 * quirk not reproduced here; for modules called once both agree). Each module's
 * hook has its own key: tdhook's reference version passed the last key of the list to every
 * patch_fn (SPEC 2.2, late binding); this one does not.
 *
 * Modules are tdhook paths (SPEC 1.1: "linear2", "transformer.h.0", "h[-1]", "<literal>"),
 * relative to the user's model; "" is the root.
 *
 * Rows are split over the ranks as lh_dmat rows are; a rank keeps only the clean activations
 * of its own samples (memory O(N/P x activation size) per module). Results are bit-identical
 * for any rank count with the same batch size (cache.c explains why).
 *
 * Sweep (beyond tdhook; Zhang & Nanda 2023, "Towards best practices of activation patching"):
 * for each module, and optionally each position, a patched run with only that module
 * (position) replaced; metric per sample = the logit difference out[a] - out[b] at the last
 * position (or of a (C) output vector). The effect of a patch is the mean metric over
 * samples, and its normalised effect (mean - mean corrupted) / (mean clean - mean corrupted):
 * 0 = no effect, 1 = the clean behaviour restored. Means are exact sums (xsum.h).
 */
#ifndef LATENTHOOK_PATCH_H
#define LATENTHOOK_PATCH_H

#include <stdbool.h>
#include <stdint.h>
#include <mpi.h>

#include "latenthook/cache.h"
#include "latenthook/dmat.h"
#include "latenthook/h5.h"
#include "latenthook/model.h"
#include "latenthook/status.h"
#include "latenthook/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Replaces (parts of) `output` in place from `clean`: both (b, s...) for the same b samples,
 * same shape. `key` is the module path as listed. Local (runs inside a hook: no MPI). It also
 * runs once on every rank in the probe forward, with one sample and a zero clean row, so that
 * shape errors show on every rank at the same point. */
typedef lh_status (*lh_patch_fn)(const char *key, lh_tensor *output, const lh_tensor *clean,
                                 void *user);

/* Built-ins. Full replacement (user ignored). Pure. */
LH_NODISCARD lh_status lh_patch_replace(const char *key, lh_tensor *output, const lh_tensor *clean,
                                        void *user);

/* Positions [lo, hi) of the position axis (the second last, as reduce.h: (T, C) -> T), all
 * features; user = const lh_patch_positions *. LH_ERR_VALUE for a per-sample vector or a range
 * outside [0, T). Pure. */
typedef struct lh_patch_positions {
  int64_t lo, hi;
} lh_patch_positions;
LH_NODISCARD lh_status lh_patch_replace_positions(const char *key, lh_tensor *output,
                                                  const lh_tensor *clean, void *user);

/* Units (indices into the last axis, negative from the end) at every position; user =
 * const lh_patch_units *. LH_ERR_VALUE for an index outside the axis. Pure. */
typedef struct lh_patch_units {
  int64_t count;
  const int64_t *index;
} lh_patch_units;
LH_NODISCARD lh_status lh_patch_replace_units(const char *key, lh_tensor *output,
                                              const lh_tensor *clean, void *user);

typedef struct lh_patch lh_patch;

/* Registers patching hooks on `modules[0..count)` of `model` (paths, relative). Collective
 * (every rank registers the same). LH_ERR_KEY for an unknown module, naming the closest
 * existing names; LH_ERR_VALUE for an empty list or a module listed twice. The model is
 * borrowed and must outlive the object; its hooks go with lh_patch_destroy. */
LH_NODISCARD lh_status lh_patch_create(MPI_Comm comm, lh_model *model, const char *const *modules,
                                       int64_t count, lh_patch **out);

/* The clean run: records the modules' outputs on `inputs` ("FILE.h5:/dset") and returns the
 * model output (*clean: lh_cache_output gives it, N x E). Collective. Errors of lh_cache_run;
 * LH_ERR_VALUE for a module the forward never calls (a container). A second call records
 * again. */
LH_NODISCARD lh_status lh_patch_record(lh_patch *p, const char *inputs, int64_t batch_size,
                                       bool progress, lh_cache **clean);

/* Checks that the patched inputs have the shape of the clean inputs (else LH_ERR_VALUE naming
 * both shapes), before any forward. A clean dataset that is not 2-D passes (lh_cache_run
 * explains it). Collective. */
LH_NODISCARD lh_status lh_patch_check_inputs(MPI_Comm comm, const char *clean, const char *patched);

/* The patched run on `inputs` (same shape as the clean inputs, else LH_ERR_VALUE saying so):
 * the modules with active[i] (NULL: all) are replaced through fn(user) (fn NULL: full
 * replacement). *patched is the model output reduced by output_reduce (NULL: none).
 * Collective; needs lh_patch_record first. */
LH_NODISCARD lh_status lh_patch_run(lh_patch *p, const char *inputs, const bool *active,
                                    lh_patch_fn fn, void *user, const lh_reduce *output_reduce,
                                    lh_cache **patched);

/* Per-sample shape of module i's recorded output (k dims into shape). Local. */
int lh_patch_shape(const lh_patch *p, int64_t i, int64_t *shape);
int64_t lh_patch_count(const lh_patch *p);
const char *lh_patch_key(const lh_patch *p, int64_t i);

/* Removes the hooks and frees the clean activations; accepts NULL and NULLs the handle.
 * Local. */
void lh_patch_destroy(lh_patch **p);

/* ---- sweep ------------------------------------------------------------------------------- */

typedef struct lh_patch_sweep {
  int64_t M, T, N;     /* modules, positions (0 without per-position runs), samples */
  lh_dmat *clean;      /* N x 1 float64: metric of the clean run */
  lh_dmat *corrupted;  /* N x 1: metric of the unpatched run on the patched inputs */
  lh_dmat *metric;     /* N x M: metric with module m fully replaced */
  lh_dmat *metric_pos; /* N x (M T): [i, m T + t] with position t of module m replaced */
  double clean_mean, corrupted_mean;
  double *mean, *normalised;         /* (M) */
  double *mean_pos, *normalised_pos; /* (M T), NULL without positions */
} lh_patch_sweep;

/* Metric of a model output row: out[a] - out[b] (float32 subtraction, as PyTorch) of a (C)
 * output, or of the last row of a (T, C) output (pass the full row: E = T C, C = cols). Pure. */
double lh_patch_logit_diff(const float *row, int64_t E, int64_t C, int64_t a, int64_t b);

/* Runs the sweep after lh_patch_record: one unpatched run on `inputs`, then one run per
 * module (and per module and position when positions is set; every module must then have a
 * position axis of the same length T). Tokens a, b index the last axis of the output
 * (LH_ERR_VALUE outside it). Collective; *out is filled (free with lh_patch_sweep_free). */
LH_NODISCARD lh_status lh_patch_sweep_run(lh_patch *p, const lh_cache *clean, const char *inputs,
                                          bool positions, int64_t a, int64_t b, bool progress,
                                          lh_patch_sweep *out);

/* Writes /clean_metric, /corrupted_metric (N) float32, /effects_per_sample (M, N) float32,
 * /effects and /normalised_effects (M) float64, and with positions /effects_positions,
 * /normalised_effects_positions (M, T) and /effects_positions_per_sample (M, T, N); module
 * keys and tokens as attributes of /effects. Collective. */
LH_NODISCARD lh_status lh_patch_sweep_write(const lh_patch *p, const lh_patch_sweep *s, int64_t a,
                                            int64_t b, lh_h5_out *o);

/* Frees the results; accepts a zeroed struct. Local. */
void lh_patch_sweep_free(lh_patch_sweep *s);

#ifdef __cplusplus
}
#endif
#endif
