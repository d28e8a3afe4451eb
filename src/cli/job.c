/*
 * job.c: job files (job.h): libyaml for the document, the --set overrides, the lines and the
 * effective configuration; libcyaml for the schema and the typed structs.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "cli/job.h"
#include "core/check.h"
#include "io/yaml_log.h"
#include "latenthook/mem.h"

/* --- the schema ------------------------------------------------------------------------------ */

static const cyaml_strval_t flag_strings[] = {{"false", 0}, {"true", 1}, {"no", 0},
                                              {"yes", 1},   {"off", 0},  {"on", 1}};
#define OPT (CYAML_FLAG_POINTER | CYAML_FLAG_OPTIONAL)
#define FLAG(key, s, m) CYAML_FIELD_ENUM_PTR(key, OPT | CYAML_FLAG_STRICT, s, m, flag_strings, 6)
#define INT(key, s, m) CYAML_FIELD_INT_PTR(key, OPT, s, m)
#define REAL(key, s, m) CYAML_FIELD_FLOAT_PTR(key, OPT, s, m)
#define STR(key, s, m) CYAML_FIELD_STRING_PTR(key, OPT, s, m, 0, CYAML_UNLIMITED)
#define MAP(key, s, m, f) CYAML_FIELD_MAPPING_PTR(key, OPT, s, m, f)
#define SEQ(key, s, m, n, e) CYAML_FIELD_SEQUENCE_COUNT(key, OPT, s, m, n, &e, 0, CYAML_UNLIMITED)

static const cyaml_schema_value_t string_entry = {
    CYAML_VALUE_STRING(CYAML_FLAG_POINTER, char, 0, CYAML_UNLIMITED)};
static const cyaml_schema_value_t int_entry = {CYAML_VALUE_INT(CYAML_FLAG_DEFAULT, int64_t)};

const cyaml_schema_field_t job_cache_fields[] = {
    STR("key_pattern", job_cache, key_pattern), STR("direction", job_cache, direction),
    STR("reduce", job_cache, reduce),           STR("output_reduce", job_cache, output_reduce),
    FLAG("absolute", job_cache, absolute),      FLAG("nested_keys", job_cache, nested_keys),
    FLAG("output", job_cache, output),          FLAG("include_inputs", job_cache, include_inputs),
    INT("batch_size", job_cache, batch_size),   CYAML_FIELD_END};
const cyaml_schema_field_t job_twonn_fields[] = {
    REAL("eps", job_twonn, eps), REAL("discard_fraction", job_twonn, discard_fraction),
    FLAG("scales", job_twonn, scales), INT("seed", job_twonn, seed), CYAML_FIELD_END};
const cyaml_schema_field_t job_localknn_fields[] = {
    STR("k", job_localknn, k), REAL("eps", job_localknn, eps), CYAML_FIELD_END};
const cyaml_schema_field_t job_knn_fields[] = {INT("k", job_knn, k), REAL("eps", job_knn, eps),
                                               CYAML_FIELD_END};
const cyaml_schema_field_t job_cka_fields[] = {FLAG("debiased", job_cka, debiased),
                                               CYAML_FIELD_END};
const cyaml_schema_field_t job_ii_fields[] = {STR("p", job_ii, p), INT("k", job_ii, k),
                                              CYAML_FIELD_END};
const cyaml_schema_field_t job_probe_fields[] = {STR("estimator", job_probe, estimator),
                                                 INT("num_classes", job_probe, num_classes),
                                                 STR("solver", job_probe, solver),
                                                 REAL("l2", job_probe, l2),
                                                 REAL("test_fraction", job_probe, test_fraction),
                                                 INT("seed", job_probe, seed),
                                                 INT("epochs", job_probe, epochs),
                                                 INT("batch_size", job_probe, batch_size),
                                                 REAL("lr", job_probe, lr),
                                                 INT("max_iter", job_probe, max_iter),
                                                 REAL("tol", job_probe, tol),
                                                 FLAG("no_normalize", job_probe, no_normalize),
                                                 CYAML_FIELD_END};
