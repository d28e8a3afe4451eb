/*
 * bprobe.c: BilinearProbe / BilinearProbeManager bookkeeping (SPEC 3.3-3.4; see bprobe.h).
 * Small tables searched linearly: a model has tens of hooked modules, not thousands.
 *
 * As in tdhook, the pair probes are memoised by the tuple (h1, h2, direction) while the
 * estimators and metrics are keyed by the string "{h1}_{h2}_{direction}", so two different
 * pairs whose strings coincide (("a_b", "c") and ("a", "b_c")) are two probes and the second
 * one's creation raises "already exists". Dispatchers hold probe indices, which stay valid
 * until reset_estimators (which drops the dispatchers too). The messages are those of tdhook's
 * reference version (e2e3692).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "latenthook/bprobe.h"
#include "latenthook/mem.h"

typedef struct pair_probe {
  char *h1, *h2, *dir, *key; /* key = "{h1}_{h2}_{dir}" */
  const void *d1, *d2; /* stored sides (borrowed) */
  bool has1, has2;
} pair_probe;

typedef struct dispatcher {
  char *key, *dir;
  int64_t n;
  int64_t *probes; /* indices of the pair probes it feeds, in pairs order (repeats kept) */
} dispatcher;

typedef struct record {
  char *key;
  lh_probe_metrics m;
} record;

struct lh_bpm {
  int64_t npairs;
  char **p1, **p2;
  bool allow_overwrite;
  lh_bpm_callbacks cb;
  char *pattern;
  pair_probe *probes;
  int64_t nprobes, cprobes;
  dispatcher *disp;
  int64_t ndisp, cdisp;
  record *fit, *pred;
  int64_t nfit, cfit, npred, cpred;
};

static char *dup_str(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d) memcpy(d, s, n);
  return d;
}

static char *join3(const char *a, const char *b, const char *c) {
  size_t n = strlen(a) + strlen(b) + strlen(c) + 3;
  char *d = malloc(n);
  if (d) snprintf(d, n, "%s_%s_%s", a, b, c);
  return d;
}

