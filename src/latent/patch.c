/*
 * patch.c: ActivationPatching (SPEC 2.2) and the patching sweep over the data-parallel forward
 * (patch.h).
 *
 * One hook per listed module, registered by path with its own user data (so each patch_fn
 * call gets its own module key: tdhook's late-binding bug cannot happen), switched by a mode:
 * RECORD copies this rank's rows of every batch into the module's clean buffer (n x E, the
 * module's per-sample size), REPLACE hands this rank's rows of the batch and the matching
 * clean rows to the patch function. lh_cache_run drives both runs with an output-only cache:
 * it reads the inputs batch by batch on the global batch grid (so a batch may hold rows of
 * other ranks, zeros here: they are left alone) and keeps the model output, and its probe
 * forward (row0 = -1, one zero sample, every rank) gives the hooks the per-sample shapes
 * before any batch, on ranks without rows too.
 *
 * The sweep is a loop of patched runs whose outputs are reduced at once to one metric per
 * sample (the last position's logit difference), kept as columns of distributed matrices so
 * that the means are exact column sums (lh_dmat_col_reduce): bit-identical on any rank count.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "latent/grid.h"
#include "latenthook/comm.h"
#include "latenthook/log.h"
#include "latenthook/mem.h"
#include "latenthook/partition.h"
#include "latenthook/patch.h"

#define KEY_CAP 512

typedef enum mode { MODE_OFF = 0, MODE_RECORD, MODE_REPLACE } mode;

typedef struct slot {
  struct lh_patch *p;
  char key[KEY_CAP]; /* the path as listed */
  lh_hook_handle *h;
  bool fired; /* seen in the clean run's probe */
  int k;      /* per-sample dims of the last call in the probe */
  int64_t shape[LH_TENSOR_MAX_DIMS];
  int64_t E;    /* elements per sample */
  float *clean; /* n x E, this rank's samples; NULL until the first batch */
  bool active;
} slot;

struct lh_patch {
  MPI_Comm comm;
  lh_model *model;
  slot *s;
  int64_t count;
  mode mode;
  bool recorded;
  int64_t N, W;   /* clean inputs: samples, row width */
  int64_t n, off; /* this rank's samples */
  int64_t bs;
  lh_patch_fn fn;
  void *user;
  float *zero; /* a zero clean row for the probe (largest E) */
  int64_t zero_len;
};

/* ---- built-in patch functions ------------------------------------------------------------ */

lh_status lh_patch_replace(const char *key, lh_tensor *output, const lh_tensor *clean, void *user) {
  (void)key;
  (void)user;
  memcpy(output->data, clean->data, (size_t)lh_tensor_numel(output) * sizeof *output->data);
  return LH_OK;
}

lh_status lh_patch_replace_positions(const char *key, lh_tensor *output, const lh_tensor *clean,
                                     void *user) {
  const lh_patch_positions *r = user;
  const int k = output->ndim - 1;
  if (k < 2)
    return LH_ERROR(LH_ERR_VALUE,
                    "'%s' outputs per-sample vectors (%lld): no position axis to patch", key,
                    (long long)(k == 1 ? output->shape[1] : 1));
  const int64_t T = output->shape[output->ndim - 2], C = output->shape[output->ndim - 1];
  if (r->lo < 0 || r->hi > T || r->lo >= r->hi)
    return LH_ERROR(LH_ERR_VALUE, "positions %lld:%lld outside the %lld positions of '%s'",
                    (long long)r->lo, (long long)r->hi, (long long)T, key);
  const int64_t outer = lh_tensor_numel(output) / (T * C);
  for (int64_t o = 0; o < outer; o++)
    memcpy(output->data + (o * T + r->lo) * C, clean->data + (o * T + r->lo) * C,
           (size_t)((r->hi - r->lo) * C) * sizeof *output->data);
  return LH_OK;
}

lh_status lh_patch_replace_units(const char *key, lh_tensor *output, const lh_tensor *clean,
                                 void *user) {
  const lh_patch_units *u = user;
  const int64_t C = output->ndim > 1 ? output->shape[output->ndim - 1] : 1;
  for (int64_t j = 0; j < u->count; j++)
    if (u->index[j] < -C || u->index[j] >= C)
      return LH_ERROR(LH_ERR_VALUE, "unit %lld outside the %lld units of '%s'",
                      (long long)u->index[j], (long long)C, key);
  const int64_t rows = lh_tensor_numel(output) / C;
  for (int64_t r = 0; r < rows; r++)
    for (int64_t j = 0; j < u->count; j++) {
      const int64_t c = u->index[j] < 0 ? u->index[j] + C : u->index[j];
      output->data[r * C + c] = clean->data[r * C + c];
    }
  return LH_OK;
}

