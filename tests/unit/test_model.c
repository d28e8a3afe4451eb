/* Models: the YAML and GPT-2 loaders and the hooked forward pass against PyTorch (golden
 * fixtures in tests/golden/nn: every module's output and first input of the last call, the
 * first call where a module runs twice, call counts and the model output), input checks, and
 * the error messages for broken config.json, safetensors and YAML files (written into a
 * temporary folder by each test). */
#include "unit/nnfix.h"

#include "latenthook/mem.h"
#include "nn/module.h" /* the arena's block size, to exercise block changes */

/* Hooks every module (fwd and fwd_pre, relative names), runs the fixture input and compares
 * with expected.h5. */
static void golden_ex(const char *model_path, const char *fixture, const char *input_dset,
                      int64_t min_block) {
  char data[512], expected[512], path[512];
  snprintf(data, sizeof data, "%s/%s/data.h5", NN_DIR, fixture);
  snprintf(expected, sizeof expected, "%s/%s/expected.h5", NN_DIR, fixture);
  lh_model *m = NULL;
  lh_status st = lh_model_load(model_path, &m);
  cr_assert_eq(st, LH_OK, "%s: %s", model_path, lh_error_message());
  if (min_block > 0) m->min_block = min_block;
  int64_t n = lh_model_module_count(m);
  nn_rec *fwd = calloc((size_t)n, sizeof *fwd), *pre = calloc((size_t)n, sizeof *pre);
  lh_hook_handle **h = calloc((size_t)(2 * n), sizeof *h);
  for (int64_t i = 1; i < n; i++) {
    const char *name = lh_model_module_name(m, i);
    cr_assert_eq(lh_model_hook(m, name, true, LH_HOOK_FWD, (lh_hook_spec){nn_record, &fwd[i], NULL},
                               &h[2 * i]),
                 LH_OK, "%s", lh_error_message());
    cr_assert_eq(lh_model_hook(m, name, true, LH_HOOK_FWD_PRE,
                               (lh_hook_spec){nn_record, &pre[i], NULL}, &h[2 * i + 1]),
                 LH_OK);
  }
  nn_arr in = nn_h5_read(data, input_dset);
  lh_tensor x = nn_tensor(&in), y;
  st = lh_model_forward(m, &x, &y);
  cr_assert_eq(st, LH_OK, "forward: %s", lh_error_message());

  nn_arr want = nn_h5_read(expected, "/output");
  double d = nn_expect_close("output", y.data, y.ndim, y.shape, &want, NN_TOL);
  cr_log_info("%s: output max diff %.3g", model_path, d);
  free(want.data);

  /* every module PyTorch called is one of ours */
  json_t *called = nn_h5_list(expected, "/calls");
  size_t k;
  json_t *v;
  json_array_foreach(called, k, v) {
    cr_expect_geq(lh_model_module_find(m, json_string_value(v)), 1, "unknown module %s",
                  json_string_value(v));
  }
  cr_expect_gt(json_array_size(called), 0);
  json_decref(called);

  double worst = 0;
  for (int64_t i = 1; i < n; i++) {
    const char *name = lh_model_module_name(m, i);
    snprintf(path, sizeof path, "/calls/%s", name);
    if (!nn_h5_exists(expected, path)) {
      cr_expect_eq(fwd[i].fired, 0, "%s: never called by PyTorch, called %d times here", name,
                   fwd[i].fired);
      continue;
    }
    int64_t calls = nn_h5_int(expected, path);
    cr_expect_eq(fwd[i].fired, calls, "%s: %d calls, expected %lld", name, fwd[i].fired,
                 (long long)calls);
    cr_expect_eq(pre[i].fired, calls, "%s: %d fwd_pre calls", name, pre[i].fired);
    if (fwd[i].fired == 0) continue;
    static const char *const groups[] = {"fwd", "fwd_pre", "fwd_first", "fwd_pre_first"};
    for (int g = 0; g < 4; g++) {
      snprintf(path, sizeof path, "/%s/%s", groups[g], name);
      if (g >= 2 && !nn_h5_exists(expected, path)) continue;
      nn_arr e = nn_h5_read(expected, path);
      const nn_copy *c = g == 0   ? &fwd[i].last
                         : g == 1 ? &pre[i].last
                         : g == 2 ? &fwd[i].first
                                  : &pre[i].first;
      double dd = nn_expect_close(path, c->data, c->ndim, c->shape, &e, NN_TOL);
      if (dd > worst) worst = dd;
      free(e.data);
    }
  }
  cr_log_info("%s: worst module max diff %.3g", model_path, worst);

  for (int64_t i = 0; i < 2 * n; i++) lh_hook_remove(&h[i]);
  for (int64_t i = 0; i < n; i++) {
    nn_rec_free(&fwd[i]);
    nn_rec_free(&pre[i]);
  }
  free(fwd);
  free(pre);
  free(h);
  free(in.data);
  lh_model_destroy(&m);
  cr_expect_null(m);
}