static const cyaml_schema_field_t analyses_fields[] = {
    MAP("twonn", job_analyses, twonn, job_twonn_fields),
    MAP("local_knn", job_analyses, local_knn, job_localknn_fields),
    MAP("knn", job_analyses, knn, job_knn_fields),
    MAP("cka", job_analyses, cka, job_cka_fields),
    MAP("information_imbalance", job_analyses, information_imbalance, job_ii_fields),
    MAP("probe", job_analyses, probe, job_probe_fields),
    CYAML_FIELD_END};
const cyaml_schema_field_t job_patch_fields[] = {
    STR("name", job_patch, name),
    STR("inputs", job_patch, inputs),
    STR("patched_inputs", job_patch, patched_inputs),
    SEQ("modules", job_patch, modules, modules_count, string_entry),
    STR("positions", job_patch, positions),
    STR("units", job_patch, units),
    FLAG("sweep", job_patch, sweep),
    FLAG("per_position", job_patch, per_position),
    STR("metric", job_patch, metric),
    SEQ("tokens", job_patch, tokens, tokens_count, int_entry),
    INT("batch_size", job_patch, batch_size),
    CYAML_FIELD_END};
const cyaml_schema_field_t job_steer_fields[] = {
    STR("name", job_steer, name),
    STR("inputs", job_steer, inputs),
    SEQ("modules", job_steer, modules, modules_count, string_entry),
    STR("add", job_steer, add),
    REAL("alpha", job_steer, alpha),
    STR("project", job_steer, project),
    REAL("scale", job_steer, scale),
    INT("batch_size", job_steer, batch_size),
    CYAML_FIELD_END};
const cyaml_schema_field_t job_addition_fields[] = {
    STR("name", job_addition, name),
    STR("positive", job_addition, positive),
    STR("negative", job_addition, negative),
    SEQ("modules", job_addition, modules, modules_count, string_entry),
    STR("reduce", job_addition, reduce),
    INT("batch_size", job_addition, batch_size),
    CYAML_FIELD_END};
const cyaml_schema_field_t job_probing_fields[] = {
    STR("name", job_probing, name),
    STR("key_pattern", job_probing, key_pattern),
    FLAG("absolute", job_probing, absolute),
    STR("direction", job_probing, direction),
    STR("reduce", job_probing, reduce),
    INT("forward_batch_size", job_probing, forward_batch_size),
    STR("estimator", job_probing, estimator),
    INT("num_classes", job_probing, num_classes),
    STR("solver", job_probing, solver),
    REAL("l2", job_probing, l2),
    REAL("test_fraction", job_probing, test_fraction),
    INT("seed", job_probing, seed),
    INT("epochs", job_probing, epochs),
    INT("batch_size", job_probing, batch_size),
    REAL("lr", job_probing, lr),
    INT("max_iter", job_probing, max_iter),
    REAL("tol", job_probing, tol),
    FLAG("no_normalize", job_probing, no_normalize),
    FLAG("control_task", job_probing, control_task),
    CYAML_FIELD_END};
static const cyaml_schema_field_t outputs_fields[] = {FLAG("plots", job_outputs, plots),
                                                      CYAML_FIELD_END};
static const cyaml_schema_value_t patch_entry = {
    CYAML_VALUE_MAPPING(CYAML_FLAG_DEFAULT, job_patch, job_patch_fields)};
static const cyaml_schema_value_t steer_entry = {
    CYAML_VALUE_MAPPING(CYAML_FLAG_DEFAULT, job_steer, job_steer_fields)};
static const cyaml_schema_value_t addition_entry = {
    CYAML_VALUE_MAPPING(CYAML_FLAG_DEFAULT, job_addition, job_addition_fields)};
static const cyaml_schema_value_t probing_entry = {
    CYAML_VALUE_MAPPING(CYAML_FLAG_DEFAULT, job_probing, job_probing_fields)};
