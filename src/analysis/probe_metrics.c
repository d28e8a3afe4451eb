/*
 * probe_metrics.c: the quality of a fitted probe on a set of samples, and the train/test
 * split by global sample index.
 *
 * Classification: accuracy, balanced accuracy (mean recall over the classes present in y,
 * as scikit-learn's balanced_accuracy_score), macro F1 (F1 averaged over the classes present
 * in y or in the predictions, as f1_score(average="macro")) from integer counts, and the
 * mean cross-entropy -log p(y|x) computed from the scores (log-sum-exp; softplus for the
 * mean difference) without clipping. Regression: MSE and R^2 = 1 - SSres/SStot with
 * scikit-learn's convention when SStot = 0. The scores come a block of global rows at a time
 * from one DGEMM (probe_model.c: the same bits for a sample on any rank count, memory
 * O(block) instead of O(n C)); counts are integers and sums exact (xsum.h), so every metric is
 * the same on any number of ranks.
 */
#include <math.h>
#include <string.h>

#include "analysis/probe_internal.h"
#include "core/check.h"
#include "latenthook/comm.h"
#include "latenthook/mem.h"
#include "latenthook/rng.h"

#define SPLIT_SALT UINT64_C(0x7E57)

void lh_probe_split(uint64_t seed, double test_fraction, int64_t row0, int64_t n, bool *test) {
  const uint64_t s = lh_rng_u64(seed, SPLIT_SALT);
  for (int64_t i = 0; i < n; i++) test[i] = lh_rng_unit(s, (uint64_t)(row0 + i)) < test_fraction;
}

/* log(1 + exp(t)) without overflow. */
static double softplus(double t) {
  return t > 0 ? t + log1p(exp(-t)) : log1p(exp(t));
}

/* The metric sums over the rows seen so far, in any grouping of the rows: integer counts
 * and exact sums (xsum.h). */
typedef struct metric_sums {
  int64_t K;    /* classes counted (2 for the mean difference) */
  int64_t *cnt; /* [true positives (K), true counts (K), predicted counts (K)] */
  lh_xsum ce;   /* sum of -log p(y | x) */
  lh_xsum sq;   /* regression: sum of squared residuals */
} metric_sums;

/* Local; the caller agrees. */
static lh_status sums_init(metric_sums *a, lh_probe_kind kind, int64_t C) {
  memset(a, 0, sizeof *a);
  lh_xsum_init(&a->ce);
  lh_xsum_init(&a->sq);
  if (kind == LH_PROBE_REGRESSOR) return LH_OK;
  a->K = kind == LH_PROBE_MEAN_DIFFERENCE ? 2 : C;
  return lh_alloc((size_t)(3 * a->K), sizeof *a->cnt, true, "class counts", &a->cnt);
}

static void sums_free(metric_sums *a) {
  lh_free(a->cnt);
  a->cnt = NULL;
}

/* Adds m rows: scores s (m x C), labels y (m), selection use (m, NULL = all). Local. */
static void sums_add(metric_sums *a, lh_probe_kind kind, int64_t C, int64_t m, const double *s,
                     const double *y, const bool *use) {
  const int64_t K = a->K;
  for (int64_t i = 0; i < m; i++) {
    if (use && !use[i]) continue;
    const double *si = s + i * C;
    if (kind == LH_PROBE_REGRESSOR) {
      const double e = si[0] - y[i];
      lh_xsum_add_product(&a->sq, e, e);
      continue;
    }
    const int64_t t = (int64_t)y[i], q = (int64_t)probe_score_predict(kind, C, si);
    a->cnt[K + t]++;
    a->cnt[2 * K + q]++;
    if (t == q) a->cnt[t]++;
    if (kind == LH_PROBE_MEAN_DIFFERENCE) {
      lh_xsum_add(&a->ce, softplus(t == 1 ? -si[0] : si[0]));
    } else {
      double mx = si[0], z = 0;
      for (int64_t c = 1; c < C; c++) mx = si[c] > mx ? si[c] : mx;
      for (int64_t c = 0; c < C; c++) z += exp(si[c] - mx);
      lh_xsum_add(&a->ce, mx + log(z) - si[t]);
    }
  }
}

/* Sums over the ranks and the metrics of count >= 1 rows; the regression's total sum of
 * squares comes from the labels y (n local values, selection use). Collective. */