static void golden(const char *model_path, const char *fixture, const char *input_dset) {
  golden_ex(model_path, fixture, input_dset, 0);
}

Test(model_golden, mlp_safetensors) {
  golden(NN_DIR "/mlp/model.yaml", "mlp", "/inputs");
}
Test(model_golden, mlp_hdf5) {
  golden(NN_DIR "/mlp/model_h5.yaml", "mlp", "/inputs");
}
Test(model_golden, mix_every_yaml_type) {
  golden(NN_DIR "/mix/model.yaml", "mix", "/inputs");
}
Test(model_golden, gpt2) {
  golden(NN_DIR "/gpt2", "gpt2", "/tokens");
}
Test(model_golden, gpt2_bare_checkpoint_layout) {
  golden(NN_DIR "/gpt2_bare", "gpt2", "/tokens");
}

Test(model_golden, gpt2_tiny_arena_blocks) {
  /* the first forward fills a chain of small blocks, so that block outputs move across blocks */
  golden_ex(NN_DIR "/gpt2", "gpt2", "/tokens", 16);
}

Test(model_golden, gpt2_memory_grows_with_one_block_not_the_depth) {
  lh_model *m = NULL;
  cr_assert_eq(lh_model_load(NN_DIR "/gpt2", &m), LH_OK, "%s", lh_error_message());
  m->min_block = 16;
  nn_arr in = nn_h5_read(NN_DIR "/gpt2/data.h5", "/tokens");
  lh_tensor x = nn_tensor(&in), y;
  nn_arr want = nn_h5_read(NN_DIR "/gpt2/expected.h5", "/output");
  for (int pass = 0; pass < 2; pass++) {
    cr_assert_eq(lh_model_forward(m, &x, &y), LH_OK, "%s", lh_error_message());
    nn_expect_close("output", y.data, y.ndim, y.shape, &want, NN_TOL);
    /* live floats at the end: the input, wte, positions, wpe, their sum, two block outputs,
     * ln_f and the logits (about 28k); one block's intermediates alone are about 74k */
    int64_t used = 0;
    for (int64_t b = 0; b < m->nblk; b++) used += m->blk[b].used;
    cr_expect_leq(used, 30000, "pass %d: %lld floats in use after the forward", pass,
                  (long long)used);
  }
  cr_expect_eq(m->nblk, 1, "blocks merged at the second forward");
  free(want.data);
  free(in.data);
  lh_model_destroy(&m);
}

Test(model_golden, forward_twice_gives_the_same_output) {
  lh_model *m = NULL;
  cr_assert_eq(lh_model_load(NN_DIR "/gpt2", &m), LH_OK, "%s", lh_error_message());
  nn_arr in = nn_h5_read(NN_DIR "/gpt2/data.h5", "/tokens");
  lh_tensor x = nn_tensor(&in), y;
  cr_assert_eq(lh_model_forward(m, &x, &y), LH_OK);
  int64_t n = lh_tensor_numel(&y);
  float *first = malloc((size_t)n * sizeof(float));
  memcpy(first, y.data, (size_t)n * sizeof(float));
  /* a smaller batch, then the full one again: the arena is reused */
  lh_tensor x2 = x;
  x2.shape[0] = 2;
  x2.shape[1] = 16;
  cr_assert_eq(lh_model_forward(m, &x2, &y), LH_OK);
  cr_expect_eq(y.shape[0], 2);
  nn_arr head = {.data = first, .ndim = 3, .shape = {2, 16, 64}, .n = 2 * 16 * 64};
  nn_expect_close("first two samples", y.data, y.ndim, y.shape, &head, 1e-6);
  cr_assert_eq(lh_model_forward(m, &x, &y), LH_OK);
  cr_expect_eq(memcmp(first, y.data, (size_t)n * sizeof(float)), 0);
  /* causal: the logits of the first 5 positions do not depend on later tokens */
  lh_tensor x3 = x;
  float *ids = malloc((size_t)(5 * 5) * sizeof(float));
  for (int b = 0; b < 5; b++)
    for (int t = 0; t < 5; t++) ids[b * 5 + t] = in.data[b * 16 + t];
  x3.data = ids;
  x3.shape[1] = 5;
  cr_assert_eq(lh_model_forward(m, &x3, &y), LH_OK);
  double maxd = 0;
  for (int b = 0; b < 5; b++)
    for (int t = 0; t < 5; t++)
      for (int v = 0; v < 64; v++)
        maxd = fmax(maxd, fabs(y.data[(b * 5 + t) * 64 + v] - first[(b * 16 + t) * 64 + v]));
  cr_expect_leq(maxd, 1e-5, "prefix logits differ by %g", maxd);
  free(ids);
  free(first);
  free(in.data);
  lh_model_destroy(&m);
}

