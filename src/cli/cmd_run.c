/*
 * cmd_run.c: `latenthook run JOB.yaml`: a whole pipeline from a job file (job.h), step by step,
 * resumable.
 *
 * Each step is one of the other commands (cache, twonn, local-knn, knn, probe, similarity,
 * patch, steer, activation-addition, probe --model) run in this process on every rank, its
 * command line built from the job file's section (the keys are the command's options) and its
 * JSON result captured. A step is identified by a SHA-256 over LatentHook's version, its
 * command line and the content of every file it reads (the outputs of earlier steps count by
 * those steps' digests). Rank 0 keeps DIR/.latenthook/state.json: per step its digest, result
 * and output files, written (through a temporary file) once the step's outputs are in place.
 * A step whose digest is recorded and whose outputs exist is skipped: a rerun after a kill
 * resumes at the first step that did not complete. SIGTERM and SIGUSR1 stop the run at the
 * next checkpoint (between steps, and between the batches of a forward pass) with exit code 75.
 */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <yaml.h>

#include "cli/cli.h"
#include "cli/job.h"
#include "cli/run.h"
#include "core/check.h"
#include "latenthook/comm.h"
#include "latenthook/digest.h"
#include "latenthook/h5.h"
#include "latenthook/interrupt.h"
#include "latenthook/log.h"
#include "latenthook/mem.h"
#include "latenthook/version.h"

static const char HELP[] =
    "usage: mpiexec -n P latenthook run JOB.yaml [--output-dir DIR] [--force]\n"
    "                                 [--set KEY=VALUE ...]\n\n"
    "Runs the pipeline a job file describes (model, inputs, caching, analyses per layer and\n"
    "across layers, interventions; the format is in jobs/README.md) and writes into DIR:\n"
    "activations.h5, results/ (one HDF5 file per step), plots/ (PNG), job.yaml (the effective\n"
    "job) and summary.json (every scalar result and the configuration), also printed on\n"
    "stdout. A step whose command line and input files are unchanged since it completed is\n"
    "skipped, so a rerun resumes where a killed run stopped. SIGTERM or SIGUSR1 (sbatch\n"
    "--signal) stops the run at the next checkpoint, exit code 75; run again to resume.\n\n"
    "Options:\n"
    "  --output-dir DIR     where the results go (default: the job file's name without .yaml,\n"
    "                       with -results, in the current folder)\n"
    "  --force              run every step again, even those recorded as complete\n"
    "  --set KEY=VALUE      override a value of the job file: a dotted key (analyses.probe.l2,\n"
    "                       patch.0.alpha) and a YAML value; may be repeated\n" CLI_COMMON_HELP;

enum { OPT_OUTDIR = 1, OPT_FORCE, OPT_SET };
#define MAX_SETS 256
#define MAX_ARGS 96

typedef struct args {
  const char *outdir;
  bool force;
  char *sets[MAX_SETS];
  int nsets;
} args;

static lh_status on_option(int code, const char *arg, void *user) {
  args *a = user;
  switch (code) {
    case OPT_OUTDIR:
      a->outdir = arg;
      return LH_OK;
    case OPT_FORCE:
      a->force = true;
      return LH_OK;
    case OPT_SET:
      if (a->nsets == MAX_SETS)
        return LH_ERROR(LH_ERR_USAGE, "--set: at most %d overrides", MAX_SETS);
      a->sets[a->nsets++] = (char *)arg;
      return LH_OK;
  }
  return LH_ERROR(LH_ERR_INTERNAL, "unhandled option %d", code);
}

/* --- the run's state ---------------------------------------------------------------------- */

typedef struct run {
  MPI_Comm comm;
  int rank;
  const job *jb;
  const job_file *jf;
  char dir[RUN_PATH];
  bool force;
  json_t *state;   /* rank 0: {"files": {...}, "steps": {...}} */
  json_t *results; /* rank 0 */
  json_t *steps;   /* rank 0: [{"id", "digest", "status", "seconds"}] */
  int64_t done, skipped, planned;
  char cache_digest[LH_DIGEST_HEX]; /* the digest of the cache step (its outputs' identity) */
  run_layer *layers;
  int64_t nlayers;
} run;

/* A step: its command line, its outputs and what it reads. */
typedef struct step {
  char id[600];
  const char *section; /* dotted path in the job file, for messages */
  cli_command_fn fn;
  char *argv[MAX_ARGS];
  int argc;
  char outputs[4][RUN_PATH];
  int nout;
  char reads[16][RUN_PATH]; /* files read (outside DIR) */
  int nreads;
  bool reads_cache; /* reads DIR/activations.h5 */
  const char *kind;
  const char *layer;
} step;

static void step_free(step *s) {
  for (int i = 0; i < s->argc; i++) free(s->argv[i]);
  s->argc = 0;
}

static lh_status add_arg(step *s, const char *v) {
  if (s->argc == MAX_ARGS - 1) return LH_ERROR(LH_ERR_INTERNAL, "step %s: too many options", s->id);
  size_t n = strlen(v) + 1;
  char *d = malloc(n);
  if (!d) return LH_ERROR(LH_ERR_NOMEM, "step arguments");
  memcpy(d, v, n);
  s->argv[s->argc++] = d;
  s->argv[s->argc] = NULL;
  return LH_OK;
}

static lh_status add_opt(step *s, const char *opt, const char *v) {
  lh_status st = add_arg(s, opt);
  return st == LH_OK && v ? add_arg(s, v) : st;
}

/* The file part of "FILE.h5:/path" (or the whole string). */
static void file_part(const char *spec, char *out, size_t cap) {
  snprintf(out, cap, "%s", spec);
  char *c = strstr(out, ":/");
  if (c) *c = '\0';
}

/* A path of the job file, relative to the job file's folder unless absolute. */
static void resolve(const run *r, const char *p, char *out, size_t cap) {
  if (strncmp(p, "$OUT/", 5) == 0) /* an output of an earlier step of this run */
    snprintf(out, cap, "%s/%s", r->dir, p + 5);
  else if (p[0] == '/' || strcmp(job_dir(r->jb), ".") == 0)
    snprintf(out, cap, "%s", p);
  else
    snprintf(out, cap, "%s/%s", job_dir(r->jb), p);
}

/* Adds a path option (resolved) and records the file as read. */
static lh_status add_path(const run *r, step *s, const char *opt, const char *p) {
  char full[RUN_PATH];
  resolve(r, p, full, sizeof full);
  if (s->nreads < 16) file_part(full, s->reads[s->nreads++], RUN_PATH);
  return add_opt(s, opt, full);
}

static bool is_path_key(const char *key) {
  static const char *const keys[] = {"model",          "inputs",   "labels",
                                     "patched_inputs", "add",      "project",
                                     "positive",       "negative", NULL};
  for (int i = 0; keys[i]; i++)
    if (strcmp(key, keys[i]) == 0) return true;
  return false;
}

