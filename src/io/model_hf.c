/*
 * model_hf.c: GPT-2 from a Hugging Face model directory (config.json + model.safetensors).
 *
 * Builds the module tree of transformers' GPT2LMHeadModel with the same names and
 * registration order (transformer.wte, transformer.wpe, transformer.drop, transformer.h.N
 * {ln_1, attn {c_attn, c_proj, attn_dropout, resid_dropout}, ln_2, mlp {c_fc, c_proj, act,
 * dropout}}, transformer.ln_f, lm_head), reads the hyper-parameters GPT2Config reads (with its
 * defaults for the optional ones), and fills the parameters from the safetensors file. Hub
 * checkpoints store the keys with or without the "transformer." prefix (GPT2LMHeadModel vs
 * GPT2Model saves), usually without lm_head.weight (tied to wte) and sometimes with the
 * legacy causal-mask buffers attn.bias / attn.masked_bias; all of these load. Every tensor
 * is checked against the shape the config implies before a byte is copied.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "core/check.h"
#include "latenthook/mem.h"
#include "latenthook/safetensors.h"
#include "nn/module.h"

#define PATH_CAP 4096

typedef struct gpt2_config {
  int64_t vocab, npos, C, L, NH, inner;
  double eps;
  lh_mod_kind act;
  const char *act_type;
  bool scale_attn, scale_by_layer, tie;
  double resid_p, embd_p, attn_p;
} gpt2_config;

/* --- config.json ---------------------------------------------------------------------------- */

static const char *json_kind(const json_t *v) {
  switch (json_typeof(v)) {
    case JSON_OBJECT:
      return "an object";
    case JSON_ARRAY:
      return "an array";
    case JSON_STRING:
      return "a string";
    case JSON_INTEGER:
      return "an integer";
    case JSON_REAL:
      return "a real number";
    case JSON_TRUE:
    case JSON_FALSE:
      return "a boolean";
    case JSON_NULL:
      return "null";
  }
  return "?";
}

/* A required positive integer. */
static lh_status cfg_int(const char *file, const json_t *root, const char *key, int64_t *out) {
  const json_t *v = json_object_get(root, key);
  if (!v)
    return LH_ERROR(LH_ERR_KEY, "%s: missing key '%s' (expected a positive integer)", file, key);
  if (!json_is_integer(v))
    return LH_ERROR(LH_ERR_TYPE, "%s: key '%s' is %s, expected a positive integer", file, key,
                    json_kind(v));
  json_int_t x = json_integer_value(v);
  if (x < 1 || x > (json_int_t)1 << 40)
    return LH_ERROR(LH_ERR_VALUE, "%s: key '%s' is %lld, expected a positive integer", file, key,
                    (long long)x);
  *out = (int64_t)x;
  return LH_OK;
}

/* An optional number (integer or real); *out unchanged when absent or null. */
static lh_status cfg_num(const char *file, const json_t *root, const char *key, double lo,
                         double *out) {
  const json_t *v = json_object_get(root, key);
  if (!v || json_is_null(v)) return LH_OK;
  if (!json_is_number(v))
    return LH_ERROR(LH_ERR_TYPE, "%s: key '%s' is %s, expected a number", file, key, json_kind(v));
  double x = json_number_value(v);
  if (!(x >= lo) || !isfinite(x))
    return LH_ERROR(LH_ERR_VALUE, "%s: key '%s' is %g, expected a number >= %g", file, key, x, lo);
  *out = x;
  return LH_OK;
}

/* An optional boolean; *out unchanged when absent. */
static lh_status cfg_bool(const char *file, const json_t *root, const char *key, bool *out) {
  const json_t *v = json_object_get(root, key);
  if (!v) return LH_OK;
  if (!json_is_boolean(v))
    return LH_ERROR(LH_ERR_TYPE, "%s: key '%s' is %s, expected true or false", file, key,
                    json_kind(v));
  *out = json_is_true(v);
  return LH_OK;
}

