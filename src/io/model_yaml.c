/*
 * model_yaml.c: small models described in YAML (libcyaml), with weights from a safetensors or
 * HDF5 file (model.h).
 *
 *   weights: model.safetensors        # or weights.h5; relative to the YAML's folder
 *   input: {features: 10}
 *   modules:                          # registration order = named_modules() order
 *     - {name: linear1, type: linear, in_features: 10, out_features: 20}
 *     - {name: block, type: sequential, modules: [...]}   # children are "block.<name>"
 *   forward: [linear1, activation, linear2]              # top-level calls, repeats allowed
 *
 * The point is to describe the toy models of tdhook's tests (and any small MLP-like model a
 * user trained in PyTorch) so that their module names, call counts and activations are those
 * PyTorch gives. libcyaml checks the syntax and the schema and says where (file, line,
 * column); the semantic checks (module types and their keys, names, the forward list, the
 * widths flowing from module to module, the parameter shapes in the weights file) come after
 * and locate the module they blame by scanning the text for its definition.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <cyaml/cyaml.h>
#include <hdf5.h>
#include <pcre2.h>

#include "core/check.h"
#include "io/yaml_log.h"
#include "latenthook/mem.h"
#include "latenthook/safetensors.h"
#include "nn/module.h"

/* --- schema -------------------------------------------------------------------------------- */

enum ytype {
  Y_LINEAR,
  Y_CONV1D,
  Y_EMBEDDING,
  Y_LAYERNORM,
  Y_RELU,
  Y_GELU,
  Y_TANH,
  Y_SIGMOID,
  Y_SOFTMAX,
  Y_DROPOUT,
  Y_SEQUENTIAL,
  Y_RESIDUAL,
  Y_NTYPES
};

static const cyaml_strval_t type_strings[] = {{"linear", Y_LINEAR},
                                              {"conv1d", Y_CONV1D},
                                              {"embedding", Y_EMBEDDING},
                                              {"layernorm", Y_LAYERNORM},
                                              {"relu", Y_RELU},
                                              {"gelu", Y_GELU},
                                              {"tanh", Y_TANH},
                                              {"sigmoid", Y_SIGMOID},
                                              {"softmax", Y_SOFTMAX},
                                              {"dropout", Y_DROPOUT},
                                              {"sequential", Y_SEQUENTIAL},
                                              {"residual", Y_RESIDUAL}};

/* libcyaml reads any scalar as a bool (anything not false-like is true): an enum is strict */
static const cyaml_strval_t bool_strings[] = {{"true", 1}, {"false", 0}, {"yes", 1},
                                              {"no", 0},   {"on", 1},    {"off", 0}};
static const cyaml_strval_t approx_strings[] = {{"none", 0}, {"tanh", 1}};

typedef struct ymod {
  char *name;
  int type;
  int64_t *in_features, *out_features, *num_embeddings, *embedding_dim, *normalized_shape;
  int64_t *dim;
  int *bias, *elementwise_affine, *approximate;
  double *eps, *p;
  struct ymod *modules;
  unsigned modules_count;
} ymod;

typedef struct yinput {
  int64_t features;
} yinput;

typedef struct ymodel {
  char *weights;
  yinput *input;
  ymod *modules;
  unsigned modules_count;
  char **forward;
  unsigned forward_count;
} ymodel;

#define OPT CYAML_FLAG_OPTIONAL
#define STRICT_ENUM (CYAML_FLAG_OPTIONAL | CYAML_FLAG_STRICT | CYAML_FLAG_CASE_INSENSITIVE)

static const cyaml_schema_value_t module_entry;

static const cyaml_schema_field_t module_fields[] = {
    CYAML_FIELD_STRING_PTR("name", CYAML_FLAG_POINTER, ymod, name, 0, CYAML_UNLIMITED),
    CYAML_FIELD_ENUM("type", CYAML_FLAG_STRICT, ymod, type, type_strings,
                     CYAML_ARRAY_LEN(type_strings)),
    CYAML_FIELD_INT_PTR("in_features", OPT, ymod, in_features),
    CYAML_FIELD_INT_PTR("out_features", OPT, ymod, out_features),
    CYAML_FIELD_INT_PTR("num_embeddings", OPT, ymod, num_embeddings),
    CYAML_FIELD_INT_PTR("embedding_dim", OPT, ymod, embedding_dim),
    CYAML_FIELD_INT_PTR("normalized_shape", OPT, ymod, normalized_shape),
    CYAML_FIELD_INT_PTR("dim", OPT, ymod, dim),
    CYAML_FIELD_ENUM_PTR("bias", STRICT_ENUM, ymod, bias, bool_strings,
                         CYAML_ARRAY_LEN(bool_strings)),
    CYAML_FIELD_ENUM_PTR("elementwise_affine", STRICT_ENUM, ymod, elementwise_affine, bool_strings,
                         CYAML_ARRAY_LEN(bool_strings)),
    CYAML_FIELD_ENUM_PTR("approximate", STRICT_ENUM, ymod, approximate, approx_strings,
                         CYAML_ARRAY_LEN(approx_strings)),
    CYAML_FIELD_FLOAT_PTR("eps", OPT, ymod, eps),
    CYAML_FIELD_FLOAT_PTR("p", OPT, ymod, p),
    CYAML_FIELD_SEQUENCE("modules", CYAML_FLAG_POINTER | OPT, ymod, modules, &module_entry, 0,
                         CYAML_UNLIMITED),
    CYAML_FIELD_END};