static const cyaml_schema_field_t top_fields[] = {
    STR("name", job_file, name),
    STR("model", job_file, model),
    STR("inputs", job_file, inputs),
    STR("labels", job_file, labels),
    STR("activations", job_file, activations),
    INT("batch_size", job_file, batch_size),
    MAP("cache", job_file, cache, job_cache_fields),
    MAP("analyses", job_file, analyses, analyses_fields),
    SEQ("patch", job_file, patch, patch_count, patch_entry),
    SEQ("steer", job_file, steer, steer_count, steer_entry),
    SEQ("activation_addition", job_file, activation_addition, addition_count, addition_entry),
    SEQ("probing", job_file, probing, probing_count, probing_entry),
    MAP("outputs", job_file, outputs, outputs_fields),
    CYAML_FIELD_END};
static const cyaml_schema_value_t top_schema = {
    CYAML_VALUE_MAPPING(CYAML_FLAG_POINTER, job_file, top_fields)};

static const cyaml_config_t *cyaml_cfg(lh_ylog *lg, cyaml_config_t *cfg) {
  memset(cfg, 0, sizeof *cfg);
  cfg->log_fn = lh_ylog_fn;
  cfg->log_ctx = lg;
  cfg->mem_fn = cyaml_mem;
  cfg->log_level = CYAML_LOG_ERROR;
  return cfg;
}

/* --- the job ---------------------------------------------------------------------------------- */

struct job {
  char *path, *dir;
  char *text; /* the file as read */
  size_t len;
  char **sets;
  int nsets;
  yaml_document_t doc; /* the file with the overrides applied */
  bool have_doc;
  int orig_nodes; /* nodes 1..orig_nodes come from the file (they have lines) */
  job_file *data;
};

static char *dup_str(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d) memcpy(d, s, n);
  return d;
}

/* Parses text into doc; a syntax error names the line. */
static lh_status parse_doc(const char *path, const char *text, size_t len, yaml_document_t *doc,
                           const char *what) {
  yaml_parser_t p;
  if (!yaml_parser_initialize(&p)) return LH_ERROR(LH_ERR_NOMEM, "libyaml: cannot start a parser");
  yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
  lh_status st = LH_OK;
  if (!yaml_parser_load(&p, doc)) {
    if (what)
      st = LH_ERROR(LH_ERR_VALUE, "%s: not YAML: %s", what, p.problem ? p.problem : "syntax error");
    else
      st =
          LH_ERROR(LH_ERR_VALUE, "%s, line %lu, column %lu: YAML syntax error: %s%s%s", path,
                   (unsigned long)p.problem_mark.line + 1, (unsigned long)p.problem_mark.column + 1,
                   p.problem ? p.problem : "?", p.context ? " " : "", p.context ? p.context : "");
  } else if (!yaml_document_get_root_node(doc)) {
    yaml_document_delete(doc);
    st = what ? LH_ERROR(LH_ERR_VALUE, "%s: no value", what)
              : LH_ERROR(LH_ERR_VALUE, "%s: the job file is empty", path);
  }
  yaml_parser_delete(&p);
  return st;
}

/* Copies node `id` of src (and everything under it) into dst; returns its id there, 0 on
 * failure. */
static int copy_node(yaml_document_t *dst, yaml_document_t *src, int id) {
  yaml_node_t *n = yaml_document_get_node(src, id);
  if (!n) return 0;
  switch (n->type) {
    case YAML_SCALAR_NODE:
      return yaml_document_add_scalar(dst, NULL, n->data.scalar.value, (int)n->data.scalar.length,
                                      n->data.scalar.style);
    case YAML_SEQUENCE_NODE: {
      int s = yaml_document_add_sequence(dst, NULL, YAML_FLOW_SEQUENCE_STYLE);
      for (yaml_node_item_t *it = n->data.sequence.items.start;
           s && it < n->data.sequence.items.top; it++) {
        int c = copy_node(dst, src, *it);
        if (!c || !yaml_document_append_sequence_item(dst, s, c)) return 0;
      }
      return s;
    }
    case YAML_MAPPING_NODE: {
      int m = yaml_document_add_mapping(dst, NULL, YAML_FLOW_MAPPING_STYLE);
      for (yaml_node_pair_t *pr = n->data.mapping.pairs.start; m && pr < n->data.mapping.pairs.top;
           pr++) {
        int k = copy_node(dst, src, pr->key), v = copy_node(dst, src, pr->value);
        if (!k || !v || !yaml_document_append_mapping_pair(dst, m, k, v)) return 0;
      }
      return m;
    }
    default:
      return 0;
  }
}