Test(model_golden, empty_batch) {
  lh_model *m = NULL;
  cr_assert_eq(lh_model_load(NN_DIR "/mix/model.yaml", &m), LH_OK, "%s", lh_error_message());
  lh_tensor x = {.data = NULL, .ndim = 2, .shape = {0, 12}}, y;
  cr_assert_eq(lh_model_forward(m, &x, &y), LH_OK, "%s", lh_error_message());
  cr_expect_eq(y.ndim, 2);
  cr_expect_eq(y.shape[0], 0);
  cr_expect_eq(y.shape[1], 6);
  lh_model_destroy(&m);
}

Test(model_info, descriptions) {
  lh_model *m = NULL;
  cr_assert_eq(lh_model_load(NN_DIR "/gpt2", &m), LH_OK, "%s", lh_error_message());
  cr_expect_eq(lh_model_input_kind(m), LH_INPUT_TOKENS);
  cr_expect_eq(lh_model_input_width(m), 16);
  cr_expect_eq(lh_model_vocab(m), 64);
  cr_expect_str_eq(lh_model_module_name(m, 0), "");
  cr_expect_str_eq(lh_model_module_type(m, 0), "GPT2LMHeadModel");
  cr_expect_eq(lh_model_module_find(m, "transformer.h.1.attn.attn_dropout"), 24);
  cr_expect_eq(lh_model_module_find(m, "transformer.h.2"), -1);
  cr_expect_null(lh_model_module_name(m, lh_model_module_count(m)));
  lh_model_destroy(&m);
  cr_assert_eq(lh_model_load(NN_DIR "/mlp/model.yaml", &m), LH_OK);
  cr_expect_eq(lh_model_input_kind(m), LH_INPUT_FEATURES);
  cr_expect_eq(lh_model_input_width(m), 10);
  cr_expect_eq(lh_model_vocab(m), 0);
  cr_expect_str_eq(lh_model_module_type(m, 0), "YamlModel");
  lh_model_destroy(&m);
  lh_model_destroy(&m); /* NULL is fine */
  lh_model_destroy(NULL);
}

/* --- input checks -------------------------------------------------------------------------- */

static void expect_forward_error(lh_model *m, lh_tensor *x, lh_status want, const char *frag) {
  lh_tensor y = {0};
  lh_status st = lh_model_forward(m, x, &y);
  cr_expect_eq(st, want, "status %d (%s), expected %d", st, lh_error_message(), want);
  cr_expect(strstr(lh_error_message(), frag) != NULL, "message '%s' lacks '%s'", lh_error_message(),
            frag);
  cr_expect_null(y.data, "output written on failure");
}

Test(model_input, token_checks) {
  lh_model *m = NULL;
  cr_assert_eq(lh_model_load(NN_DIR "/gpt2", &m), LH_OK, "%s", lh_error_message());
  float ids[2 * 17] = {0};
  lh_tensor x = {.data = ids, .ndim = 2, .shape = {2, 4}};
  ids[6] = 64; /* sample 1, position 2 */
  expect_forward_error(m, &x, LH_ERR_VALUE, "sample 1, position 2");
  ids[6] = -1;
  expect_forward_error(m, &x, LH_ERR_VALUE, "[0, 64)");
  ids[6] = 2.5f;
  expect_forward_error(m, &x, LH_ERR_VALUE, "not an integer");
  ids[6] = NAN;
  expect_forward_error(m, &x, LH_ERR_VALUE, "sample 1, position 2");
  ids[6] = 3;
  x.shape[1] = 17;
  expect_forward_error(m, &x, LH_ERR_VALUE, "1 <= T <= 16");
  x.shape[1] = 0;
  expect_forward_error(m, &x, LH_ERR_VALUE, "1 <= T <= 16");
  x.shape[0] = 4;
  x.shape[1] = 2;
  x.ndim = 3;
  x.shape[2] = 1;
  expect_forward_error(m, &x, LH_ERR_VALUE, "(B, T)");
  x.ndim = 2;
  lh_tensor y;
  cr_expect_eq(lh_model_forward(m, &x, &y), LH_OK, "%s", lh_error_message());
  cr_expect_eq(y.ndim, 3);
  cr_expect_eq(y.shape[0], 4);
  cr_expect_eq(y.shape[1], 2);
  cr_expect_eq(y.shape[2], 64);
  lh_model_destroy(&m);
}