static const cyaml_schema_value_t module_entry = {
    CYAML_VALUE_MAPPING(CYAML_FLAG_DEFAULT, ymod, module_fields)};

static const cyaml_schema_field_t input_fields[] = {
    CYAML_FIELD_INT("features", CYAML_FLAG_DEFAULT, yinput, features), CYAML_FIELD_END};

static const cyaml_schema_value_t string_entry = {
    CYAML_VALUE_STRING(CYAML_FLAG_POINTER, char, 0, CYAML_UNLIMITED)};

static const cyaml_schema_field_t top_fields[] = {
    CYAML_FIELD_STRING_PTR("weights", CYAML_FLAG_POINTER, ymodel, weights, 1, CYAML_UNLIMITED),
    CYAML_FIELD_MAPPING_PTR("input", CYAML_FLAG_POINTER, ymodel, input, input_fields),
    CYAML_FIELD_SEQUENCE("modules", CYAML_FLAG_POINTER, ymodel, modules, &module_entry, 1,
                         CYAML_UNLIMITED),
    CYAML_FIELD_SEQUENCE("forward", CYAML_FLAG_POINTER, ymodel, forward, &string_entry, 1,
                         CYAML_UNLIMITED),
    CYAML_FIELD_END};

static const cyaml_schema_value_t top_schema = {
    CYAML_VALUE_MAPPING(CYAML_FLAG_POINTER, ymodel, top_fields)};

/* --- libcyaml's messages ------------------------------------------------------------------- */

/* What a field of the schema expects, for messages. */
static const char *field_expectation(const char *field) {
  if (strcmp(field, "type") == 0)
    return "one of linear, conv1d, embedding, layernorm, relu, gelu, tanh, sigmoid, softmax, "
           "dropout, sequential, residual";
  if (strcmp(field, "bias") == 0 || strcmp(field, "elementwise_affine") == 0)
    return "true or false";
  if (strcmp(field, "approximate") == 0) return "none or tanh";
  if (strcmp(field, "eps") == 0 || strcmp(field, "p") == 0) return "a number";
  return "an integer";
}

static lh_status cyaml_failure(const char *path, cyaml_err_t err, const lh_ylog *lg) {
  char field[128] = "", value[256] = "", text[768];
  const char *msg = lg->msg[0] ? lg->msg : cyaml_strerror(err);
  sscanf(lg->where, "mapping field '%127[^']'", field);
  /* "Invalid INT value: '3.5'", "Invalid ENUM value: swish" */
  if ((sscanf(msg, "Invalid %*s value: '%255[^']'", value) == 1 ||
       sscanf(msg, "Invalid %*s value: %255[^\n]", value) == 1) &&
      field[0]) {
    if (strcmp(field, "type") == 0)
      snprintf(text, sizeof text, "unknown module type '%s' (expected %s)", value,
               field_expectation(field));
    else
      snprintf(text, sizeof text, "invalid value '%s' for '%s' (expected %s)", value, field,
               field_expectation(field));
  } else if (strncmp(msg, "Unexpected key: ", 16) == 0) {
    snprintf(text, sizeof text, "unknown key '%s'", msg + 16);
  } else if (strncmp(msg, "Missing required mapping field: ", 32) == 0) {
    snprintf(text, sizeof text, "missing required key '%s'", msg + 32);
  } else if (strncmp(msg, "libyaml: ", 9) == 0) {
    snprintf(text, sizeof text, "YAML syntax error: %s", msg + 9);
  } else {
    snprintf(text, sizeof text, "%s", msg);
    if (lg->where[0]) {
      size_t k = strlen(text);
      snprintf(text + k, sizeof text - k, " (in %s)", lg->where);
    }
  }
  /* libcyaml locates the node it was reading: exact for bad values and keys, only close for
   * syntax errors and missing keys (the parser stopped, or the mapping ended, further on) */
  bool near = strncmp(msg, "libyaml: ", 9) == 0 || strncmp(msg, "Missing required", 16) == 0;
  if (lg->line > 0)
    return LH_ERROR(LH_ERR_VALUE, "%s, %sline %d, column %d: %s", path, near ? "near " : "",
                    lg->line, lg->col, text);
  return LH_ERROR(LH_ERR_VALUE, "%s: %s", path, text);
}

