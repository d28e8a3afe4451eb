/*
 * job.h (private): the job files of `latenthook run`, loaded from YAML.
 *
 * libyaml keeps the document as a node tree with the line of every node: `--set a.b=v`
 * overrides edit that tree, the effective configuration is emitted from it (YAML and JSON),
 * and messages about a value name its line. libcyaml checks the (overridden) document against
 * the schema below and fills the structs: an unknown key or a wrong type is an error naming
 * the line and column (or the --set that caused it).
 *
 * Optional scalars are pointers (NULL: absent, the command's default applies); flags are
 * ints read strictly from true/false/yes/no/on/off. The keys of a
 * section are the long options of the command it runs, with '_' for '-': `key_pattern` is
 * `--key-pattern`. Relative paths are relative to the job file's folder.
 */
#ifndef LH_CLI_JOB_H
#define LH_CLI_JOB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cyaml/cyaml.h>
#include <jansson.h>

#include "latenthook/status.h"

typedef struct job_cache {
  char *key_pattern, *direction, *reduce, *output_reduce;
  int *absolute, *nested_keys;
  int *output;         /* keep the model output (default false) */
  int *include_inputs; /* analyse the inputs as the first layer, "input" (default true) */
  int64_t *batch_size;
} job_cache;

typedef struct job_twonn {
  double *eps, *discard_fraction;
  int *scales;
  int64_t *seed;
} job_twonn;

typedef struct job_localknn {
  char *k; /* auto or an integer */
  double *eps;
} job_localknn;

typedef struct job_knn {
  int64_t *k;
  double *eps;
} job_knn;

typedef struct job_cka {
  int *debiased;
} job_cka;

typedef struct job_ii {
  char *p; /* a number or inf */
  int64_t *k;
} job_ii;

typedef struct job_probe {
  char *estimator, *solver;
  int64_t *num_classes, *seed, *epochs, *batch_size, *max_iter;
  double *l2, *test_fraction, *lr, *tol;
  int *no_normalize;
} job_probe;

typedef struct job_analyses {
  job_twonn *twonn;
  job_localknn *local_knn;
  job_knn *knn;
  job_cka *cka;
  job_ii *information_imbalance;
  job_probe *probe;
} job_analyses;

typedef struct job_patch {
  char *name, *inputs, *patched_inputs, *positions, *units, *metric;
  char **modules;
  unsigned modules_count;
  int64_t *tokens;
  unsigned tokens_count;
  int *sweep, *per_position;
  int64_t *batch_size;
} job_patch;

typedef struct job_steer {
  char *name, *inputs, *add, *project;
  char **modules;
  unsigned modules_count;
  double *alpha, *scale;
  int64_t *batch_size;
} job_steer;

typedef struct job_addition {
  char *name, *positive, *negative, *reduce;
  char **modules;
  unsigned modules_count;
  int64_t *batch_size;
} job_addition;

typedef struct job_probing {
  char *name, *key_pattern, *direction, *reduce, *estimator, *solver;
  int *absolute, *control_task, *no_normalize;
  int64_t *num_classes, *seed, *epochs, *batch_size, *max_iter, *forward_batch_size;
  double *l2, *test_fraction, *lr, *tol;
} job_probing;

typedef struct job_outputs {
  int *plots; /* PNG figures (default true) */
} job_outputs;

typedef struct job_file {
  char *name;
  char *model, *inputs, *labels;
  char *activations; /* instead of model + cache: analyse the (N, D) datasets of this group */
  int64_t *batch_size;
  job_cache *cache;
  job_analyses *analyses;
  job_patch *patch;
  unsigned patch_count;
  job_steer *steer;
  unsigned steer_count;
  job_addition *activation_addition;
  unsigned addition_count;
  job_probing *probing;
  unsigned probing_count;
  job_outputs *outputs;
} job_file;

typedef struct job job;

/* Reads the job file, applies the `--set KEY=VALUE` overrides (sets[0..nsets)) in order and
 * checks the result against the schema. KEY is a dotted path (`analyses.probe.l2`,
 * `patch.0.alpha`); VALUE is YAML (a scalar, or a flow list like [a, b]); a missing key is
 * added. Local (every rank reads the same file). Errors: LH_ERR_IO (unreadable), LH_ERR_VALUE
 * (syntax, unknown key, wrong type, bad --set: the message names the line or the --set),
 * LH_ERR_NOMEM. */
LH_NODISCARD lh_status job_load(const char *path, char *const *sets, int nsets, job **out);
void job_free(job **j);

/* The typed content. */
const job_file *job_data(const job *j);

/* The job file's path and its folder (for relative paths). */
const char *job_path(const job *j);
const char *job_dir(const job *j);

/* Where the value at a dotted path comes from, for messages: "FILE, line N" or
 * "--set KEY=VALUE" (or just FILE when the path is absent). Writes into buf. Pure. */
const char *job_where(const job *j, const char *key_path, char *buf, size_t cap);

/* The effective configuration: as YAML text (the caller frees with free()) and as JSON (new
 * reference). Plain scalars become numbers, booleans or null where they read as such. */
LH_NODISCARD lh_status job_yaml_text(const job *j, char **text);
json_t *job_json(const job *j);

/* The value of a top-level key of another YAML file (e.g. a model's `weights:`) into out;
 * "" when absent. Local. Errors: LH_ERR_IO, LH_ERR_VALUE (not YAML). */
LH_NODISCARD lh_status job_top_scalar(const char *yaml_path, const char *key, char *out,
                                      size_t cap);

/* The schema of each section, for the runner's option lists (terminated by a NULL key). */
extern const cyaml_schema_field_t job_cache_fields[], job_twonn_fields[], job_localknn_fields[],
    job_knn_fields[], job_cka_fields[], job_ii_fields[], job_probe_fields[], job_patch_fields[],
    job_steer_fields[], job_addition_fields[], job_probing_fields[];

#endif
