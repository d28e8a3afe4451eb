/*
 * probe_metrics.c: the quality of a fitted probe on a set of samples, and the train/test
 * split by global sample index.
 *
 * Classification: accuracy, balanced accuracy (mean recall over the classes present in y,
 * as scikit-learn's balanced_accuracy_score), macro F1 (F1 averaged over the classes present
 * in y or in the predictions, as f1_score(average="macro")) from integer counts, and the
 * mean cross-entropy -log p(y|x) computed from the scores (log-sum-exp; softplus for the
 * mean difference) without clipping. Regression: MSE and R^2 = 1 - SSres/SStot with
 * scikit-learn's convention when SStot = 0. Counts are integers and sums exact (xsum.h), so
 * every metric is the same on any number of ranks.
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

/* The prediction from the scores of one sample: class id (first maximum, as torch.argmax;
 * f > 0 for the mean difference) or the regression value. */
static double score_predict(lh_probe_kind kind, int64_t C, const double *si) {
  if (kind == LH_PROBE_REGRESSOR) return si[0];
  if (kind == LH_PROBE_MEAN_DIFFERENCE) return si[0] > 0 ? 1.0 : 0.0;
  int64_t best = 0;
  for (int64_t c = 1; c < C; c++)
    if (si[c] > si[best]) best = c;
  return (double)best;
}

static lh_status classification(lh_probe_kind kind, int64_t C, MPI_Comm comm, int64_t n,
                                const double *s, const double *y, const bool *use, int64_t count,
                                lh_probe_metrics *m) {
  lh_status st = LH_OK;
  const int64_t K = kind == LH_PROBE_MEAN_DIFFERENCE ? 2 : C;
  int64_t *cnt = NULL; /* [true positives (K), true counts (K), predicted counts (K)] */
  lh_xsum ce;
  int nk;
  LH_TRY(lh_int_cast(3 * K, "class counts", &nk));
  LH_TRY(lh_agree(comm, lh_alloc((size_t)(3 * K), sizeof *cnt, true, "class counts", &cnt)));
  lh_xsum_init(&ce);
  for (int64_t i = 0; i < n; i++) {
    if (use && !use[i]) continue;
    const int64_t t = (int64_t)y[i], q = (int64_t)score_predict(kind, C, s + i * C);
    cnt[K + t]++;
    cnt[2 * K + q]++;
    if (t == q) cnt[t]++;
    const double *si = s + i * C;
    if (kind == LH_PROBE_MEAN_DIFFERENCE) {
      lh_xsum_add(&ce, softplus(t == 1 ? -si[0] : si[0]));
    } else {
      double mx = si[0], z = 0;
      for (int64_t c = 1; c < C; c++) mx = si[c] > mx ? si[c] : mx;
      for (int64_t c = 0; c < C; c++) z += exp(si[c] - mx);
      lh_xsum_add(&ce, mx + log(z) - si[t]);
    }
  }
  if (MPI_Allreduce(MPI_IN_PLACE, cnt, nk, MPI_INT64_T, MPI_SUM, comm) != MPI_SUCCESS)
    LH_FAIL(LH_ERR_MPI, "metrics: MPI_Allreduce of the class counts failed");
  LH_TRY(lh_xsum_allreduce(&ce, 1, comm));
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
  m->cross_entropy = lh_xsum_round(&ce) / (double)count;
  m->mse = m->r2 = NAN;
done:
  lh_free(cnt);
  return st;
}

static lh_status regression(MPI_Comm comm, int64_t n, const double *pred, const double *y,
                            const bool *use, int64_t count, lh_probe_metrics *m) {
  lh_status st = LH_OK;
  lh_xsum acc[2], tot; /* sum of squared residuals, sum of y; then sum of (y - ybar)^2 */
  lh_xsum_init(&acc[0]);
  lh_xsum_init(&acc[1]);
  lh_xsum_init(&tot);
  for (int64_t i = 0; i < n; i++) {
    if (use && !use[i]) continue;
    const double e = pred[i] - y[i];
    lh_xsum_add_product(&acc[0], e, e);
    lh_xsum_add(&acc[1], y[i]);
  }
  LH_TRY(lh_xsum_allreduce(acc, 2, comm));
  const double ssres = lh_xsum_round(&acc[0]), ybar = lh_xsum_round(&acc[1]) / (double)count;
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
done:
  return st;
}

lh_status probe_score_metrics(lh_probe_kind kind, int64_t C, MPI_Comm comm, int64_t n,
                              const double *s, const double *y, const bool *use, int64_t count,
                              lh_probe_metrics *m) {
  m->n = count;
  m->classification = kind != LH_PROBE_REGRESSOR;
  if (kind == LH_PROBE_REGRESSOR) return regression(comm, n, s, y, use, count, m);
  return classification(kind, C, comm, n, s, y, use, count, m);
}

lh_status lh_probe_evaluate(const lh_probe *p, const lh_dmat *X, const double *y, const bool *use,
                            lh_probe_metrics *out) {
  lh_status st = LH_OK;
  lh_probe_metrics m = {0};
  int64_t count = 0;
  double *s = NULL; /* n x C scores */
  if (lh_dmat_cols(X) != p->D)
    LH_FAIL(LH_ERR_VALUE, "evaluate: the probe has %lld features, the data %lld", (long long)p->D,
            (long long)lh_dmat_cols(X));
  const bool cls = p->kind != LH_PROBE_REGRESSOR;
  /* the mean difference is scored as a two-class classifier: labels must be 0 or 1 */
  LH_TRY(probe_check(X, y, use, cls ? LH_PROBE_CLASSIFIER : LH_PROBE_REGRESSOR,
                     p->kind == LH_PROBE_MEAN_DIFFERENCE ? 2 : p->C, "evaluate", &count));
  if (count < 1) LH_FAIL(LH_ERR_VALUE, "evaluate: no sample to evaluate");
  const int64_t n = lh_dmat_local_rows(X);
  LH_TRY(lh_agree(lh_dmat_comm(X), lh_alloc((size_t)(n * p->C), sizeof *s, false, "scores", &s)));
  lh_probe_decision(p, X, s);
  LH_TRY(probe_score_metrics(p->kind, p->C, lh_dmat_comm(X), n, s, y, use, count, &m));
  *out = m;
done:
  lh_free(s);
  return st;
}