/* --- locating things in the text ----------------------------------------------------------- */

typedef struct ysrc {
  const char *path;
  char *text; /* the whole file */
  size_t len;
} ysrc;

/* Appends s to buf as a PCRE2 literal. */
static void re_quote(const char *s, char *buf, size_t cap) {
  size_t k = strlen(buf);
  for (; *s && k + 3 < cap; s++) {
    unsigned char c = (unsigned char)*s;
    bool plain = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                 c == '_' || c >= 0x80;
    if (!plain) buf[k++] = '\\';
    buf[k++] = (char)c;
  }
  buf[k] = '\0';
}

/* Offset of the nth (0-based) match of `re` in the text at or after `from`, or -1. */
static long re_find(const ysrc *src, const char *re, size_t from, int nth) {
  int err;
  PCRE2_SIZE eoff;
  pcre2_code *code = pcre2_compile((PCRE2_SPTR)re, PCRE2_ZERO_TERMINATED,
                                   PCRE2_MULTILINE | PCRE2_UTF, &err, &eoff, NULL);
  if (!code) return -1;
  pcre2_match_data *md = pcre2_match_data_create_from_pattern(code, NULL);
  long found = -1;
  size_t at = from;
  while (md && at <= src->len) {
    int rc = pcre2_match(code, (PCRE2_SPTR)src->text, src->len, at, 0, md, NULL);
    if (rc < 0) break;
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
    if (nth-- == 0) {
      found = (long)ov[0];
      break;
    }
    at = ov[1] > ov[0] ? ov[1] : ov[0] + 1;
  }
  pcre2_match_data_free(md);
  pcre2_code_free(code);
  return found;
}

static int line_at(const ysrc *src, long off) {
  if (off < 0) return 0;
  int line = 1;
  for (long i = 0; i < off && (size_t)i < src->len; i++) line += src->text[i] == '\n';
  return line;
}

/* Line of the nth definition "name: <name>" in the file, or 0. */
static int line_of_module(const ysrc *src, const char *name, int nth) {
  char re[768] = "(?:^|[\\s{,])name\\s*:\\s*([\"']?)";
  re_quote(name, re, sizeof re);
  strncat(re, "\\1\\s*(?=[,}#\\r\\n]|$)", sizeof re - strlen(re) - 1);
  return line_at(src, re_find(src, re, 0, nth));
}

/* Line of the top-level key `key`, or 0. */
static int line_of_key(const ysrc *src, const char *key) {
  char re[256] = "^";
  re_quote(key, re, sizeof re);
  strncat(re, "\\s*:", sizeof re - strlen(re) - 1);
  return line_at(src, re_find(src, re, 0, 0));
}

/* Line of the nth occurrence of `entry` in the forward list, or 0. */
static int line_of_forward(const ysrc *src, const char *entry, int nth) {
  long start = re_find(src, "^forward\\s*:", 0, 0);
  if (start < 0) return 0;
  char re[768] = "(?<![\\w.\\-])([\"']?)";
  re_quote(entry, re, sizeof re);
  strncat(re, "\\1(?![\\w.\\-])", sizeof re - strlen(re) - 1);
  return line_at(src, re_find(src, re, (size_t)start + 8, nth));
}

static lh_status read_text(const char *path, ysrc *src) {
  lh_status st = LH_OK;
  FILE *f = fopen(path, "rb");
  if (!f) LH_FAIL(LH_ERR_IO, "cannot open model file '%s': %s", path, strerror(errno));
  if (fseek(f, 0, SEEK_END) != 0) LH_FAIL(LH_ERR_IO, "cannot read '%s'", path);
  long n = ftell(f);
  if (n < 0 || fseek(f, 0, SEEK_SET) != 0) LH_FAIL(LH_ERR_IO, "cannot read '%s'", path);
  LH_TRY(lh_alloc((size_t)n + 1, 1, false, "model file text", &src->text));
  if (fread(src->text, 1, (size_t)n, f) != (size_t)n)
    LH_FAIL(LH_ERR_IO, "cannot read '%s': %s", path, strerror(errno));
  src->text[n] = '\0';
  src->len = strlen(src->text); /* a NUL byte ends the scan, harmlessly */
  src->path = path;
done:
  if (f) fclose(f);
  return st;
}

/* --- building the module tree -------------------------------------------------------------- */

typedef struct ybuild {
  const ysrc *src;
  lh_model *m;
  /* per definition, in pre-order: how many earlier definitions share its name */
  const char **defined;
  int64_t ndefined, capdefined;
} ybuild;