/* The pair of mapping node m whose key is `key`, or NULL. */
static yaml_node_pair_t *find_pair(yaml_document_t *doc, yaml_node_t *m, const char *key) {
  for (yaml_node_pair_t *pr = m->data.mapping.pairs.start; pr < m->data.mapping.pairs.top; pr++) {
    yaml_node_t *k = yaml_document_get_node(doc, pr->key);
    if (k && k->type == YAML_SCALAR_NODE && strcmp((const char *)k->data.scalar.value, key) == 0)
      return pr;
  }
  return NULL;
}

/* A sequence index: digits only, below the sequence's length. */
static bool seq_index(yaml_node_t *s, const char *comp, long *idx) {
  char *end = NULL;
  errno = 0;
  long v = strtol(comp, &end, 10);
  long len = (long)(s->data.sequence.items.top - s->data.sequence.items.start);
  if (!comp[0] || *end || errno || v < 0 || v >= len) return false;
  *idx = v;
  return true;
}

/* Applies one "KEY=VALUE" to doc. */
static lh_status apply_set(yaml_document_t *doc, const char *set) {
  lh_status st = LH_OK;
  char key[512];
  const char *eq = strchr(set, '=');
  yaml_document_t val;
  bool have_val = false;
  if (!eq || eq == set || (size_t)(eq - set) >= sizeof key)
    LH_FAIL(LH_ERR_USAGE, "--set %s: expected KEY=VALUE with a dotted KEY (analyses.probe.l2=0.01)",
            set);
  memcpy(key, set, (size_t)(eq - set));
  key[eq - set] = '\0';
  char what[600];
  snprintf(what, sizeof what, "--set %s", set);
  const char *v = eq + 1;
  LH_TRY(parse_doc(NULL, v, strlen(v), &val, what));
  have_val = true;
  int node = 1; /* the root */
  char *save = NULL;
  for (char *comp = strtok_r(key, ".", &save); comp; comp = strtok_r(NULL, ".", &save)) {
    bool last = save == NULL || *save == '\0';
    yaml_node_t *n = yaml_document_get_node(doc, node);
    if (n->type == YAML_MAPPING_NODE) {
      yaml_node_pair_t *pr = find_pair(doc, n, comp);
      if (pr && !last) {
        node = pr->value;
        continue;
      }
      int child = last ? copy_node(doc, &val, 1)
                       : yaml_document_add_mapping(doc, NULL, YAML_BLOCK_MAPPING_STYLE);
      if (!child) LH_FAIL(LH_ERR_NOMEM, "%s: libyaml could not add the value", what);
      if (pr) { /* the pair array may move when nodes are added: find it again */
        pr = find_pair(doc, yaml_document_get_node(doc, node), comp);
        pr->value = child;
      } else {
        int k =
            yaml_document_add_scalar(doc, NULL, (yaml_char_t *)comp, -1, YAML_PLAIN_SCALAR_STYLE);
        if (!k || !yaml_document_append_mapping_pair(doc, node, k, child))
          LH_FAIL(LH_ERR_NOMEM, "%s: libyaml could not add the key", what);
      }
      node = child;
    } else if (n->type == YAML_SEQUENCE_NODE) {
      long idx;
      if (!seq_index(n, comp, &idx))
        LH_FAIL(LH_ERR_USAGE,
                "%s: '%s' is a list of %ld entries: expected an index 0..%ld, got '%s'", what, comp,
                (long)(n->data.sequence.items.top - n->data.sequence.items.start),
                (long)(n->data.sequence.items.top - n->data.sequence.items.start) - 1, comp);
      if (!last) {
        node = n->data.sequence.items.start[idx];
        continue;
      }
      int child = copy_node(doc, &val, 1);
      if (!child) LH_FAIL(LH_ERR_NOMEM, "%s: libyaml could not add the value", what);
      yaml_document_get_node(doc, node)->data.sequence.items.start[idx] = child;
    } else {
      LH_FAIL(LH_ERR_USAGE, "%s: '%s' is a plain value, it has no key '%s'", what, key, comp);
    }
  }
done:
  if (have_val) yaml_document_delete(&val);
  return st;
}