static lh_status read_config(const char *file, gpt2_config *c) {
  lh_status st = LH_OK;
  json_error_t jerr;
  json_t *root = json_load_file(file, 0, &jerr);
  if (!root) {
    struct stat sb;
    if (stat(file, &sb) != 0)
      LH_FAIL(LH_ERR_IO, "%s: %s (a Hugging Face model directory needs config.json)", file,
              strerror(errno));
    LH_FAIL(LH_ERR_VALUE, "%s, line %d, column %d: invalid JSON: %s", file, jerr.line, jerr.column,
            jerr.text);
  }
  if (!json_is_object(root)) LH_FAIL(LH_ERR_TYPE, "%s: expected a JSON object", file);

  const json_t *mt = json_object_get(root, "model_type");
  if (!mt) LH_FAIL(LH_ERR_KEY, "%s: missing key 'model_type' (expected \"gpt2\")", file);
  if (!json_is_string(mt))
    LH_FAIL(LH_ERR_TYPE, "%s: key 'model_type' is %s, expected the string \"gpt2\"", file,
            json_kind(mt));
  if (strcmp(json_string_value(mt), "gpt2") != 0)
    LH_FAIL(LH_ERR_VALUE, "%s: model_type is \"%s\"; only \"gpt2\" models are supported", file,
            json_string_value(mt));

  LH_TRY(cfg_int(file, root, "vocab_size", &c->vocab));
  LH_TRY(cfg_int(file, root, "n_positions", &c->npos));
  LH_TRY(cfg_int(file, root, "n_embd", &c->C));
  LH_TRY(cfg_int(file, root, "n_layer", &c->L));
  LH_TRY(cfg_int(file, root, "n_head", &c->NH));
  if (c->C % c->NH != 0)
    LH_FAIL(LH_ERR_VALUE, "%s: n_embd (%lld) must be divisible by n_head (%lld)", file,
            (long long)c->C, (long long)c->NH);
  c->inner = 4 * c->C;
  const json_t *ni = json_object_get(root, "n_inner");
  if (ni && !json_is_null(ni)) LH_TRY(cfg_int(file, root, "n_inner", &c->inner));

  c->eps = 1e-5;
  LH_TRY(cfg_num(file, root, "layer_norm_epsilon", 0.0, &c->eps));
  c->resid_p = c->embd_p = c->attn_p = 0.1;
  LH_TRY(cfg_num(file, root, "resid_pdrop", 0.0, &c->resid_p));
  LH_TRY(cfg_num(file, root, "embd_pdrop", 0.0, &c->embd_p));
  LH_TRY(cfg_num(file, root, "attn_pdrop", 0.0, &c->attn_p));
  c->scale_attn = true;
  c->scale_by_layer = false;
  c->tie = true;
  LH_TRY(cfg_bool(file, root, "scale_attn_weights", &c->scale_attn));
  LH_TRY(cfg_bool(file, root, "scale_attn_by_inverse_layer_idx", &c->scale_by_layer));
  LH_TRY(cfg_bool(file, root, "tie_word_embeddings", &c->tie));
  bool cross = false;
  LH_TRY(cfg_bool(file, root, "add_cross_attention", &cross));
  if (cross) LH_FAIL(LH_ERR_NOTIMPL, "%s: add_cross_attention is not supported", file);

  /* transformers' ACT2CLS names and classes */
  const char *act = "gelu_new";
  const json_t *av = json_object_get(root, "activation_function");
  if (av && !json_is_string(av))
    LH_FAIL(LH_ERR_TYPE, "%s: key 'activation_function' is %s, expected a string", file,
            json_kind(av));
  if (av) act = json_string_value(av);
  if (strcmp(act, "gelu_new") == 0) {
    c->act = LH_MOD_GELU_TANH;
    c->act_type = "NewGELUActivation";
  } else if (strcmp(act, "gelu_pytorch_tanh") == 0) {
    c->act = LH_MOD_GELU_TANH;
    c->act_type = "PytorchGELUTanh";
  } else if (strcmp(act, "gelu") == 0) {
    c->act = LH_MOD_GELU;
    c->act_type = "GELUActivation";
  } else if (strcmp(act, "relu") == 0) {
    c->act = LH_MOD_RELU;
    c->act_type = "ReLU";
  } else if (strcmp(act, "tanh") == 0) {
    c->act = LH_MOD_TANH;
    c->act_type = "Tanh";
  } else if (strcmp(act, "sigmoid") == 0) {
    c->act = LH_MOD_SIGMOID;
    c->act_type = "Sigmoid";
  } else {
    LH_FAIL(LH_ERR_NOTIMPL,
            "%s: activation_function \"%s\" is not supported (expected gelu_new, "
            "gelu_pytorch_tanh, gelu, relu, tanh or sigmoid)",
            file, act);
  }
done:
  json_decref(root);
  return st;
}

/* --- the module tree ------------------------------------------------------------------------ */