/* "<file>, line N: " for messages, "" when the line is unknown. */
static const char *at_line(const ysrc *src, int line, char *buf, size_t cap) {
  if (line > 0)
    snprintf(buf, cap, "%s, line %d: ", src->path, line);
  else
    snprintf(buf, cap, "%s: ", src->path);
  return buf;
}

static int definition_line(ybuild *b, const char *name) {
  int nth = 0;
  for (int64_t i = 0; i < b->ndefined; i++) nth += strcmp(b->defined[i], name) == 0;
  return line_of_module(b->src, name, nth);
}

static lh_status note_definition(ybuild *b, const char *name) {
  if (b->ndefined == b->capdefined) {
    int64_t nc = b->capdefined ? 2 * b->capdefined : 16;
    const char **p = NULL;
    lh_status st = lh_alloc((size_t)nc, sizeof *p, false, "module list", &p);
    if (st != LH_OK) return st;
    if (b->ndefined) memcpy(p, b->defined, (size_t)b->ndefined * sizeof *p);
    lh_free(b->defined);
    b->defined = p;
    b->capdefined = nc;
  }
  b->defined[b->ndefined++] = name;
  return LH_OK;
}

typedef struct keyuse {
  const char *key;
  bool present;
} keyuse;

/* Checks that the keys a module has are those its type takes, and that it has the required
 * ones; `need` and `may` are NULL-terminated lists. */
static lh_status check_keys(const ymod *y, const char *where, const char *const *need,
                            const char *const *may) {
  const keyuse keys[] = {{"in_features", y->in_features != NULL},
                         {"out_features", y->out_features != NULL},
                         {"num_embeddings", y->num_embeddings != NULL},
                         {"embedding_dim", y->embedding_dim != NULL},
                         {"normalized_shape", y->normalized_shape != NULL},
                         {"dim", y->dim != NULL},
                         {"bias", y->bias != NULL},
                         {"elementwise_affine", y->elementwise_affine != NULL},
                         {"approximate", y->approximate != NULL},
                         {"eps", y->eps != NULL},
                         {"p", y->p != NULL},
                         {"modules", y->modules != NULL}};
  const char *tname = type_strings[y->type].str;
  for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
    bool needed = false, allowed = false;
    for (const char *const *k = need; *k; k++) needed |= strcmp(*k, keys[i].key) == 0;
    for (const char *const *k = may; *k; k++) allowed |= strcmp(*k, keys[i].key) == 0;
    if (needed && !keys[i].present)
      return LH_ERROR(LH_ERR_VALUE, "%smodule '%s' (%s) needs '%s'", where, y->name, tname,
                      keys[i].key);
    if (keys[i].present && !needed && !allowed)
      return LH_ERROR(LH_ERR_VALUE, "%smodule '%s': type %s takes no '%s'", where, y->name, tname,
                      keys[i].key);
  }
  return LH_OK;
}

static lh_status positive(const int64_t *v, const char *key, const ymod *y, const char *where) {
  if (*v >= 1) return LH_OK;
  return LH_ERROR(LH_ERR_VALUE, "%smodule '%s': %s is %lld, expected a positive integer", where,
                  y->name, key, (long long)*v);
}

static lh_status build_list(ybuild *b, int64_t parent, const ymod *list, unsigned n);