/* ---- the hook ------------------------------------------------------------------------------ */

static lh_status on_output(const lh_hook_event *ev, void *user) {
  slot *s = user;
  lh_patch *p = s->p;
  lh_tensor *t = ev->tensor;
  const int64_t E = lh_tensor_row_len(t);
  if (p->mode == MODE_OFF || (p->mode == MODE_REPLACE && !s->active)) return LH_OK;
  if (ev->row0 < 0) { /* lh_cache_run's probe: one zero sample, on every rank */
    if (p->mode == MODE_RECORD) {
      s->fired = true;
      s->k = t->ndim - 1;
      for (int i = 1; i < t->ndim; i++) s->shape[i - 1] = t->shape[i];
      s->E = E;
      return LH_OK;
    }
    if (E != s->E || E > p->zero_len)
      return LH_ERROR(LH_ERR_VALUE,
                      "module '%s': %lld values per sample in the patched run, %lld in the "
                      "clean run",
                      s->key, (long long)E, (long long)s->E);
    lh_tensor cv = *t;
    cv.data = p->zero;
    return p->fn(s->key, t, &cv, p->user);
  }
  /* the batch (lh_cache_run's global grid) and this rank's samples of it; the other rows are
   * zero filler */
  int64_t nb, lo, hi;
  lh_grid_slice(p->N, p->bs, p->off, p->n, ev->row0, &nb, &lo, &hi);
  if (t->shape[0] != nb)
    return LH_ERROR(LH_ERR_RUNTIME, "module '%s' gave %lld rows for a batch of %lld samples",
                    s->key, (long long)t->shape[0], (long long)nb);
  if (E != s->E)
    return LH_ERROR(LH_ERR_VALUE,
                    "module '%s': %lld values per sample, %lld in the probe of the clean run "
                    "(a module called with different shapes cannot be patched)",
                    s->key, (long long)E, (long long)s->E);
  if (hi <= lo) return LH_OK;
  float *mine = t->data + (lo - ev->row0) * E;
  if (p->mode == MODE_RECORD) {
    if (!s->clean) {
      lh_status st =
          lh_alloc((size_t)(p->n * E), sizeof *s->clean, true, "clean activations", &s->clean);
      if (st != LH_OK) return st;
    }
    memcpy(s->clean + (lo - p->off) * E, mine, (size_t)((hi - lo) * E) * sizeof *mine);
    return LH_OK;
  }
  lh_tensor ov = *t, cv = *t;
  ov.data = mine;
  ov.shape[0] = hi - lo;
  cv.data = s->clean + (lo - p->off) * E;
  cv.shape[0] = hi - lo;
  return p->fn(s->key, &ov, &cv, p->user);
}

/* ---- lifecycle ----------------------------------------------------------------------------- */

lh_status lh_patch_create(MPI_Comm comm, lh_model *model, const char *const *modules, int64_t count,
                          lh_patch **out) {
  lh_status st = LH_OK, local = LH_OK;
  lh_patch *p = NULL;
  if (count < 1) LH_FAIL(LH_ERR_VALUE, "no module to patch");
  for (int64_t i = 0; i < count; i++) {
    if (strlen(modules[i]) >= KEY_CAP)
      LH_FAIL(LH_ERR_VALUE, "module path of %zu characters (at most %d)", strlen(modules[i]),
              KEY_CAP - 1);
    for (int64_t j = 0; j < i; j++)
      if (strcmp(modules[i], modules[j]) == 0)
        LH_FAIL(LH_ERR_VALUE, "module '%s' listed twice", modules[i]);
  }
  local = lh_alloc(1, sizeof *p, true, "patching context", &p);
  if (local == LH_OK) local = lh_alloc((size_t)count, sizeof *p->s, true, "patch slots", &p->s);
  LH_TRY(lh_agree(comm, local));
  p->comm = comm;
  p->model = model;
  for (int64_t i = 0; i < count && local == LH_OK; i++) {
    slot *s = &p->s[i];
    s->p = p;
    snprintf(s->key, sizeof s->key, "%s", modules[i]);
    lh_hook_spec spec = {.fn = on_output, .user = s, .user_free = NULL};
    local = lh_model_hook(model, modules[i], true, LH_HOOK_FWD, spec, &s->h);
    if (local == LH_OK) p->count++;
  }
  LH_TRY(lh_agree(comm, local));
  *out = p;
  p = NULL;
done:
  lh_patch_destroy(&p);
  return st;
}

