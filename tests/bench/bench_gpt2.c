/*
 * bench_gpt2.c: tokens per second of LatentHook's GPT-2 forward pass (model.h), for issue 5
 * (point 7). A benchmark, not a test: it never asserts times.
 *
 * Every rank loads the same Hugging Face GPT-2 directory (tests/bench/torch_gpt2.py write
 * makes a random GPT-2-small one) and runs the forward on its own batch of B sequences of T
 * tokens (data parallel: rank r runs batch r, i.e. global samples r B .. r B + B - 1, and the
 * ranks never communicate inside the forward). Sample s at position t holds token
 * lh_rng_u64(seed, s 2^32 + t) mod vocab, as in torch_gpt2.py. After a warm-up the program
 * times each of R forwards between barriers and takes the maximum over ranks (ParRes Kernels
 * discipline); the job's throughput is P B T / (mean of those maxima).
 *
 * Results are printed only after they validated: the logits of every rank must be finite, and
 * where torch_gpt2.py --ref-out wrote the checksums of a rank's batch (--ref), its logits must
 * agree with PyTorch's: the float64 sum within 1e-4 of the sum of |logits|, the sum of squares
 * within 1e-4 relative, and 16 values at fixed positions within 1e-4 of max(|value|, rms).
 * With --hook-all the forward is also timed with a no-op forward hook on every module
 * (lh_model_hook_pattern, pattern "", which matches every module but the root), in R pairs
 * (unhooked, hooked) run back to back so that background load hits both alike, and the hooked
 * logits must equal the unhooked ones bit for bit.
 *
 * The forward is judged against the machine: its flop count (forward_flops(): the four
 * matrix products of each block, q k^T and probs v over the full T x T as PyTorch computes
 * them, and lm_head; element-wise work not counted) gives GFLOP/s, and the GEMM limit replays
 * the exact cblas_sgemm calls one forward makes (src/nn/kernels.c: Conv1D as NoTrans x
 * NoTrans with beta = 1 onto the broadcast bias, the per-(sample, head) score and mix
 * products on strided views of qkv, lm_head as NoTrans x Trans against wte) alone in a loop,
 * on the model file's own weights (memory-mapped) and activation buffers of the forward's
 * shapes. Its time over the forward's time is the share of the forward spent in GEMM; what is
 * left is everything else (layernorm, GELU, softmax, adds, copies, hook dispatch). The
 * OpenBLAS core in use is reported (ENV_NOTES: OpenBLAS 0.3.21 falls back to old kernels on
 * CPUs it does not know), and the peak resident set.
 */
#define _POSIX_C_SOURCE 200809L /* sysconf */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cblas.h>
#include <jansson.h>
#include <mpi.h>

#include "core/check.h"
#include "latenthook/comm.h"
#include "latenthook/mem.h"
#include "latenthook/model.h"
#include "latenthook/rng.h"
#include "latenthook/safetensors.h"
#include "latenthook/version.h"

#define CHECK_SEED 0xC4EC /* torch_gpt2.py: CHECK_SEED */
#define CHECK_VALUES 16
#define REF_MAGIC "lh_gpt2_ref"
#define TOL 1e-4
#define MAX_REPS 1000

typedef struct args {
  const char *model, *ref;
  int64_t B, T;
  uint64_t seed;
  int reps, warmup;
  bool hook_all, gemm_limit;
} args;

/* The GPT-2 sizes, from config.json. */
typedef struct gpt2_cfg {
  int64_t L, NH, C, V, npos;
} gpt2_cfg;

/* ---- model description and tokens ------------------------------------------------------- */

static lh_status cfg_int(json_t *root, const char *path, const char *key, int64_t *out) {
  json_t *v = json_object_get(root, key);
  if (!json_is_integer(v) || json_integer_value(v) < 1)
    return LH_ERROR(LH_ERR_VALUE, "%s: \"%s\" is missing or not a positive integer", path, key);
  *out = json_integer_value(v);
  return LH_OK;
}

/* Reads n_layer, n_head, n_embd, vocab_size and n_positions from dir/config.json. Local. */
static lh_status read_config(const char *dir, gpt2_cfg *c) {
  lh_status st = LH_OK;
  char path[4096];
  json_error_t err;
  json_t *root = NULL;
  if (snprintf(path, sizeof path, "%s/config.json", dir) >= (int)sizeof path)
    LH_FAIL(LH_ERR_USAGE, "--model: path too long");
  root = json_load_file(path, 0, &err);
  if (!root) LH_FAIL(LH_ERR_IO, "%s: %s (line %d)", path, err.text, err.line);
  LH_TRY(cfg_int(root, path, "n_layer", &c->L));
  LH_TRY(cfg_int(root, path, "n_head", &c->NH));
  LH_TRY(cfg_int(root, path, "n_embd", &c->C));
  LH_TRY(cfg_int(root, path, "vocab_size", &c->V));
  LH_TRY(cfg_int(root, path, "n_positions", &c->npos));
  if (c->C % c->NH) LH_FAIL(LH_ERR_VALUE, "%s: n_embd is not a multiple of n_head", path);
done:
  json_decref(root);
  return st;
}