/* The options of a job-file section: every key present (but those in `skip`) becomes
 * --key-with-dashes VALUE; flags are given when true; lists are joined with commas. */
static lh_status add_section(const run *r, step *s, const cyaml_schema_field_t *fields,
                             const void *sect, const char *const *skip) {
  lh_status st = LH_OK;
  for (const cyaml_schema_field_t *f = fields; f->key; f++) {
    bool skipped = false;
    for (int i = 0; skip && skip[i]; i++) skipped |= strcmp(skip[i], f->key) == 0;
    if (skipped) continue;
    const char *base = (const char *)sect + f->data_offset;
    const void *p = *(void *const *)base;
    if (!p) continue;
    char opt[128] = "--", val[4096] = "";
    for (size_t i = 0; f->key[i] && i + 3 < sizeof opt; i++) {
      opt[i + 2] = f->key[i] == '_' ? '-' : f->key[i];
      opt[i + 3] = '\0';
    }
    switch (f->value.type) {
      case CYAML_INT:
        snprintf(val, sizeof val, "%lld", (long long)*(const int64_t *)p);
        break;
      case CYAML_FLOAT:
        snprintf(val, sizeof val, "%.17g", *(const double *)p);
        break;
      case CYAML_ENUM: /* a flag */
        if (*(const int *)p) LH_TRY(add_arg(s, opt));
        continue;
      case CYAML_STRING:
        if (is_path_key(f->key)) {
          LH_TRY(add_path(r, s, opt, p));
          continue;
        }
        snprintf(val, sizeof val, "%s", (const char *)p);
        break;
      case CYAML_SEQUENCE: {
        unsigned n = *(const unsigned *)((const char *)sect + f->count_offset);
        for (unsigned i = 0; i < n; i++) {
          size_t k = strlen(val);
          if (f->value.sequence.entry->type == CYAML_INT)
            snprintf(val + k, sizeof val - k, "%s%lld", i ? "," : "",
                     (long long)((const int64_t *)p)[i]);
          else
            snprintf(val + k, sizeof val - k, "%s%s", i ? "," : "", ((char *const *)p)[i]);
        }
        if (n == 0) continue;
        break;
      }
      default:
        LH_FAIL(LH_ERR_INTERNAL, "job key '%s': unhandled schema type", f->key);
    }
    LH_TRY(add_opt(s, opt, val));
  }
done:
  return st;
}

static bool has_key(const cyaml_schema_field_t *fields, const void *sect, const char *key) {
  for (const cyaml_schema_field_t *f = fields; f->key; f++)
    if (strcmp(f->key, key) == 0)
      return *(void *const *)((const char *)sect + f->data_offset) != NULL;
  return false;
}

/* --- digests ------------------------------------------------------------------------------ */

/* The digest of a file, from the record of an earlier run when its size, time and inode are
 * unchanged. Collective. */
static lh_status file_digest(run *r, const char *path, char hex[LH_DIGEST_HEX]) {
  lh_status st = LH_OK;
  char rec[LH_DIGEST_HEX + 128] = "";
  struct stat sb;
  int known = 0;
  if (r->rank == 0 && stat(path, &sb) == 0) {
    snprintf(rec, sizeof rec, "%lld:%lld.%09ld:%llu", (long long)sb.st_size,
             (long long)sb.st_mtim.tv_sec, sb.st_mtim.tv_nsec, (unsigned long long)sb.st_ino);
    json_t *f = json_object_get(json_object_get(r->state, "files"), path);
    const char *stamp = json_string_value(json_object_get(f, "stamp"));
    const char *dg = json_string_value(json_object_get(f, "digest"));
    if (stamp && dg && strcmp(stamp, rec) == 0 && strlen(dg) == LH_DIGEST_HEX - 1) {
      memcpy(hex, dg, LH_DIGEST_HEX);
      known = 1;
    }
  }
  MPI_Bcast(&known, 1, MPI_INT, 0, r->comm);
  if (known) {
    MPI_Bcast(hex, LH_DIGEST_HEX, MPI_CHAR, 0, r->comm);
    goto done;
  }
  LH_TRY(lh_digest_file(r->comm, path, hex));
  if (r->rank == 0 && rec[0]) {
    json_t *files = json_object_get(r->state, "files");
    json_object_set_new(files, path, json_pack("{s:s, s:s}", "stamp", rec, "digest", hex));
  }
done:
  return st;
}

static int name_cmp(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The files behind a model path: a YAML file and its weights file, or every file of a
 * Hugging Face folder. Rank 0 lists them; the digests are collective. */
static lh_status model_digest(run *r, lh_digest *d, const char *path) {
  lh_status st = LH_OK, local = LH_OK;
  char files[32][RUN_PATH];
  int n = 0;
  if (r->rank == 0) {
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
      DIR *dp = opendir(path);
      char *names[32];
      int k = 0;
      for (struct dirent *e; dp && (e = readdir(dp)) != NULL && k < 32;) {
        char full[RUN_PATH];
        if (e->d_name[0] == '.') continue;
        snprintf(full, sizeof full, "%s/%s", path, e->d_name);
        if (stat(full, &sb) == 0 && S_ISREG(sb.st_mode)) names[k++] = strdup(e->d_name);
      }
      if (dp) closedir(dp);
      qsort(names, (size_t)k, sizeof *names, name_cmp);
      for (int i = 0; i < k; i++) {
        if (names[i]) snprintf(files[n++], RUN_PATH, "%s/%s", path, names[i]);
        free(names[i]);
      }
    } else {
      snprintf(files[n++], RUN_PATH, "%s", path);
      /* the weights file named in the model YAML, relative to its folder */
      char w[RUN_PATH] = "";
      if (job_top_scalar(path, "weights", w, sizeof w) == LH_OK && w[0]) {
        if (w[0] == '/') {
          snprintf(files[n++], RUN_PATH, "%s", w);
        } else {
          char dir[RUN_PATH];
          snprintf(dir, sizeof dir, "%s", path);
          char *sl = strrchr(dir, '/');
          if (sl)
            *sl = '\0';
          else
            snprintf(dir, sizeof dir, ".");
          if (snprintf(files[n], RUN_PATH, "%s/%s", dir, w) < RUN_PATH) n++;
        }
      }
      lh_error_clear();
    }
  }
  LH_TRY(lh_agree(r->comm, local));
  MPI_Bcast(&n, 1, MPI_INT, 0, r->comm);
  MPI_Bcast(files, n * RUN_PATH, MPI_CHAR, 0, r->comm);
  for (int i = 0; i < n; i++) {
    char hex[LH_DIGEST_HEX];
    LH_TRY(file_digest(r, files[i], hex));
    lh_digest_string(d, hex);
  }
done:
  return st;
}

