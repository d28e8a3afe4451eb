/*
 * probe_manager.c: tdhook's ProbeManager bookkeeping (probe_manager.h, SPEC 3.2).
 *
 * The three Python dicts (estimators, fit_metrics, predict_metrics) share one array of
 * entries, one per key ever registered, with a membership flag per dict; entries are never
 * removed, so an index handed out stays valid, as a Probe object keeps its estimator after
 * reset_estimators().
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "latenthook/mem.h"
#include "latenthook/probe_manager.h"

typedef struct entry {
  char *key;
  lh_probe *probe; /* NULL until fitted (a fresh estimator is unfitted) */
  bool in_estimators, has_fit, has_predict;
  lh_probe_metrics fit, predict;
} entry;

struct lh_probe_manager {
  lh_probe_opts opts;
  bool allow_overwrite;
  entry *e;
  int64_t count, cap;
};

lh_status lh_probe_manager_create(const lh_probe_opts *opts, bool allow_overwrite,
                                  lh_probe_manager **out) {
  lh_status st = LH_OK;
  lh_probe_manager *m = NULL;
  if (!opts || !out) LH_FAIL(LH_ERR_VALUE, "lh_probe_manager_create: NULL argument");
  LH_TRY(lh_alloc(1, sizeof *m, true, "probe manager", &m));
  m->opts = *opts;
  m->allow_overwrite = allow_overwrite;
  *out = m;
  m = NULL;
done:
  lh_free(m);
  return st;
}

void lh_probe_manager_destroy(lh_probe_manager **mp) {
  if (!mp || !*mp) return;
  lh_probe_manager *m = *mp;
  for (int64_t i = 0; i < m->count; i++) {
    free(m->e[i].key);
    lh_probe_destroy(&m->e[i].probe);
  }
  lh_free(m->e);
  lh_free(m);
  *mp = NULL;
}

static entry *find(const lh_probe_manager *m, const char *key) {
  for (int64_t i = 0; i < m->count; i++)
    if (strcmp(m->e[i].key, key) == 0) return &m->e[i];
  return NULL;
}

lh_status lh_probe_manager_factory(lh_probe_manager *m, const char *key, const char *direction,
                                   int64_t *index) {
  lh_status st = LH_OK;
  char *k = NULL;
  if (!m || !key || !direction || !index)
    LH_FAIL(LH_ERR_VALUE, "lh_probe_manager_factory: NULL argument");
  size_t len = strlen(key) + 1 + strlen(direction) + 1;
  LH_TRY(lh_alloc(len, 1, false, "probe key", &k));
  snprintf(k, len, "%s_%s", key, direction);
  entry *e = find(m, k);
  if (e && e->in_estimators && !m->allow_overwrite)
    LH_FAIL(LH_ERR_VALUE, "Probe %s already exists, call reset_estimators() to remove the "
            "existing probes or use allow_overwrite=True", k);
  if (!e) {
    if (m->count == m->cap) {
      int64_t cap = m->cap ? 2 * m->cap : 8;
      entry *ne = NULL;
      LH_TRY(lh_alloc((size_t)cap, sizeof *ne, true, "probe entries", &ne));
      if (m->count) memcpy(ne, m->e, (size_t)m->count * sizeof *ne);
      lh_free(m->e);
      m->e = ne;
      m->cap = cap;
    }
    e = &m->e[m->count++];
    e->key = strdup(k);
    if (!e->key) {
      m->count--;
      LH_FAIL(LH_ERR_NOMEM, "out of memory for the probe key '%s'", k);
    }
  }
  lh_probe_destroy(&e->probe); /* a fresh, unfitted estimator replaces the previous one */
  e->in_estimators = true;
  *index = e - m->e;
done:
  lh_free(k);
  return st;
}

static lh_status check_index(const lh_probe_manager *m, int64_t index) {
  if (!m || index < 0 || index >= m->count)
    return LH_ERROR(LH_ERR_VALUE, "probe index %lld was not given by this manager (%lld probes)",
                    (long long)index, m ? (long long)m->count : 0LL);
  return LH_OK;
}