/* ids (B, T) as integer-valued floats: sample s = sample0 + i, token(s, t) as torch_gpt2.py. */
static void make_tokens(float *ids, uint64_t seed, int64_t sample0, int64_t B, int64_t T,
                        int64_t V) {
  for (int64_t i = 0; i < B; i++)
    for (int64_t t = 0; t < T; t++) {
      uint64_t s = (uint64_t)(sample0 + i);
      ids[i * T + t] = (float)(lh_rng_u64(seed, (s << 32) | (uint64_t)t) % (uint64_t)V);
    }
}

/* Flops of one forward per token, as torch_gpt2.py's forward_flops: per block 2 C (3C + C +
 * 4C + 4C) for c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj, plus 2 x 2 T C for q k^T and
 * probs v over the full T x T (kernels.c, like PyTorch, computes the masked half too; a causal
 * count would be 2 x 2 (T + 1) / 2 C on average); lm_head 2 C V. */
static double forward_flops_per_token(const gpt2_cfg *c, int64_t T) {
  double C = (double)c->C;
  return (double)c->L * (2.0 * C * 12.0 * C + 4.0 * (double)T * C) + 2.0 * C * (double)c->V;
}

/* ---- reference checksums (torch_gpt2.py --ref-out) --------------------------------------- */

typedef struct checksum {
  double sum, sumsq, abssum;
  int64_t idx[CHECK_VALUES];
  double val[CHECK_VALUES];
  bool finite;
} checksum;

/* Sums and values of logits (n values) at the positions torch_gpt2.py uses. Local. */
static void checksum_of(const float *x, int64_t n, checksum *c) {
  double s = 0.0, ss = 0.0, sa = 0.0;
  bool finite = true;
  for (int64_t i = 0; i < n; i++) {
    double v = x[i];
    if (!isfinite(v)) finite = false;
    s += v;
    ss += v * v;
    sa += fabs(v);
  }
  c->sum = s;
  c->sumsq = ss;
  c->abssum = sa;
  c->finite = finite;
  for (int k = 0; k < CHECK_VALUES; k++) {
    c->idx[k] = (int64_t)(lh_rng_u64(CHECK_SEED, (uint64_t)k) % (uint64_t)n);
    c->val[k] = x[c->idx[k]];
  }
}

/* Reads the checksum of batch `batch` from a torch_gpt2.py reference file into *ref, with
 * *found = false when the file holds fewer batches. The header must name the same B, T, vocab
 * and token seed. Local. */
static lh_status read_ref(const char *path, const args *a, const gpt2_cfg *c, int64_t batch,
                          checksum *ref, bool *found) {
  lh_status st = LH_OK;
  FILE *f = fopen(path, "r");
  char line[512];
  long long B, T, V, nb, K, b, ver;
  unsigned long long seed;
  *found = false;
  if (!f) LH_FAIL(LH_ERR_IO, "--ref %s: %s", path, strerror(errno));
  do {
    if (!fgets(line, sizeof line, f)) LH_FAIL(LH_ERR_VALUE, "--ref %s: no header line", path);
  } while (line[0] == '#');
  if (sscanf(line, REF_MAGIC " %lld %lld %lld %lld %llu %lld %lld", &ver, &B, &T, &V, &seed, &nb,
             &K) != 7 || ver != 1 || K != CHECK_VALUES)
    LH_FAIL(LH_ERR_VALUE, "--ref %s: not a torch_gpt2.py reference file (version 1, %d values)",
            path, CHECK_VALUES);
  if (B != a->B || T != a->T || V != c->V || seed != a->seed)
    LH_FAIL(LH_ERR_VALUE,
            "--ref %s: made for batch %lld, tokens %lld, vocab %lld, seed %llu; this run has "
            "%" PRId64 ", %" PRId64 ", %" PRId64 ", %" PRIu64,
            path, B, T, V, seed, a->B, a->T, c->V, a->seed);
  for (int64_t i = 0; i < nb; i++) {
    checksum r;
    if (!fgets(line, sizeof line, f) ||
        sscanf(line, "batch %lld %lf %lf", &b, &r.sum, &r.sumsq) != 3 || b != i)
      LH_FAIL(LH_ERR_VALUE, "--ref %s: batch %" PRId64 " line malformed", path, i);
    for (int k = 0; k < CHECK_VALUES; k++) {
      long long idx;
      if (!fgets(line, sizeof line, f) || sscanf(line, "%lld %lf", &idx, &r.val[k]) != 2)
        LH_FAIL(LH_ERR_VALUE, "--ref %s: batch %" PRId64 " value %d malformed", path, i, k);
      r.idx[k] = idx;
    }
    if (i == batch) {
      *ref = r;
      *found = true;
      break;
    }
  }
done:
  if (f) fclose(f);
  return st;
}