static bool is_model_file(const char *p) {
  struct stat sb;
  size_t n = strlen(p);
  if (stat(p, &sb) == 0 && S_ISDIR(sb.st_mode)) return true;
  return (n > 5 && strcmp(p + n - 5, ".yaml") == 0) || (n > 4 && strcmp(p + n - 4, ".yml") == 0);
}

/* The step's digest: version, command line (the output folder written as $DIR), the content of
 * the files it reads and, for the outputs of the cache step, that step's digest. Collective. */
static lh_status step_digest(run *r, const step *s, char hex[LH_DIGEST_HEX]) {
  lh_status st = LH_OK;
  lh_digest *d = NULL;
  LH_TRY(lh_agree(r->comm, lh_digest_new(&d)));
  lh_digest_string(d, lh_version());
  size_t dl = strlen(r->dir);
  for (int i = 0; i < s->argc; i++) {
    const char *a = s->argv[i];
    if (strncmp(a, r->dir, dl) == 0 && a[dl] == '/') {
      char rel[RUN_PATH + 8];
      snprintf(rel, sizeof rel, "$DIR%s", a + dl);
      lh_digest_string(d, rel);
    } else {
      lh_digest_string(d, a);
    }
  }
  for (int i = 0; i < s->nreads; i++) {
    int model = r->rank == 0 ? is_model_file(s->reads[i]) : 0;
    MPI_Bcast(&model, 1, MPI_INT, 0, r->comm);
    if (model) {
      LH_TRY(model_digest(r, d, s->reads[i]));
    } else {
      char fh[LH_DIGEST_HEX];
      LH_TRY(file_digest(r, s->reads[i], fh));
      lh_digest_string(d, fh);
    }
  }
  if (s->reads_cache) lh_digest_string(d, r->cache_digest);
  LH_TRY(lh_agree(r->comm, lh_digest_final(&d, hex)));
done:
  lh_digest_free(&d);
  return st;
}

/* --- the state file (rank 0) -------------------------------------------------------------- */

static void state_path(const run *r, char *out, size_t cap) {
  snprintf(out, cap, "%s/.latenthook/state.json", r->dir);
}

lh_status run_write_json(const char *path, const json_t *doc) {
  char tmp[RUN_PATH + 32];
  snprintf(tmp, sizeof tmp, "%s.tmp-%ld", path, (long)getpid());
  FILE *f = fopen(tmp, "w");
  if (!f) return LH_ERROR(LH_ERR_IO, "cannot write '%s': %s", tmp, strerror(errno));
  int rc = json_dumpf(doc, f, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17));
  fputc('\n', f);
  bool bad = rc != 0 || ferror(f);
  bad |= fclose(f) != 0;
  if (bad || rename(tmp, path) != 0) {
    int e = errno;
    remove(tmp);
    return LH_ERROR(LH_ERR_IO, "cannot write '%s': %s", path, bad ? "write failed" : strerror(e));
  }
  return LH_OK;
}

static lh_status save_state(const run *r) {
  char p[RUN_PATH + 64];
  state_path(r, p, sizeof p);
  return run_write_json(p, r->state);
}

static lh_status make_dir(const char *p);

/* --- running a step ------------------------------------------------------------------------ */

/* The result's place: results[kind] or results[kind][layer or name]. */
static void put_result(run *r, const step *s, json_t *res) {
  if (!s->layer) {
    json_object_set_new(r->results, s->kind, res);
    return;
  }
  json_t *k = json_object_get(r->results, s->kind);
  if (!k) {
    k = json_object();
    json_object_set_new(r->results, s->kind, k);
  }
  json_object_set_new(k, s->layer, res);
}

static lh_status run_step(run *r, step *s) {
  lh_status st = LH_OK;
  char hex[LH_DIGEST_HEX], where[RUN_PATH + 64];
  json_t *res = NULL;
  r->planned++;
  LH_TRY(step_digest(r, s, hex));
  int skip = 0;
  if (r->rank == 0 && !r->force) {
    json_t *rec = json_object_get(json_object_get(r->state, "steps"), s->id);
    const char *dg = json_string_value(json_object_get(rec, "digest"));
    skip = dg && strcmp(dg, hex) == 0;
    for (int i = 0; skip && i < s->nout; i++) skip = access(s->outputs[i], F_OK) == 0;
    if (skip) res = json_deep_copy(json_object_get(rec, "result"));
  }
  MPI_Bcast(&skip, 1, MPI_INT, 0, r->comm);
  if (skip) {
    r->skipped++;
    lh_log_info("run: %s: unchanged since it completed, skipped", s->id);
    if (r->rank == 0) {
      json_array_append_new(
          r->steps, json_pack("{s:s, s:s, s:s}", "id", s->id, "digest", hex, "status", "skipped"));
      put_result(r, s, res ? res : json_null());
      res = NULL;
    }
    goto done;
  }
  int sig = lh_interrupt_agree(r->comm);
  if (sig)
    LH_FAIL(LH_ERR_INTERRUPTED,
            "stopped by signal %d before step '%s' (%lld steps complete); "
            "run the same command again to resume",
            sig, s->id, (long long)(r->done + r->skipped));
  /* forget the record of an earlier, different run of this step before replacing its outputs */
  if (r->rank == 0 && json_object_get(json_object_get(r->state, "steps"), s->id)) {
    json_object_del(json_object_get(r->state, "steps"), s->id);
    LH_TRY(lh_agree(r->comm, save_state(r)));
  } else {
    LH_TRY(lh_agree(r->comm, LH_OK));
  }
  /* the folders of the outputs */
  lh_status md = LH_OK;
  for (int i = 0; r->rank == 0 && md == LH_OK && i < s->nout; i++) {
    char d[RUN_PATH];
    snprintf(d, sizeof d, "%s", s->outputs[i]);
    char *sl = strrchr(d, '/');
    if (sl && sl != d) {
      *sl = '\0';
      md = make_dir(d);
    }
  }
  LH_TRY(lh_agree(r->comm, md));
  lh_log_info("run: %s ...", s->id);
  double t0 = MPI_Wtime();
  cli_common cc = {0};
  cli_capture_json(&res);
  lh_status rs = s->fn(r->comm, s->argc, s->argv, &cc);
  cli_capture_json(NULL);
  double secs = MPI_Wtime() - t0;
  if (rs != LH_OK) {
    lh_error_prefix("step '%s' (%s): ", s->id, job_where(r->jb, s->section, where, sizeof where));
    if (rs == LH_ERR_INTERRUPTED && lh_error_pending()) {
      char msg[2048];
      snprintf(msg, sizeof msg, "%s", lh_error_message());
      (void)LH_ERROR(LH_ERR_INTERRUPTED,
                     "%s; %lld steps complete, run the same command again to resume", msg,
                     (long long)(r->done + r->skipped));
    }
    LH_TRY(rs);
  }
  r->done++;
  lh_log_info("run: %s done in %.2f s", s->id, secs);
  if (r->rank == 0) {
    json_t *outs = json_array();
    for (int i = 0; i < s->nout; i++) json_array_append_new(outs, json_string(s->outputs[i]));
    json_object_set_new(json_object_get(r->state, "steps"), s->id,
                        json_pack("{s:s, s:O, s:o, s:f}", "digest", hex, "result",
                                  res ? res : json_null(), "outputs", outs, "seconds", secs));
    json_array_append_new(r->steps, json_pack("{s:s, s:s, s:s, s:f}", "id", s->id, "digest", hex,
                                              "status", "ran", "seconds", secs));
    put_result(r, s, res ? json_incref(res) : json_null());
  }
  LH_TRY(lh_agree(r->comm, r->rank == 0 ? save_state(r) : LH_OK));
done:
  json_decref(res);
  return st;
}