static lh_status add_dropout(lh_model *m, int64_t parent, const char *attr, double p) {
  int64_t i;
  lh_status st = lh_mod_add(m, parent, attr, LH_MOD_DROPOUT, "Dropout", &i);
  if (st == LH_OK) m->mod[i].p = (float)p;
  return st;
}

static lh_status add_layernorm(lh_model *m, int64_t parent, const char *attr, int64_t C,
                               double eps) {
  lh_status st = LH_OK;
  int64_t i, p;
  LH_TRY(lh_mod_add(m, parent, attr, LH_MOD_LAYERNORM, "LayerNorm", &i));
  m->mod[i].in = m->mod[i].out = C;
  m->mod[i].eps = (float)eps;
  m->mod[i].affine = true;
  LH_TRY(lh_mod_add_param(m, i, "weight", 1, C, 0, &p));
  m->mod[i].weight = p;
  LH_TRY(lh_mod_add_param(m, i, "bias", 1, C, 0, &p));
  m->mod[i].bias = p;
done:
  return st;
}

static lh_status add_conv1d(lh_model *m, int64_t parent, const char *attr, int64_t in,
                            int64_t out) {
  lh_status st = LH_OK;
  int64_t i, p;
  LH_TRY(lh_mod_add(m, parent, attr, LH_MOD_CONV1D, "Conv1D", &i));
  m->mod[i].in = in;
  m->mod[i].out = out;
  m->mod[i].has_bias = true;
  LH_TRY(lh_mod_add_param(m, i, "weight", 2, in, out, &p));
  m->mod[i].weight = p;
  LH_TRY(lh_mod_add_param(m, i, "bias", 1, out, 0, &p));
  m->mod[i].bias = p;
done:
  return st;
}

static lh_status add_embedding(lh_model *m, int64_t parent, const char *attr, int64_t rows,
                               int64_t C, int64_t *idx) {
  lh_status st = LH_OK;
  int64_t i, p;
  LH_TRY(lh_mod_add(m, parent, attr, LH_MOD_EMBEDDING, "Embedding", &i));
  m->mod[i].in = rows;
  m->mod[i].out = C;
  LH_TRY(lh_mod_add_param(m, i, "weight", 2, rows, C, &p));
  m->mod[i].weight = p;
  *idx = i;
done:
  return st;
}

static lh_status build_gpt2(lh_model *m, const gpt2_config *c) {
  lh_status st = LH_OK;
  int64_t tr, wte, wpe, h, lm, p;
  LH_TRY(lh_mod_add(m, 0, "transformer", LH_MOD_GPT2_MODEL, "GPT2Model", &tr));
  LH_TRY(add_embedding(m, tr, "wte", c->vocab, c->C, &wte));
  LH_TRY(add_embedding(m, tr, "wpe", c->npos, c->C, &wpe));
  LH_TRY(add_dropout(m, tr, "drop", c->embd_p));
  LH_TRY(lh_mod_add(m, tr, "h", LH_MOD_MODULELIST, "ModuleList", &h));
  for (int64_t l = 0; l < c->L; l++) {
    char num[32];
    int64_t blk, attn, mlp, act;
    snprintf(num, sizeof num, "%lld", (long long)l);
    LH_TRY(lh_mod_add(m, h, num, LH_MOD_GPT2_BLOCK, "GPT2Block", &blk));
    LH_TRY(add_layernorm(m, blk, "ln_1", c->C, c->eps));
    LH_TRY(lh_mod_add(m, blk, "attn", LH_MOD_GPT2_ATTN, "GPT2Attention", &attn));
    double scale = c->scale_attn ? 1.0 / sqrt((double)(c->C / c->NH)) : 1.0;
    if (c->scale_by_layer) scale /= (double)(l + 1);
    m->mod[attn].in = m->mod[attn].out = c->C;
    m->mod[attn].nhead = c->NH;
    m->mod[attn].scale = (float)scale;
    LH_TRY(add_conv1d(m, attn, "c_attn", c->C, 3 * c->C));
    LH_TRY(add_conv1d(m, attn, "c_proj", c->C, c->C));
    LH_TRY(add_dropout(m, attn, "attn_dropout", c->attn_p));
    LH_TRY(add_dropout(m, attn, "resid_dropout", c->resid_p));
    LH_TRY(add_layernorm(m, blk, "ln_2", c->C, c->eps));
    LH_TRY(lh_mod_add(m, blk, "mlp", LH_MOD_GPT2_MLP, "GPT2MLP", &mlp));
    LH_TRY(add_conv1d(m, mlp, "c_fc", c->C, c->inner));
    LH_TRY(add_conv1d(m, mlp, "c_proj", c->inner, c->C));
    LH_TRY(lh_mod_add(m, mlp, "act", c->act, c->act_type, &act));
    LH_TRY(add_dropout(m, mlp, "dropout", c->resid_p));
  }
  LH_TRY(add_layernorm(m, tr, "ln_f", c->C, c->eps));
  LH_TRY(lh_mod_add(m, 0, "lm_head", LH_MOD_LINEAR, "Linear", &lm));
  m->mod[lm].in = c->C;
  m->mod[lm].out = c->vocab;
  LH_TRY(lh_mod_add_param(m, lm, "weight", 2, c->vocab, c->C, &p));
  m->mod[lm].weight = p;
  if (c->tie) LH_TRY(lh_mod_tie_param(m, p, m->mod[wte].weight));
done:
  return st;
}