Test(model_input, feature_checks) {
  lh_model *m = NULL;
  cr_assert_eq(lh_model_load(NN_DIR "/mlp/model.yaml", &m), LH_OK, "%s", lh_error_message());
  float v[3 * 11] = {0};
  lh_tensor x = {.data = v, .ndim = 2, .shape = {3, 11}};
  expect_forward_error(m, &x, LH_ERR_VALUE, "expected (B, 10)");
  x.ndim = 1;
  x.shape[0] = 10;
  expect_forward_error(m, &x, LH_ERR_VALUE, "expected (B, 10)");
  cr_expect_eq(lh_model_forward(m, NULL, &x), LH_ERR_VALUE);
  lh_model_destroy(&m);
}

/* --- loading errors ------------------------------------------------------------------------ */

static void expect_load_error(const char *path, lh_status want, const char *frag1,
                              const char *frag2) {
  lh_model *m = NULL;
  lh_status st = lh_model_load(path, &m);
  cr_expect_eq(st, want, "%s: status %d (%s: %s), expected %d", path, st, lh_status_name(st),
               lh_error_message(), want);
  cr_expect_null(m);
  const char *msg = lh_error_message();
  cr_expect(strstr(msg, frag1) != NULL, "message '%s' lacks '%s'", msg, frag1);
  if (frag2) cr_expect(strstr(msg, frag2) != NULL, "message '%s' lacks '%s'", msg, frag2);
  cr_log_info("%s", msg);
  lh_model_destroy(&m);
}

Test(model_load, dispatch_errors) {
  expect_load_error("/nonexistent/model.yaml", LH_ERR_IO, "/nonexistent/model.yaml",
                    "No such file");
  expect_load_error(NN_DIR "/mlp/data.h5", LH_ERR_VALUE, ".yaml", "config.json");
  char *dir = nn_tmpdir();
  expect_load_error(dir, LH_ERR_IO, "config.json", NULL);
  nn_rmtree(dir);
}

/* A GPT-2 directory with the fixture's config.json edited by `edit` and its weights. */
static char *gpt2_dir_with(void (*edit)(json_t *cfg)) {
  char *dir = nn_tmpdir(), path[512];
  json_error_t err;
  json_t *cfg = json_load_file(NN_DIR "/gpt2/config.json", 0, &err);
  cr_assert_not_null(cfg);
  edit(cfg);
  snprintf(path, sizeof path, "%s/config.json", dir);
  cr_assert_eq(json_dump_file(cfg, path, JSON_INDENT(2)), 0);
  json_decref(cfg);
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  cr_assert_eq(symlink(NN_DIR "/gpt2/model.safetensors", path), 0);
  return dir;
}

static void no_n_head(json_t *c) {
  json_object_del(c, "n_head");
}
static void n_embd_string(json_t *c) {
  json_object_set_new(c, "n_embd", json_string("48"));
}
static void n_head_5(json_t *c) {
  json_object_set_new(c, "n_head", json_integer(5));
}
static void bert(json_t *c) {
  json_object_set_new(c, "model_type", json_string("bert"));
}
static void no_model_type(json_t *c) {
  json_object_del(c, "model_type");
}
static void zero_layers(json_t *c) {
  json_object_set_new(c, "n_layer", json_integer(0));
}
static void eps_string(json_t *c) {
  json_object_set_new(c, "layer_norm_epsilon", json_string("1e-5"));
}
static void swish(json_t *c) {
  json_object_set_new(c, "activation_function", json_string("swish"));
}
static void tie_null(json_t *c) {
  json_object_set_new(c, "tie_word_embeddings", json_null());
}
static void untied(json_t *c) {
  json_object_set_new(c, "tie_word_embeddings", json_false());
}
static void n_inner_96(json_t *c) {
  json_object_set_new(c, "n_inner", json_integer(96));
}