/* --- the steps ------------------------------------------------------------------------------ */

static void step_init(step *s, const char *kind, const char *layer, const char *section,
                      cli_command_fn fn, const char *cmd) {
  memset(s, 0, sizeof *s);
  s->kind = kind;
  s->layer = layer;
  s->section = section;
  s->fn = fn;
  if (layer)
    snprintf(s->id, sizeof s->id, "%s/%s", kind, layer);
  else
    snprintf(s->id, sizeof s->id, "%s", kind);
  s->argv[0] = NULL;
  (void)add_arg(s, cmd); /* cannot fail on an empty step but for memory; checked by the caller */
}

/* An output file of the step, DIR/<rel>, given as option `opt` (NULL: recorded only). */
static lh_status add_output(const run *r, step *s, const char *opt, const char *rel) {
  if (s->nout == 4) return LH_ERROR(LH_ERR_INTERNAL, "step %s: too many outputs", s->id);
  if (snprintf(s->outputs[s->nout], RUN_PATH, "%s/%s", r->dir, rel) >= RUN_PATH)
    return LH_ERROR(LH_ERR_VALUE, "output path too long: %s/%s", r->dir, rel);
  const char *p = s->outputs[s->nout++];
  return opt ? add_opt(s, opt, p) : LH_OK;
}

static const char *batch_size_text(const run *r, const int64_t *own, char *buf, size_t cap) {
  const int64_t *v = own ? own : r->jf->batch_size;
  if (!v) return NULL;
  snprintf(buf, cap, "%lld", (long long)*v);
  return buf;
}

static lh_status step_cache(run *r) {
  lh_status st = LH_OK;
  step s;
  const job_cache *c = r->jf->cache;
  char bs[32];
  static const char *const skip[] = {"output", "include_inputs", "batch_size", NULL};
  step_init(&s, "cache", NULL, "cache", cmd_cache, "cache");
  LH_TRY(add_path(r, &s, "--model", r->jf->model));
  LH_TRY(add_path(r, &s, "--inputs", r->jf->inputs));
  LH_TRY(add_section(r, &s, job_cache_fields, c, skip));
  if (!(c->output && *c->output)) LH_TRY(add_arg(&s, "--no-output"));
  if (batch_size_text(r, c->batch_size, bs, sizeof bs)) LH_TRY(add_opt(&s, "--batch-size", bs));
  LH_TRY(add_output(r, &s, "--out", "activations.h5"));
  LH_TRY(run_step(r, &s));
  /* the later steps read the activations: they depend on this step's identity */
  LH_TRY(step_digest(r, &s, r->cache_digest));
done:
  step_free(&s);
  return st;
}

/* A file name for a layer: '/' and other awkward characters become '_'. */
static void safe_name(const char *in, char *out, size_t cap) {
  size_t k = 0;
  for (; in[k] && k + 1 < cap; k++) {
    char c = in[k];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-' || c == '_';
    out[k] = ok ? c : '_';
  }
  out[k] = '\0';
  if (out[0] == '.') out[0] = '_';
}

static lh_status add_layer(run *r, const char *name, const char *addr, int ndims) {
  lh_status st = LH_OK;
  run_layer *l = realloc(r->layers, (size_t)(r->nlayers + 1) * sizeof *l);
  if (!l) return LH_ERROR(LH_ERR_NOMEM, "layers");
  r->layers = l;
  l = &r->layers[r->nlayers++];
  memset(l, 0, sizeof *l);
  if (snprintf(l->name, sizeof l->name, "%s", name) >= (int)sizeof l->name)
    st = LH_ERROR(LH_ERR_VALUE, "layer name too long: %s", name);
  safe_name(name, l->file_name, sizeof l->file_name);
  snprintf(l->addr, sizeof l->addr, "%s", addr);
  l->ndims = ndims;
  return st;
}

/* The datasets of a group (recursively one level: /cache/<direction>/<name>). Collective. */
static lh_status add_group_layers(run *r, const char *group, const char *prefix, bool *any) {
  lh_status st = LH_OK;
  char **names = NULL;
  int64_t count = 0;
  LH_TRY(lh_h5_list(r->comm, group, &names, &count));
  for (int64_t i = 0; i < count; i++) {
    lh_h5_dset *d = NULL;
    LH_TRY(lh_h5_open(r->comm, names[i], 0, &d));
    int nd = lh_h5_dset_info(d)->ndims;
    lh_h5_close(&d);
    const char *leaf = strrchr(names[i], '/');
    char name[512];
    snprintf(name, sizeof name, "%s%s", prefix, leaf ? leaf + 1 : names[i]);
    LH_TRY(add_layer(r, name, names[i], nd));
    *any = true;
  }
done:
  lh_h5_list_free(names, count);
  return st;
}

/* Puts the cached layers in the order the cache step reports them (the model's module order;
 * the HDF5 listing is alphabetical); "input" stays first. Collective (rank 0 knows the order). */
static void order_layers(run *r) {
  int64_t L = r->nlayers;
  int64_t *rank_of = calloc((size_t)(L ? L : 1), sizeof *rank_of);
  if (!rank_of) return; /* keep the listing's order */
  if (r->rank == 0) {
    json_t *keys = json_object_get(json_object_get(r->results, "cache"), "cache");
    for (int64_t i = 0; i < L; i++) {
      rank_of[i] =
          strcmp(r->layers[i].name, "input") == 0 ? -1 : (int64_t)json_array_size(keys) + i;
      for (size_t k = 0; k < json_array_size(keys); k++) {
        char key[512];
        const char *kv = json_string_value(json_object_get(json_array_get(keys, k), "key"));
        snprintf(key, sizeof key, "%s", kv ? kv : "");
        for (char *c = key; *c; c++)
          if (*c == '/') *c = '.';
        if (strcmp(key, r->layers[i].name) == 0) rank_of[i] = (int64_t)k;
      }
    }
  }
  MPI_Bcast(rank_of, (int)L, MPI_INT64_T, 0, r->comm);
  for (int64_t i = 1; i < L; i++) /* insertion sort: a few dozen layers */
    for (int64_t j = i; j > 0 && rank_of[j - 1] > rank_of[j]; j--) {
      run_layer t = r->layers[j];
      r->layers[j] = r->layers[j - 1];
      r->layers[j - 1] = t;
      int64_t q = rank_of[j];
      rank_of[j] = rank_of[j - 1];
      rank_of[j - 1] = q;
    }
  free(rank_of);
}

