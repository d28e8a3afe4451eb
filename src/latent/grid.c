/*
 * grid.c: the forward pass over the global batch grid and its input checks (grid.h).
 *
 * One copy of what cache.c, steer.c, maxact.c and attention.c each carried: the rounds loop
 * (rounds = max over ranks of this rank's batch count; per round the global batch, this
 * rank's slice of it, a zero-filled input buffer, the collective read of the slice, one
 * forward over the whole batch, the callers' per-batch work, one agreement), the progress bar
 * and the timing event around it.
 */
#include <stdio.h>
#include <string.h>

#include "core/check.h"
#include "latent/grid.h"
#include "latenthook/interrupt.h"
#include "latenthook/comm.h"
#include "latenthook/partition.h"
#include "latenthook/progress.h"

lh_status lh_grid_check_inputs(const lh_model *m, const lh_h5_info *in, int64_t *W) {
  char ty[32];
  const bool tokens = lh_model_input_kind(m) == LH_INPUT_TOKENS;
  if (in->ndims != 2)
    return LH_ERROR(LH_ERR_VALUE, "%s:%s: expected a 2-D dataset (N, %s), got %d dimensions",
                    in->addr.file, in->addr.path, tokens ? "T) of token ids" : "F) of features",
                    in->ndims);
  const int64_t width = lh_model_input_width(m);
  if (tokens) {
    if (in->cls == LH_H5_FLOAT)
      return LH_ERROR(LH_ERR_VALUE, "%s:%s: expected integer token ids, got %s", in->addr.file,
                      in->addr.path, lh_h5_type_name(in, ty, sizeof ty));
    if (in->dims[1] < 1 || in->dims[1] > width)
      return LH_ERROR(LH_ERR_VALUE,
                      "%s:%s: sequences of %lld tokens, the model takes 1 to %lld (n_positions)",
                      in->addr.file, in->addr.path, (long long)in->dims[1], (long long)width);
  } else if (in->dims[1] != width) {
    return LH_ERROR(LH_ERR_VALUE, "%s:%s: rows of %lld features, the model expects %lld",
                    in->addr.file, in->addr.path, (long long)in->dims[1], (long long)width);
  }
  *W = in->dims[1];
  return LH_OK;
}

void lh_grid_list_modules(const lh_model *m, bool relative, char *buf, size_t cap) {
  size_t n = 0;
  buf[0] = '\0';
  int64_t count = lh_model_module_count(m);
  for (int64_t i = 1; i < count && n + 1 < cap; i++) {
    if (i > 40) {
      snprintf(buf + n, cap - n, ", ... (%lld modules)", (long long)count - 1);
      break;
    }
    n += (size_t)snprintf(buf + n, cap - n, "%s%s%s", i > 1 ? ", " : "",
                          relative ? "" : "td_module.module.", lh_model_module_name(m, i));
  }
}

lh_status lh_grid_run(MPI_Comm comm, lh_model *model, lh_h5_dset *d, const char *inputs,
                      int64_t bs, float *buf, const lh_grid_ops *ops, double *seconds) {
  lh_status st = LH_OK, local = LH_OK;
  int P, rank;
  MPI_Comm_size(comm, &P);
  MPI_Comm_rank(comm, &rank);
  const lh_h5_info *in = lh_h5_dset_info(d);
  const int64_t N = in->dims[0], W = in->dims[1];
  const int64_t n = lh_part_count(N, P, rank), off = lh_part_offset(N, P, rank);
  lh_progress bar;
  bool bar_on = false;

  /* this rank's batches are j0 .. j0 + mine - 1; every rank runs the most any rank has */
  const int64_t j0 = n ? off / bs : 0, mine = n ? (off + n - 1) / bs - j0 + 1 : 0;
  int64_t rounds = mine;
  MPI_Allreduce(MPI_IN_PLACE, &rounds, 1, MPI_INT64_T, MPI_MAX, comm);
  if (ops->progress) {
    lh_progress_start(&bar, rank, ops->progress, "samples", N);
    bar_on = true;
  }
  const double t0 = MPI_Wtime();
  lh_event_begin(ops->event);
  for (int64_t r = 0; r < rounds; r++) {
    lh_grid_batch b = {.round = r, .in = buf, .out = NULL};
    b.g0 = (j0 + r) * bs;
    if (r < mine) {
      lh_grid_slice(N, bs, off, n, b.g0, &b.gsz, &b.lo, &b.hi);
    } else { /* past this rank's batches: an empty read, no forward */
      b.gsz = 0;
      b.lo = b.hi = off;
    }
    if (ops->begin) ops->begin(&b, ops->user);
    if (b.gsz > 0) memset(buf, 0, (size_t)(b.gsz * W) * sizeof *buf);
    local = lh_h5_read_rows(d, 0, b.lo, b.hi - b.lo, LH_F32,
                            buf + (b.gsz ? (b.lo - b.g0) * W : 0));
    if (local == LH_OK && b.gsz > 0) {
      lh_tensor tin = {.data = buf, .ndim = 2, .shape = {b.gsz, W}}, tout;
      lh_model_set_row0(model, b.g0);
      local = lh_model_forward(model, &tin, &tout);
      b.out = &tout;
      if (local == LH_OK && ops->after) local = ops->after(&b, ops->user);
      b.out = NULL;
    }
    if (local != LH_OK) lh_error_prefix("%s: ", inputs);
    LH_TRY(lh_agree(comm, local));
    if (ops->agreed) LH_TRY(ops->agreed(&b, ops->user));
    if (bar_on) lh_progress_update(&bar, LH_MIN(N, (r + 1) * bs * P));
    /* a checkpoint: a stop request (batch jobs) ends the pass here, on every rank */
    int sig = r + 1 < rounds ? lh_interrupt_agree(comm) : 0;
    if (sig)
      LH_FAIL(LH_ERR_INTERRUPTED, "%s: stopped by signal %d after %lld of %lld samples", inputs,
              sig, (long long)LH_MIN(N, (r + 1) * bs * P), (long long)N);
  }
  lh_event_end(ops->event);
  if (seconds) *seconds = MPI_Wtime() - t0;
done:
  if (bar_on) lh_progress_finish(&bar);
  return st;
}
