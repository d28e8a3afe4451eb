/*
 * grid.h (private): the data-parallel forward pass over the global batch grid, shared by
 * cache.c, steer.c, maxact.c and attention.c, and the checks of its inputs.
 *
 * The rows of an (N, W) inputs dataset are split over the ranks in blocks (partition.h).
 * Batches are cut on a global grid, batch j = rows [j bs, (j + 1) bs), and every forward runs
 * a whole global batch, the rows of other ranks replaced by zeros: each sample then sits at
 * the same place in the same GEMM shapes whatever the rank count, so the results are
 * bit-identical for any P (BLAS kernels may round a row differently by its position in a
 * block or by the row count). The price is at most two part-filled batches per rank. Every
 * rank runs as many rounds as the rank with the most batches; a rank past its last batch
 * joins the collective read with an empty selection and runs no forward. Errors are agreed
 * after every round, so a bad token on one rank stops all ranks at the same point.
 *
 * The callers keep only their per-batch work, as callbacks (grouped with their user data in
 * lh_grid_ops): set up the hooks' view of the round, use the model output, and a collective
 * step after each agreed round (e.g. writing the round's rows).
 */
#ifndef LH_LATENT_GRID_H
#define LH_LATENT_GRID_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <mpi.h>

#include "latenthook/h5.h"
#include "latenthook/model.h"
#include "latenthook/status.h"
#include "latenthook/tensor.h"
#include "latenthook/timer.h"

/* One round of the pass as a callback sees it. */
typedef struct lh_grid_batch {
  int64_t round;        /* 0, 1, ... */
  int64_t g0, gsz;      /* the global batch, rows [g0, g0 + gsz); gsz = 0 past this rank's
                         * last batch (no forward this round) */
  int64_t lo, hi;       /* the global rows of it this rank owns, [lo, hi); lo = hi: none */
  const float *in;      /* (gsz, W) the batch's inputs, the rows of other ranks zero */
  const lh_tensor *out; /* the model output over the whole batch (gsz, ...); NULL but in
                         * `after` */
} lh_grid_batch;

/* A round's setup, before its rows are read: e.g. the rows the hooks keep. Local, cannot
 * fail. */
typedef void lh_grid_begin_fn(const lh_grid_batch *b, void *user);

/* Per-batch work. `after`: Local, called after a successful forward of a non-empty batch (its
 * failure is agreed with the forward's). `agreed`: Collective, called every round on every
 * rank once the round's status is agreed; it agrees its own failures. */
typedef lh_status lh_grid_fn(const lh_grid_batch *b, void *user);

typedef struct lh_grid_ops {
  lh_grid_begin_fn *begin; /* or NULL */
  lh_grid_fn *after;       /* or NULL */
  lh_grid_fn *agreed;      /* or NULL */
  void *user;              /* handed to the callbacks */
  const char *progress;    /* label of the progress bar ("forward"), NULL: no bar */
  lh_event event;          /* timing event around the whole pass */
} lh_grid_ops;

/* The global batch at row g0 of the grid of bs rows over N samples, rows [g0, g0 + *gsz), and
 * the rows [*lo, *hi) of it that a rank owning rows [off, off + n) holds (*lo >= *hi: none).
 * Pure. */
static inline void lh_grid_slice(int64_t N, int64_t bs, int64_t off, int64_t n, int64_t g0,
                                 int64_t *gsz, int64_t *lo, int64_t *hi) {
  *gsz = bs < N - g0 ? bs : N - g0;
  *lo = off > g0 ? off : g0;
  *hi = off + n < g0 + *gsz ? off + n : g0 + *gsz;
}

/* Checks that the inputs dataset is what the model takes: (N, T) integer token ids with
 * 1 <= T <= n_positions, or (N, F) features with F the model's input width. Stores the row
 * width (T or F) in *W. Local (the same answer on every rank: the header is). */
LH_NODISCARD lh_status lh_grid_check_inputs(const lh_model *m, const lh_h5_info *in, int64_t *W);

/* "linear1, linear2, ..." (at most ~40 module names, with the "td_module.module." prefix when
 * not `relative`) into buf, for messages. Pure. */
void lh_grid_list_modules(const lh_model *m, bool relative, char *buf, size_t cap);

/* Runs the model over every row of the inputs dataset d (opened on comm, checked by
 * lh_grid_check_inputs; `inputs` names it in messages) on the global grid of batches of bs
 * rows, calling ops' callbacks. buf is the caller's input buffer of at least bs * W floats.
 * Times the pass under ops->event (not ended on failure) and, if `seconds` is not NULL,
 * stores this rank's wall time of the pass there. Collective; a failure of the read, the
 * forward or `after` on any rank is prefixed with `inputs` and returned on every rank. */
LH_NODISCARD lh_status lh_grid_run(MPI_Comm comm, lh_model *model, lh_h5_dset *d,
                                   const char *inputs, int64_t bs, float *buf,
                                   const lh_grid_ops *ops, double *seconds);

#endif