static lh_status list_layers(run *r) {
  lh_status st = LH_OK;
  const job_file *jf = r->jf;
  char addr[RUN_PATH + 32];
  bool any = false;
  if (jf->activations) {
    resolve(r, jf->activations, addr, sizeof addr);
    LH_TRY(add_group_layers(r, addr, "", &any));
    goto done;
  }
  const job_cache *c = jf->cache;
  if (!c->include_inputs || *c->include_inputs) {
    char in[RUN_PATH];
    resolve(r, jf->inputs, in, sizeof in);
    lh_h5_dset *d = NULL;
    LH_TRY(lh_h5_open(r->comm, in, 0, &d));
    const lh_h5_info *info = lh_h5_dset_info(d);
    bool floats = info->ndims == 2 && info->cls == LH_H5_FLOAT;
    lh_h5_close(&d);
    if (floats)
      LH_TRY(add_layer(r, "input", in, 2));
    else
      lh_log_info("run: the inputs are not (N, F) features: not analysed as a layer");
  }
  bool nested = (c->nested_keys && *c->nested_keys) || (c->direction && strchr(c->direction, ','));
  snprintf(addr, sizeof addr, "%s/activations.h5:/cache", r->dir);
  if (!nested) {
    LH_TRY(add_group_layers(r, addr, "", &any));
  } else {
    static const char *const dirs[] = {"fwd", "fwd_pre"};
    for (int i = 0; i < 2; i++) {
      bool want = !c->direction && i == 0;
      char list[256];
      snprintf(list, sizeof list, "%s", c->direction ? c->direction : "");
      char *save = NULL;
      for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save))
        want |= strcmp(t, dirs[i]) == 0;
      if (!want) continue;
      char g[RUN_PATH + 64], pre[16];
      snprintf(g, sizeof g, "%s/%s", addr, dirs[i]);
      snprintf(pre, sizeof pre, "%s.", dirs[i]);
      LH_TRY(add_group_layers(r, g, pre, &any));
    }
  }
  order_layers(r);
done:
  return st;
}

/* One analysis of one layer. */
static lh_status step_layer(run *r, const char *kind, const run_layer *l) {
  lh_status st = LH_OK;
  step s;
  const job_analyses *an = r->jf->analyses;
  char rel[600], sect[64];
  snprintf(sect, sizeof sect, "analyses.%s", kind);
  snprintf(rel, sizeof rel, "results/%s/%s.h5", kind, l->file_name);
  if (strcmp(kind, "twonn") == 0) {
    step_init(&s, kind, l->name, "analyses.twonn", cmd_twonn, "twonn");
    LH_TRY(add_section(r, &s, job_twonn_fields, an->twonn, NULL));
  } else if (strcmp(kind, "local_knn") == 0) {
    step_init(&s, kind, l->name, "analyses.local_knn", cmd_localknn, "local-knn");
    LH_TRY(add_section(r, &s, job_localknn_fields, an->local_knn, NULL));
  } else if (strcmp(kind, "knn") == 0) {
    step_init(&s, kind, l->name, "analyses.knn", cmd_knn, "knn");
    LH_TRY(add_section(r, &s, job_knn_fields, an->knn, NULL));
  } else {
    step_init(&s, kind, l->name, "analyses.probe", cmd_probe, "probe");
    LH_TRY(add_path(r, &s, "--labels", r->jf->labels));
    LH_TRY(add_section(r, &s, job_probe_fields, an->probe, NULL));
    if (!has_key(job_probe_fields, an->probe, "estimator"))
      LH_TRY(add_opt(&s, "--estimator", "linear"));
  }
  if (s.argc == 0) LH_FAIL(LH_ERR_NOMEM, "step arguments");
  LH_TRY(add_opt(&s, "--data", l->addr));
  s.reads_cache = strncmp(l->addr, r->dir, strlen(r->dir)) == 0;
  if (!s.reads_cache && s.nreads < 16) file_part(l->addr, s.reads[s.nreads++], RUN_PATH);
  LH_TRY(add_output(r, &s, "--out", rel));
  LH_TRY(run_step(r, &s));
done:
  step_free(&s);
  return st;
}

/* A similarity matrix over the 2-D layers. */
static lh_status step_matrix(run *r, const char *kind, bool plots) {
  lh_status st = LH_OK;
  step s;
  const job_analyses *an = r->jf->analyses;
  char rel[128], names[8192] = "";
  bool cka = strcmp(kind, "cka") == 0;
  step_init(&s, kind, NULL, cka ? "analyses.cka" : "analyses.information_imbalance", cmd_similarity,
            "similarity");
  LH_TRY(add_opt(&s, "--metric", cka ? "cka" : "information-imbalance"));
  if (cka)
    LH_TRY(add_section(r, &s, job_cka_fields, an->cka, NULL));
  else
    LH_TRY(add_section(r, &s, job_ii_fields, an->information_imbalance, NULL));
  int64_t used = 0;
  for (int64_t i = 0; i < r->nlayers; i++) {
    const run_layer *l = &r->layers[i];
    if (l->ndims != 2) continue;
    LH_TRY(add_opt(&s, "--data", l->addr));
    if (strncmp(l->addr, r->dir, strlen(r->dir)) == 0)
      s.reads_cache = true;
    else if (s.nreads < 16)
      file_part(l->addr, s.reads[s.nreads++], RUN_PATH);
    size_t k = strlen(names);
    snprintf(names + k, sizeof names - k, "%s%s", used ? "," : "", l->name);
    used++;
  }
  if (used < 2) {
    lh_log_warn("run: %s: fewer than 2 layers of shape (N, D), no matrix", kind);
    goto done;
  }
  LH_TRY(add_opt(&s, "--names", names));
  snprintf(rel, sizeof rel, "results/%s.h5", kind);
  LH_TRY(add_output(r, &s, "--out", rel));
  if (plots) {
    snprintf(rel, sizeof rel, "plots/%s.png", kind);
    LH_TRY(add_output(r, &s, "--png", rel));
  }
  LH_TRY(run_step(r, &s));
done:
  step_free(&s);
  return st;
}

/* The name of the i-th entry of an intervention list: its `name`, or kind + index. */
static const char *entry_name(const char *name, const char *kind, unsigned i, char *buf,
                              size_t cap) {
  if (name) {
    safe_name(name, buf, cap);
  } else {
    snprintf(buf, cap, "%s%u", kind, i);
  }
  return buf;
}

