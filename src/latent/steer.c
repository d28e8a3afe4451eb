/*
 * steer.c: SteeringVectors (steer.h, SPEC 2.3): steer hooks, the built-in add / project /
 * scale callbacks, and the data-parallel forward that keeps the steered model output.
 *
 * The forward is cache.c's, on the global batch grid of grid.h: the rows are split over the
 * ranks, batches are cut on a global grid and every forward runs a whole global batch (other
 * ranks' rows as zeros), so that a sample's output does not depend on the rank count. Steering is element-wise per
 * sample (or per position), so it keeps that property.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/check.h"
#include "latent/grid.h"
#include "latenthook/comm.h"
#include "latenthook/h5.h"
#include "latenthook/mem.h"
#include "latenthook/partition.h"
#include "latenthook/steer.h"
#include "latenthook/timer.h"

#define KEY_CAP 512

/* One hook's own data: its key (copied, so each hook knows its module) and the callback. */
typedef struct hook_user {
  char key[KEY_CAP];
  lh_steer_fn fn;
  void *user;
} hook_user;

struct lh_steer {
  lh_hook_handle **h;
  int64_t count;
};

static void shape_str(int k, const int64_t *s, char *buf, size_t cap) {
  size_t n = (size_t)snprintf(buf, cap, "(");
  for (int i = 0; i < k && n < cap; i++)
    n += (size_t)snprintf(buf + n, cap - n, "%s%lld", i ? ", " : "", (long long)s[i]);
  if (n < cap) snprintf(buf + n, cap - n, "%s)", k == 1 ? "," : "");
}

lh_status lh_steer_builtin_apply(const char *module_key, lh_tensor *output, void *user) {
  const lh_steer_builtin *b = user;
  const int64_t E = lh_tensor_row_len(output), rows = output->shape[0];
  float *y = output->data;
  if (b->op == LH_STEER_SCALE) {
    const float s = (float)b->alpha;
    for (int64_t i = 0; i < rows * E; i++) y[i] *= s;
    return LH_OK;
  }
  /* v: the whole per-sample shape, or its last dimension broadcast over the positions */
  int64_t L = 1;
  for (int i = 0; i < b->vk; i++) L *= b->vshape[i];
  const int k = output->ndim - 1;
  bool full = b->vk == k;
  for (int i = 0; full && i < k; i++) full = b->vshape[i] == output->shape[i + 1];
  const bool last = b->vk == 1 && k >= 1 && b->vshape[0] == output->shape[k];
  if (!full && !last) {
    char vs[96], ms[96];
    shape_str(b->vk, b->vshape, vs, sizeof vs);
    shape_str(k, output->shape + 1, ms, sizeof ms);
    return LH_ERROR(LH_ERR_VALUE,
                    "%s%sv has shape %s, module '%s' outputs per sample %s: expected that shape "
                    "or its last dimension (%lld,)",
                    b->what ? b->what : "", b->what ? ": " : "", vs, module_key, ms,
                    (long long)(k ? output->shape[k] : 1));
  }
  const int64_t groups = rows * (E / L); /* samples x positions, each a vector of L */
  if (b->op == LH_STEER_ADD) {
    for (int64_t g = 0; g < groups; g++) {
      float *yg = y + g * L;
      /* as PyTorch's `output + alpha * v`: alpha v rounded to float32 first */
      for (int64_t j = 0; j < L; j++) yg[j] += (float)b->alpha * b->v[j];
    }
    return LH_OK;
  }
  double nrm = 0;
  for (int64_t j = 0; j < L; j++) nrm += (double)b->v[j] * b->v[j];
  nrm = sqrt(nrm);
  if (!(nrm > 0) || !isfinite(nrm))
    return LH_ERROR(LH_ERR_VALUE, "%s%sv has norm %g: there is no direction to project out",
                    b->what ? b->what : "", b->what ? ": " : "", nrm);
  for (int64_t g = 0; g < groups; g++) {
    float *yg = y + g * L;
    double d = 0;
    for (int64_t j = 0; j < L; j++) d += (double)yg[j] * (b->v[j] / nrm);
    for (int64_t j = 0; j < L; j++) yg[j] = (float)(yg[j] - d * (b->v[j] / nrm));
  }
  return LH_OK;
}

static lh_status on_output(const lh_hook_event *ev, void *user) {
  hook_user *u = user;
  return u->fn(u->key, ev->tensor, u->user);
}

static void free_user(void *user) {
  lh_free(user);
}

lh_status lh_steer_attach(lh_model *m, const char *const *modules, int64_t count, lh_steer_fn fn,
                          void *user, lh_steer **out) {
  lh_status st = LH_OK;
  lh_steer *s = NULL;
  hook_user *u = NULL;
  if (!m || !fn || !out || (count > 0 && !modules))
    LH_FAIL(LH_ERR_VALUE, "lh_steer_attach: NULL argument");
  if (count < 1) LH_FAIL(LH_ERR_VALUE, "no module to steer");
  LH_TRY(lh_alloc(1, sizeof *s, true, "steering", &s));
  LH_TRY(lh_alloc((size_t)count, sizeof *s->h, true, "steering hooks", &s->h));
  for (int64_t i = 0; i < count; i++) {
    if (strlen(modules[i]) >= KEY_CAP)
      LH_FAIL(LH_ERR_VALUE, "module name of %zu characters (at most %d)", strlen(modules[i]),
              KEY_CAP - 1);
    LH_TRY(lh_alloc(1, sizeof *u, true, "steering hook", &u));
    snprintf(u->key, sizeof u->key, "%s", modules[i]);
    u->fn = fn;
    u->user = user;
    lh_hook_spec spec = {.fn = on_output, .user = u, .user_free = free_user};
    LH_TRY(lh_model_hook(m, modules[i], true, LH_HOOK_FWD, spec, &s->h[i]));
    u = NULL; /* the hook owns it now */
    s->count = i + 1;
  }
  *out = s;
  s = NULL;
done:
  lh_free(u);
  lh_steer_detach(&s);
  return st;
}