/* A growing text buffer for the emitter. */
typedef struct sbuf {
  char *p;
  size_t n, cap;
  bool failed;
} sbuf;

static int sbuf_write(void *data, unsigned char *buf, size_t size) {
  sbuf *b = data;
  if (b->n + size + 1 > b->cap) {
    size_t cap = (b->cap ? b->cap * 2 : 4096);
    while (cap < b->n + size + 1) cap *= 2;
    char *q = realloc(b->p, cap);
    if (!q) {
      b->failed = true;
      return 0;
    }
    b->p = q;
    b->cap = cap;
  }
  memcpy(b->p + b->n, buf, size);
  b->n += size;
  b->p[b->n] = '\0';
  return 1;
}

/* The document of the file with sets[0..nsets) applied, into *doc. */
static lh_status build_doc(const job *j, int nsets, yaml_document_t *doc) {
  lh_status st = LH_OK;
  LH_TRY(parse_doc(j->path, j->text, j->len, doc, NULL));
  for (int i = 0; i < nsets; i++) {
    if (yaml_document_get_root_node(doc)->type != YAML_MAPPING_NODE) {
      yaml_document_delete(doc);
      LH_FAIL(LH_ERR_VALUE, "%s: the job file is not a mapping of keys", j->path);
    }
    lh_status s = apply_set(doc, j->sets[i]);
    if (s != LH_OK) {
      yaml_document_delete(doc);
      LH_TRY(s);
    }
  }
done:
  return st;
}

/* YAML text of the document with sets[0..nsets) applied (malloc'ed). */
static lh_status emit_text(const job *j, int nsets, char **text) {
  lh_status st = LH_OK;
  yaml_document_t doc;
  yaml_emitter_t e;
  sbuf b = {0};
  LH_TRY(build_doc(j, nsets, &doc));
  if (!yaml_emitter_initialize(&e)) {
    yaml_document_delete(&doc);
    LH_FAIL(LH_ERR_NOMEM, "libyaml: cannot start an emitter");
  }
  yaml_emitter_set_output(&e, sbuf_write, &b);
  yaml_emitter_set_unicode(&e, 1);
  yaml_emitter_set_width(&e, 100);
  int ok = yaml_emitter_open(&e) && yaml_emitter_dump(&e, &doc) && yaml_emitter_close(&e);
  /* yaml_emitter_dump consumes the document */
  yaml_emitter_delete(&e);
  if (!ok || b.failed) {
    free(b.p);
    LH_FAIL(LH_ERR_NOMEM, "libyaml: cannot write the effective job file");
  }
  *text = b.p;
done:
  return st;
}

/* The line and column of the first mapping key `key` in doc (libcyaml places an unexpected
 * key at the node read before it). */
static bool key_mark(yaml_document_t *doc, const char *key, int *line, int *col) {
  for (yaml_node_t *n = doc->nodes.start; n < doc->nodes.top; n++) {
    if (n->type != YAML_MAPPING_NODE) continue;
    for (yaml_node_pair_t *pr = n->data.mapping.pairs.start; pr < n->data.mapping.pairs.top; pr++) {
      yaml_node_t *k = yaml_document_get_node(doc, pr->key);
      if (k && k->type == YAML_SCALAR_NODE &&
          strcmp((const char *)k->data.scalar.value, key) == 0) {
        *line = (int)k->start_mark.line + 1;
        *col = (int)k->start_mark.column + 1;
        return true;
      }
    }
  }
  return false;
}