static lh_status step_intervention(run *r, const char *kind, unsigned i, bool plots) {
  lh_status st = LH_OK;
  step s;
  const job_file *jf = r->jf;
  char name[256], sect[64], rel[600], bs[32];
  static const char *const skip_name[] = {"name", "batch_size", NULL};
  static const char *const skip_probing[] = {"name", "forward_batch_size", NULL};
  snprintf(sect, sizeof sect, "%s.%u", kind, i);
  if (strcmp(kind, "patch") == 0) {
    const job_patch *e = &jf->patch[i];
    entry_name(e->name, kind, i, name, sizeof name);
    step_init(&s, kind, name, sect, cmd_patch, "patch");
    LH_TRY(add_path(r, &s, "--model", jf->model));
    if (!e->inputs) LH_TRY(add_path(r, &s, "--inputs", jf->inputs));
    LH_TRY(add_section(r, &s, job_patch_fields, e, skip_name));
    if (batch_size_text(r, e->batch_size, bs, sizeof bs)) LH_TRY(add_opt(&s, "--batch-size", bs));
  } else if (strcmp(kind, "steer") == 0) {
    const job_steer *e = &jf->steer[i];
    entry_name(e->name, kind, i, name, sizeof name);
    step_init(&s, kind, name, sect, cmd_steer, "steer");
    LH_TRY(add_path(r, &s, "--model", jf->model));
    if (!e->inputs) LH_TRY(add_path(r, &s, "--inputs", jf->inputs));
    LH_TRY(add_section(r, &s, job_steer_fields, e, skip_name));
    if (batch_size_text(r, e->batch_size, bs, sizeof bs)) LH_TRY(add_opt(&s, "--batch-size", bs));
  } else if (strcmp(kind, "activation_addition") == 0) {
    const job_addition *e = &jf->activation_addition[i];
    entry_name(e->name, kind, i, name, sizeof name);
    step_init(&s, kind, name, sect, cmd_addition, "activation-addition");
    LH_TRY(add_path(r, &s, "--model", jf->model));
    LH_TRY(add_section(r, &s, job_addition_fields, e, skip_name));
    if (batch_size_text(r, e->batch_size, bs, sizeof bs)) LH_TRY(add_opt(&s, "--batch-size", bs));
  } else {
    const job_probing *e = &jf->probing[i];
    entry_name(e->name, kind, i, name, sizeof name);
    step_init(&s, kind, name, sect, cmd_probe_model, "probe");
    LH_TRY(add_path(r, &s, "--model", jf->model));
    LH_TRY(add_path(r, &s, "--inputs", jf->inputs));
    LH_TRY(add_path(r, &s, "--labels", jf->labels));
    LH_TRY(add_section(r, &s, job_probing_fields, e, skip_probing));
    if (!e->estimator) LH_TRY(add_opt(&s, "--estimator", "linear"));
    if (batch_size_text(r, e->forward_batch_size, bs, sizeof bs))
      LH_TRY(add_opt(&s, "--forward-batch-size", bs));
    if (plots) {
      snprintf(rel, sizeof rel, "plots/probing_%s.png", name);
      LH_TRY(add_output(r, &s, "--png", rel));
    }
  }
  if (s.argc == 0) LH_FAIL(LH_ERR_NOMEM, "step arguments");
  snprintf(rel, sizeof rel, "results/%s/%s.h5", kind, name);
  LH_TRY(add_output(r, &s, "--out", rel));
  LH_TRY(run_step(r, &s));
done:
  step_free(&s);
  return st;
}

/* --- checks before anything runs ----------------------------------------------------------- */

/* A path value must name an existing file (or folder, for a model). Local (rank 0). */
static lh_status check_path(const run *r, const char *key_path, const char *value) {
  if (!value || strncmp(value, "$OUT/", 5) == 0) return LH_OK; /* written by the run */
  char full[RUN_PATH], file[RUN_PATH], where[RUN_PATH + 64];
  resolve(r, value, full, sizeof full);
  file_part(full, file, sizeof file);
  if (access(file, R_OK) == 0) return LH_OK;
  int e = errno;
  char hint[RUN_PATH + 64] = "";
  if (value[0] != '/')
    snprintf(hint, sizeof hint, " (a relative path starts at the job file's folder, %s)",
             job_dir(r->jb));
  return LH_ERROR(LH_ERR_IO, "%s: %s: cannot read '%s': %s%s",
                  job_where(r->jb, key_path, where, sizeof where), key_path, file, strerror(e),
                  hint);
}