void lh_patch_destroy(lh_patch **pp) {
  if (!pp || !*pp) return;
  lh_patch *p = *pp;
  for (int64_t i = 0; p->s && i < p->count; i++) {
    lh_hook_remove(&p->s[i].h);
    lh_free(p->s[i].clean);
  }
  lh_free(p->s);
  lh_free(p->zero);
  lh_free(p);
  *pp = NULL;
}

int64_t lh_patch_count(const lh_patch *p) {
  return p->count;
}
const char *lh_patch_key(const lh_patch *p, int64_t i) {
  return p->s[i].key;
}
int lh_patch_shape(const lh_patch *p, int64_t i, int64_t *shape) {
  memcpy(shape, p->s[i].shape, (size_t)p->s[i].k * sizeof *shape);
  return p->s[i].k;
}

/* The (N, W) of an inputs dataset (2-D, else the message of lh_cache_run comes later). */
static lh_status input_dims(MPI_Comm comm, const char *inputs, int64_t *N, int64_t *W, int *nd) {
  lh_status st = LH_OK;
  lh_h5_dset *d = NULL;
  LH_TRY(lh_h5_open(comm, inputs, 0, &d));
  const lh_h5_info *in = lh_h5_dset_info(d);
  *nd = in->ndims;
  *N = in->dims[0];
  *W = in->ndims > 1 ? in->dims[1] : 0;
done:
  lh_h5_close(&d);
  return st;
}

static const char *shape_message(const char *inputs, int64_t N, int64_t W, int nd, int64_t N2,
                                 int64_t W2) {
  static char msg[LH_H5_PATH_CAP + 256];
  if (nd != 2)
    snprintf(msg, sizeof msg,
             "%s: the patched inputs must have the shape of the clean inputs (%lld, %lld), got "
             "%d dimension%s",
             inputs, (long long)N, (long long)W, nd, nd == 1 ? "" : "s");
  else
    snprintf(msg, sizeof msg,
             "%s: the patched inputs must have the shape of the clean inputs (%lld, %lld), got "
             "(%lld, %lld)",
             inputs, (long long)N, (long long)W, (long long)N2, (long long)W2);
  return msg;
}

lh_status lh_patch_record(lh_patch *p, const char *inputs, int64_t batch_size, bool progress,
                          lh_cache **clean) {
  lh_status st = LH_OK;
  lh_cache *c = NULL;
  int P, rank, nd;
  MPI_Comm_size(p->comm, &P);
  MPI_Comm_rank(p->comm, &rank);
  if (batch_size < 1)
    LH_FAIL(LH_ERR_USAGE, "--batch-size must be >= 1, got %lld", (long long)batch_size);
  LH_TRY(input_dims(p->comm, inputs, &p->N, &p->W, &nd));
  p->n = lh_part_count(p->N, P, rank);
  p->off = lh_part_offset(p->N, P, rank);
  p->bs = batch_size;
  p->recorded = false;
  for (int64_t i = 0; i < p->count; i++) {
    lh_free(p->s[i].clean);
    p->s[i].clean = NULL;
    p->s[i].fired = false;
    p->s[i].E = 0;
  }
  lh_cache_opts o = lh_cache_defaults();
  o.batch_size = batch_size;
  o.progress = progress;
  p->mode = MODE_RECORD;
  st = lh_cache_run(p->comm, p->model, inputs, &o, &c);
  p->mode = MODE_OFF;
  if (st != LH_OK) goto done;
  int64_t maxE = 0;
  for (int64_t i = 0; i < p->count; i++) {
    if (!p->s[i].fired)
      LH_FAIL(LH_ERR_VALUE,
              "module '%s' is never called in a forward (a container such as a ModuleList?): "
              "nothing to patch",
              p->s[i].key);
    maxE = LH_MAX(maxE, p->s[i].E);
  }
  lh_free(p->zero);
  p->zero = NULL;
  p->zero_len = 0;
  LH_TRY(lh_agree(p->comm, lh_alloc((size_t)maxE, sizeof *p->zero, true, "zero row", &p->zero)));
  p->zero_len = maxE;
  /* ranks whose rows never reached a hook (no rows) still need a buffer to point into */
  lh_status local = LH_OK;
  for (int64_t i = 0; i < p->count && local == LH_OK; i++)
    if (!p->s[i].clean)
      local = lh_alloc((size_t)(p->n * p->s[i].E), sizeof *p->s[i].clean, true, "clean activations",
                       &p->s[i].clean);
  LH_TRY(lh_agree(p->comm, local));
  p->recorded = true;
  *clean = c;
  c = NULL;
done:
  lh_cache_destroy(&c);
  return st;
}