/* A message from libcyaml's log, with the line when `doc` (the document it read) is given. */
static lh_status schema_error(const char *where, yaml_document_t *doc, cyaml_err_t err,
                              const lh_ylog *lg_in) {
  lh_ylog copy = *lg_in, *lg = &copy;
  bool lines = doc != NULL;
  char field[128] = "", value[256] = "", text[1400];
  const char *msg = lg->msg[0] ? lg->msg : cyaml_strerror(err);
  sscanf(lg->where, "mapping field '%127[^']'", field);
  if ((sscanf(msg, "Invalid %*s value: '%255[^']'", value) == 1 ||
       sscanf(msg, "Invalid %*s value: %255[^\n]", value) == 1) &&
      field[0]) {
    const char *type = strstr(msg, "INT")     ? "an integer"
                       : strstr(msg, "FLOAT") ? "a number"
                       : strstr(msg, "ENUM")  ? "true or false"
                                              : "another type";
    snprintf(text, sizeof text, "invalid value '%s' for '%s' (expected %s)", value, field, type);
  } else if (strncmp(msg, "Unexpected key: ", 16) == 0) {
    if (doc) key_mark(doc, msg + 16, &lg->line, &lg->col);
    snprintf(text, sizeof text, "unknown key '%s'%s%s", msg + 16, field[0] ? " in " : "", field);
  } else if (strstr(msg, "Expected") || strstr(msg, "expected")) {
    snprintf(text, sizeof text, "%s%s%s", msg, field[0] ? " for " : "", field);
  } else {
    snprintf(text, sizeof text, "%s", msg);
    if (field[0]) {
      size_t k = strlen(text);
      snprintf(text + k, sizeof text - k, " ('%s')", field);
    }
  }
  if (lines && lg->line > 0)
    return LH_ERROR(LH_ERR_VALUE, "%s, line %d, column %d: %s", where, lg->line, lg->col, text);
  return LH_ERROR(LH_ERR_VALUE, "%s: %s", where, text);
}

/* Loads text against the schema; on failure the message names `where` (and the line). */
static lh_status load_typed(const char *text, size_t len, const char *where, yaml_document_t *doc,
                            job_file **out) {
  lh_ylog lg = {0};
  cyaml_config_t cfg;
  job_file *y = NULL;
  cyaml_err_t err = cyaml_load_data((const uint8_t *)text, len, cyaml_cfg(&lg, &cfg), &top_schema,
                                    (cyaml_data_t **)&y, NULL);
  if (err != CYAML_OK) return schema_error(where, doc, err, &lg);
  *out = y;
  return LH_OK;
}

static void free_typed(job_file *y) {
  if (!y) return;
  lh_ylog lg = {0};
  cyaml_config_t cfg;
  cyaml_free(cyaml_cfg(&lg, &cfg), &top_schema, y, 0);
}

static lh_status read_file(const char *path, char **text, size_t *len) {
  lh_status st = LH_OK;
  FILE *f = fopen(path, "rb");
  if (!f) return LH_ERROR(LH_ERR_IO, "cannot open job file '%s': %s", path, strerror(errno));
  size_t cap = 4096, n = 0;
  char *p = malloc(cap);
  while (p) {
    size_t got = fread(p + n, 1, cap - n - 1, f);
    n += got;
    if (n + 1 < cap) break;
    char *q = realloc(p, cap * 2);
    if (!q) {
      free(p);
      p = NULL;
      break;
    }
    p = q;
    cap *= 2;
  }
  bool bad = ferror(f);
  fclose(f);
  if (!p) LH_FAIL(LH_ERR_NOMEM, "cannot hold job file '%s'", path);
  if (bad) {
    free(p);
    LH_FAIL(LH_ERR_IO, "cannot read job file '%s'", path);
  }
  p[n] = '\0';
  if (strlen(p) != n) {
    free(p);
    LH_FAIL(LH_ERR_VALUE, "%s: the job file holds a NUL byte (not a text file)", path);
  }
  *text = p;
  *len = n;
done:
  return st;
}

