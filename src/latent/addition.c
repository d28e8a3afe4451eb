/*
 * addition.c: ActivationAddition (addition.h, SPEC 2.4).
 *
 * Two cached forwards (cache.h) with one exact key pattern for the listed modules, one on the
 * positive and one on the negative inputs; both caches have the same row distribution, so
 * each rank forms its rows of P - N in float64 (exact for float32 operands of similar
 * magnitude) and one exact column mean (lh_dmat_col_reduce, xsum.h) per module gives the
 * vector, the same for any rank count. mean(P - N) is taken as one mean of the row
 * differences, as tdhook does, not as mean(P) - mean(N) (two roundings).
 */
#include <stdio.h>
#include <string.h>

#include "core/check.h"
#include "latenthook/addition.h"
#include "latenthook/cache.h"
#include "latenthook/comm.h"
#include "latenthook/mem.h"

#define KEY_CAP 512

typedef struct vec {
  char key[KEY_CAP];
  int k;
  int64_t shape[LH_TENSOR_MAX_DIMS];
  int64_t E;
  double *v; /* E */
} vec;

struct lh_addition {
  vec *e;
  int64_t count;
};

static lh_status noop(const lh_hook_event *ev, void *user) {
  (void)ev;
  (void)user;
  return LH_OK;
}

/* Names a module the pattern can select, or records why not. Local (the same on every
 * rank). */
static lh_status check_module(lh_model *m, const char *name) {
  if (name[0] == '\0')
    return LH_ERROR(LH_ERR_VALUE,
                    "module '' (the root) cannot be cached: name the module whose output you "
                    "want (its output is the model output)");
  if (strlen(name) >= KEY_CAP)
    return LH_ERROR(LH_ERR_VALUE, "module name of %zu characters (at most %d)", strlen(name),
                    KEY_CAP - 1);
  if (lh_model_module_find(m, name) >= 0) return LH_OK;
  /* lh_model_hook resolves paths and names the closest modules when there is none */
  lh_hook_handle *h = NULL;
  lh_hook_spec spec = {.fn = noop, .user = NULL, .user_free = NULL};
  lh_status st = lh_model_hook(m, name, true, LH_HOOK_FWD, spec, &h);
  if (st != LH_OK) return st;
  lh_hook_remove(&h);
  return LH_ERROR(LH_ERR_VALUE,
                  "'%s' is a module path; activation addition takes module names as "
                  "named_modules() gives them (e.g. 'h.0', not 'h[0]')",
                  name);
}

/* "(?:a\.b|c)$": exactly the listed names (re.match anchors the start). */
static lh_status build_pattern(const char *const *names, int64_t count, char **out) {
  lh_status st = LH_OK;
  size_t cap = 8;
  for (int64_t i = 0; i < count; i++) cap += 2 * strlen(names[i]) + 1;
  char *p = NULL;
  LH_TRY(lh_alloc(cap, 1, false, "key pattern", &p));
  size_t n = 0;
  memcpy(p, "(?:", 3);
  n = 3;
  for (int64_t i = 0; i < count; i++) {
    if (i) p[n++] = '|';
    for (const char *c = names[i]; *c; c++) {
      if (strchr("\\.^$|?*+()[]{}", *c)) p[n++] = '\\';
      p[n++] = *c;
    }
  }
  memcpy(p + n, ")$", 3);
  *out = p;
done:
  return st;
}

static int64_t find_key(const lh_cache *c, const char *key) {
  for (int64_t i = 0; i < lh_cache_count(c); i++)
    if (strcmp(lh_cache_key(c, i), key) == 0) return i;
  return -1;
}

static void shape_str(int k, const int64_t *s, char *buf, size_t cap) {
  size_t n = (size_t)snprintf(buf, cap, "(");
  for (int i = 0; i < k && n < cap; i++)
    n += (size_t)snprintf(buf + n, cap - n, "%s%lld", i ? ", " : "", (long long)s[i]);
  if (n < cap) snprintf(buf + n, cap - n, "%s)", k == 1 ? "," : "");
}

static lh_status sample_count(MPI_Comm comm, const char *spec, int64_t *N) {
  lh_status st = LH_OK;
  lh_h5_dset *d = NULL;
  LH_TRY(lh_h5_open(comm, spec, 0, &d));
  *N = lh_h5_dset_info(d)->dims[0];
done:
  lh_h5_close(&d);
  return st;
}