static lh_status build_one(ybuild *b, int64_t parent, const ymod *y) {
  lh_status st = LH_OK;
  lh_model *m = b->m;
  char where[600];
  int line = definition_line(b, y->name);
  LH_TRY(note_definition(b, y->name));
  at_line(b->src, line, where, sizeof where);
  if (!y->name[0] || strchr(y->name, '.'))
    LH_FAIL(LH_ERR_VALUE, "%smodule name '%s' must be non-empty and contain no '.'", where,
            y->name);
  static const char *const none[] = {NULL};
  int64_t mi = -1, pi = -1;
  switch (y->type) {
    case Y_LINEAR:
    case Y_CONV1D: {
      static const char *const need[] = {"in_features", "out_features", NULL};
      static const char *const may[] = {"bias", NULL};
      LH_TRY(check_keys(y, where, need, may));
      LH_TRY(positive(y->in_features, "in_features", y, where));
      LH_TRY(positive(y->out_features, "out_features", y, where));
      bool lin = y->type == Y_LINEAR;
      LH_TRY(lh_mod_add(m, parent, y->name, lin ? LH_MOD_LINEAR : LH_MOD_CONV1D,
                        lin ? "Linear" : "Conv1D", &mi));
      lh_module *mod = &m->mod[mi];
      mod->in = *y->in_features;
      mod->out = *y->out_features;
      mod->has_bias = y->bias ? *y->bias : true;
      if (lin)
        LH_TRY(lh_mod_add_param(m, mi, "weight", 2, mod->out, mod->in, &pi));
      else
        LH_TRY(lh_mod_add_param(m, mi, "weight", 2, mod->in, mod->out, &pi));
      m->mod[mi].weight = pi;
      if (m->mod[mi].has_bias) {
        LH_TRY(lh_mod_add_param(m, mi, "bias", 1, m->mod[mi].out, 0, &pi));
        m->mod[mi].bias = pi;
      }
      break;
    }
    case Y_EMBEDDING: {
      static const char *const need[] = {"num_embeddings", "embedding_dim", NULL};
      LH_TRY(check_keys(y, where, need, none));
      LH_TRY(positive(y->num_embeddings, "num_embeddings", y, where));
      LH_TRY(positive(y->embedding_dim, "embedding_dim", y, where));
      LH_TRY(lh_mod_add(m, parent, y->name, LH_MOD_EMBEDDING, "Embedding", &mi));
      m->mod[mi].in = *y->num_embeddings;
      m->mod[mi].out = *y->embedding_dim;
      LH_TRY(lh_mod_add_param(m, mi, "weight", 2, m->mod[mi].in, m->mod[mi].out, &pi));
      m->mod[mi].weight = pi;
      break;
    }
    case Y_LAYERNORM: {
      static const char *const need[] = {"normalized_shape", NULL};
      static const char *const may[] = {"eps", "elementwise_affine", NULL};
      LH_TRY(check_keys(y, where, need, may));
      LH_TRY(positive(y->normalized_shape, "normalized_shape", y, where));
      double eps = y->eps ? *y->eps : 1e-5;
      if (!(eps >= 0.0 && eps < 1e30))
        LH_FAIL(LH_ERR_VALUE, "%smodule '%s': eps is %g, expected a non-negative number", where,
                y->name, eps);
      LH_TRY(lh_mod_add(m, parent, y->name, LH_MOD_LAYERNORM, "LayerNorm", &mi));
      lh_module *mod = &m->mod[mi];
      mod->in = mod->out = *y->normalized_shape;
      mod->eps = (float)eps;
      mod->affine = y->elementwise_affine ? *y->elementwise_affine : true;
      if (mod->affine) {
        LH_TRY(lh_mod_add_param(m, mi, "weight", 1, m->mod[mi].in, 0, &pi));
        m->mod[mi].weight = pi;
        LH_TRY(lh_mod_add_param(m, mi, "bias", 1, m->mod[mi].in, 0, &pi));
        m->mod[mi].bias = pi;
      }
      break;
    }
    case Y_RELU:
    case Y_TANH:
    case Y_SIGMOID: {
      LH_TRY(check_keys(y, where, none, none));
      lh_mod_kind k = y->type == Y_RELU   ? LH_MOD_RELU
                      : y->type == Y_TANH ? LH_MOD_TANH
                                          : LH_MOD_SIGMOID;
      const char *t = y->type == Y_RELU ? "ReLU" : y->type == Y_TANH ? "Tanh" : "Sigmoid";
      LH_TRY(lh_mod_add(m, parent, y->name, k, t, &mi));
      break;
    }
    case Y_GELU: {
      static const char *const may[] = {"approximate", NULL};
      LH_TRY(check_keys(y, where, none, may));
      bool approx = y->approximate && *y->approximate;
      LH_TRY(lh_mod_add(m, parent, y->name, approx ? LH_MOD_GELU_TANH : LH_MOD_GELU, "GELU", &mi));
      break;
    }
    case Y_SOFTMAX: {
      static const char *const may[] = {"dim", NULL};
      LH_TRY(check_keys(y, where, none, may));
      int64_t d = y->dim ? *y->dim : -1;
      if (d < -LH_TENSOR_MAX_DIMS || d >= LH_TENSOR_MAX_DIMS)
        LH_FAIL(LH_ERR_VALUE, "%smodule '%s': dim %lld is out of range", where, y->name,
                (long long)d);
      LH_TRY(lh_mod_add(m, parent, y->name, LH_MOD_SOFTMAX, "Softmax", &mi));
      m->mod[mi].dim = (int)d;
      break;
    }
    case Y_DROPOUT: {
      static const char *const may[] = {"p", NULL};
      LH_TRY(check_keys(y, where, none, may));
      double p = y->p ? *y->p : 0.5;
      if (!(p >= 0.0 && p <= 1.0))
        LH_FAIL(LH_ERR_VALUE, "%smodule '%s': p is %g, expected a probability in [0, 1]", where,
                y->name, p);
      LH_TRY(lh_mod_add(m, parent, y->name, LH_MOD_DROPOUT, "Dropout", &mi));
      m->mod[mi].p = (float)p;
      break;
    }
    case Y_SEQUENTIAL:
    case Y_RESIDUAL: {
      static const char *const may[] = {"modules", NULL};
      LH_TRY(check_keys(y, where, none, may));
      bool seq = y->type == Y_SEQUENTIAL;
      LH_TRY(lh_mod_add(m, parent, y->name, seq ? LH_MOD_SEQUENTIAL : LH_MOD_RESIDUAL,
                        seq ? "Sequential" : "Residual", &mi));
      m->mod[mi].line = line;
      LH_TRY(build_list(b, mi, y->modules, y->modules_count));
      break;
    }
    default:
      LH_FAIL(LH_ERR_INTERNAL, "unknown module type %d", y->type);
  }
  m->mod[mi].line = line;
done:
  return st;
}