lh_status job_load(const char *path, char *const *sets, int nsets, job **out) {
  lh_status st = LH_OK;
  job *j = calloc(1, sizeof *j);
  if (!j) return LH_ERROR(LH_ERR_NOMEM, "job");
  j->path = dup_str(path);
  j->dir = dup_str(path);
  j->sets = calloc((size_t)(nsets > 0 ? nsets : 1), sizeof *j->sets);
  if (!j->path || !j->dir || !j->sets) LH_FAIL(LH_ERR_NOMEM, "job");
  char *slash = strrchr(j->dir, '/');
  if (slash == j->dir)
    slash[1] = '\0';
  else if (slash)
    *slash = '\0';
  else
    strcpy(j->dir, ".");
  for (int i = 0; i < nsets; i++) {
    if (!(j->sets[i] = dup_str(sets[i]))) LH_FAIL(LH_ERR_NOMEM, "job");
    j->nsets = i + 1;
  }
  LH_TRY(read_file(path, &j->text, &j->len));
  /* syntax first (libyaml's message is the better one), then the schema on the file itself:
   * its lines are the user's */
  LH_TRY(parse_doc(path, j->text, j->len, &j->doc, NULL));
  j->have_doc = true;
  if (yaml_document_get_root_node(&j->doc)->type != YAML_MAPPING_NODE)
    LH_FAIL(LH_ERR_VALUE, "%s, line 1: expected a mapping of keys (model:, inputs:, ...)", path);
  j->orig_nodes = (int)(j->doc.nodes.top - j->doc.nodes.start);
  LH_TRY(load_typed(j->text, j->len, path, &j->doc, &j->data));
  /* each override in turn, so that a bad one is named */
  for (int i = 0; i < nsets; i++) {
    char *t = NULL;
    job_file *y = NULL;
    char where[600];
    snprintf(where, sizeof where, "--set %s", sets[i]);
    LH_TRY(emit_text(j, i + 1, &t));
    lh_status s = load_typed(t, strlen(t), where, NULL, &y);
    free(t);
    LH_TRY(s);
    free_typed(j->data);
    j->data = y;
  }
  if (nsets > 0) {
    yaml_document_delete(&j->doc);
    j->have_doc = false;
    LH_TRY(build_doc(j, nsets, &j->doc));
    j->have_doc = true;
  }
  *out = j;
  j = NULL;
done:
  job_free(&j);
  return st;
}

void job_free(job **jp) {
  if (!jp || !*jp) return;
  job *j = *jp;
  free_typed(j->data);
  if (j->have_doc) yaml_document_delete(&j->doc);
  for (int i = 0; i < j->nsets; i++) free(j->sets[i]);
  free(j->sets);
  free(j->text);
  free(j->path);
  free(j->dir);
  free(j);
  *jp = NULL;
}

const job_file *job_data(const job *j) {
  return j->data;
}
const char *job_path(const job *j) {
  return j->path;
}
const char *job_dir(const job *j) {
  return j->dir;
}