lh_status lh_addition_run(MPI_Comm comm, lh_model *model, const char *positive,
                          const char *negative, const char *const *modules, int64_t count,
                          const lh_reduce *reduce, int64_t batch_size, lh_addition **out) {
  lh_status st = LH_OK, local = LH_OK;
  lh_addition *a = NULL;
  lh_cache *cp = NULL, *cn = NULL;
  lh_dmat *D = NULL;
  char *pattern = NULL;
  const char **names = NULL;
  int64_t nn = 0;

  if (count < 1) LH_FAIL(LH_ERR_USAGE, "no module given");
  /* the distinct names, in list order */
  LH_TRY(lh_agree(comm, lh_alloc((size_t)count, sizeof *names, false, "module names", &names)));
  for (int64_t i = 0; i < count && local == LH_OK; i++) {
    local = check_module(model, modules[i]);
    bool seen = false;
    for (int64_t j = 0; j < nn; j++) seen = seen || strcmp(names[j], modules[i]) == 0;
    if (!seen) names[nn++] = modules[i];
  }
  LH_TRY(lh_agree(comm, local));
  int64_t Np = 0, Nn = 0;
  LH_TRY(sample_count(comm, positive, &Np));
  LH_TRY(sample_count(comm, negative, &Nn));
  if (Np != Nn)
    LH_FAIL(LH_ERR_VALUE,
            "positive and negative inputs must pair up sample by sample: %s has %lld samples, "
            "%s has %lld",
            positive, (long long)Np, negative, (long long)Nn);
  LH_TRY(lh_agree(comm, build_pattern(names, nn, &pattern)));

  lh_cache_opts o = lh_cache_defaults();
  o.key_pattern = pattern;
  o.reduce = *reduce;
  o.keep_output = false;
  o.batch_size = batch_size;
  LH_TRY(lh_cache_run(comm, model, positive, &o, &cp));
  LH_TRY(lh_cache_run(comm, model, negative, &o, &cn));

  LH_TRY(lh_agree(comm, lh_alloc(1, sizeof *a, true, "activation addition", &a)));
  LH_TRY(lh_agree(comm, lh_alloc((size_t)nn, sizeof *a->e, true, "steering vectors", &a->e)));
  for (int64_t i = 0; i < nn; i++) {
    vec *e = &a->e[i];
    const int64_t ip = find_key(cp, names[i]), in = find_key(cn, names[i]);
    if (ip < 0 || in < 0)
      LH_FAIL(LH_ERR_VALUE,
              "module '%s' is never called in the forward pass (a container?): it has no "
              "activation",
              names[i]);
    int64_t sn[LH_TENSOR_MAX_DIMS];
    e->k = lh_cache_shape(cp, ip, e->shape);
    const int kn = lh_cache_shape(cn, in, sn);
    bool same = kn == e->k;
    for (int j = 0; same && j < kn; j++) same = sn[j] == e->shape[j];
    if (!same) {
      char s1[96], s2[96];
      shape_str(e->k, e->shape, s1, sizeof s1);
      shape_str(kn, sn, s2, sizeof s2);
      LH_FAIL(LH_ERR_VALUE,
              "module '%s' outputs per sample %s on the positive inputs (%s) but %s on the "
              "negative inputs (%s): the activations must have the same shape",
              names[i], s1, positive, s2, negative);
    }
    snprintf(e->key, sizeof e->key, "%s", names[i]);
    a->count = i + 1;
    const lh_dmat *P = lh_cache_matrix(cp, ip), *Q = lh_cache_matrix(cn, in);
    e->E = lh_dmat_cols(P);
    LH_TRY(lh_dmat_create(comm, LH_F64, lh_dmat_rows(P), e->E, &D));
    const float *p = lh_dmat_local_const(P), *q = lh_dmat_local_const(Q);
    double *d = lh_dmat_local(D);
    for (int64_t r = 0; r < lh_dmat_local_rows(D) * e->E; r++) d[r] = (double)p[r] - q[r];
    LH_TRY(lh_agree(comm, lh_alloc((size_t)e->E, sizeof *e->v, false, "steering vector", &e->v)));
    LH_TRY(lh_dmat_col_reduce(D, LH_COL_MEAN, e->v));
    lh_dmat_destroy(&D);
  }
  *out = a;
  a = NULL;
done:
  lh_dmat_destroy(&D);
  lh_cache_destroy(&cp);
  lh_cache_destroy(&cn);
  lh_addition_destroy(&a);
  lh_free(pattern);
  lh_free(names);
  return st;
}

int64_t lh_addition_count(const lh_addition *a) {
  return a->count;
}

const char *lh_addition_key(const lh_addition *a, int64_t i) {
  return a->e[i].key;
}

const double *lh_addition_vector(const lh_addition *a, int64_t i, int *k, int64_t *shape) {
  if (k) *k = a->e[i].k;
  if (shape) memcpy(shape, a->e[i].shape, (size_t)a->e[i].k * sizeof *shape);
  return a->e[i].v;
}

lh_status lh_addition_write(const lh_addition *a, lh_h5_out *o) {
  lh_status st = LH_OK;
  char path[KEY_CAP + 16];
  for (int64_t i = 0; i < a->count; i++) {
    snprintf(path, sizeof path, "/steer/%s", a->e[i].key);
    LH_TRY(lh_h5_out_write_small(o, path, LH_F32, a->e[i].k, a->e[i].shape, a->e[i].v));
  }
done:
  return st;
}

void lh_addition_destroy(lh_addition **ap) {
  if (!ap || !*ap) return;
  lh_addition *a = *ap;
  for (int64_t i = 0; a->e && i < a->count; i++) lh_free(a->e[i].v);
  lh_free(a->e);
  lh_free(a);
  *ap = NULL;
}