/* Makes room for one more element in *arr (count n, capacity *cap). */
static lh_status grow(void **arr, int64_t n, int64_t *cap, size_t size) {
  if (n < *cap) return LH_OK;
  int64_t nc = *cap ? 2 * *cap : 8;
  void *p = realloc(*arr, (size_t)nc * size);
  if (!p) return LH_ERROR(LH_ERR_NOMEM, "no memory for the bilinear probe tables");
  *arr = p;
  *cap = nc;
  return LH_OK;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Python's re.escape for the characters that are special in a regex. */
static size_t escape(const char *s, char *out) {
  size_t k = 0;
  for (; *s; s++) {
    if (strchr("\\.^$*+?()[]{}|-#&~ \t\n", *s)) {
      if (out) out[k] = '\\';
      k++;
    }
    if (out) out[k] = *s;
    k++;
  }
  return k;
}

lh_status lh_bpm_create(int64_t npairs, const char *const (*pairs)[2], bool allow_overwrite,
                        const lh_bpm_callbacks *cb, lh_bpm **out) {
  lh_status st = LH_OK;
  lh_bpm *m = NULL;
  char **keys = NULL;
  if (npairs < 1) LH_FAIL(LH_ERR_VALUE, "BilinearProbeManager needs at least one pair");
  if (!cb || !cb->run) LH_FAIL(LH_ERR_VALUE, "BilinearProbeManager needs a run callback");
  m = calloc(1, sizeof *m);
  keys = calloc((size_t)(2 * npairs), sizeof *keys);
  if (!m || !keys) LH_FAIL(LH_ERR_NOMEM, "no memory for a bilinear probe manager");
  m->p1 = calloc((size_t)npairs, sizeof *m->p1);
  m->p2 = calloc((size_t)npairs, sizeof *m->p2);
  if (!m->p1 || !m->p2) LH_FAIL(LH_ERR_NOMEM, "no memory for a bilinear probe manager");
  m->npairs = npairs;
  m->allow_overwrite = allow_overwrite;
  m->cb = *cb;
  for (int64_t k = 0; k < npairs; k++) {
    m->p1[k] = dup_str(pairs[k][0]);
    m->p2[k] = dup_str(pairs[k][1]);
    if (!m->p1[k] || !m->p2[k]) LH_FAIL(LH_ERR_NOMEM, "no memory for the pair names");
    keys[2 * k] = m->p1[k];
    keys[2 * k + 1] = m->p2[k];
  }
  qsort(keys, (size_t)(2 * npairs), sizeof *keys, cmp_str);
  size_t len = 1;
  for (int64_t k = 0; k < 2 * npairs; k++)
    if (k == 0 || strcmp(keys[k], keys[k - 1]) != 0) len += escape(keys[k], NULL) + 2;
  m->pattern = malloc(len);
  if (!m->pattern) LH_FAIL(LH_ERR_NOMEM, "no memory for the key pattern");
  size_t at = 0;
  for (int64_t k = 0; k < 2 * npairs; k++) {
    if (k > 0 && strcmp(keys[k], keys[k - 1]) == 0) continue;
    if (at > 0) m->pattern[at++] = '|';
    at += escape(keys[k], m->pattern + at);
    m->pattern[at++] = '$';
  }
  m->pattern[at] = '\0';
  *out = m;
  m = NULL;
done:
  free(keys);
  lh_bpm_destroy(&m);
  return st;
}

static void clear_records(record *r, int64_t *n) {
  for (int64_t k = 0; k < *n; k++) free(r[k].key);
  *n = 0;
}

void lh_bpm_reset_estimators(lh_bpm *m) {
  for (int64_t k = 0; k < m->nprobes; k++) {
    if (m->cb.forget) m->cb.forget(m->probes[k].key, m->cb.user);
    free(m->probes[k].h1);
    free(m->probes[k].h2);
    free(m->probes[k].dir);
    free(m->probes[k].key);
  }
  m->nprobes = 0;
  for (int64_t k = 0; k < m->ndisp; k++) {
    free(m->disp[k].probes);
    free(m->disp[k].key);
    free(m->disp[k].dir);
  }
  m->ndisp = 0;
}

void lh_bpm_reset_metrics(lh_bpm *m) {
  clear_records(m->fit, &m->nfit);
  clear_records(m->pred, &m->npred);
}

void lh_bpm_destroy(lh_bpm **mp) {
  if (!mp || !*mp) return;
  lh_bpm *m = *mp;
  lh_bpm_reset_estimators(m);
  lh_bpm_reset_metrics(m);
  for (int64_t k = 0; k < m->npairs; k++) {
    if (m->p1) free(m->p1[k]);
    if (m->p2) free(m->p2[k]);
  }
  free(m->p1);
  free(m->p2);
  free(m->pattern);
  free(m->probes);
  free(m->disp);
  free(m->fit);
  free(m->pred);
  free(m);
  *mp = NULL;
}

const char *lh_bpm_key_pattern(const lh_bpm *m) { return m->pattern; }

static pair_probe *find_probe(const lh_bpm *m, const char *key) {
  for (int64_t k = 0; k < m->nprobes; k++)
    if (strcmp(m->probes[k].key, key) == 0) return &m->probes[k];
  return NULL;
}

/* The probe memoised for the tuple (h1, h2, dir), or -1. */
static int64_t find_pair(const lh_bpm *m, const char *h1, const char *h2, const char *dir) {
  for (int64_t k = 0; k < m->nprobes; k++)
    if (strcmp(m->probes[k].h1, h1) == 0 && strcmp(m->probes[k].h2, h2) == 0 &&
        strcmp(m->probes[k].dir, dir) == 0)
      return k;
  return -1;
}

/* Gets (memo hit, unless replace) or creates the pair probe of (h1, h2, dir); *index gets it.
 * Creating on a key that an estimator already has (the same tuple with replace, or another
 * tuple with the same string) is tdhook's _create_pair_probe on an existing key: an error
 * without allow_overwrite, else the estimator of the key is forgotten (replaced). */
static lh_status make_probe(lh_bpm *m, const char *h1, const char *h2, const char *dir,
                            bool replace, int64_t *index) {
  lh_status st = LH_OK;
  char *key = join3(h1, h2, dir);
  if (!key) LH_FAIL(LH_ERR_NOMEM, "no memory for a pair key");
  const int64_t k = find_pair(m, h1, h2, dir);
  if (k >= 0 && !replace) {
    *index = k;
    goto done;
  }
  if (k >= 0 || find_probe(m, key)) {
    if (!m->allow_overwrite)
      LH_FAIL(LH_ERR_VALUE,
              "Probe %s already exists, call reset_estimators() to reset or use "
              "allow_overwrite=True",
              key);
    if (m->cb.forget) m->cb.forget(key, m->cb.user);
  }
  if (k >= 0) { /* a fresh estimator and store */
    pair_probe *p = &m->probes[k];
    p->has1 = p->has2 = false;
    p->d1 = p->d2 = NULL;
    *index = k;
    goto done;
  }
  LH_TRY(grow((void **)&m->probes, m->nprobes, &m->cprobes, sizeof *m->probes));
  pair_probe q = {.h1 = dup_str(h1), .h2 = dup_str(h2), .dir = dup_str(dir), .key = key};
  if (!q.h1 || !q.h2 || !q.dir) {
    free(q.h1);
    free(q.h2);
    free(q.dir);
    LH_FAIL(LH_ERR_NOMEM, "no memory for a pair probe");
  }
  m->probes[m->nprobes] = q;
  *index = m->nprobes++;
  key = NULL;
done:
  free(key);
  return st;
}

lh_status lh_bpm_create_pair_probe(lh_bpm *m, const char *h1, const char *h2,
                                   const char *direction) {
  int64_t k;
  return make_probe(m, h1, h2, direction, true, &k);
}

lh_status lh_bpm_probe_factory(lh_bpm *m, const char *key, const char *direction, int64_t *id) {
  lh_status st = LH_OK;
  for (int64_t k = 0; k < m->ndisp; k++)
    if (strcmp(m->disp[k].key, key) == 0 && strcmp(m->disp[k].dir, direction) == 0) {
      *id = k;
      return LH_OK;
    }
  LH_TRY(grow((void **)&m->disp, m->ndisp, &m->cdisp, sizeof *m->disp));
  dispatcher d = {.key = dup_str(key), .dir = dup_str(direction)};
  d.probes = calloc((size_t)m->npairs, sizeof *d.probes);
  if (!d.key || !d.dir || !d.probes) {
    free(d.key);
    free(d.dir);
    free(d.probes);
    LH_FAIL(LH_ERR_NOMEM, "no memory for a probe dispatcher");
  }
  for (int64_t k = 0; k < m->npairs && st == LH_OK; k++) {
    if (strcmp(m->p1[k], key) != 0 && strcmp(m->p2[k], key) != 0) continue;
    st = make_probe(m, m->p1[k], m->p2[k], direction, false, &d.probes[d.n]);
    if (st == LH_OK) d.n++;
  }
  if (st != LH_OK) {
    free(d.probes);
    free(d.key);
    free(d.dir);
    goto done;
  }
  m->disp[m->ndisp] = d;
  *id = m->ndisp++;
done:
  return st;
}

static lh_status store(record **r, int64_t *n, int64_t *cap, const char *key,
                       const lh_probe_metrics *v, bool overwrite) {
  lh_status st = LH_OK;
  for (int64_t k = 0; k < *n; k++)
    if (strcmp((*r)[k].key, key) == 0) {
      if (!overwrite)
        LH_FAIL(LH_ERR_VALUE,
                "Metrics for %s already exist, call reset_metrics() or use "
                "allow_overwrite=True",
                key);
      (*r)[k].m = *v;
      goto done;
    }
  LH_TRY(grow((void **)r, *n, cap, sizeof **r));
  (*r)[*n].key = dup_str(key);
  if (!(*r)[*n].key) LH_FAIL(LH_ERR_NOMEM, "no memory for a metrics record");
  (*r)[(*n)++].m = *v;
done:
  return st;
}

static lh_status run_pair(lh_bpm *m, pair_probe *p, const void *h1, const void *h2,
                          const void *labels, const char *step_type) {
  lh_status st = LH_OK;
  const bool fit = step_type && strcmp(step_type, "fit") == 0;
  if (!fit && !(step_type && strcmp(step_type, "predict") == 0))
    LH_FAIL(LH_ERR_VALUE, "step_type must be 'fit' or 'predict', got %s%s%s", step_type ? "'" : "",
            step_type ? step_type : "None", step_type ? "'" : "");
  lh_probe_metrics v = {0};
  LH_TRY(m->cb.run(p->key, h1, h2, labels, fit, &v, m->cb.user));
  if (fit)
    LH_TRY(store(&m->fit, &m->nfit, &m->cfit, p->key, &v, m->allow_overwrite));
  else
    LH_TRY(store(&m->pred, &m->npred, &m->cpred, p->key, &v, m->allow_overwrite));
done:
  return st;
}

lh_status lh_bpm_step(lh_bpm *m, int64_t id, const void *data, const void *labels,
                      const char *step_type) {
  lh_status st = LH_OK;
  if (id < 0 || id >= m->ndisp) LH_FAIL(LH_ERR_VALUE, "no probe dispatcher %lld", (long long)id);
  const dispatcher *d = &m->disp[id];
  for (int64_t j = 0; j < d->n; j++) {
    pair_probe *p = &m->probes[d->probes[j]];
    if (strcmp(p->h1, p->h2) == 0) {
      LH_TRY(run_pair(m, p, data, data, labels, step_type));
      continue;
    }
    if (strcmp(d->key, p->h1) == 0) {
      p->d1 = data;
      p->has1 = true;
    } else if (strcmp(d->key, p->h2) == 0) {
      p->d2 = data;
      p->has2 = true;
    }
    if (p->has1 && p->has2) {
      const void *a = p->d1, *b = p->d2;
      p->has1 = p->has2 = false;
      p->d1 = p->d2 = NULL;
      LH_TRY(run_pair(m, p, a, b, labels, step_type));
    }
  }
done:
  return st;
}

void lh_bpm_before_all(lh_bpm *m) {
  for (int64_t k = 0; k < m->nprobes; k++) {
    m->probes[k].has1 = m->probes[k].has2 = false;
    m->probes[k].d1 = m->probes[k].d2 = NULL;
  }
}

bool lh_bpm_is_waiting(const lh_bpm *m, const char *pair_key) {
  const pair_probe *p = find_probe(m, pair_key);
  return p && strcmp(p->h1, p->h2) != 0 && p->has1 != p->has2;
}

lh_status lh_bpm_after_all(lh_bpm *m) {
  lh_status st = LH_OK;
  char keys[1024] = "", pairs[1024] = "";
  const char **waiting = calloc((size_t)(2 * m->nprobes + 1), sizeof *waiting);
  int64_t nw = 0;
  if (!waiting) LH_FAIL(LH_ERR_NOMEM, "no memory for after_all");
  for (int64_t k = 0; k < m->nprobes; k++) {
    const pair_probe *p = &m->probes[k];
    if (strcmp(p->h1, p->h2) == 0 || p->has1 == p->has2) continue;
    waiting[nw++] = p->h1;
    waiting[nw++] = p->h2;
    size_t at = strlen(pairs);
    snprintf(pairs + at, sizeof pairs - at, "%s('%s', '%s')", at ? ", " : "", p->h1, p->h2);
  }
  lh_bpm_before_all(m);
  if (nw == 0) goto done;
  qsort(waiting, (size_t)nw, sizeof *waiting, cmp_str);
  for (int64_t k = 0; k < nw; k++) {
    if (k > 0 && strcmp(waiting[k], waiting[k - 1]) == 0) continue;
    size_t at = strlen(keys);
    snprintf(keys + at, sizeof keys - at, "%s'%s'", at ? ", " : "", waiting[k]);
  }
  LH_FAIL(LH_ERR_VALUE, "Bilinear probes still waiting on keys: [%s]. Unresolved pairs: [%s]",
          keys, pairs);
done:
  free(waiting);
  return st;
}

int64_t lh_bpm_num_probes(const lh_bpm *m) { return m->nprobes; }

const char *lh_bpm_probe_key(const lh_bpm *m, int64_t i) {
  return i >= 0 && i < m->nprobes ? m->probes[i].key : NULL;
}

const char *lh_bpm_probe_pair(const lh_bpm *m, int64_t i, int side) {
  if (i < 0 || i >= m->nprobes) return NULL;
  return side == 0 ? m->probes[i].h1 : side == 1 ? m->probes[i].h2 : m->probes[i].dir;
}

static const lh_probe_metrics *find_record(const record *r, int64_t n, const char *key) {
  for (int64_t k = 0; k < n; k++)
    if (strcmp(r[k].key, key) == 0) return &r[k].m;
  return NULL;
}

const lh_probe_metrics *lh_bpm_fit_metrics(const lh_bpm *m, const char *pair_key) {
  return find_record(m->fit, m->nfit, pair_key);
}

const lh_probe_metrics *lh_bpm_predict_metrics(const lh_bpm *m, const char *pair_key) {
  return find_record(m->pred, m->npred, pair_key);
}

int64_t lh_bpm_num_metrics(const lh_bpm *m, bool fit) { return fit ? m->nfit : m->npred; }