const char *job_where(const job *j, const char *key_path, char *buf, size_t cap) {
  /* the last override of this path (or of a key above it) wins */
  size_t kl = strlen(key_path);
  for (int i = j->nsets - 1; i >= 0; i--) {
    const char *s = j->sets[i], *eq = strchr(s, '=');
    size_t sl = eq ? (size_t)(eq - s) : strlen(s);
    bool above = sl <= kl && strncmp(s, key_path, sl) == 0 && (sl == kl || key_path[sl] == '.');
    if (above) {
      snprintf(buf, cap, "--set %s", s);
      return buf;
    }
  }
  char key[512];
  snprintf(key, sizeof key, "%s", key_path);
  yaml_document_t *doc = (yaml_document_t *)&j->doc;
  int node = 1;
  char *save = NULL;
  for (char *comp = strtok_r(key, ".", &save); comp && node; comp = strtok_r(NULL, ".", &save)) {
    yaml_node_t *n = yaml_document_get_node(doc, node);
    node = 0;
    if (n && n->type == YAML_MAPPING_NODE) {
      yaml_node_pair_t *pr = find_pair(doc, n, comp);
      if (pr) node = pr->value;
    } else if (n && n->type == YAML_SEQUENCE_NODE) {
      long idx;
      if (seq_index(n, comp, &idx)) node = n->data.sequence.items.start[idx];
    }
  }
  yaml_node_t *n = node ? yaml_document_get_node(doc, node) : NULL;
  if (n && node <= j->orig_nodes)
    snprintf(buf, cap, "%s, line %lu", j->path, (unsigned long)n->start_mark.line + 1);
  else
    snprintf(buf, cap, "%s", j->path);
  return buf;
}

lh_status job_yaml_text(const job *j, char **text) {
  if (j->nsets == 0) { /* the file as written, comments included */
    *text = dup_str(j->text);
    return *text ? LH_OK : LH_ERROR(LH_ERR_NOMEM, "job text");
  }
  return emit_text(j, j->nsets, text);
}

/* A plain scalar as JSON: integer, number, boolean or null where it reads as one. */
static json_t *scalar_json(const yaml_node_t *n) {
  const char *s = (const char *)n->data.scalar.value;
  if (n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) return json_string(s);
  if (!strcmp(s, "true") || !strcmp(s, "yes") || !strcmp(s, "on")) return json_true();
  if (!strcmp(s, "false") || !strcmp(s, "no") || !strcmp(s, "off")) return json_false();
  if (!strcmp(s, "null") || !strcmp(s, "~") || !s[0]) return json_null();
  char *end = NULL;
  errno = 0;
  long long i = strtoll(s, &end, 10);
  if (*s && !*end && !errno) return json_integer(i);
  errno = 0;
  double d = strtod(s, &end);
  if (*s && !*end && !errno && isfinite(d)) return json_real(d);
  return json_string(s);
}

static json_t *node_json(yaml_document_t *doc, int id, int depth) {
  yaml_node_t *n = yaml_document_get_node(doc, id);
  if (!n || depth > 64) return json_null();
  if (n->type == YAML_SCALAR_NODE) return scalar_json(n);
  if (n->type == YAML_SEQUENCE_NODE) {
    json_t *a = json_array();
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++)
      json_array_append_new(a, node_json(doc, *it, depth + 1));
    return a;
  }
  json_t *o = json_object();
  for (yaml_node_pair_t *pr = n->data.mapping.pairs.start; pr < n->data.mapping.pairs.top; pr++) {
    yaml_node_t *k = yaml_document_get_node(doc, pr->key);
    if (k && k->type == YAML_SCALAR_NODE)
      json_object_set_new(o, (const char *)k->data.scalar.value,
                          node_json(doc, pr->value, depth + 1));
  }
  return o;
}

json_t *job_json(const job *j) {
  return node_json((yaml_document_t *)&j->doc, 1, 0);
}

lh_status job_top_scalar(const char *yaml_path, const char *key, char *out, size_t cap) {
  lh_status st = LH_OK;
  char *text = NULL;
  size_t len = 0;
  yaml_document_t doc;
  out[0] = '\0';
  LH_TRY(read_file(yaml_path, &text, &len));
  LH_TRY(parse_doc(yaml_path, text, len, &doc, NULL));
  yaml_node_t *root = yaml_document_get_root_node(&doc);
  yaml_node_pair_t *pr =
      root && root->type == YAML_MAPPING_NODE ? find_pair(&doc, root, key) : NULL;
  yaml_node_t *v = pr ? yaml_document_get_node(&doc, pr->value) : NULL;
  if (v && v->type == YAML_SCALAR_NODE)
    snprintf(out, cap, "%s", (const char *)v->data.scalar.value);
  yaml_document_delete(&doc);
done:
  free(text);
  return st;
}