/* How far the logits' checksum is from PyTorch's, in units of the tolerances (each <= 1 is
 * a pass): the sum against the sum of |logits|, the sum of squares relative, each value
 * against max(|value|, rms). */
typedef struct deviation {
  double sum, sumsq, value;
} deviation;

static deviation compare(const checksum *got, const checksum *ref, int64_t n) {
  deviation d;
  d.sum = fabs(got->sum - ref->sum) / got->abssum;
  d.sumsq = fabs(got->sumsq - ref->sumsq) / ref->sumsq;
  d.value = 0.0;
  const double rms = sqrt(ref->sumsq / (double)n);
  for (int k = 0; k < CHECK_VALUES; k++) {
    double e = got->idx[k] != ref->idx[k]
                   ? INFINITY
                   : fabs(got->val[k] - ref->val[k]) / fmax(fabs(ref->val[k]), rms);
    if (!(e <= d.value)) d.value = e; /* NaN propagates */
  }
  return d;
}

/* ---- process statistics ----------------------------------------------------------------- */

/* Minor page faults of this process so far (getrusage). Local. */
static int64_t minor_faults(void) {
  struct rusage ru;
  return getrusage(RUSAGE_SELF, &ru) == 0 ? (int64_t)ru.ru_minflt : 0;
}

/* Resident set size now, in bytes (Linux /proc/self/statm), or -1. Local. */
static int64_t current_rss(void) {
  long long pages = -1, size;
  FILE *f = fopen("/proc/self/statm", "r");
  if (!f) return -1;
  if (fscanf(f, "%lld %lld", &size, &pages) != 2) pages = -1;
  fclose(f);
  return pages < 0 ? -1 : (int64_t)pages * (int64_t)sysconf(_SC_PAGESIZE);
}

/* ---- hooks ------------------------------------------------------------------------------ */

static lh_status noop_hook(const lh_hook_event *ev, void *user) {
  (*(int64_t *)user)++;
  (void)ev;
  return LH_OK;
}

/* ---- timing ----------------------------------------------------------------------------- */

typedef struct timing {
  double mean, min, max; /* over repetitions, of the max over ranks */
} timing;

/* Times `reps` forwards, each between barriers, max over ranks. Collective. A failed forward
 * on any rank stops all of them (agreed after each forward, outside the timed region). */
static lh_status time_forward(MPI_Comm comm, lh_model *m, const lh_tensor *in, lh_tensor *out,
                              int reps, timing *t) {
  lh_status st = LH_OK;
  double sum = 0.0, mn = INFINITY, mx = 0.0;
  for (int r = 0; r < reps; r++) {
    MPI_Barrier(comm);
    double t0 = MPI_Wtime();
    lh_status local = lh_model_forward(m, in, out);
    double dt = MPI_Wtime() - t0;
    LH_TRY(lh_agree(comm, local));
    MPI_Allreduce(MPI_IN_PLACE, &dt, 1, MPI_DOUBLE, MPI_MAX, comm);
    sum += dt;
    mn = fmin(mn, dt);
    mx = fmax(mx, dt);
  }
  t->mean = sum / reps;
  t->min = mn;
  t->max = mx;
done:
  return st;
}

/* ---- GEMM limit ------------------------------------------------------------------------- */

/* The sgemm calls of one forward, in groups (per block, in call order, then lm_head). */
enum { G_ATTN, G_SCORE, G_MIX, G_APROJ, G_FC, G_MPROJ, G_HEAD, NG };
static const char *G_NAMES[NG] = {"c_attn", "q.k^T", "probs.v", "attn.c_proj", "c_fc",
                                  "mlp.c_proj", "lm_head"};

typedef struct gemm_limit {
  double forward;          /* seconds of all calls of one forward, mean over reps, max ranks */
  double min;              /* the fastest rep */
  double group[NG];        /* seconds per group per forward (mean over reps, max over ranks) */
  double group_flops[NG];  /* flops per group per forward on one rank */
  int64_t calls;           /* sgemm calls per forward */
} gemm_limit;

static const float *st_f32(const lh_safetensors *s, const char *name, int64_t numel,
                           lh_status *st) {
  const lh_st_tensor *t = lh_safetensors_find(s, name);
  if (*st != LH_OK) return NULL;
  if (!t || strcmp(t->dtype, "F32") || t->numel != numel) {
    *st = LH_ERROR(LH_ERR_VALUE, "%s: tensor %s missing, not F32 or not %" PRId64 " values",
                   lh_safetensors_path(s), name, numel);
    return NULL;
  }
  return t->data;
}