static lh_status check_job(const run *r) {
  lh_status st = LH_OK;
  const job_file *jf = r->jf;
  char where[RUN_PATH + 64], key[64];
  const char *path = job_path(r->jb);
  bool interventions =
      jf->patch_count + jf->steer_count + jf->addition_count + jf->probing_count > 0;
  if (!jf->model && !jf->activations)
    LH_FAIL(LH_ERR_VALUE,
            "%s: expected 'model:' (with 'inputs:') or 'activations:' (a group of (N, D) datasets)",
            path);
  if (jf->model && !jf->inputs)
    LH_FAIL(LH_ERR_VALUE, "%s: 'model:' needs 'inputs:' (FILE.h5:/dataset)",
            job_where(r->jb, "model", where, sizeof where));
  if (jf->cache && !jf->model)
    LH_FAIL(LH_ERR_VALUE, "%s: 'cache:' needs 'model:' and 'inputs:'",
            job_where(r->jb, "cache", where, sizeof where));
  if (jf->cache && jf->activations)
    LH_FAIL(LH_ERR_VALUE, "%s: give either 'cache:' or 'activations:', not both",
            job_where(r->jb, "activations", where, sizeof where));
  if (jf->cache && !jf->cache->key_pattern)
    LH_FAIL(LH_ERR_VALUE,
            "%s: 'cache:' needs 'key_pattern:' (the modules to cache, e.g. 'layers\\.\\d+$')",
            job_where(r->jb, "cache", where, sizeof where));
  if (jf->analyses && !jf->cache && !jf->activations)
    LH_FAIL(
        LH_ERR_VALUE,
        "%s: 'analyses:' run over cached activations: add a 'cache:' section (or 'activations:')",
        job_where(r->jb, "analyses", where, sizeof where));
  if (interventions && !jf->model)
    LH_FAIL(LH_ERR_VALUE,
            "%s: patch, steer, activation_addition and probing need 'model:' and 'inputs:'", path);
  if (jf->analyses && jf->analyses->probe && !jf->labels)
    LH_FAIL(LH_ERR_VALUE, "%s: the probe needs 'labels:' (FILE.h5:/y, one label per input row)",
            job_where(r->jb, "analyses.probe", where, sizeof where));
  if (jf->probing_count > 0 && !jf->labels)
    LH_FAIL(LH_ERR_VALUE, "%s: probing needs 'labels:' (FILE.h5:/y, one label per input row)",
            job_where(r->jb, "probing", where, sizeof where));
  if (jf->batch_size && *jf->batch_size < 1)
    LH_FAIL(LH_ERR_VALUE, "%s: batch_size must be at least 1, got %lld",
            job_where(r->jb, "batch_size", where, sizeof where), (long long)*jf->batch_size);
  if (!jf->analyses && !jf->cache && !interventions)
    LH_FAIL(LH_ERR_VALUE,
            "%s: nothing to do: expected 'cache:', 'analyses:', 'patch:', 'steer:', "
            "'activation_addition:' or 'probing:'",
            path);
  LH_TRY(check_path(r, "model", jf->model));
  LH_TRY(check_path(r, "inputs", jf->inputs));
  LH_TRY(check_path(r, "labels", jf->labels));
  LH_TRY(check_path(r, "activations", jf->activations));
  for (unsigned i = 0; i < jf->patch_count; i++) {
    snprintf(key, sizeof key, "patch.%u.inputs", i);
    LH_TRY(check_path(r, key, jf->patch[i].inputs));
    snprintf(key, sizeof key, "patch.%u.patched_inputs", i);
    LH_TRY(check_path(r, key, jf->patch[i].patched_inputs));
  }
  for (unsigned i = 0; i < jf->steer_count; i++) {
    snprintf(key, sizeof key, "steer.%u.inputs", i);
    LH_TRY(check_path(r, key, jf->steer[i].inputs));
    snprintf(key, sizeof key, "steer.%u.add", i);
    LH_TRY(check_path(r, key, jf->steer[i].add));
    snprintf(key, sizeof key, "steer.%u.project", i);
    LH_TRY(check_path(r, key, jf->steer[i].project));
  }
  for (unsigned i = 0; i < jf->addition_count; i++) {
    snprintf(key, sizeof key, "activation_addition.%u.positive", i);
    LH_TRY(check_path(r, key, jf->activation_addition[i].positive));
    snprintf(key, sizeof key, "activation_addition.%u.negative", i);
    LH_TRY(check_path(r, key, jf->activation_addition[i].negative));
  }
done:
  return st;
}

static lh_status make_dir(const char *p) {
  char buf[RUN_PATH];
  snprintf(buf, sizeof buf, "%s", p);
  for (char *s = buf + 1; *s; s++) {
    if (*s != '/') continue;
    *s = '\0';
    if (mkdir(buf, 0777) != 0 && errno != EEXIST)
      return LH_ERROR(LH_ERR_IO, "cannot create folder '%s': %s", buf, strerror(errno));
    *s = '/';
  }
  if (mkdir(buf, 0777) != 0 && errno != EEXIST)
    return LH_ERROR(LH_ERR_IO, "cannot create folder '%s': %s", buf, strerror(errno));
  return LH_OK;
}

static lh_status make_dirs(const run *r) {
  static const char *const sub[] = {".latenthook", "results", NULL};
  char p[RUN_PATH + 64];
  lh_status st = make_dir(r->dir);
  for (int i = 0; st == LH_OK && sub[i]; i++) {
    snprintf(p, sizeof p, "%s/%s", r->dir, sub[i]);
    st = make_dir(p);
  }
  return st;
}

/* Removes what a killed run left under temporary names (NAME.tmp-PID...): every output is
 * written under such a name and renamed when complete. Local (rank 0), best effort. */
static void remove_stale(const char *dir, int depth) {
  DIR *dp = opendir(dir);
  if (!dp || depth > 4) {
    if (dp) closedir(dp);
    return;
  }
  for (struct dirent *e; (e = readdir(dp)) != NULL;) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    char p[RUN_PATH];
    if (snprintf(p, sizeof p, "%s/%s", dir, e->d_name) >= (int)sizeof p) continue;
    struct stat sb;
    if (lstat(p, &sb) != 0) continue;
    const char *t = strstr(e->d_name, ".tmp-");
    if (S_ISDIR(sb.st_mode))
      remove_stale(p, depth + 1);
    else if (S_ISREG(sb.st_mode) && t && t[5] >= '0' && t[5] <= '9' && remove(p) == 0)
      lh_log_info("run: removed '%s', left by an interrupted run", p);
  }
  closedir(dp);
}

static void load_state(run *r) {
  char p[RUN_PATH + 64];
  state_path(r, p, sizeof p);
  json_error_t err;
  json_t *s = r->force || access(p, F_OK) != 0 ? NULL : json_load_file(p, 0, &err);
  if (!r->force && !s && access(p, F_OK) == 0)
    lh_log_warn("run: cannot read the record of earlier runs (%s: %s): every step runs again", p,
                err.text);
  if (!json_is_object(s)) {
    json_decref(s);
    s = json_object();
  }
  if (!json_is_object(json_object_get(s, "steps"))) json_object_set_new(s, "steps", json_object());
  if (!json_is_object(json_object_get(s, "files"))) json_object_set_new(s, "files", json_object());
  r->state = s;
}

/* Whether a layer is the labels dataset (activations: may hold both). */
static bool is_labels(const run *r, const run_layer *l) {
  if (!r->jf->labels) return false;
  char lab[RUN_PATH];
  resolve(r, r->jf->labels, lab, sizeof lab);
  return strcmp(lab, l->addr) == 0 ||
         (strstr(l->addr, ":/") && strstr(lab, ":/") &&
          strcmp(strstr(l->addr, ":/"), strstr(lab, ":/")) == 0 &&
          strncmp(l->addr, lab, (size_t)(strstr(lab, ":/") - lab)) == 0);
}

/* --- the command ----------------------------------------------------------------------------- */

static lh_status run_all(run *r, bool plots) {
  lh_status st = LH_OK;
  const job_file *jf = r->jf;
  const job_analyses *an = jf->analyses;
  if (jf->cache) LH_TRY(step_cache(r));
  if (jf->cache || jf->activations) LH_TRY(list_layers(r));
  if (an) {
    static const char *const kinds[] = {"twonn", "local_knn", "knn", "probe"};
    const void *on[] = {an->twonn, an->local_knn, an->knn, an->probe};
    for (int k = 0; k < 4; k++) {
      if (!on[k]) continue;
      for (int64_t i = 0; i < r->nlayers; i++) {
        if (k == 3 && (r->layers[i].ndims < 2 || is_labels(r, &r->layers[i]))) continue;
        if (r->layers[i].ndims != 2 && k < 3) {
          lh_log_warn(
              "run: %s: layer '%s' is not (N, D) (reduce it in the cache: section), skipped",
              kinds[k], r->layers[i].name);
          continue;
        }
        LH_TRY(step_layer(r, kinds[k], &r->layers[i]));
      }
    }
    if (an->cka) LH_TRY(step_matrix(r, "cka", plots));
    if (an->information_imbalance) LH_TRY(step_matrix(r, "information_imbalance", plots));
  }
  for (unsigned i = 0; i < jf->patch_count; i++) LH_TRY(step_intervention(r, "patch", i, plots));
  /* activation addition before steering: a steer entry may add its vectors ($OUT/...) */
  for (unsigned i = 0; i < jf->addition_count; i++)
    LH_TRY(step_intervention(r, "activation_addition", i, plots));
  for (unsigned i = 0; i < jf->steer_count; i++) LH_TRY(step_intervention(r, "steer", i, plots));
  for (unsigned i = 0; i < jf->probing_count; i++)
    LH_TRY(step_intervention(r, "probing", i, plots));
done:
  return st;
}