static lh_status sums_finish(metric_sums *a, lh_probe_kind kind, MPI_Comm comm, int64_t n,
                             const double *y, const bool *use, int64_t count, lh_probe_metrics *m) {
  lh_status st = LH_OK;
  m->n = count;
  m->classification = kind != LH_PROBE_REGRESSOR;
  if (kind == LH_PROBE_REGRESSOR) {
    lh_xsum ys, tot; /* sum of y; then sum of (y - ybar)^2 */
    lh_xsum_init(&ys);
    lh_xsum_init(&tot);
    for (int64_t i = 0; i < n; i++)
      if (!use || use[i]) lh_xsum_add(&ys, y[i]);
    lh_xsum two[2] = {a->sq, ys};
    LH_TRY(lh_xsum_allreduce(two, 2, comm));
    const double ssres = lh_xsum_round(&two[0]), ybar = lh_xsum_round(&two[1]) / (double)count;
    for (int64_t i = 0; i < n; i++) {
      if (use && !use[i]) continue;
      const double d = y[i] - ybar;
      lh_xsum_add_product(&tot, d, d);
    }
    LH_TRY(lh_xsum_allreduce(&tot, 1, comm));
    const double sstot = lh_xsum_round(&tot);
    m->mse = ssres / (double)count;
    m->r2 = sstot > 0 ? 1.0 - ssres / sstot : (ssres == 0 ? 1.0 : 0.0);
    m->accuracy = m->balanced_accuracy = m->cross_entropy = m->macro_f1 = NAN;
    goto done;
  }
  const int64_t K = a->K;
  int nk;
  LH_TRY(lh_int_cast(3 * K, "class counts", &nk));
  if (MPI_Allreduce(MPI_IN_PLACE, a->cnt, nk, MPI_INT64_T, MPI_SUM, comm) != MPI_SUCCESS)
    LH_FAIL(LH_ERR_MPI, "metrics: MPI_Allreduce of the class counts failed");
  LH_TRY(lh_xsum_allreduce(&a->ce, 1, comm));
  const int64_t *cnt = a->cnt;
  int64_t correct = 0, present = 0, seen = 0;
  double recall = 0, f1 = 0;
  for (int64_t k = 0; k < K; k++) {
    correct += cnt[k];
    if (cnt[K + k] > 0) {
      present++;
      recall += (double)cnt[k] / (double)cnt[K + k];
    }
    if (cnt[K + k] + cnt[2 * K + k] > 0) {
      seen++;
      f1 += 2.0 * (double)cnt[k] / (double)(cnt[K + k] + cnt[2 * K + k]);
    }
  }
  m->accuracy = (double)correct / (double)count;
  m->balanced_accuracy = recall / (double)present;
  m->macro_f1 = f1 / (double)seen;
  m->cross_entropy = lh_xsum_round(&a->ce) / (double)count;
  m->mse = m->r2 = NAN;
done:
  return st;
}

lh_status probe_score_metrics(lh_probe_kind kind, int64_t C, MPI_Comm comm, int64_t n,
                              const double *s, const double *y, const bool *use, int64_t count,
                              lh_probe_metrics *m) {
  lh_status st = LH_OK;
  metric_sums a;
  LH_TRY(lh_agree(comm, sums_init(&a, kind, C)));
  sums_add(&a, kind, C, n, s, y, use);
  LH_TRY(sums_finish(&a, kind, comm, n, y, use, count, m));
done:
  sums_free(&a);
  return st;
}

lh_status lh_probe_evaluate(const lh_probe *p, const lh_dmat *X, const double *y, const bool *use,
                            lh_probe_metrics *out) {
  lh_status st = LH_OK, local = LH_OK;
  lh_probe_metrics m = {0};
  metric_sums a = {0};
  probe_scorer sc = {0};
  int64_t count = 0;
  if (lh_dmat_cols(X) != p->D)
    LH_FAIL(LH_ERR_VALUE, "evaluate: the probe has %lld features, the data %lld", (long long)p->D,
            (long long)lh_dmat_cols(X));
  const bool cls = p->kind != LH_PROBE_REGRESSOR;
  /* the mean difference is scored as a two-class classifier: labels must be 0 or 1 */
  LH_TRY(probe_check(X, y, use, cls ? LH_PROBE_CLASSIFIER : LH_PROBE_REGRESSOR,
                     p->kind == LH_PROBE_MEAN_DIFFERENCE ? 2 : p->C, "evaluate", &count));
  if (count < 1) LH_FAIL(LH_ERR_VALUE, "evaluate: no sample to evaluate");
  const int64_t n = lh_dmat_local_rows(X);
  local = sums_init(&a, p->kind, p->C);
  if (local == LH_OK) local = probe_scorer_init(&sc, p, X);
  LH_TRY(lh_agree(lh_dmat_comm(X), local));
  /* the scores of a block of global rows at a time (the same bits on any rank count) */
  for (int64_t i0 = 0, i1; i0 < n; i0 = i1) {
    i1 = probe_scorer_end(&sc, i0);
    sums_add(&a, p->kind, p->C, i1 - i0, probe_scorer_run(&sc, i0, i1), y + i0,
             use ? use + i0 : NULL);
  }
  LH_TRY(sums_finish(&a, p->kind, lh_dmat_comm(X), n, y, use, count, &m));
  *out = m;
done:
  sums_free(&a);
  probe_scorer_free(&sc);
  return st;
}