static lh_status build_list(ybuild *b, int64_t parent, const ymod *list, unsigned n) {
  lh_status st = LH_OK;
  for (unsigned i = 0; i < n; i++) {
    for (unsigned j = 0; j < i; j++)
      if (strcmp(list[i].name, list[j].name) == 0) {
        char where[600];
        int nth = 0;
        for (int64_t k = 0; k < b->ndefined; k++) nth += strcmp(b->defined[k], list[i].name) == 0;
        at_line(b->src, line_of_module(b->src, list[i].name, nth), where, sizeof where);
        const char *pn = b->m->mod[parent].name;
        LH_FAIL(LH_ERR_VALUE, "%sduplicate module name '%s'%s%s%s", where, list[i].name,
                pn[0] ? " in '" : "", pn, pn[0] ? "'" : "");
      }
    LH_TRY(build_one(b, parent, &list[i]));
  }
done:
  return st;
}

/* --- widths flowing through the forward ------------------------------------------------------ */

typedef struct yflow {
  int ndim;
  int64_t width;    /* last dimension */
  const char *from; /* who produced it, for messages */
} yflow;

static lh_status trace(const ysrc *src, const lh_model *m, int64_t mi, yflow *f) {
  lh_status st = LH_OK;
  const lh_module *mod = &m->mod[mi];
  char where[600];
  at_line(src, mod->line, where, sizeof where);
  switch (mod->kind) {
    case LH_MOD_LINEAR:
    case LH_MOD_CONV1D:
    case LH_MOD_LAYERNORM:
      if (f->width != mod->in)
        LH_FAIL(LH_ERR_VALUE,
                "%smodule '%s' (%s) expects %lld input features but receives %lld from %s", where,
                mod->name, mod->type, (long long)mod->in, (long long)f->width, f->from);
      f->width = mod->out;
      break;
    case LH_MOD_EMBEDDING:
      if (f->ndim + 1 > LH_TENSOR_MAX_DIMS)
        LH_FAIL(LH_ERR_VALUE, "%smodule '%s': too many dimensions", where, mod->name);
      f->ndim++;
      f->width = mod->out;
      break;
    case LH_MOD_SOFTMAX:
      if (mod->dim < -f->ndim || mod->dim >= f->ndim)
        LH_FAIL(LH_ERR_VALUE, "%smodule '%s': dim %d is out of range for a %d-dimensional input",
                where, mod->name, mod->dim, f->ndim);
      break;
    case LH_MOD_SEQUENTIAL:
      for (int64_t i = 0; i < mod->nchild; i++) LH_TRY(trace(src, m, mod->child[i], f));
      break;
    case LH_MOD_RESIDUAL: {
      yflow in = *f;
      for (int64_t i = 0; i < mod->nchild; i++) LH_TRY(trace(src, m, mod->child[i], f));
      if (f->ndim != in.ndim || f->width != in.width)
        LH_FAIL(LH_ERR_VALUE,
                "%sresidual '%s': its modules turn %lld features into %lld, but x + modules(x) "
                "needs the same shape",
                where, mod->name, (long long)in.width, (long long)f->width);
      break;
    }
    default:
      break;
  }
  if (mod->kind != LH_MOD_DROPOUT) f->from = mod->name;
done:
  return st;
}

/* --- weights ------------------------------------------------------------------------------- */

static lh_status missing_param(const lh_model *m, const ysrc *src, int64_t pi, const char *wpath) {
  const lh_param *p = &m->param[pi];
  const lh_module *mod = &m->mod[p->module];
  char shape[64], where[600];
  lh_mod_shape_str(p->ndim, p->shape, shape, sizeof shape);
  at_line(src, mod->line, where, sizeof where);
  return LH_ERROR(LH_ERR_KEY,
                  "%smodule '%s' (%s): weights file %s has no tensor '%s' (expected shape %s)",
                  where, mod->name, mod->type, wpath, p->name, shape);
}