lh_status lh_probe_manager_fit(lh_probe_manager *m, int64_t index, const lh_dmat *X,
                               const double *y, const bool *use) {
  lh_status st = LH_OK;
  lh_probe *p = NULL;
  lh_probe_metrics met;
  LH_TRY(check_index(m, index));
  entry *e = &m->e[index];
  if (e->probe) { /* fitted before: training continues from its parameters (tdhook) */
    LH_TRY(lh_probe_fit_warm(e->probe, X, y, use, &m->opts));
  } else {
    LH_TRY(lh_probe_fit(X, y, use, &m->opts, &p));
    e->probe = p;
    p = NULL;
  }
  LH_TRY(lh_probe_evaluate(e->probe, X, y, use, &met));
  if (e->has_fit && !m->allow_overwrite)
    LH_FAIL(LH_ERR_VALUE, "Metrics for %s already exist, call reset_metrics() to remove the "
            "existing metrics or use allow_overwrite=True", e->key);
  e->fit = met;
  e->has_fit = true;
done:
  lh_probe_destroy(&p);
  return st;
}

lh_status lh_probe_manager_predict(lh_probe_manager *m, int64_t index, const lh_dmat *X,
                                   const double *y, const bool *use) {
  lh_status st = LH_OK;
  lh_probe_metrics met;
  LH_TRY(check_index(m, index));
  entry *e = &m->e[index];
  if (!e->probe) LH_FAIL(LH_ERR_VALUE, "Probe %s is not fitted", e->key);
  LH_TRY(lh_probe_evaluate(e->probe, X, y, use, &met));
  if (e->has_predict && !m->allow_overwrite)
    LH_FAIL(LH_ERR_VALUE, "Metrics for %s already exist, call reset_metrics() to remove the "
            "existing metrics or use allow_overwrite=True", e->key);
  e->predict = met;
  e->has_predict = true;
done:
  return st;
}

void lh_probe_manager_reset_estimators(lh_probe_manager *m) {
  if (!m) return;
  for (int64_t i = 0; i < m->count; i++) m->e[i].in_estimators = false;
}

void lh_probe_manager_reset_metrics(lh_probe_manager *m) {
  if (!m) return;
  for (int64_t i = 0; i < m->count; i++) m->e[i].has_fit = m->e[i].has_predict = false;
}

int64_t lh_probe_manager_count(const lh_probe_manager *m) { return m ? m->count : 0; }

const char *lh_probe_manager_key(const lh_probe_manager *m, int64_t index) {
  return m && index >= 0 && index < m->count ? m->e[index].key : NULL;
}

static int64_t count_flag(const lh_probe_manager *m, int which) {
  int64_t c = 0;
  for (int64_t i = 0; m && i < m->count; i++)
    c += which == 0 ? m->e[i].in_estimators : which == 1 ? m->e[i].has_fit : m->e[i].has_predict;
  return c;
}

int64_t lh_probe_manager_n_estimators(const lh_probe_manager *m) { return count_flag(m, 0); }
int64_t lh_probe_manager_n_fit_metrics(const lh_probe_manager *m) { return count_flag(m, 1); }
int64_t lh_probe_manager_n_predict_metrics(const lh_probe_manager *m) { return count_flag(m, 2); }

const lh_probe *lh_probe_manager_probe(const lh_probe_manager *m, int64_t index) {
  return m && index >= 0 && index < m->count ? m->e[index].probe : NULL;
}

const lh_probe_metrics *lh_probe_manager_fit_metrics(const lh_probe_manager *m, const char *key) {
  const entry *e = m && key ? find(m, key) : NULL;
  return e && e->has_fit ? &e->fit : NULL;
}

const lh_probe_metrics *lh_probe_manager_predict_metrics(const lh_probe_manager *m,
                                                         const char *key) {
  const entry *e = m && key ? find(m, key) : NULL;
  return e && e->has_predict ? &e->predict : NULL;
}