lh_status lh_patch_check_inputs(MPI_Comm comm, const char *clean, const char *patched) {
  lh_status st = LH_OK;
  int64_t N, W, N2, W2;
  int nd, nd2;
  LH_TRY(input_dims(comm, clean, &N, &W, &nd));
  LH_TRY(input_dims(comm, patched, &N2, &W2, &nd2));
  if (nd == 2 && (nd2 != 2 || N2 != N || W2 != W))
    LH_FAIL(LH_ERR_VALUE, "%s", shape_message(patched, N, W, nd2, N2, W2));
done:
  return st;
}

lh_status lh_patch_run(lh_patch *p, const char *inputs, const bool *active, lh_patch_fn fn,
                       void *user, const lh_reduce *output_reduce, lh_cache **patched) {
  lh_status st = LH_OK;
  int64_t N, W;
  int nd;
  if (!p->recorded) LH_FAIL(LH_ERR_RUNTIME, "lh_patch_run before lh_patch_record");
  LH_TRY(input_dims(p->comm, inputs, &N, &W, &nd));
  if (nd != 2 || N != p->N || W != p->W)
    LH_FAIL(LH_ERR_VALUE, "%s", shape_message(inputs, p->N, p->W, nd, N, W));
  for (int64_t i = 0; i < p->count; i++) p->s[i].active = active ? active[i] : true;
  p->fn = fn ? fn : lh_patch_replace;
  p->user = user;
  lh_cache_opts o = lh_cache_defaults();
  o.batch_size = p->bs;
  if (output_reduce) o.output_reduce = *output_reduce;
  p->mode = MODE_REPLACE;
  st = lh_cache_run(p->comm, p->model, inputs, &o, patched);
  p->mode = MODE_OFF;
done:
  return st;
}

/* ---- sweep --------------------------------------------------------------------------------- */

double lh_patch_logit_diff(const float *row, int64_t E, int64_t C, int64_t a, int64_t b) {
  const float *last = row + E - C;
  const float d = last[a] - last[b];
  return (double)d;
}

void lh_patch_sweep_free(lh_patch_sweep *s) {
  if (!s) return;
  lh_dmat_destroy(&s->clean);
  lh_dmat_destroy(&s->corrupted);
  lh_dmat_destroy(&s->metric);
  lh_dmat_destroy(&s->metric_pos);
  free(s->mean);
  free(s->normalised);
  free(s->mean_pos);
  free(s->normalised_pos);
  memset(s, 0, sizeof *s);
}

/* Column j of `dst` (local rows) = the metric of each local row of the output matrix. */
static void metric_column(const lh_dmat *outm, int64_t C, int64_t a, int64_t b, lh_dmat *dst,
                          int64_t j) {
  const int64_t n = lh_dmat_local_rows(outm), E = lh_dmat_cols(outm), D = lh_dmat_cols(dst);
  const float *x = lh_dmat_local_const(outm);
  double *y = lh_dmat_local(dst);
  for (int64_t i = 0; i < n; i++) y[i * D + j] = lh_patch_logit_diff(x + i * E, E, C, a, b);
}

/* One patched run through fn(user) with only module m active (m < 0: none), its metric into
 * column j of dst. */
static lh_status sweep_one(lh_patch *p, const char *inputs, int64_t m, lh_patch_fn fn, void *user,
                           const lh_reduce *r, int64_t C, int64_t a, int64_t b, lh_dmat *dst,
                           int64_t j, bool *active) {
  lh_status st = LH_OK;
  lh_cache *c = NULL;
  for (int64_t i = 0; i < p->count; i++) active[i] = i == m;
  LH_TRY(lh_patch_run(p, inputs, active, fn, user, r, &c));
  metric_column(lh_cache_output(c, NULL, NULL), C, a, b, dst, j);
done:
  lh_cache_destroy(&c);
  return st;
}