void lh_steer_detach(lh_steer **sp) {
  if (!sp || !*sp) return;
  lh_steer *s = *sp;
  for (int64_t i = 0; s->h && i < s->count; i++) lh_hook_remove(&s->h[i]);
  lh_free(s->h);
  lh_free(s);
  *sp = NULL;
}

lh_status lh_steer_read_vector(MPI_Comm comm, const char *spec, float **v, int *k, int64_t *shape) {
  lh_status st = LH_OK;
  lh_h5_dset *d = NULL;
  float *buf = NULL;
  LH_TRY(lh_h5_open(comm, spec, 0, &d));
  const lh_h5_info *in = lh_h5_dset_info(d);
  if (in->ndims > LH_TENSOR_MAX_DIMS)
    LH_FAIL(LH_ERR_VALUE, "%s: %d dimensions, at most %d", spec, in->ndims, LH_TENSOR_MAX_DIMS);
  LH_TRY(lh_agree(comm, lh_alloc((size_t)(in->N * in->E), sizeof *buf, false, spec, &buf)));
  LH_TRY(lh_h5_read_rows(d, 0, 0, in->N, LH_F32, buf));
  *k = in->ndims;
  for (int i = 0; i < in->ndims; i++) shape[i] = in->dims[i];
  *v = buf;
  buf = NULL;
done:
  lh_free(buf);
  lh_h5_close(&d);
  return st;
}

/* What the pass of lh_steer_forward keeps: the model output's rows of this rank. */
typedef struct fwd {
  lh_dmat *Y; /* (N, E) */
  int64_t E;
  int64_t off; /* global index of this rank's first row */
} fwd;

static lh_status keep_output(const lh_grid_batch *b, void *user) {
  const fwd *f = user;
  const lh_tensor *tout = b->out;
  float *y = lh_dmat_local(f->Y);
  if (tout->shape[0] != b->gsz || lh_tensor_row_len(tout) != f->E)
    return LH_ERROR(LH_ERR_RUNTIME, "the model output changed its shape after the probe");
  if (b->hi > b->lo)
    memcpy(y + (b->lo - f->off) * f->E, tout->data + (b->lo - b->g0) * f->E,
           (size_t)((b->hi - b->lo) * f->E) * sizeof *y);
  return LH_OK;
}

lh_status lh_steer_forward(MPI_Comm comm, lh_model *model, const char *inputs, int64_t batch_size,
                           lh_dmat **out, int *k, int64_t *shape) {
  lh_status st = LH_OK, local = LH_OK;
  int P, rank;
  MPI_Comm_size(comm, &P);
  MPI_Comm_rank(comm, &rank);
  lh_h5_dset *d = NULL;
  lh_dmat *Y = NULL;
  float *buf = NULL;
  int out_k = 0;
  int64_t out_shape[LH_TENSOR_MAX_DIMS] = {0}, W = 0;
  static lh_event ev = -2;
  if (ev == -2) ev = lh_event_get("steer.forward");

  if (batch_size < 1)
    LH_FAIL(LH_ERR_USAGE, "--batch-size must be >= 1, got %lld", (long long)batch_size);
  LH_TRY(lh_h5_open(comm, inputs, 0, &d));
  const lh_h5_info *in = lh_h5_dset_info(d);
  LH_TRY(lh_agree(comm, lh_grid_check_inputs(model, in, &W)));
  const int64_t N = in->dims[0];
  const int64_t off = lh_part_offset(N, P, rank);
  const int64_t bs = batch_size;
  LH_TRY(lh_agree(comm, lh_alloc((size_t)(bs * W), sizeof *buf, true, "input batch", &buf)));

  /* the probe: one zero sample (token 0) on every rank finds the output shape and makes the
   * hooks' shape errors the same on every rank */
  {
    lh_tensor pin = {.data = buf, .ndim = 2, .shape = {1, W}}, pout;
    lh_model_set_row0(model, -1);
    local = lh_model_forward(model, &pin, &pout);
    if (local == LH_OK) {
      out_k = pout.ndim - 1;
      for (int i = 1; i < pout.ndim; i++) out_shape[i - 1] = pout.shape[i];
    }
  }
  LH_TRY(lh_agree(comm, local));
  int64_t E = 1;
  for (int i = 0; i < out_k; i++) E *= out_shape[i];
  LH_TRY(lh_dmat_create(comm, LH_F32, N, E, &Y));

  /* the pass, on the global batch grid (grid.h) */
  fwd f = {.Y = Y, .E = E, .off = off};
  lh_grid_ops ops = {.after = keep_output, .user = &f, .progress = NULL, .event = ev};
  LH_TRY(lh_grid_run(comm, model, d, inputs, bs, buf, &ops, NULL));
  *out = Y;
  Y = NULL;
  *k = out_k;
  memcpy(shape, out_shape, (size_t)out_k * sizeof *shape);
done:
  lh_dmat_destroy(&Y);
  lh_h5_close(&d);
  lh_free(buf);
  return st;
}
