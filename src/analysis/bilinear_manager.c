/*
 * bilinear_manager.c: BilinearProbeManager with LowRankBilinearEstimator estimators over
 * distributed activations (bilinear_manager.h, SPEC 3.4, 3.8).
 *
 * The bookkeeping is bprobe.c's; this file supplies its run callback (fit or score one
 * completed pair with lh_bilinear_fit / lh_bilinear_evaluate) and its forget callback, and
 * keeps the fitted estimators in a small table keyed like tdhook's `estimators` dict. The item
 * a pair probe stores is the module's lh_dmat; the labels and the row selection travel as the
 * "labels" of the step that completes the pair, as tdhook's kwargs do.
 */
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "latenthook/bilinear_manager.h"
#include "latenthook/bprobe.h"
#include "latenthook/comm.h"
#include "latenthook/mem.h"

typedef struct slot {
  char *key;
  lh_bilinear *est; /* NULL until fitted, and after forget */
} slot;

struct lh_bilinear_manager {
  lh_bpm *bpm;
  lh_bilinear_opts opts;
  slot *s;
  int64_t ns, cs;
};

/* The labels of a step: y and the selection of the local rows. */
typedef struct batch {
  const double *y;
  const bool *use;
} batch;

static slot *find_slot(const lh_bilinear_manager *m, const char *key) {
  for (int64_t i = 0; i < m->ns; i++)
    if (strcmp(m->s[i].key, key) == 0) return &m->s[i];
  return NULL;
}

/* The slot of key, added when absent. Local. */
static lh_status get_slot(lh_bilinear_manager *m, const char *key, slot **out) {
  lh_status st = LH_OK;
  slot *s = find_slot(m, key);
  if (s) {
    *out = s;
    return LH_OK;
  }
  if (m->ns == m->cs) {
    int64_t cap = m->cs ? 2 * m->cs : 8;
    slot *ns = realloc(m->s, (size_t)cap * sizeof *ns);
    if (!ns) LH_FAIL(LH_ERR_NOMEM, "no memory for the bilinear estimators");
    m->s = ns;
    m->cs = cap;
  }
  size_t len = strlen(key) + 1;
  char *k = malloc(len);
  if (!k) LH_FAIL(LH_ERR_NOMEM, "no memory for the bilinear estimators");
  memcpy(k, key, len);
  m->s[m->ns] = (slot){.key = k, .est = NULL};
  *out = &m->s[m->ns++];
done:
  return st;
}

static void forget(const char *key, void *user) {
  slot *s = find_slot(user, key);
  if (s) lh_bilinear_destroy(&s->est);
}

/* Fits (fit) or scores the completed pair (H1, H2) of pair_key. Collective over H1's
 * communicator; every rank gets here at the same step. */
static lh_status run(const char *key, const void *h1, const void *h2, const void *labels, bool fit,
                     lh_probe_metrics *met, void *user) {
  lh_status st = LH_OK;
  lh_bilinear_manager *m = user;
  const lh_dmat *H1 = h1, *H2 = h2;
  const batch *b = labels;
  lh_bilinear *e = NULL;
  slot *s = NULL;
  LH_TRY(lh_agree(lh_dmat_comm(H1), get_slot(m, key, &s)));
  if (fit) {
    LH_TRY(lh_bilinear_fit(H1, H2, b->y, b->use, &m->opts, &e));
    lh_bilinear_destroy(&s->est);
    s->est = e;
    e = NULL;
  } else if (!s->est) {
    LH_FAIL(LH_ERR_VALUE, "Probe %s is not fitted", key);
  }
  LH_TRY(lh_bilinear_evaluate(s->est, H1, H2, b->y, b->use, met));
done:
  lh_bilinear_destroy(&e);
  return st;
}

lh_status lh_bilinear_manager_create(int64_t npairs, const char *const (*pairs)[2],
                                     const lh_bilinear_opts *opts, bool allow_overwrite,
                                     lh_bilinear_manager **out) {
  lh_status st = LH_OK;
  lh_bilinear_manager *m = NULL;
  if (!opts || !out) LH_FAIL(LH_ERR_VALUE, "lh_bilinear_manager_create: NULL argument");
  LH_TRY(lh_alloc(1, sizeof *m, true, "bilinear probe manager", &m));
  m->opts = *opts;
  const lh_bpm_callbacks cb = {.run = run, .forget = forget, .user = m};
  LH_TRY(lh_bpm_create(npairs, pairs, allow_overwrite, &cb, &m->bpm));
  *out = m;
  m = NULL;
done:
  lh_bilinear_manager_destroy(&m);
  return st;
}

void lh_bilinear_manager_destroy(lh_bilinear_manager **mp) {
  if (!mp || !*mp) return;
  lh_bilinear_manager *m = *mp;
  lh_bpm_destroy(&m->bpm);
  for (int64_t i = 0; i < m->ns; i++) {
    free(m->s[i].key);
    lh_bilinear_destroy(&m->s[i].est);
  }
  free(m->s);
  lh_free(m);
  *mp = NULL;
}

const char *lh_bilinear_manager_key_pattern(const lh_bilinear_manager *m) {
  return lh_bpm_key_pattern(m->bpm);
}

lh_status lh_bilinear_manager_factory(lh_bilinear_manager *m, const char *key,
                                      const char *direction, int64_t *id) {
  return lh_bpm_probe_factory(m->bpm, key, direction, id);
}

lh_status lh_bilinear_manager_step(lh_bilinear_manager *m, int64_t id, const lh_dmat *X,
                                   const double *y, const bool *use, const char *step_type) {
  const batch b = {.y = y, .use = use};
  return lh_bpm_step(m->bpm, id, X, &b, step_type);
}

void lh_bilinear_manager_before_all(lh_bilinear_manager *m) {
  lh_bpm_before_all(m->bpm);
}

lh_status lh_bilinear_manager_after_all(lh_bilinear_manager *m) {
  return lh_bpm_after_all(m->bpm);
}

void lh_bilinear_manager_reset_estimators(lh_bilinear_manager *m) {
  lh_bpm_reset_estimators(m->bpm); /* forgets every estimator */
}

void lh_bilinear_manager_reset_metrics(lh_bilinear_manager *m) {
  lh_bpm_reset_metrics(m->bpm);
}

int64_t lh_bilinear_manager_count(const lh_bilinear_manager *m) {
  return lh_bpm_num_probes(m->bpm);
}

const char *lh_bilinear_manager_key(const lh_bilinear_manager *m, int64_t i) {
  return lh_bpm_probe_key(m->bpm, i);
}

const char *lh_bilinear_manager_pair(const lh_bilinear_manager *m, int64_t i, int side) {
  return lh_bpm_probe_pair(m->bpm, i, side);
}

const lh_bilinear *lh_bilinear_manager_estimator(const lh_bilinear_manager *m, const char *key) {
  const slot *s = find_slot(m, key);
  return s ? s->est : NULL;
}

const lh_probe_metrics *lh_bilinear_manager_fit_metrics(const lh_bilinear_manager *m,
                                                        const char *key) {
  return lh_bpm_fit_metrics(m->bpm, key);
}

const lh_probe_metrics *lh_bilinear_manager_predict_metrics(const lh_bilinear_manager *m,
                                                            const char *key) {
  return lh_bpm_predict_metrics(m->bpm, key);
}