static double *means(lh_dmat *m, lh_status *st) {
  double *v = malloc((size_t)LH_MAX(1, lh_dmat_cols(m)) * sizeof *v);
  lh_status local = v ? LH_OK : LH_ERROR(LH_ERR_NOMEM, "sweep means");
  *st = lh_agree(lh_dmat_comm(m), local);
  if (*st == LH_OK) *st = lh_dmat_col_reduce(m, LH_COL_MEAN, v);
  if (*st != LH_OK) {
    free(v);
    v = NULL;
  }
  return v;
}

lh_status lh_patch_sweep_run(lh_patch *p, const lh_cache *clean, const char *inputs, bool positions,
                             int64_t a, int64_t b, bool progress, lh_patch_sweep *out) {
  lh_status st = LH_OK;
  lh_patch_sweep s = {0};
  bool *active = NULL;
  double *v = NULL;
  int rank;
  MPI_Comm_rank(p->comm, &rank);
  int64_t shape[LH_TENSOR_MAX_DIMS];
  int k = 0;
  const lh_dmat *outm = lh_cache_output(clean, shape, &k);
  if (!outm) LH_FAIL(LH_ERR_VALUE, "the clean run kept no model output");
  if (k < 1 || k > 2)
    LH_FAIL(LH_ERR_VALUE,
            "the logit-difference metric needs a model output of per-sample shape (C) or "
            "(T, C), got %d dimensions",
            k);
  const int64_t C = shape[k - 1];
  if (a < 0 || a >= C || b < 0 || b >= C)
    LH_FAIL(LH_ERR_VALUE, "--tokens %lld,%lld: the model output has %lld entries (0 to %lld)",
            (long long)a, (long long)b, (long long)C, (long long)C - 1);
  const lh_reduce last = {k == 2 ? LH_REDUCE_LAST : LH_REDUCE_NONE, 0};
  s.M = p->count;
  s.N = lh_dmat_rows(outm);
  if (positions) {
    for (int64_t m = 0; m < p->count; m++) {
      const slot *sl = &p->s[m];
      if (sl->k < 2)
        LH_FAIL(LH_ERR_VALUE,
                "--per-position: module '%s' has no position axis (per-sample "
                "shape of %d dimension%s)",
                sl->key, sl->k, sl->k == 1 ? "" : "s");
      const int64_t T = sl->shape[sl->k - 2];
      if (m > 0 && T != s.T)
        LH_FAIL(LH_ERR_VALUE, "--per-position: module '%s' has %lld positions, '%s' %lld", sl->key,
                (long long)T, p->s[0].key, (long long)s.T);
      s.T = T;
    }
  }
  LH_TRY(lh_agree(p->comm, lh_alloc((size_t)p->count, sizeof *active, true, "mask", &active)));
  LH_TRY(lh_dmat_create(p->comm, LH_F64, s.N, 1, &s.clean));
  LH_TRY(lh_dmat_create(p->comm, LH_F64, s.N, 1, &s.corrupted));
  LH_TRY(lh_dmat_create(p->comm, LH_F64, s.N, s.M, &s.metric));
  if (positions) LH_TRY(lh_dmat_create(p->comm, LH_F64, s.N, s.M * s.T, &s.metric_pos));
  metric_column(outm, C, a, b, s.clean, 0);
  const int64_t runs = 1 + s.M * (1 + s.T);
  int64_t done_runs = 0;
  LH_TRY(sweep_one(p, inputs, -1, NULL, NULL, &last, C, a, b, s.corrupted, 0, active));
  done_runs++;
  for (int64_t m = 0; m < s.M; m++) {
    LH_TRY(sweep_one(p, inputs, m, NULL, NULL, &last, C, a, b, s.metric, m, active));
    done_runs++;
    if (progress && rank == 0)
      fprintf(stderr, "sweep: %lld/%lld runs\r", (long long)done_runs, (long long)runs);
    for (int64_t t = 0; t < s.T; t++) {
      lh_patch_positions r = {t, t + 1};
      LH_TRY(sweep_one(p, inputs, m, lh_patch_replace_positions, &r, &last, C, a, b, s.metric_pos,
                       m * s.T + t, active));
      done_runs++;
      if (progress && rank == 0)
        fprintf(stderr, "sweep: %lld/%lld runs\r", (long long)done_runs, (long long)runs);
    }
  }
  if (progress && rank == 0) fprintf(stderr, "\n");
  v = means(s.clean, &st);
  if (st != LH_OK) goto done;
  s.clean_mean = v[0];
  free(v);
  v = means(s.corrupted, &st);
  if (st != LH_OK) goto done;
  s.corrupted_mean = v[0];
  const double den = s.clean_mean - s.corrupted_mean;
  s.mean = means(s.metric, &st);
  if (st != LH_OK) goto done;
  s.normalised = malloc((size_t)s.M * sizeof *s.normalised);
  LH_TRY(lh_agree(p->comm, s.normalised ? LH_OK : LH_ERROR(LH_ERR_NOMEM, "sweep effects")));
  for (int64_t m = 0; m < s.M; m++) s.normalised[m] = (s.mean[m] - s.corrupted_mean) / den;
  if (positions) {
    s.mean_pos = means(s.metric_pos, &st);
    if (st != LH_OK) goto done;
    s.normalised_pos = malloc((size_t)(s.M * s.T) * sizeof *s.normalised_pos);
    LH_TRY(lh_agree(p->comm, s.normalised_pos ? LH_OK : LH_ERROR(LH_ERR_NOMEM, "sweep effects")));
    for (int64_t j = 0; j < s.M * s.T; j++)
      s.normalised_pos[j] = (s.mean_pos[j] - s.corrupted_mean) / den;
  }
  *out = s;
  memset(&s, 0, sizeof s);
done:
  lh_patch_sweep_free(&s);
  lh_free(active);
  free(v);
  return st;
}