/* Replays the cblas_sgemm calls of one forward (kernels.c, called by the GPT-2 modules with
 * B, T, C, NH, V: same shapes, transposes, leading dimensions, alpha and beta) `reps` times
 * after one warm-up pass, every rank at once, on the weights of dir/model.safetensors
 * (memory-mapped as the file holds them; the kernels only read weights). The activations are
 * read-only buffers of the forward's shapes with values in [-1, 1) (qkv, and the inputs of the
 * products at their leading dimensions), the scores are written to probs and read back by the
 * mix as in the forward, and every product writes into one output buffer (accumulating where
 * the forward's beta is 1, which keeps the values O(10) over any number of passes). Collective. */
static lh_status run_gemm_limit(MPI_Comm comm, const char *dir, const gpt2_cfg *c, int64_t B,
                                int64_t T, int reps, gemm_limit *g) {
  lh_status st = LH_OK, local = LH_OK;
  lh_safetensors *sf = NULL;
  float *x = NULL, *qkv = NULL, *probs = NULL, *y = NULL, *logits = NULL;
  const float **w = NULL; /* (L, 4): c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj */
  const float *wte = NULL;
  const int64_t L = c->L, C = c->C, NH = c->NH, V = c->V, hs = C / NH, BT = B * T, C3 = 3 * C;
  const int64_t C4 = 4 * C;
  const float scale = 1.0f / sqrtf((float)hs);
  char path[4096], name[128];

  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  local = lh_safetensors_open(path, &sf);
  if (local == LH_OK) local = lh_alloc((size_t)(4 * L), sizeof *w, true, "weight table", &w);
  if (local == LH_OK) local = lh_alloc((size_t)(BT * C4), sizeof *x, false, "gemm in", &x);
  if (local == LH_OK) local = lh_alloc((size_t)(BT * C3), sizeof *qkv, false, "gemm qkv", &qkv);
  if (local == LH_OK)
    local = lh_alloc((size_t)(B * NH * T * T), sizeof *probs, false, "gemm probs", &probs);
  if (local == LH_OK) local = lh_alloc((size_t)(BT * C4), sizeof *y, true, "gemm out", &y);
  if (local == LH_OK)
    local = lh_alloc((size_t)(BT * V), sizeof *logits, true, "gemm logits", &logits);
  if (local == LH_OK) {
    static const char *kinds[4] = {"attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"};
    const int64_t sizes[4] = {C * C3, C * C, C * C4, C4 * C};
    for (int64_t l = 0; l < L; l++)
      for (int k = 0; k < 4; k++) {
        snprintf(name, sizeof name, "transformer.h.%" PRId64 ".%s.weight", l, kinds[k]);
        w[l * 4 + k] = st_f32(sf, name, sizes[k], &local);
      }
    wte = st_f32(sf, "transformer.wte.weight", V * C, &local);
  }
  LH_TRY(lh_agree(comm, local));
  for (int64_t i = 0; i < BT * C4; i++) x[i] = (float)(2.0 * lh_rng_unit(11, (uint64_t)i) - 1.0);
  for (int64_t i = 0; i < BT * C3; i++) qkv[i] = (float)(2.0 * lh_rng_unit(12, (uint64_t)i) - 1.0);
  memset(probs, 0, (size_t)(B * NH * T * T) * sizeof *probs);

  /* flops per group (same convention as forward_flops_per_token) */
  g->group_flops[G_ATTN] = 2.0 * BT * C * C3 * L;
  g->group_flops[G_SCORE] = 2.0 * B * NH * T * T * hs * L;
  g->group_flops[G_MIX] = 2.0 * B * NH * T * hs * T * L;
  g->group_flops[G_APROJ] = 2.0 * BT * C * C * L;
  g->group_flops[G_FC] = 2.0 * BT * C * C4 * L;
  g->group_flops[G_MPROJ] = 2.0 * BT * C4 * C * L;
  g->group_flops[G_HEAD] = 2.0 * BT * C * V;
  g->calls = L * (4 + 2 * B * NH) + 1;

  double gsum[NG] = {0}, total = 0.0, best = INFINITY;
  for (int r = -1; r < reps; r++) { /* r = -1 warms up */
    double gt[NG + 1] = {0}, t;
    MPI_Barrier(comm);
    const double t0 = MPI_Wtime();
    for (int64_t l = 0; l < L; l++) {
      const float *const *wl = w + l * 4;
      t = MPI_Wtime();
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)BT, (int)C3, (int)C, 1.0f, x,
                  (int)C, wl[0], (int)C3, 1.0f, y, (int)C3);
      gt[G_ATTN] += MPI_Wtime() - t;
      t = MPI_Wtime();
      for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < NH; h++) {
          const float *q = qkv + b * T * C3 + h * hs; /* (T, hs), row stride 3C */
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)T, (int)T, (int)hs, scale, q,
                      (int)C3, q + C, (int)C3, 0.0f, probs + (b * NH + h) * T * T, (int)T);
        }
      gt[G_SCORE] += MPI_Wtime() - t;
      t = MPI_Wtime();
      for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < NH; h++)
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)T, (int)hs, (int)T, 1.0f,
                      probs + (b * NH + h) * T * T, (int)T, qkv + b * T * C3 + 2 * C + h * hs,
                      (int)C3, 0.0f, y + b * T * C + h * hs, (int)C);
      gt[G_MIX] += MPI_Wtime() - t;
      t = MPI_Wtime();
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)BT, (int)C, (int)C, 1.0f, x,
                  (int)C, wl[1], (int)C, 1.0f, y, (int)C);
      gt[G_APROJ] += MPI_Wtime() - t;
      t = MPI_Wtime();
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)BT, (int)C4, (int)C, 1.0f, x,
                  (int)C, wl[2], (int)C4, 1.0f, y, (int)C4);
      gt[G_FC] += MPI_Wtime() - t;
      t = MPI_Wtime();
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)BT, (int)C, (int)C4, 1.0f, x,
                  (int)C4, wl[3], (int)C, 1.0f, y, (int)C);
      gt[G_MPROJ] += MPI_Wtime() - t;
    }
    t = MPI_Wtime();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)BT, (int)V, (int)C, 1.0f, x, (int)C,
                wte, (int)C, 0.0f, logits, (int)V);
    gt[G_HEAD] += MPI_Wtime() - t;
    gt[NG] = MPI_Wtime() - t0;
    MPI_Allreduce(MPI_IN_PLACE, gt, NG + 1, MPI_DOUBLE, MPI_MAX, comm);
    if (r < 0) continue;
    for (int k = 0; k < NG; k++) gsum[k] += gt[k];
    total += gt[NG];
    best = fmin(best, gt[NG]);
  }
  g->forward = total / reps;
  g->min = best;
  for (int k = 0; k < NG; k++) g->group[k] = gsum[k] / reps;