/* summary.json, job.yaml and the figures. Collective (rank 0 writes, the others agree). */
static lh_status report(run *r, bool plots, json_t **summary) {
  lh_status local = LH_OK;
  json_t *doc = NULL;
  if (r->rank == 0) {
    int nranks;
    MPI_Comm_size(r->comm, &nranks);
    json_t *figs = NULL, *layers = json_array();
    for (int64_t i = 0; i < r->nlayers; i++)
      json_array_append_new(layers, json_string(r->layers[i].name));
    if (plots) {
      run_report_in in = {.dir = r->dir,
                          .layers = r->layers,
                          .nlayers = r->nlayers,
                          .jf = r->jf,
                          .results = r->results};
      local = run_report_plots(&in, &figs);
    }
    char p[RUN_PATH + 64], *text = NULL;
    if (local == LH_OK) local = job_yaml_text(r->jb, &text);
    if (local == LH_OK) {
      snprintf(p, sizeof p, "%s/job.yaml", r->dir);
      char tmp[RUN_PATH + 96];
      snprintf(tmp, sizeof tmp, "%s.tmp-%ld", p, (long)getpid());
      FILE *f = fopen(tmp, "w");
      bool ok = f && fputs(text, f) >= 0;
      ok = (f && fclose(f) == 0) && ok;
      if (!ok || rename(tmp, p) != 0) {
        remove(tmp);
        local = LH_ERROR(LH_ERR_IO, "cannot write '%s'", p);
      }
    }
    free(text);
    doc = json_object();
    json_object_set_new(doc, "latenthook", json_string(lh_version()));
    json_object_set_new(doc, "job", json_string(job_path(r->jb)));
    json_object_set_new(doc, "name", r->jf->name ? json_string(r->jf->name) : json_null());
    json_object_set_new(doc, "output_dir", json_string(r->dir));
    json_object_set_new(doc, "ranks", json_integer(nranks));
    json_object_set_new(doc, "steps_run", json_integer(r->done));
    json_object_set_new(doc, "steps_skipped", json_integer(r->skipped));
    json_object_set_new(doc, "layers", layers);
    json_object_set_new(doc, "results", json_incref(r->results));
    json_object_set_new(doc, "plots", figs ? figs : json_array());
    json_object_set_new(doc, "steps", json_incref(r->steps));
    json_object_set_new(doc, "config", job_json(r->jb));
    if (local == LH_OK) {
      snprintf(p, sizeof p, "%s/summary.json", r->dir);
      local = run_write_json(p, doc);
    }
  }
  lh_status st = lh_agree(r->comm, local);
  if (st == LH_OK)
    *summary = doc;
  else
    json_decref(doc);
  return st;
}

lh_status cmd_run(MPI_Comm comm, int argc, char **argv, cli_common *cc) {
  lh_status st = LH_OK;
  static const struct option opts[] = {{"output-dir", required_argument, NULL, OPT_OUTDIR},
                                       {"force", no_argument, NULL, OPT_FORCE},
                                       {"set", required_argument, NULL, OPT_SET},
                                       CLI_COMMON_OPTIONS,
                                       {0, 0, 0, 0}};
  args a = {0};
  job *jb = NULL;
  run r = {.comm = comm};
  json_t *summary = NULL;
  bool armed = false;
  int pos;
  MPI_Comm_rank(comm, &r.rank);
  LH_TRY(cli_parse("run", argc, argv, opts, NULL, cc, on_option, &a, &pos));
  if (cc->help) {
    cli_print_help(comm, HELP);
    goto done;
  }
  if (pos >= argc)
    LH_FAIL(LH_ERR_USAGE, "a job file is required: latenthook run JOB.yaml (see --help)");
  if (pos + 1 < argc)
    LH_FAIL(LH_ERR_USAGE, "unexpected argument '%s' after the job file", argv[pos + 1]);
  const char *path = argv[pos];
  LH_TRY(lh_agree(comm, job_load(path, a.sets, a.nsets, &jb)));
  r.jb = jb;
  r.jf = job_data(jb);
  r.force = a.force;
  if (a.outdir) {
    snprintf(r.dir, sizeof r.dir, "%s", a.outdir);
  } else {
    const char *base = strrchr(path, '/');
    snprintf(r.dir, sizeof r.dir, "%s", base ? base + 1 : path);
    char *dot = strrchr(r.dir, '.');
    if (dot && dot != r.dir) *dot = '\0';
    strncat(r.dir, "-results", sizeof r.dir - strlen(r.dir) - 1);
  }
  size_t dl = strlen(r.dir);
  while (dl > 1 && r.dir[dl - 1] == '/') r.dir[--dl] = '\0';
  LH_TRY(lh_agree(comm, r.rank == 0 ? check_job(&r) : LH_OK));
  LH_TRY(lh_agree(comm, r.rank == 0 ? make_dirs(&r) : LH_OK));
  if (r.rank == 0) {
    remove_stale(r.dir, 0);
    load_state(&r);
    r.results = json_object();
    r.steps = json_array();
  }
  LH_TRY(lh_agree(comm, lh_interrupt_arm()));
  armed = true;
  bool plots = !(r.jf->outputs && r.jf->outputs->plots && !*r.jf->outputs->plots);
  LH_TRY(run_all(&r, plots));
  LH_TRY(report(&r, plots, &summary));
  lh_log_info("run: %lld steps run, %lld unchanged and skipped; results in %s", (long long)r.done,
              (long long)r.skipped, r.dir);
  if (r.rank == 0) {
    /* stdout: the summary without the configuration (it is in summary.json and job.yaml) */
    json_object_del(summary, "config");
    json_object_del(summary, "steps");
  }
  cli_emit_json(comm, summary);
  summary = NULL;
done:
  if (armed) lh_interrupt_disarm();
  json_decref(summary);
  json_decref(r.state);
  json_decref(r.results);
  json_decref(r.steps);
  free(r.layers);
  job_free(&jb);
  return st;
}