/* Prefixes a parameter's error with the YAML line of its module. */
static void blame_module(const lh_model *m, const ysrc *src, int64_t pi) {
  const lh_module *mod = &m->mod[m->param[pi].module];
  char where[600];
  lh_error_prefix("%smodule '%s' (%s): ", at_line(src, mod->line, where, sizeof where), mod->name,
                  mod->type);
}

static lh_status weights_st(lh_model *m, const ysrc *src, const char *wpath) {
  lh_status st = LH_OK;
  lh_safetensors *sf = NULL;
  LH_TRY(lh_safetensors_open(wpath, &sf));
  for (int64_t i = 0; i < m->nparam; i++) {
    const lh_st_tensor *t = lh_safetensors_find(sf, m->param[i].name);
    if (!t) LH_TRY(missing_param(m, src, i, wpath));
    st = lh_mod_param_from_st(m, i, sf, t);
    if (st != LH_OK) {
      blame_module(m, src, i);
      goto done;
    }
  }
done:
  lh_safetensors_close(&sf);
  return st;
}

static lh_status weights_h5_read(lh_model *m, const ysrc *src, const char *wpath) {
  lh_status st = LH_OK;
  hid_t file = H5I_INVALID_HID, dset = H5I_INVALID_HID, space = H5I_INVALID_HID,
        type = H5I_INVALID_HID;
  file = H5Fopen(wpath, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (file < 0) LH_FAIL(LH_ERR_IO, "%s: cannot open as an HDF5 file", wpath);
  for (int64_t i = 0; i < m->nparam; i++) {
    lh_param *p = &m->param[i];
    if (H5Lexists(file, p->name, H5P_DEFAULT) <= 0) LH_TRY(missing_param(m, src, i, wpath));
    dset = H5Dopen2(file, p->name, H5P_DEFAULT);
    if (dset < 0) LH_FAIL(LH_ERR_IO, "%s: '%s' is not a dataset", wpath, p->name);
    space = H5Dget_space(dset);
    type = H5Dget_type(dset);
    if (space < 0 || type < 0) LH_FAIL(LH_ERR_IO, "%s: cannot read dataset '%s'", wpath, p->name);
    if (H5Tget_class(type) != H5T_FLOAT)
      LH_FAIL(LH_ERR_TYPE, "%s: dataset '%s' is not floating point", wpath, p->name);
    int nd = H5Sget_simple_extent_ndims(space);
    hsize_t dims[H5S_MAX_RANK];
    if (nd < 0 || H5Sget_simple_extent_dims(space, dims, NULL) < 0)
      LH_FAIL(LH_ERR_IO, "%s: cannot read the shape of '%s'", wpath, p->name);
    bool same = nd == p->ndim;
    for (int d = 0; same && d < nd; d++) same = (int64_t)dims[d] == p->shape[d];
    if (!same) {
      int64_t got[H5S_MAX_RANK];
      for (int d = 0; d < nd; d++) got[d] = (int64_t)dims[d];
      char want_s[64], got_s[256];
      st = LH_ERROR(LH_ERR_VALUE, "%s: dataset '%s' has shape %s, expected %s", wpath, p->name,
                    lh_mod_shape_str(nd, got, got_s, sizeof got_s),
                    lh_mod_shape_str(p->ndim, p->shape, want_s, sizeof want_s));
      blame_module(m, src, i);
      goto done;
    }
    if (H5Dread(dset, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, p->data) < 0)
      LH_FAIL(LH_ERR_IO, "%s: cannot read dataset '%s'", wpath, p->name);
    H5Tclose(type);
    H5Sclose(space);
    H5Dclose(dset);
    type = space = dset = H5I_INVALID_HID;
  }
done:
  if (type >= 0) H5Tclose(type);
  if (space >= 0) H5Sclose(space);
  if (dset >= 0) H5Dclose(dset);
  if (file >= 0) H5Fclose(file);
  return st;
}

static lh_status weights_h5(lh_model *m, const ysrc *src, const char *wpath) {
  lh_status st = LH_OK;
  H5E_BEGIN_TRY {
    st = weights_h5_read(m, src, wpath);
  }
  H5E_END_TRY;
  return st;
}

static bool ends_with(const char *s, const char *suf) {
  size_t n = strlen(s), k = strlen(suf);
  return n >= k && strcasecmp(s + n - k, suf) == 0;
}

/* --- the loader ------------------------------------------------------------------------------ */

lh_status lh_model_load_yaml(const char *path, lh_model **out) {
  lh_status st = LH_OK;
  ymodel *y = NULL;
  lh_ylog lg = {0};
  cyaml_config_t cfg = {
      .log_fn = lh_ylog_fn, .log_ctx = &lg, .mem_fn = cyaml_mem, .log_level = CYAML_LOG_ERROR};
  ysrc src = {0};
  ybuild b = {0};
  lh_model *m = NULL;
  char *wpath = NULL;
  char where[600];

  LH_TRY(read_text(path, &src));
  cyaml_err_t err = cyaml_load_file(path, &cfg, &top_schema, (cyaml_data_t **)&y, NULL);
  if (err != CYAML_OK) {
    if (err == CYAML_ERR_FILE_OPEN) LH_FAIL(LH_ERR_IO, "cannot open model file '%s'", path);
    int tab =
        strncmp(lg.msg, "libyaml: ", 9) == 0 ? line_at(&src, re_find(&src, "^ *\t", 0, 0)) : 0;
    if (tab > 0) /* the most common syntax error, which libcyaml locates only roughly */
      LH_FAIL(LH_ERR_VALUE, "%s, line %d: YAML syntax error: a tab in the indentation (use spaces)",
              path, tab);
    LH_TRY(cyaml_failure(path, err, &lg));
  }
  if (y->input->features < 1)
    LH_FAIL(LH_ERR_VALUE, "%sinput.features is %lld, expected a positive integer",
            at_line(&src, line_of_key(&src, "input"), where, sizeof where),
            (long long)y->input->features);

  LH_TRY(lh_mod_model_new(path, LH_MOD_YAML_ROOT, "YamlModel", &m));
  m->kind = LH_INPUT_FEATURES;
  m->width = y->input->features;
  b.src = &src;
  b.m = m;
  LH_TRY(build_list(&b, 0, y->modules, y->modules_count));

  /* the forward list: module names (dotted for nested ones), repeats allowed */
  LH_TRY(lh_alloc(y->forward_count, sizeof(int64_t), false, "forward list", &m->mod[0].seq));
  m->mod[0].nseq = y->forward_count;
  for (unsigned i = 0; i < y->forward_count; i++) {
    const char *f = y->forward[i];
    int64_t mi = f[0] ? lh_model_module_find(m, f) : -1;
    if (mi < 0) {
      int nth = 0;
      for (unsigned j = 0; j < i; j++) nth += strcmp(y->forward[j], f) == 0;
      const char **names = NULL;
      char close[1024];
      LH_TRY(lh_alloc((size_t)m->nmod, sizeof *names, false, "module names", &names));
      for (int64_t k = 1; k < m->nmod; k++) names[k - 1] = m->mod[k].name;
      lh_mod_closest(f, names, m->nmod - 1, 5, close, sizeof close);
      lh_free(names);
      LH_FAIL(LH_ERR_KEY, "%sforward: unknown module '%s' (closest: %s)",
              at_line(&src, line_of_forward(&src, f, nth), where, sizeof where), f, close);
    }
    if (m->mod[mi].kind == LH_MOD_MODULELIST)
      LH_FAIL(LH_ERR_VALUE, "%sforward: '%s' is a module list, which cannot be called",
              at_line(&src, line_of_forward(&src, f, 0), where, sizeof where), f);
    m->mod[0].seq[i] = mi;
  }
  yflow flow = {.ndim = 2, .width = m->width, .from = "the input (input.features)"};
  for (int64_t i = 0; i < m->mod[0].nseq; i++) LH_TRY(trace(&src, m, m->mod[0].seq[i], &flow));

  /* weights, relative to the YAML's folder */
  {
    const char *w = y->weights;
    const char *slash = strrchr(path, '/');
    size_t dl = (w[0] == '/' || !slash) ? 0 : (size_t)(slash - path) + 1;
    LH_TRY(lh_alloc(dl + strlen(w) + 1, 1, false, "weights path", &wpath));
    memcpy(wpath, path, dl);
    strcpy(wpath + dl, w);
  }
  at_line(&src, line_of_key(&src, "weights"), where, sizeof where);
  struct stat sb;
  if (stat(wpath, &sb) != 0)
    LH_FAIL(LH_ERR_IO, "%sweights file '%s': %s", where, wpath, strerror(errno));
  LH_TRY(lh_mod_alloc_params(m));
  if (ends_with(wpath, ".safetensors"))
    LH_TRY(weights_st(m, &src, wpath));
  else if (ends_with(wpath, ".h5") || ends_with(wpath, ".hdf5") || ends_with(wpath, ".he5"))
    LH_TRY(weights_h5(m, &src, wpath));
  else
    LH_FAIL(LH_ERR_VALUE, "%sweights file '%s': expected a .safetensors or .h5/.hdf5 file", where,
            wpath);
  LH_TRY(lh_mod_finish(m));
  *out = m;
  m = NULL;
done:
  lh_model_destroy(&m);
  if (y) cyaml_free(&cfg, &top_schema, y, 0);
  lh_free(src.text);
  lh_free(b.defined);
  lh_free(wpath);
  return st;
}