done:
  lh_safetensors_close(&sf);
  lh_free(w);
  lh_free(x);
  lh_free(qkv);
  lh_free(probs);
  lh_free(y);
  lh_free(logits);
  return st;
}

/* ---- the benchmark ---------------------------------------------------------------------- */

typedef struct check {
  bool ok;
  char why[256];
} check;

static void fail(check *c, const char *why) {
  if (c->ok) snprintf(c->why, sizeof c->why, "%s", why);
  c->ok = false;
}

static lh_status run(MPI_Comm comm, const args *a, int *invalid) {
  lh_status st = LH_OK;
  int P, rank;
  MPI_Comm_size(comm, &P);
  MPI_Comm_rank(comm, &rank);
  gpt2_cfg c;
  lh_model *m = NULL;
  lh_hook_handle *hh = NULL;
  float *ids = NULL;
  lh_tensor in = {0}, out = {0};
  check chk = {.ok = true};
  int64_t hook_calls = 0, hooked = 0;
  timing tp = {0}, th = {0}, tq = {0}; /* plain; hooked and plain in pairs */
  gemm_limit gl = {0};

  LH_TRY(lh_agree(comm, read_config(a->model, &c)));
  if (a->T > c.npos)
    LH_TRY(lh_agree(comm, LH_ERROR(LH_ERR_USAGE, "--tokens %" PRId64 " exceeds n_positions %" PRId64,
                                   a->T, c.npos)));
  const int64_t B = a->B, T = a->T, V = c.V, n = B * T * V;

  double t_load = MPI_Wtime();
  lh_status local = lh_model_load(a->model, &m);
  t_load = MPI_Wtime() - t_load;
  if (local == LH_OK && (lh_model_input_kind(m) != LH_INPUT_TOKENS || lh_model_vocab(m) != V))
    local = LH_ERROR(LH_ERR_VALUE, "%s: not a GPT-2 of vocabulary %" PRId64, a->model, V);
  if (local == LH_OK) local = lh_alloc((size_t)(B * T), sizeof *ids, false, "token ids", &ids);
  LH_TRY(lh_agree(comm, local));
  MPI_Allreduce(MPI_IN_PLACE, &t_load, 1, MPI_DOUBLE, MPI_MAX, comm);
  int64_t rss_load = lh_peak_rss_bytes();
  make_tokens(ids, a->seed, (int64_t)rank * B, B, T, V);
  in.data = ids;
  in.ndim = 2;
  in.shape[0] = B;
  in.shape[1] = T;
  lh_model_set_row0(m, (int64_t)rank * B);

  /* Warm-up: OpenBLAS buffers, page faults of the code paths, and the model's activation
   * arena, which the first forward grows block by block and the second merges into one
   * block (fresh pages again): only from the third forward on does a forward allocate
   * nothing, hence two warm-up passes by default. */
  for (int r = 0; r < a->warmup; r++) LH_TRY(lh_agree(comm, lh_model_forward(m, &in, &out)));
  int64_t flt = minor_faults();
  LH_TRY(time_forward(comm, m, &in, &out, a->reps, &tp));
  double faults = (double)(minor_faults() - flt) / a->reps;
  MPI_Allreduce(MPI_IN_PLACE, &faults, 1, MPI_DOUBLE, MPI_MAX, comm);
  int64_t rss_fwd = current_rss();

  checksum got = {0}, ref = {0};
  bool have_ref = false;
  deviation dev = {0};
  bool shape_ok = out.ndim == 3 && out.shape[0] == B && out.shape[1] == T && out.shape[2] == V;
  if (shape_ok) checksum_of(out.data, n, &got);
  if (a->ref) LH_TRY(lh_agree(comm, read_ref(a->ref, a, &c, rank, &ref, &have_ref)));

  /* Collected per rank, judged together: shape, finiteness, PyTorch agreement. */
  int bad[3] = {!shape_ok, shape_ok && !got.finite, 0};
  int nref = have_ref;
  if (shape_ok && have_ref) {
    dev = compare(&got, &ref, n);
    bad[2] = !(dev.sum <= TOL && dev.sumsq <= TOL && dev.value <= TOL);
  }
  double devmax[3] = {dev.sum, dev.sumsq, dev.value};
  MPI_Allreduce(MPI_IN_PLACE, bad, 3, MPI_INT, MPI_MAX, comm);
  MPI_Allreduce(MPI_IN_PLACE, &nref, 1, MPI_INT, MPI_SUM, comm);
  MPI_Allreduce(MPI_IN_PLACE, devmax, 3, MPI_DOUBLE, MPI_MAX, comm);
  if (bad[0]) fail(&chk, "the logits do not have shape (B, T, vocab)");
  if (bad[1]) fail(&chk, "the logits are not all finite");
  if (bad[2]) fail(&chk, "the logits differ from PyTorch's beyond 1e-4");
  if (a->ref && nref == 0) fail(&chk, "--ref holds no batch of any rank");

  /* The same forward with a no-op hook on every module: same logits, bit for bit. The
   * overhead is measured on pairs (unhooked, hooked) run back to back, so that a change in
   * the machine's background load during the run hits both sides of each pair alike; the
   * hooks are registered and removed between the timed forwards. */
  if (a->hook_all && chk.ok) {
    const lh_hook_spec spec = {noop_hook, &hook_calls, NULL};
    double sp = 0.0, sh = 0.0, mp = INFINITY, mh = INFINITY;
    for (int r = -1; r < a->reps; r++) { /* r = -1: a hooked warm-up */
      timing t1 = {0}, t2;
      if (r >= 0) LH_TRY(time_forward(comm, m, &in, &out, 1, &t1));
      LH_TRY(lh_agree(comm, lh_model_hook_pattern(m, "", true, LH_HOOK_FWD, spec, &hh, &hooked)));
      if (r == 0) hook_calls = 0;
      LH_TRY(time_forward(comm, m, &in, &out, 1, &t2));
      lh_hook_remove(&hh);
      if (r < 0) continue;
      sp += t1.mean;
      sh += t2.mean;
      mp = fmin(mp, t1.mean);
      mh = fmin(mh, t2.mean);
    }
    tq = (timing){sp / a->reps, mp, 0.0};
    th = (timing){sh / a->reps, mh, 0.0};
    checksum h;
    checksum_of(out.data, n, &h); /* the last hooked forward */
    int same = h.sum == got.sum && h.sumsq == got.sumsq &&
               !memcmp(h.val, got.val, sizeof h.val);
    MPI_Allreduce(MPI_IN_PLACE, &same, 1, MPI_INT, MPI_MIN, comm);
    if (!same) fail(&chk, "the logits with no-op hooks differ from those without");
  }

  int64_t rss[3] = {lh_peak_rss_bytes(), rss_load, rss_fwd};
  MPI_Allreduce(MPI_IN_PLACE, rss, 3, MPI_INT64_T, MPI_MAX, comm);

  /* The limit after the timed runs, so that its buffers do not count in the peak memory; the
   * model is released first so that the two do not compete for memory. */
  lh_model_destroy(&m);
  if (a->gemm_limit && chk.ok) LH_TRY(run_gemm_limit(comm, a->model, &c, B, T, a->reps, &gl));

  if (rank == 0) {
    const char *core = lh_blas_core();
    const double tok = (double)P * B * T, fl_tok = forward_flops_per_token(&c, T);
    const double fl = fl_tok * B * T; /* per rank */
    double gemm_fl = 0.0;
    for (int k = 0; k < NG; k++) gemm_fl += gl.group_flops[k];
    printf("# lh_bench_gpt2 %s: GPT-2 n_layer %" PRId64 " n_head %" PRId64 " n_embd %" PRId64
           " vocab %" PRId64 ", batch %" PRId64 " x %" PRId64 " tokens per rank, %d rank%s "
           "(data parallel), OpenBLAS core %s\n",
           lh_version(), c.L, c.NH, c.C, V, B, T, P, P == 1 ? "" : "s", core);
    if (!chk.ok) {
      printf("VALIDATION FAILED: %s (no timings reported)\n", chk.why);
      if (bad[2] || nref)
        printf("deviation from PyTorch (1 = tolerance %.0e): sum %.3g, sumsq %.3g, values %.3g\n",
               TOL, devmax[0] / TOL, devmax[1] / TOL, devmax[2] / TOL);
      *invalid = 1;
      goto done;
    }
    printf("load       %.2f s (max over ranks)\n", t_load);
    printf("forward    mean %8.3f s  best %8.3f  worst %8.3f  (%d reps, max over ranks)  "
           "%.1f tokens/s (best %.1f), %.2f GFLOP/s (%.4g flops per token: full T x T)\n",
           tp.mean, tp.min, tp.max, a->reps, tok / tp.mean, tok / tp.min,
           fl * P / tp.mean * 1e-9, fl_tok);
    if (a->hook_all)
      printf("hooked     mean %8.3f s  best %8.3f  (%.1f tokens/s) against %.3f s, best %.3f "
             "unhooked in the same %d pairs: no-op fwd hook on %" PRId64 " modules, %" PRId64
             " calls per forward; overhead %+.2f%% (mean), %+.2f%% (best); logits identical\n",
             th.mean, th.min, tok / th.mean, tq.mean, tq.min, a->reps, hooked,
             hook_calls / a->reps, 100.0 * (th.mean / tq.mean - 1.0),
             100.0 * (th.min / tq.min - 1.0));
    if (a->gemm_limit) {
      printf("gemm       the %" PRId64 " sgemm calls of one forward alone: mean %.3f s, best "
             "%.3f (%.2f GFLOP/s) = %.1f%% of the forward's mean (%.1f%% best/best); "
             "non-GEMM %.3f s\n",
             gl.calls, gl.forward, gl.min, gemm_fl * P / gl.forward * 1e-9,
             100.0 * gl.forward / tp.mean, 100.0 * gl.min / tp.min, tp.mean - gl.forward);
      printf("gemm by    ");
      for (int k = 0; k < NG; k++)
        printf("%s %.3f s %.1f GF%s", G_NAMES[k], gl.group[k],
               gl.group_flops[k] * P / gl.group[k] * 1e-9, k + 1 < NG ? ", " : "\n");
    }
    char b1[32], b2[32], b3[32];
    printf("memory     peak RSS %s per rank (max), %s peak by the end of loading, %s resident "
           "after the timed forwards; %.0f minor page faults per timed forward\n",
           lh_format_bytes((double)rss[0], b1, sizeof b1),
           lh_format_bytes((double)rss[1], b2, sizeof b2),
           lh_format_bytes((double)rss[2], b3, sizeof b3), faults);
    printf("validated  logits finite on every rank%s; rank 0 sum %.17g sumsq %.17g\n",
           nref ? "" : ", not compared with PyTorch (no --ref)", got.sum, got.sumsq);
    if (nref)
      printf("           %d of %d rank batch(es) agree with PyTorch: worst deviation sum %.2e "
             "(of sum |x|), sumsq %.2e, values %.2e (tolerance %.0e)\n",
             nref, P, devmax[0], devmax[1], devmax[2], TOL);
    printf("{\"bench\": \"gpt2\", \"version\": \"%s\", \"ranks\": %d, \"blas_core\": \"%s\", "
           "\"B\": %" PRId64 ", \"T\": %" PRId64 ", \"seed\": %" PRIu64 ", \"reps\": %d, "
           "\"n_layer\": %" PRId64 ", \"n_head\": %" PRId64 ", \"n_embd\": %" PRId64
           ", \"vocab\": %" PRId64 ", \"load_s\": %.3f, \"forward_s_mean\": %.6f, "
           "\"forward_s_min\": %.6f, \"forward_s_max\": %.6f, \"tokens_per_s\": %.4f, "
           "\"tokens_per_s_best\": %.4f, \"flops_per_token\": %.6g, \"gflops\": %.4f, "
           "\"hooked\": %s, \"hooked_modules\": %" PRId64 ", \"hooked_s_mean\": %.6f, "
           "\"hooked_s_min\": %.6f, \"paired_plain_s_mean\": %.6f, \"paired_plain_s_min\": %.6f, "
           "\"hook_calls\": %" PRId64 ", \"gemm_calls\": %" PRId64 ", \"gemm_s_mean\": %.6f, "
           "\"gemm_s_min\": %.6f, \"gemm_gflops\": %.4f, \"gemm_share\": %.4f",
           lh_version(), P, core, B, T, a->seed, a->reps, c.L, c.NH, c.C, V, t_load, tp.mean,
           tp.min, tp.max, tok / tp.mean, tok / tp.min, fl_tok, fl * P / tp.mean * 1e-9,
           a->hook_all ? "true" : "false", hooked, th.mean, th.min, tq.mean, tq.min,
           a->hook_all ? hook_calls / a->reps : 0, gl.calls, gl.forward, gl.min,
           a->gemm_limit ? gemm_fl * P / gl.forward * 1e-9 : 0.0,
           a->gemm_limit ? gl.forward / tp.mean : 0.0);
    for (int k = 0; k < NG; k++) printf(", \"gemm_%s_s\": %.6f", G_NAMES[k], gl.group[k]);
    printf(", \"peak_rss_bytes\": %" PRId64 ", \"rss_after_load_bytes\": %" PRId64
           ", \"rss_forward_bytes\": %" PRId64 ", \"faults_per_forward\": %.0f"
           ", \"ref_batches_checked\": %d, \"dev_sum\": %.3g, \"dev_sumsq\": %.3g, "
           "\"dev_values\": %.3g, \"logits_sum\": %.17g, \"logits_sumsq\": %.17g}\n",
           rss[0], rss[1], rss[2], faults, nref, devmax[0], devmax[1], devmax[2], got.sum, got.sumsq);
    fflush(stdout);
  }
done:
  lh_hook_remove(&hh);
  lh_model_destroy(&m);
  lh_free(ids);
  return st;
}