/* --- weights -------------------------------------------------------------------------------- */

static lh_status load_weights(lh_model *m, const char *file) {
  lh_status st = LH_OK;
  lh_safetensors *sf = NULL;
  const char *prefix = "transformer.";
  const size_t plen = strlen(prefix);
  LH_TRY(lh_safetensors_open(file, &sf));
  for (int64_t i = 0; i < m->nparam; i++) {
    const lh_param *p = &m->param[i];
    if (p->tied >= 0) continue; /* lm_head.weight with tie_word_embeddings (as transformers) */
    const lh_st_tensor *t = lh_safetensors_find(sf, p->name);
    bool under = strncmp(p->name, prefix, plen) == 0;
    if (!t && under) t = lh_safetensors_find(sf, p->name + plen); /* a GPT2Model save */
    if (!t) {
      char shape[64];
      lh_mod_shape_str(p->ndim, p->shape, shape, sizeof shape);
      if (under)
        LH_FAIL(LH_ERR_KEY, "%s: missing tensor '%s' (or '%s'), expected shape %s", file, p->name,
                p->name + plen, shape);
      if (strcmp(p->name, "lm_head.weight") == 0)
        LH_FAIL(LH_ERR_KEY,
                "%s: missing tensor 'lm_head.weight', expected shape %s (config.json sets "
                "tie_word_embeddings to false, so it is not tied to transformer.wte.weight)",
                file, shape);
      LH_FAIL(LH_ERR_KEY, "%s: missing tensor '%s', expected shape %s", file, p->name, shape);
    }
    LH_TRY(lh_mod_param_from_st(m, i, sf, t));
  }
done:
  lh_safetensors_close(&sf);
  return st;
}

lh_status lh_model_load_hf(const char *dir, lh_model **out) {
  lh_status st = LH_OK;
  lh_model *m = NULL;
  gpt2_config c = {0};
  char cfg[PATH_CAP], wts[PATH_CAP];
  if (snprintf(cfg, sizeof cfg, "%s/config.json", dir) >= (int)sizeof cfg ||
      snprintf(wts, sizeof wts, "%s/model.safetensors", dir) >= (int)sizeof wts)
    LH_FAIL(LH_ERR_VALUE, "model directory path too long: %s", dir);
  LH_TRY(read_config(cfg, &c));
  struct stat sb;
  if (stat(wts, &sb) != 0) {
    char idx[PATH_CAP + 32];
    snprintf(idx, sizeof idx, "%s.index.json", wts);
    if (stat(idx, &sb) == 0)
      LH_FAIL(LH_ERR_NOTIMPL, "%s: sharded checkpoints (%s) are not supported", dir, idx);
    LH_FAIL(LH_ERR_IO, "%s: %s (only safetensors weights are supported)", wts, strerror(errno));
  }
  LH_TRY(lh_mod_model_new(dir, LH_MOD_GPT2_LMHEAD, "GPT2LMHeadModel", &m));
  m->kind = LH_INPUT_TOKENS;
  m->width = c.npos;
  m->vocab = c.vocab;
  LH_TRY(build_gpt2(m, &c));
  LH_TRY(lh_mod_alloc_params(m));
  LH_TRY(load_weights(m, wts));
  LH_TRY(lh_mod_finish(m));
  *out = m;
  m = NULL;
done:
  lh_model_destroy(&m);
  return st;
}