/* Writes the columns of m (N x B) as the B items of a (items..., N) dataset, float32. */
static lh_status write_columns(lh_h5_out *o, const char *path, const lh_dmat *m, int nd,
                               const int64_t *dims) {
  lh_status st = LH_OK;
  lh_h5_dset *ds = NULL;
  double *col = NULL;
  const int64_t n = lh_dmat_local_rows(m), B = lh_dmat_cols(m), off = lh_dmat_row_offset(m);
  LH_TRY(lh_agree(lh_dmat_comm(m), lh_alloc((size_t)n, sizeof *col, false, "column", &col)));
  LH_TRY(lh_h5_out_dataset(o, path, LH_F32, nd, dims, LH_ROWS_LAST, &ds));
  const double *x = lh_dmat_local_const(m);
  for (int64_t j = 0; j < B; j++) {
    for (int64_t i = 0; i < n; i++) col[i] = x[i * B + j];
    LH_TRY(lh_h5_write_rows(ds, j, off, n, LH_F64, col));
  }
done:
  lh_h5_close(&ds);
  lh_free(col);
  return st;
}

lh_status lh_patch_sweep_write(const lh_patch *p, const lh_patch_sweep *s, int64_t a, int64_t b,
                               lh_h5_out *o) {
  lh_status st = LH_OK;
  char *keys = NULL;
  size_t cap = 1;
  for (int64_t i = 0; i < p->count; i++) cap += strlen(p->s[i].key) + 1;
  LH_TRY(lh_agree(p->comm, lh_alloc(cap, 1, true, "module list", &keys)));
  for (int64_t i = 0; i < p->count; i++) {
    if (i) strcat(keys, ",");
    strcat(keys, p->s[i].key);
  }
  int64_t d1[1] = {s->N}, d2[2] = {s->M, s->N}, d3[3] = {s->M, s->T, s->N};
  LH_TRY(write_columns(o, "/clean_metric", s->clean, 1, d1));
  LH_TRY(write_columns(o, "/corrupted_metric", s->corrupted, 1, d1));
  LH_TRY(write_columns(o, "/effects_per_sample", s->metric, 2, d2));
  LH_TRY(lh_h5_out_write_small(o, "/effects", LH_F64, 1, &s->M, s->mean));
  LH_TRY(lh_h5_out_write_small(o, "/normalised_effects", LH_F64, 1, &s->M, s->normalised));
  if (s->metric_pos) {
    int64_t d[2] = {s->M, s->T};
    LH_TRY(write_columns(o, "/effects_positions_per_sample", s->metric_pos, 3, d3));
    LH_TRY(lh_h5_out_write_small(o, "/effects_positions", LH_F64, 2, d, s->mean_pos));
    LH_TRY(
        lh_h5_out_write_small(o, "/normalised_effects_positions", LH_F64, 2, d, s->normalised_pos));
  }
  char tok[64];
  snprintf(tok, sizeof tok, "%lld,%lld", (long long)a, (long long)b);
  LH_TRY(lh_h5_out_attr_string(o, "/effects", "modules", keys));
  LH_TRY(lh_h5_out_attr_string(o, "/effects", "metric", "logit-diff"));
  LH_TRY(lh_h5_out_attr_string(o, "/effects", "tokens", tok));
done:
  lh_free(keys);
  return st;
}