/* ---- command line ----------------------------------------------------------------------- */

static const char USAGE[] =
    "usage: lh_bench_gpt2 [--model DIR] [--batch B] [--tokens T] [--seed S] [--reps R]\n"
    "                     [--warmup W] [--ref FILE] [--hook-all] [--no-gemm-limit]\n"
    "  DIR: a Hugging Face GPT-2 directory (torch_gpt2.py write; default /tmp/lh_gpt2_small)\n"
    "  defaults --batch 8 --tokens 128 --seed 1 --reps 3 --warmup 2; each rank runs its own\n"
    "  batch (rank r: samples r B .. r B + B - 1); FILE: torch_gpt2.py time --ref-out\n"
    "  --hook-all: also time the forward with a no-op fwd hook on every module\n";

static lh_status parse_int(const char *o, const char *v, long long lo, long long hi,
                           long long *out) {
  char *end;
  errno = 0;
  long long x = strtoll(v, &end, 10);
  if (end == v || *end || errno || x < lo || x > hi)
    return LH_ERROR(LH_ERR_USAGE, "%s wants an integer in [%lld, %lld]", o, lo, hi);
  *out = x;
  return LH_OK;
}

static lh_status parse_args(int argc, char **argv, args *a, bool *help) {
  *a = (args){.model = "/tmp/lh_gpt2_small", .B = 8, .T = 128, .seed = 1, .reps = 3,
              .warmup = 2, .gemm_limit = true};
  for (int i = 1; i < argc; i++) {
    const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    long long x = 0;
    lh_status st = LH_OK;
    if (!strcmp(o, "--help") || !strcmp(o, "-h")) {
      *help = true;
      return LH_OK;
    }
    if (!strcmp(o, "--hook-all")) {
      a->hook_all = true;
      continue;
    }
    if (!strcmp(o, "--no-gemm-limit")) {
      a->gemm_limit = false;
      continue;
    }
    if (!v) return LH_ERROR(LH_ERR_USAGE, "%s needs a value\n%s", o, USAGE);
    i++;
    if (!strcmp(o, "--model")) {
      a->model = v;
    } else if (!strcmp(o, "--ref")) {
      a->ref = v;
    } else if (!strcmp(o, "--batch")) {
      st = parse_int(o, v, 1, 1 << 20, &x);
      a->B = x;
    } else if (!strcmp(o, "--tokens")) {
      st = parse_int(o, v, 1, 1 << 20, &x);
      a->T = x;
    } else if (!strcmp(o, "--seed")) {
      st = parse_int(o, v, 0, INT64_MAX, &x);
      a->seed = (uint64_t)x;
    } else if (!strcmp(o, "--reps")) {
      st = parse_int(o, v, 1, MAX_REPS, &x);
      a->reps = (int)x;
    } else if (!strcmp(o, "--warmup")) {
      st = parse_int(o, v, 0, MAX_REPS, &x);
      a->warmup = (int)x;
    } else {
      return LH_ERROR(LH_ERR_USAGE, "unknown option %s\n%s", o, USAGE);
    }
    if (st) return st;
  }
  return LH_OK;
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  MPI_Comm comm = MPI_COMM_WORLD;
  args a;
  int invalid = 0, rank;
  bool help = false;
  MPI_Comm_rank(comm, &rank);
  lh_status st = lh_agree(comm, parse_args(argc, argv, &a, &help));
  if (st == LH_OK && help) {
    if (rank == 0) fputs(USAGE, stdout);
  } else if (st == LH_OK) {
    st = run(comm, &a, &invalid);
  }
  if (st != LH_OK) lh_error_report("bench_gpt2");
  MPI_Bcast(&invalid, 1, MPI_INT, 0, comm);
  MPI_Finalize();
  return st != LH_OK ? 1 : invalid ? 3 : 0;
}