Test(model_load, gpt2_config_errors) {
  struct {
    void (*edit)(json_t *);
    lh_status st;
    const char *f1, *f2;
  } cases[] = {
      {no_n_head, LH_ERR_KEY, "config.json: missing key 'n_head'", "positive integer"},
      {n_embd_string, LH_ERR_TYPE, "'n_embd' is a string", "expected a positive integer"},
      {n_head_5, LH_ERR_VALUE, "n_embd (48) must be divisible by n_head (5)", "config.json"},
      {bert, LH_ERR_VALUE, "model_type is \"bert\"", "gpt2"},
      {no_model_type, LH_ERR_KEY, "missing key 'model_type'", "config.json"},
      {zero_layers, LH_ERR_VALUE, "'n_layer' is 0", "positive integer"},
      {eps_string, LH_ERR_TYPE, "'layer_norm_epsilon' is a string", "number"},
      {swish, LH_ERR_NOTIMPL, "activation_function \"swish\"", "gelu_new"},
      {tie_null, LH_ERR_TYPE, "'tie_word_embeddings' is null", "true or false"},
      {untied, LH_ERR_KEY, "lm_head.weight", "tie_word_embeddings"},
      {n_inner_96, LH_ERR_VALUE, "transformer.h.0.mlp.c_fc.weight", "expected (48, 96)"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char *dir = gpt2_dir_with(cases[i].edit);
    expect_load_error(dir, cases[i].st, cases[i].f1, cases[i].f2);
    nn_rmtree(dir);
  }
  /* not JSON at all */
  char *dir = gpt2_dir_with(no_n_head), path[512];
  snprintf(path, sizeof path, "%s/config.json", dir);
  nn_write(path, "{\n  \"model_type\": \"gpt2\",\n  \"n_embd\": 48,,\n}\n");
  expect_load_error(dir, LH_ERR_VALUE, "config.json, line 3", "invalid JSON");
  /* no weights */
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  unlink(path);
  snprintf(path, sizeof path, "%s/config.json", dir);
  unlink(path);
  cr_assert_eq(symlink(NN_DIR "/gpt2/config.json", path), 0);
  expect_load_error(dir, LH_ERR_IO, "model.safetensors", NULL);
  nn_rmtree(dir);
}

/* --- rewritten checkpoints ------------------------------------------------------------------ */

static uint16_t to_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  u += 0x7FFF + ((u >> 16) & 1); /* round to nearest even (values here are finite) */
  return (uint16_t)(u >> 16);
}
static float from_bf16(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

typedef enum {
  REWRITE_COPY,
  REWRITE_F16,
  REWRITE_BF16,
  REWRITE_ROUNDED_F16,
  REWRITE_ROUNDED_BF16
} rewrite_kind;

/* Writes the gpt2 fixture's tensors to dir/model.safetensors: dropping `drop`, giving
 * `reshape` the shape (n) (its first n values), adding `extra` as a copy of `extra_src`,
 * and converting / rounding every tensor per `kind`. */
static void rewrite_gpt2(const char *dir, rewrite_kind kind, const char *drop, const char *reshape,
                         int64_t n, const char *extra, const char *extra_src) {
  lh_safetensors *sf = NULL;
  cr_assert_eq(lh_safetensors_open(NN_DIR "/gpt2/model.safetensors", &sf), LH_OK, "%s",
               lh_error_message());
  int64_t cnt = lh_safetensors_count(sf);
  nn_st_item *items = calloc((size_t)cnt + 1, sizeof *items);
  void **bufs = calloc((size_t)cnt + 1, sizeof *bufs);
  int k = 0;
  for (int64_t i = 0; i <= cnt; i++) {
    const lh_st_tensor *t;
    const char *name;
    if (i < cnt) {
      t = lh_safetensors_at(sf, i);
      name = t->name;
      if (drop && strcmp(name, drop) == 0) continue;
    } else {
      if (!extra) break;
      t = lh_safetensors_find(sf, extra_src);
      name = extra;
    }
    float *f = malloc((size_t)t->numel * sizeof(float));
    cr_assert_eq(lh_safetensors_read_f32(sf, t, f), LH_OK);
    nn_st_item *it = &items[k];
    it->name = name;
    it->ndim = t->ndim;
    memcpy(it->shape, t->shape, sizeof(int64_t) * (size_t)t->ndim);
    int64_t numel = t->numel;
    if (reshape && strcmp(name, reshape) == 0) {
      it->ndim = 1;
      it->shape[0] = numel = n;
    }
    if (kind == REWRITE_F16 || kind == REWRITE_ROUNDED_F16) {
      _Float16 *h = malloc((size_t)numel * sizeof *h);
      for (int64_t j = 0; j < numel; j++) h[j] = (_Float16)f[j];
      if (kind == REWRITE_F16) {
        it->dtype = "F16";
        it->data = bufs[k] = h;
        it->nbytes = (size_t)numel * 2;
        free(f);
      } else {
        for (int64_t j = 0; j < numel; j++) f[j] = (float)h[j];
        free(h);
      }
    } else if (kind == REWRITE_BF16 || kind == REWRITE_ROUNDED_BF16) {
      uint16_t *h = malloc((size_t)numel * sizeof *h);
      for (int64_t j = 0; j < numel; j++) h[j] = to_bf16(f[j]);
      if (kind == REWRITE_BF16) {
        it->dtype = "BF16";
        it->data = bufs[k] = h;
        it->nbytes = (size_t)numel * 2;
        free(f);
      } else {
        for (int64_t j = 0; j < numel; j++) f[j] = from_bf16(h[j]);
        free(h);
      }
    }
    if (!it->dtype) {
      it->dtype = "F32";
      it->data = bufs[k] = f;
      it->nbytes = (size_t)numel * 4;
    }
    k++;
  }
  char path[512];
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  nn_st_write(path, items, k);
  for (int i = 0; i < k; i++) free(bufs[i]);
  free(bufs);
  free(items);
  lh_safetensors_close(&sf);
}

static char *gpt2_dir_rewritten(rewrite_kind kind, const char *drop, const char *reshape, int64_t n,
                                const char *extra, const char *extra_src) {
  char *dir = nn_tmpdir(), path[512];
  snprintf(path, sizeof path, "%s/config.json", dir);
  cr_assert_eq(symlink(NN_DIR "/gpt2/config.json", path), 0);
  rewrite_gpt2(dir, kind, drop, reshape, n, extra, extra_src);
  return dir;
}

Test(model_load, gpt2_missing_and_misshaped_tensors) {
  char *dir =
      gpt2_dir_rewritten(REWRITE_COPY, "transformer.h.1.mlp.c_fc.weight", NULL, 0, NULL, NULL);
  expect_load_error(dir, LH_ERR_KEY, "missing tensor 'transformer.h.1.mlp.c_fc.weight'",
                    "expected shape (48, 192)");
  nn_rmtree(dir);
  dir = gpt2_dir_rewritten(REWRITE_COPY, NULL, "transformer.h.0.attn.c_attn.bias", 48, NULL, NULL);
  expect_load_error(dir, LH_ERR_VALUE, "'transformer.h.0.attn.c_attn.bias' has shape (48,)",
                    "expected (144,)");
  nn_rmtree(dir);
}

/* Outputs of two model directories on the gpt2 tokens. */
static void expect_same_logits(const char *dir_a, const char *dir_b, double tol) {
  lh_model *a = NULL, *b = NULL;
  cr_assert_eq(lh_model_load(dir_a, &a), LH_OK, "%s", lh_error_message());
  cr_assert_eq(lh_model_load(dir_b, &b), LH_OK, "%s", lh_error_message());
  nn_arr in = nn_h5_read(NN_DIR "/gpt2/data.h5", "/tokens");
  lh_tensor x = nn_tensor(&in), ya, yb;
  cr_assert_eq(lh_model_forward(a, &x, &ya), LH_OK);
  cr_assert_eq(lh_model_forward(b, &x, &yb), LH_OK);
  nn_arr want = {.data = ya.data, .ndim = ya.ndim, .n = lh_tensor_numel(&ya)};
  memcpy(want.shape, ya.shape, sizeof(int64_t) * 3);
  nn_expect_close("logits", yb.data, yb.ndim, yb.shape, &want, tol);
  free(in.data);
  lh_model_destroy(&a);
  lh_model_destroy(&b);
}

Test(model_load, gpt2_half_precision_weights) {
  /* F16 and BF16 files load as the float32 model of the rounded values, exactly */
  char *f16 = gpt2_dir_rewritten(REWRITE_F16, NULL, NULL, 0, NULL, NULL);
  char f16_dir[256];
  snprintf(f16_dir, sizeof f16_dir, "%s", f16);
  char *r16 = gpt2_dir_rewritten(REWRITE_ROUNDED_F16, NULL, NULL, 0, NULL, NULL);
  expect_same_logits(f16_dir, r16, 0.0);
  nn_rmtree(f16_dir);
  nn_rmtree(r16);
  char *bf = gpt2_dir_rewritten(REWRITE_BF16, NULL, NULL, 0, NULL, NULL);
  char bf_dir[256];
  snprintf(bf_dir, sizeof bf_dir, "%s", bf);
  char *rbf = gpt2_dir_rewritten(REWRITE_ROUNDED_BF16, NULL, NULL, 0, NULL, NULL);
  expect_same_logits(bf_dir, rbf, 0.0);
  nn_rmtree(bf_dir);
  nn_rmtree(rbf);
}

Test(model_load, gpt2_untied_lm_head) {
  /* tie_word_embeddings false with an explicit lm_head.weight (a copy of wte) */
  char *dir = gpt2_dir_with(untied);
  char path[512];
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  unlink(path);
  rewrite_gpt2(dir, REWRITE_COPY, NULL, NULL, 0, "lm_head.weight", "transformer.wte.weight");
  expect_same_logits(NN_DIR "/gpt2", dir, 1e-6);
  nn_rmtree(dir);
}

/* --- YAML errors ------------------------------------------------------------------------------ */

static const char *MLP_MODULES =
    "modules:\n"
    "  - {name: linear1, type: linear, in_features: 10, out_features: 20}\n"
    "  - {name: linear2, type: linear, in_features: 20, out_features: 20}\n"
    "  - {name: linear3, type: linear, in_features: 20, out_features: 5}\n"
    "  - {name: activation, type: relu}\n";

/* Writes dir/model.yaml = head + body and returns its path. */
static const char *yaml_in(const char *dir, const char *body) {
  static char path[512];
  snprintf(path, sizeof path, "%s/model.yaml", dir);
  char *text = malloc(strlen(body) + 1024);
  sprintf(text, "weights: %s/mlp/model.safetensors\ninput:\n  features: 10\n%s", NN_DIR, body);
  nn_write(path, text);
  free(text);
  return path;
}

Test(model_yaml, syntax_and_schema_errors) {
  char *dir = nn_tmpdir();
  char body[2048];
  /* a tab breaks the indentation, on line 9 */
  snprintf(body, sizeof body, "%s\tforward: [linear1]\n", MLP_MODULES);
  expect_load_error(yaml_in(dir, body), LH_ERR_VALUE, "model.yaml, line 9", "syntax error");
  /* an unclosed flow mapping */
  snprintf(body, sizeof body,
           "modules:\n  - {name: linear1, type: linear, in_features: 10, out_features: 20\n"
           "forward: [linear1]\n");
  expect_load_error(yaml_in(dir, body), LH_ERR_VALUE, "model.yaml, near line 5",
                    "did not find expected ',' or '}'");
  /* unknown type, on line 6 */
  snprintf(body, sizeof body,
           "modules:\n  - {name: linear1, type: linear, in_features: 10, out_features: 20}\n"
           "  - {name: act, type: swish}\nforward: [linear1, act]\n");
  expect_load_error(yaml_in(dir, body), LH_ERR_VALUE, "model.yaml, line 6",
                    "unknown module type 'swish'");
  /* unknown key */
  snprintf(body, sizeof body,
           "modules:\n  - {name: linear1, type: linear, in_feature: 10, out_features: 20}\n"
           "forward: [linear1]\n");
  expect_load_error(yaml_in(dir, body), LH_ERR_VALUE, "line 5", "unknown key 'in_feature'");
  /* a bool that is not one */
  snprintf(body, sizeof body,
           "modules:\n  - {name: linear1, type: linear, in_features: 10, out_features: 20, "
           "bias: maybe}\nforward: [linear1]\n");
  expect_load_error(yaml_in(dir, body), LH_ERR_VALUE, "invalid value 'maybe' for 'bias'",
                    "true or false");
  /* a missing section */
  expect_load_error(yaml_in(dir, MLP_MODULES), LH_ERR_VALUE, "missing required key 'forward'",
                    "model.yaml");
  nn_rmtree(dir);
}

Test(model_yaml, semantic_errors) {
  char *dir = nn_tmpdir();
  char body[2048];
  /* forward names a module that does not exist, on line 12 */
  snprintf(body, sizeof body, "%sforward:\n  - linear1\n  - activation\n  - linear4\n",
           MLP_MODULES);
  expect_load_error(yaml_in(dir, body), LH_ERR_KEY,
                    "model.yaml, line 12: forward: unknown module 'linear4'", "'linear1'");
  /* duplicate name, second definition on line 6 */
  snprintf(body, sizeof body,
           "modules:\n  - {name: linear1, type: linear, in_features: 10, out_features: 20}\n"
           "  - {name: linear1, type: relu}\nforward: [linear1]\n");
  expect_load_error(yaml_in(dir, body), LH_ERR_VALUE, "model.yaml, line 6",
                    "duplicate module name 'linear1'");
  /* a key the type does not take, and a missing size */
  snprintf(body, sizeof body,
           "modules:\n  - {name: act, type: relu, in_features: 3}\nforward: [act]\n");
  expect_load_error(yaml_in(dir, body), LH_ERR_VALUE,
                    "line 5: module 'act': type relu takes no 'in_features'", NULL);
  snprintf(body, sizeof body,
           "modules:\n  - {name: l, type: linear, in_features: 10}\nforward: [l]\n");
  expect_load_error(yaml_in(dir, body), LH_ERR_VALUE, "module 'l' (linear) needs 'out_features'",
                    NULL);
  snprintf(
      body, sizeof body,
      "modules:\n  - {name: l, type: linear, in_features: -10, out_features: 2}\nforward: [l]\n");
  expect_load_error(yaml_in(dir, body), LH_ERR_VALUE, "in_features is -10", NULL);
  /* widths that do not chain: linear2 expects 20, gets 5 from linear3 */
  snprintf(body, sizeof body, "%sforward: [linear1, activation, linear3, linear2]\n", MLP_MODULES);
  expect_load_error(
      yaml_in(dir, body), LH_ERR_VALUE,
      "line 6: module 'linear2' (Linear) expects 20 input features but receives 5 from linear3",
      NULL);
  snprintf(body, sizeof body, "%sforward: [linear2]\n", MLP_MODULES);
  expect_load_error(yaml_in(dir, body), LH_ERR_VALUE, "receives 10 from the input", NULL);
  /* a residual whose modules change the width */
  snprintf(body, sizeof body,
           "modules:\n  - name: res\n    type: residual\n    modules:\n"
           "      - {name: fc, type: linear, in_features: 10, out_features: 20}\n"
           "forward: [res]\n");
  expect_load_error(yaml_in(dir, body), LH_ERR_VALUE, "line 5: residual 'res'", "same shape");
  nn_rmtree(dir);
}

Test(model_yaml, weights_errors) {
  char *dir = nn_tmpdir(), path[512], text[2048];
  snprintf(path, sizeof path, "%s/model.yaml", dir);
  /* missing weights file (relative to the YAML's folder) */
  snprintf(text, sizeof text,
           "weights: nothere.safetensors\ninput: {features: 10}\n%sforward: [linear1]\n",
           MLP_MODULES);
  nn_write(path, text);
  expect_load_error(path, LH_ERR_IO, "model.yaml, line 1: weights file", "nothere.safetensors");
  /* unknown weights format */
  snprintf(text, sizeof text,
           "weights: %s/mlp/model.yaml\ninput: {features: 10}\n%sforward: [linear1]\n", NN_DIR,
           MLP_MODULES);
  nn_write(path, text);
  expect_load_error(path, LH_ERR_VALUE, "expected a .safetensors or .h5", NULL);
  /* wrong parameter shape: linear1 declared 10 -> 21, the file has (20, 10) */
  static const char *const files[] = {"model.safetensors", "weights.h5"};
  for (int f = 0; f < 2; f++) {
    snprintf(text, sizeof text,
             "weights: %s/mlp/%s\ninput: {features: 10}\nmodules:\n"
             "  - {name: linear1, type: linear, in_features: 10, out_features: 21}\n"
             "forward: [linear1]\n",
             NN_DIR, files[f]);
    nn_write(path, text);
    expect_load_error(path, LH_ERR_VALUE, "model.yaml, line 4: module 'linear1' (Linear)",
                      "'linear1.weight' has shape (20, 10), expected (21, 10)");
    /* a parameter the file lacks */
    snprintf(text, sizeof text,
             "weights: %s/mlp/%s\ninput: {features: 10}\nmodules:\n"
             "  - {name: linear1, type: linear, in_features: 10, out_features: 20}\n"
             "  - {name: norm, type: layernorm, normalized_shape: 20}\n"
             "forward: [linear1, norm]\n",
             NN_DIR, files[f]);
    nn_write(path, text);
    expect_load_error(path, LH_ERR_KEY, "model.yaml, line 5: module 'norm' (LayerNorm)",
                      "no tensor 'norm.weight' (expected shape (20,))");
  }
  /* the same model with the weights relative to the YAML: loads */
  char link[512];
  snprintf(link, sizeof link, "%s/w.h5", dir);
  cr_assert_eq(symlink(NN_DIR "/mlp/weights.h5", link), 0);
  snprintf(text, sizeof text,
           "weights: w.h5\ninput: {features: 10}\n%sforward: [linear1, activation]\n", MLP_MODULES);
  nn_write(path, text);
  lh_model *m = NULL;
  cr_expect_eq(lh_model_load(path, &m), LH_OK, "%s", lh_error_message());
  lh_model_destroy(&m);
  nn_rmtree(dir);
}
