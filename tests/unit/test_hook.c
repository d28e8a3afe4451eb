/* Hooks: module names and regex selection against Python (tests/golden/nn/names.json: TV-16
 * and friends), relative and absolute naming, in-place replacement by fwd and fwd_pre hooks
 * with closed-form results, firing order, call counts, removal in any order, user_free once,
 * errors from hooks, unknown names and invalid patterns. */
#include "unit/nnfix.h"

#define MLP NN_DIR "/mlp/model.yaml"

static lh_model *load(const char *path) {
  lh_model *m = NULL;
  lh_status st = lh_model_load(path, &m);
  cr_assert_eq(st, LH_OK, "%s: %s", path, lh_error_message());
  return m;
}

static json_t *names_json(const char *model) {
  json_error_t err;
  json_t *all = json_load_file(NN_DIR "/names.json", 0, &err);
  cr_assert_not_null(all, "names.json: %s", err.text);
  json_t *m = json_incref(json_object_get(all, model));
  json_decref(all);
  cr_assert_not_null(m);
  return m;
}

static const char *model_path(const char *model) {
  static char p[512];
  if (strcmp(model, "gpt2") == 0)
    snprintf(p, sizeof p, "%s/gpt2", NN_DIR);
  else
    snprintf(p, sizeof p, "%s/%s/model.yaml", NN_DIR, model);
  return p;
}

/* Runs the model on its fixture input; returns the output view. */
static lh_tensor run(lh_model *m, const char *model) {
  char data[512];
  snprintf(data, sizeof data, "%s/%s/data.h5", NN_DIR, model);
  nn_arr in = nn_h5_read(data, strcmp(model, "gpt2") == 0 ? "/tokens" : "/inputs");
  lh_tensor x = nn_tensor(&in), y;
  lh_status st = lh_model_forward(m, &x, &y);
  cr_assert_eq(st, LH_OK, "forward: %s", lh_error_message());
  free(in.data);
  return y;
}

static lh_status noop(const lh_hook_event *ev, void *user) {
  (void)ev;
  (void)user;
  return LH_OK;
}

/* --- names ------------------------------------------------------------------------------------ */

static void check_names(const char *model) {
  json_t *ref = names_json(model);
  lh_model *m = load(model_path(model));
  json_t *mods = json_object_get(ref, "modules");
  cr_assert_eq(lh_model_module_count(m), (int64_t)json_array_size(mods) + 1, "%s", model);
  size_t i;
  json_t *e;
  json_array_foreach(mods, i, e) {
    const char *name = json_string_value(json_array_get(e, 0));
    cr_expect_str_eq(lh_model_module_name(m, (int64_t)i + 1), name, "%s module %zu", model, i);
    cr_expect_str_eq(lh_model_module_type(m, (int64_t)i + 1),
                     json_string_value(json_array_get(e, 1)), "%s: %s", model, name);
    cr_expect_eq(lh_model_module_find(m, name), (int64_t)i + 1);
  }
  /* every absolute name can be hooked by name, and "" selects all of them */
  json_t *abs = json_object_get(ref, "absolute");
  json_array_foreach(abs, i, e) {
    lh_hook_handle *h = NULL;
    cr_expect_eq(lh_model_hook(m, json_string_value(e), false, LH_HOOK_FWD,
                               (lh_hook_spec){noop, NULL, NULL}, &h),
                 LH_OK, "%s", lh_error_message());
    lh_hook_remove(&h);
    cr_expect_null(h);
  }
  lh_hook_handle *h = NULL;
  int64_t count = -1;
  cr_expect_eq(lh_model_hook_pattern(m, "", false, LH_HOOK_FWD, (lh_hook_spec){noop, NULL, NULL},
                                     &h, &count),
               LH_OK);
  cr_expect_eq(count, (int64_t)json_array_size(abs));
  lh_hook_remove(&h);
  lh_model_destroy(&m);
  json_decref(ref);
}

Test(hook_names, mlp_tv16) {
  check_names("mlp");
}
Test(hook_names, mix) {
  check_names("mix");
}
Test(hook_names, gpt2) {
  check_names("gpt2");
}

/* --- patterns --------------------------------------------------------------------------------- */

typedef struct fired_set {
  json_t *names; /* object used as a set */
} fired_set;

static lh_status collect(const lh_hook_event *ev, void *user) {
  fired_set *s = user;
  json_object_set_new(s->names, ev->name, json_true());
  return LH_OK;
}

static void check_patterns(const char *model) {
  json_t *ref = names_json(model);
  lh_model *m = load(model_path(model));
  size_t i;
  json_t *p;
  int checked = 0;
  json_array_foreach(json_object_get(ref, "patterns"), i, p) {
    const char *pattern = json_string_value(json_object_get(p, "pattern"));
    for (int rel = 0; rel < 2; rel++) {
      json_t *want = json_object_get(p, rel ? "relative" : "absolute");
      fired_set s = {json_object()};
      lh_hook_handle *h = NULL;
      int64_t count = -1;
      lh_status st = lh_model_hook_pattern(m, pattern, rel, LH_HOOK_FWD,
                                           (lh_hook_spec){collect, &s, NULL}, &h, &count);
      cr_assert_eq(st, LH_OK, "'%s': %s", pattern, lh_error_message());
      cr_expect_eq(count, (int64_t)json_array_size(want), "%s '%s' (%s): %lld matches, want %zu",
                   model, pattern, rel ? "relative" : "absolute", (long long)count,
                   json_array_size(want));
      run(m, model);
      /* what fired is what Python matched, except modules never called (ModuleList) */
      size_t j;
      json_t *w;
      json_array_foreach(want, j, w) {
        const char *name = json_string_value(w);
        const char *rel_name = name;
        if (!rel && strncmp(name, "td_module.module.", 17) == 0) rel_name = name + 17;
        int64_t mi = lh_model_module_find(m, rel_name);
        bool never_called = mi > 0 && strcmp(lh_model_module_type(m, mi), "ModuleList") == 0;
        cr_expect(json_object_get(s.names, name) != NULL || never_called,
                  "%s '%s': %s matched but did not fire", model, pattern, name);
        json_object_del(s.names, name);
      }
      cr_expect_eq(json_object_size(s.names), 0, "%s '%s': fired on unmatched modules", model,
                   pattern);
      lh_hook_remove(&h);
      json_decref(s.names);
      checked++;
    }
  }
  cr_expect_gt(checked, 0);
  lh_model_destroy(&m);
  json_decref(ref);
}

Test(hook_patterns, mlp_tv16) {
  check_patterns("mlp");
}
Test(hook_patterns, mix) {
  check_patterns("mix");
}
Test(hook_patterns, gpt2) {
  check_patterns("gpt2");
}

Test(hook_patterns, invalid_pattern) {
  lh_model *m = load(MLP);
  lh_hook_handle *h = NULL;
  int64_t count = -1;
  lh_status st = lh_model_hook_pattern(m, "linear(1|2", true, LH_HOOK_FWD,
                                       (lh_hook_spec){noop, NULL, NULL}, &h, &count);
  cr_expect_eq(st, LH_ERR_VALUE);
  cr_expect(strstr(lh_error_message(), "missing closing parenthesis") != NULL, "%s",
            lh_error_message());
  cr_expect(strstr(lh_error_message(), "at offset 10") != NULL, "%s", lh_error_message());
  cr_expect_null(h);
  cr_expect_eq(count, -1);
  /* a pattern matching nothing is fine: an empty handle */
  cr_expect_eq(lh_model_hook_pattern(m, "inear", true, LH_HOOK_FWD,
                                     (lh_hook_spec){noop, NULL, NULL}, &h, &count),
               LH_OK);
  cr_expect_eq(count, 0);
  cr_expect_not_null(h);
  lh_hook_remove(&h);
  lh_model_destroy(&m);
}

/* --- replacing tensors -------------------------------------------------------------------- */

static lh_status zero(const lh_hook_event *ev, void *user) {
  (void)user;
  memset(ev->tensor->data, 0, (size_t)lh_tensor_numel(ev->tensor) * sizeof(float));
  return LH_OK;
}

/* linear3's bias from the safetensors file. */
static void linear3_bias(float b[5]) {
  lh_safetensors *sf = NULL;
  cr_assert_eq(lh_safetensors_open(NN_DIR "/mlp/model.safetensors", &sf), LH_OK);
  const lh_st_tensor *t = lh_safetensors_find(sf, "linear3.bias");
  cr_assert_not_null(t);
  cr_assert_eq(t->numel, 5);
  cr_assert_eq(lh_safetensors_read_f32(sf, t, b), LH_OK);
  lh_safetensors_close(&sf);
}

static void expect_rows_equal(const lh_tensor *y, const float *row, int64_t C) {
  cr_assert_eq(y->shape[y->ndim - 1], C);
  for (int64_t r = 0; r < lh_tensor_numel(y) / C; r++)
    for (int64_t c = 0; c < C; c++)
      cr_expect_float_eq(y->data[r * C + c], row[c], 1e-7, "row %lld col %lld", (long long)r,
                         (long long)c);
}

Test(hook_replace, fwd_zeroing_linear2_gives_linear3_bias) {
  /* linear3(relu(0)) = b3 for every sample */
  float b3[5];
  linear3_bias(b3);
  lh_model *m = load(MLP);
  lh_hook_handle *h = NULL;
  cr_assert_eq(lh_model_hook(m, "linear2", true, LH_HOOK_FWD, (lh_hook_spec){zero, NULL, NULL}, &h),
               LH_OK);
  lh_tensor y = run(m, "mlp");
  cr_expect_eq(y.shape[0], 7);
  expect_rows_equal(&y, b3, 5);
  /* removed: back to the golden output */
  lh_hook_remove(&h);
  y = run(m, "mlp");
  nn_arr want = nn_h5_read(NN_DIR "/mlp/expected.h5", "/output");
  nn_expect_close("output", y.data, y.ndim, y.shape, &want, NN_TOL);
  free(want.data);
  lh_model_destroy(&m);
}

typedef struct keep {
  lh_tensor view; /* the view the hook saw (data valid until the next forward) */
  float *copy;
} keep;

static lh_status keep_view(const lh_hook_event *ev, void *user) {
  keep *k = user;
  k->view = *ev->tensor;
  int64_t n = lh_tensor_numel(ev->tensor);
  free(k->copy);
  k->copy = malloc((size_t)n * sizeof(float));
  memcpy(k->copy, ev->tensor->data, (size_t)n * sizeof(float));
  return LH_OK;
}

/* Checks, from linear3's fwd hook (after linear3's fwd_pre hook zeroed its input), that the
 * activation output it read is still what the activation produced. */
static lh_status activation_untouched(const lh_hook_event *ev, void *user) {
  (void)ev;
  const keep *act = user;
  int64_t n = lh_tensor_numel(&act->view);
  cr_expect_eq(n, 7 * 20);
  cr_expect_eq(memcmp(act->view.data, act->copy, (size_t)n * sizeof(float)), 0);
  double s = 0;
  for (int64_t i = 0; i < n; i++) s += act->view.data[i];
  cr_expect_gt(s, 0.0);
  return LH_OK;
}

Test(hook_replace, fwd_pre_replacement_is_private_to_the_module) {
  float b3[5];
  linear3_bias(b3);
  lh_model *m = load(MLP);
  keep act = {0};
  lh_hook_handle *h1 = NULL, *h2 = NULL, *h3 = NULL;
  cr_assert_eq(
      lh_model_hook(m, "activation", true, LH_HOOK_FWD, (lh_hook_spec){keep_view, &act, NULL}, &h1),
      LH_OK);
  cr_assert_eq(
      lh_model_hook(m, "linear3", true, LH_HOOK_FWD_PRE, (lh_hook_spec){zero, NULL, NULL}, &h2),
      LH_OK);
  cr_assert_eq(lh_model_hook(m, "linear3", true, LH_HOOK_FWD,
                             (lh_hook_spec){activation_untouched, &act, NULL}, &h3),
               LH_OK);
  lh_tensor y = run(m, "mlp");
  expect_rows_equal(&y, b3, 5);
  lh_hook_remove(&h2);
  lh_hook_remove(&h1);
  lh_hook_remove(&h3);
  free(act.copy);
  lh_model_destroy(&m);
}

/* Hooks append "<tag>:<name>:<call>;" to g_log. */
typedef struct tagger {
  char tag[32];
} tagger;

static char g_log[4096];

static lh_status log_hook(const lh_hook_event *ev, void *user) {
  tagger *t = user;
  size_t k = strlen(g_log);
  snprintf(g_log + k, sizeof g_log - k, "%s:%s:%d;", t->tag, ev->name, ev->call);
  return LH_OK;
}

static lh_status add_one(const lh_hook_event *ev, void *user) {
  (void)user;
  for (int64_t i = 0; i < lh_tensor_numel(ev->tensor); i++) ev->tensor->data[i] += 1.0f;
  return LH_OK;
}

Test(hook_order, registration_order_and_chaining) {
  lh_model *m = load(MLP);
  keep before = {0}, after = {0};
  lh_hook_handle *h[3] = {0};
  cr_assert_eq(lh_model_hook(m, "linear2", true, LH_HOOK_FWD,
                             (lh_hook_spec){keep_view, &before, NULL}, &h[0]),
               LH_OK);
  cr_assert_eq(
      lh_model_hook(m, "linear2", true, LH_HOOK_FWD, (lh_hook_spec){add_one, NULL, NULL}, &h[1]),
      LH_OK);
  cr_assert_eq(lh_model_hook(m, "linear2", true, LH_HOOK_FWD,
                             (lh_hook_spec){keep_view, &after, NULL}, &h[2]),
               LH_OK);
  run(m, "mlp");
  /* the third hook sees the second's change, the first does not */
  for (int i = 0; i < 7 * 20; i++) cr_expect_float_eq(after.copy[i], before.copy[i] + 1.0f, 1e-6);
  for (int i = 0; i < 3; i++) lh_hook_remove(&h[i]);
  free(before.copy);
  free(after.copy);
  lh_model_destroy(&m);
}

Test(hook_order, per_call_firing_and_nesting) {
  lh_model *m = load(MLP);
  tagger pre = {"pre"}, post = {"fwd"};
  lh_hook_handle *a = NULL, *b = NULL, *c = NULL, *d = NULL;
  int64_t n;
  cr_assert_eq(lh_model_hook_pattern(m, "", false, LH_HOOK_FWD_PRE,
                                     (lh_hook_spec){log_hook, &pre, NULL}, &a, &n),
               LH_OK);
  cr_assert_eq(lh_model_hook_pattern(m, "", false, LH_HOOK_FWD,
                                     (lh_hook_spec){log_hook, &post, NULL}, &b, &n),
               LH_OK);
  g_log[0] = '\0';
  run(m, "mlp");
  cr_expect_str_eq(g_log,
                   "pre:td_module:0;pre:td_module.module:0;"
                   "pre:td_module.module.linear1:0;fwd:td_module.module.linear1:0;"
                   "pre:td_module.module.activation:0;fwd:td_module.module.activation:0;"
                   "pre:td_module.module.linear2:0;fwd:td_module.module.linear2:0;"
                   "pre:td_module.module.activation:1;fwd:td_module.module.activation:1;"
                   "pre:td_module.module.linear3:0;fwd:td_module.module.linear3:0;"
                   "fwd:td_module.module:0;fwd:td_module:0;");
  lh_hook_remove(&a);
  lh_hook_remove(&b);
  /* the relative root "" by name sees the model's input and output */
  keep in = {0}, out = {0};
  cr_assert_eq(
      lh_model_hook(m, "", true, LH_HOOK_FWD_PRE, (lh_hook_spec){keep_view, &in, NULL}, &c), LH_OK);
  cr_assert_eq(lh_model_hook(m, "", true, LH_HOOK_FWD, (lh_hook_spec){keep_view, &out, NULL}, &d),
               LH_OK);
  lh_tensor y = run(m, "mlp");
  nn_arr x = nn_h5_read(NN_DIR "/mlp/data.h5", "/inputs");
  cr_expect_eq(memcmp(in.copy, x.data, 70 * sizeof(float)), 0);
  cr_expect_eq(in.view.shape[1], 10);
  cr_expect_eq(out.view.data, y.data);
  lh_hook_remove(&c);
  lh_hook_remove(&d);
  free(x.data);
  free(in.copy);
  free(out.copy);
  lh_model_destroy(&m);
}

Test(hook_order, absolute_wrappers_see_model_input_and_output) {
  lh_model *m = load(MLP);
  keep in = {0}, out = {0}, root_out = {0};
  lh_hook_handle *h[4] = {0};
  cr_assert_eq(lh_model_hook(m, "td_module", false, LH_HOOK_FWD_PRE,
                             (lh_hook_spec){keep_view, &in, NULL}, &h[0]),
               LH_OK);
  cr_assert_eq(lh_model_hook(m, "td_module", false, LH_HOOK_FWD,
                             (lh_hook_spec){keep_view, &out, NULL}, &h[1]),
               LH_OK);
  cr_assert_eq(lh_model_hook(m, "td_module.module", false, LH_HOOK_FWD,
                             (lh_hook_spec){keep_view, &root_out, NULL}, &h[2]),
               LH_OK);
  /* a wrapper's replacement reaches the caller */
  cr_assert_eq(
      lh_model_hook(m, "td_module", false, LH_HOOK_FWD, (lh_hook_spec){add_one, NULL, NULL}, &h[3]),
      LH_OK);
  lh_tensor y = run(m, "mlp");
  nn_arr x = nn_h5_read(NN_DIR "/mlp/data.h5", "/inputs");
  nn_arr want = nn_h5_read(NN_DIR "/mlp/expected.h5", "/output");
  cr_expect_eq(memcmp(in.copy, x.data, 70 * sizeof(float)), 0);
  nn_expect_close("td_module output", out.copy, out.view.ndim, out.view.shape, &want, NN_TOL);
  nn_expect_close("td_module.module output", root_out.copy, 2, root_out.view.shape, &want, NN_TOL);
  for (int i = 0; i < 35; i++) cr_expect_float_eq(y.data[i], out.copy[i] + 1.0f, 1e-6);
  for (int i = 0; i < 4; i++) lh_hook_remove(&h[i]);
  free(x.data);
  free(want.data);
  free(in.copy);
  free(out.copy);
  free(root_out.copy);
  lh_model_destroy(&m);
}

typedef struct seen {
  int calls[4];
  int64_t row0;
  char type[64];
  char name[64];
} seen;

static lh_status see(const lh_hook_event *ev, void *user) {
  seen *s = user;
  if (ev->call < 4) s->calls[ev->call]++;
  s->row0 = ev->row0;
  snprintf(s->type, sizeof s->type, "%s", ev->type);
  snprintf(s->name, sizeof s->name, "%s", ev->name);
  cr_expect_eq(ev->dir, LH_HOOK_FWD_PRE);
  return LH_OK;
}

Test(hook_events, call_index_row0_type_and_name) {
  lh_model *m = load(MLP);
  seen s = {0};
  lh_hook_handle *h = NULL;
  cr_assert_eq(lh_model_hook(m, "td_module.module.activation", false, LH_HOOK_FWD_PRE,
                             (lh_hook_spec){see, &s, NULL}, &h),
               LH_OK);
  lh_model_set_row0(m, 1234);
  run(m, "mlp");
  cr_expect_eq(s.calls[0], 1);
  cr_expect_eq(s.calls[1], 1);
  cr_expect_eq(s.calls[2], 0);
  cr_expect_eq(s.row0, 1234);
  cr_expect_str_eq(s.type, "ReLU");
  cr_expect_str_eq(s.name, "td_module.module.activation");
  run(m, "mlp"); /* counts restart with every forward */
  cr_expect_eq(s.calls[0], 2);
  cr_expect_eq(s.calls[1], 2);
  cr_expect_eq(s.calls[2], 0);
  lh_hook_remove(&h);
  lh_model_destroy(&m);
}

/* --- removal and user data ------------------------------------------------------------------ */

typedef struct counted {
  int fired;
  int *freed;
} counted;

static lh_status count_fire(const lh_hook_event *ev, void *user) {
  (void)ev;
  ((counted *)user)->fired++;
  return LH_OK;
}

static void count_free(void *user) {
  (*((counted *)user)->freed)++;
}

Test(hook_remove, any_order_user_free_once) {
  lh_model *m = load(MLP);
  int freed[4] = {0};
  counted c[4] = {{0, &freed[0]}, {0, &freed[1]}, {0, &freed[2]}, {0, &freed[3]}};
  lh_hook_handle *h[4] = {0};
  int64_t n = 0;
  cr_assert_eq(lh_model_hook(m, "linear1", true, LH_HOOK_FWD,
                             (lh_hook_spec){count_fire, &c[0], count_free}, &h[0]),
               LH_OK);
  cr_assert_eq(lh_model_hook_pattern(m, "linear", true, LH_HOOK_FWD,
                                     (lh_hook_spec){count_fire, &c[1], count_free}, &h[1], &n),
               LH_OK);
  cr_expect_eq(n, 3);
  cr_assert_eq(lh_model_hook(m, "activation", true, LH_HOOK_FWD_PRE,
                             (lh_hook_spec){count_fire, &c[2], count_free}, &h[2]),
               LH_OK);
  cr_assert_eq(lh_model_hook(m, "linear1", true, LH_HOOK_FWD,
                             (lh_hook_spec){count_fire, &c[3], count_free}, &h[3]),
               LH_OK);
  run(m, "mlp");
  cr_expect_eq(c[0].fired, 1);
  cr_expect_eq(c[1].fired, 3);
  cr_expect_eq(c[2].fired, 2);
  cr_expect_eq(c[3].fired, 1);
  /* remove the middle ones first */
  lh_hook_remove(&h[1]);
  cr_expect_null(h[1]);
  cr_expect_eq(freed[1], 1);
  lh_hook_remove(&h[1]); /* NULL: nothing */
  lh_hook_remove(NULL);
  cr_expect_eq(freed[1], 1);
  lh_hook_remove(&h[2]);
  run(m, "mlp");
  cr_expect_eq(c[0].fired, 2);
  cr_expect_eq(c[1].fired, 3);
  cr_expect_eq(c[2].fired, 2);
  cr_expect_eq(c[3].fired, 2);
  lh_hook_remove(&h[0]);
  run(m, "mlp");
  cr_expect_eq(c[0].fired, 2);
  cr_expect_eq(c[3].fired, 3);
  /* h[3] is still registered: the model releases it */
  lh_model_destroy(&m);
  for (int i = 0; i < 4; i++) cr_expect_eq(freed[i], 1, "handle %d freed %d times", i, freed[i]);
}

typedef struct self_remover {
  lh_hook_handle *self;
  int fired;
  int *freed;
} self_remover;

static lh_status remove_self(const lh_hook_event *ev, void *user) {
  (void)ev;
  self_remover *s = user;
  s->fired++;
  lh_hook_remove(&s->self);
  return LH_OK;
}

static void self_free(void *user) {
  (*((self_remover *)user)->freed)++;
}

Test(hook_remove, a_hook_removing_itself) {
  lh_model *m = load(MLP);
  int freed = 0;
  self_remover s = {NULL, 0, &freed};
  cr_assert_eq(lh_model_hook(m, "activation", true, LH_HOOK_FWD,
                             (lh_hook_spec){remove_self, &s, self_free}, &s.self),
               LH_OK);
  run(m, "mlp");
  cr_expect_eq(s.fired, 1, "fired %d times: removal is immediate", s.fired);
  cr_expect_eq(freed, 1);
  run(m, "mlp");
  cr_expect_eq(s.fired, 1);
  lh_model_destroy(&m);
  cr_expect_eq(freed, 1);
}

/* --- errors ------------------------------------------------------------------------------------
 */

Test(hook_errors, unknown_names_list_the_closest) {
  lh_model *m = load(MLP);
  lh_hook_handle *h = NULL;
  lh_status st =
      lh_model_hook(m, "linear4", true, LH_HOOK_FWD, (lh_hook_spec){noop, NULL, NULL}, &h);
  cr_expect_eq(st, LH_ERR_KEY);
  cr_expect_null(h);
  const char *msg = lh_error_message();
  cr_expect(strstr(msg, "'linear4'") != NULL, "%s", msg);
  cr_expect(strstr(msg, "'linear1', 'linear2', 'linear3'") != NULL, "%s", msg);
  st = lh_model_hook(m, "td_module.module.linear4", false, LH_HOOK_FWD,
                     (lh_hook_spec){noop, NULL, NULL}, &h);
  cr_expect_eq(st, LH_ERR_KEY);
  cr_expect(strstr(lh_error_message(), "'td_module.module.linear1'") != NULL, "%s",
            lh_error_message());
  /* a relative name in absolute mode, and the other way round */
  st = lh_model_hook(m, "linear1", false, LH_HOOK_FWD, (lh_hook_spec){noop, NULL, NULL}, &h);
  cr_expect_eq(st, LH_ERR_KEY);
  cr_expect(strstr(lh_error_message(), "relative = true") != NULL, "%s", lh_error_message());
  st = lh_model_hook(m, "td_module.module.linear1", true, LH_HOOK_FWD,
                     (lh_hook_spec){noop, NULL, NULL}, &h);
  cr_expect_eq(st, LH_ERR_KEY);
  cr_expect(strstr(lh_error_message(), "relative = false") != NULL, "%s", lh_error_message());
  st = lh_model_hook(m, "td_module.module.", false, LH_HOOK_FWD, (lh_hook_spec){noop, NULL, NULL},
                     &h);
  cr_expect_eq(st, LH_ERR_KEY);
  st = lh_model_hook(m, "linear1", true, LH_HOOK_FWD, (lh_hook_spec){NULL, NULL, NULL}, &h);
  cr_expect_eq(st, LH_ERR_VALUE);
  cr_expect_null(h);
  lh_model_destroy(&m);
}

static lh_status fail_hook(const lh_hook_event *ev, void *user) {
  (void)ev;
  (void)user;
  return lh_error_set(LH_ERR_RUNTIME, __FILE__, __LINE__, "probe not fitted");
}

static lh_status silent_fail(const lh_hook_event *ev, void *user) {
  (void)ev;
  (void)user;
  return LH_ERR_TYPE;
}

Test(hook_errors, a_failing_hook_stops_the_forward) {
  lh_model *m = load(MLP);
  int freed = 0;
  counted after = {0, &freed};
  lh_hook_handle *h1 = NULL, *h2 = NULL;
  cr_assert_eq(
      lh_model_hook(m, "linear2", true, LH_HOOK_FWD, (lh_hook_spec){fail_hook, NULL, NULL}, &h1),
      LH_OK);
  cr_assert_eq(lh_model_hook(m, "linear3", true, LH_HOOK_FWD_PRE,
                             (lh_hook_spec){count_fire, &after, count_free}, &h2),
               LH_OK);
  nn_arr in = nn_h5_read(NN_DIR "/mlp/data.h5", "/inputs");
  lh_tensor x = nn_tensor(&in), y = {0};
  lh_status st = lh_model_forward(m, &x, &y);
  cr_expect_eq(st, LH_ERR_RUNTIME);
  cr_expect_str_eq(lh_error_message(), "fwd hook on module 'linear2': probe not fitted");
  cr_expect_eq(after.fired, 0);
  cr_expect_null(y.data);
  lh_hook_remove(&h1);
  cr_assert_eq(lh_model_hook(m, "activation", true, LH_HOOK_FWD_PRE,
                             (lh_hook_spec){silent_fail, NULL, NULL}, &h1),
               LH_OK);
  st = lh_model_forward(m, &x, &y);
  cr_expect_eq(st, LH_ERR_TYPE);
  cr_expect(strstr(lh_error_message(), "fwd_pre hook on module 'activation' failed") != NULL, "%s",
            lh_error_message());
  lh_hook_remove(&h1);
  cr_expect_eq(lh_model_forward(m, &x, &y), LH_OK); /* usable again */
  cr_expect_eq(after.fired, 1);
  free(in.data);
  lh_model_destroy(&m);
  cr_expect_eq(freed, 1);
}

typedef struct reenter {
  lh_model *m;
  lh_status hook_st, fwd_st;
} reenter;

static lh_status reenter_hook(const lh_hook_event *ev, void *user) {
  reenter *r = user;
  lh_hook_handle *h = NULL;
  r->hook_st =
      lh_model_hook(r->m, "linear1", true, LH_HOOK_FWD, (lh_hook_spec){noop, NULL, NULL}, &h);
  lh_tensor y;
  r->fwd_st = lh_model_forward(r->m, ev->tensor, &y);
  lh_error_clear();
  return LH_OK;
}

Test(hook_errors, no_registration_or_forward_from_a_hook) {
  lh_model *m = load(MLP);
  reenter r = {m, LH_OK, LH_OK};
  lh_hook_handle *h = NULL;
  cr_assert_eq(lh_model_hook(m, "td_module", false, LH_HOOK_FWD_PRE,
                             (lh_hook_spec){reenter_hook, &r, NULL}, &h),
               LH_OK);
  run(m, "mlp");
  cr_expect_eq(r.hook_st, LH_ERR_RUNTIME);
  cr_expect_eq(r.fwd_st, LH_ERR_RUNTIME);
  lh_hook_remove(&h);
  lh_model_destroy(&m);
}

Test(hook_dir, names) {
  cr_expect_str_eq(lh_hook_dir_name(LH_HOOK_FWD), "fwd");
  cr_expect_str_eq(lh_hook_dir_name(LH_HOOK_FWD_PRE), "fwd_pre");
  lh_hook_dir d = LH_HOOK_FWD;
  cr_expect_eq(lh_hook_dir_parse("fwd_pre", &d), LH_OK);
  cr_expect_eq(d, LH_HOOK_FWD_PRE);
  cr_expect_eq(lh_hook_dir_parse("fwd", &d), LH_OK);
  cr_expect_eq(d, LH_HOOK_FWD);
  cr_expect_eq(lh_hook_dir_parse("bwd", &d), LH_ERR_VALUE);
  cr_expect(strstr(lh_error_message(), "Invalid direction: bwd") != NULL);
  cr_expect_eq(d, LH_HOOK_FWD);
}

/* --- GPT-2 attention probabilities ------------------------------------------------------------ */

static lh_status identity_probs(const lh_hook_event *ev, void *user) {
  (void)user;
  lh_tensor *t = ev->tensor; /* (B, NH, T, T) */
  cr_assert_eq(t->ndim, 4);
  int64_t T = t->shape[3];
  for (int64_t i = 0; i < lh_tensor_numel(t); i++) {
    int64_t col = i % T, row = (i / T) % T;
    cr_expect(col <= row || t->data[i] == 0.0f, "probability above the diagonal");
    t->data[i] = row == col ? 1.0f : 0.0f;
  }
  return LH_OK;
}

Test(hook_gpt2, replacing_attention_probabilities) {
  /* with identity probabilities each position attends to itself only: the input of c_proj
   * is the value part of c_attn's output */
  lh_model *m = load(NN_DIR "/gpt2");
  keep qkv = {0}, mixed = {0};
  lh_hook_handle *h[3] = {0};
  cr_assert_eq(lh_model_hook(m, "transformer.h.1.attn.attn_dropout", true, LH_HOOK_FWD_PRE,
                             (lh_hook_spec){identity_probs, NULL, NULL}, &h[0]),
               LH_OK);
  cr_assert_eq(lh_model_hook(m, "transformer.h.1.attn.c_attn", true, LH_HOOK_FWD,
                             (lh_hook_spec){keep_view, &qkv, NULL}, &h[1]),
               LH_OK);
  cr_assert_eq(lh_model_hook(m, "transformer.h.1.attn.c_proj", true, LH_HOOK_FWD_PRE,
                             (lh_hook_spec){keep_view, &mixed, NULL}, &h[2]),
               LH_OK);
  run(m, "gpt2");
  int64_t C = 48, BT = 5 * 16;
  cr_assert_eq(mixed.view.shape[2], C);
  double maxd = 0;
  for (int64_t r = 0; r < BT; r++)
    for (int64_t c = 0; c < C; c++)
      maxd = fmax(maxd, fabs(mixed.copy[r * C + c] - qkv.copy[r * 3 * C + 2 * C + c]));
  cr_expect_leq(maxd, 1e-6, "max diff %g", maxd);
  for (int i = 0; i < 3; i++) lh_hook_remove(&h[i]);
  free(qkv.copy);
  free(mixed.copy);
  lh_model_destroy(&m);
}

/* --- tdhook paths --------------------------------------------------------------------------- */

static lh_status name_of(const lh_hook_event *ev, void *user) {
  seen *s = user;
  snprintf(s->name, sizeof s->name, "%s", ev->name);
  snprintf(s->type, sizeof s->type, "%s", ev->type);
  s->calls[0]++;
  return LH_OK;
}

/* Hooks `path` and returns (in s) what fired, after one forward. */
static void hook_path(lh_model *m, const char *model, const char *path, bool relative, seen *s) {
  lh_hook_handle *h = NULL;
  memset(s, 0, sizeof *s);
  lh_status st =
      lh_model_hook(m, path, relative, LH_HOOK_FWD, (lh_hook_spec){name_of, s, NULL}, &h);
  cr_assert_eq(st, LH_OK, "'%s': %s", path, lh_error_message());
  run(m, model);
  lh_hook_remove(&h);
}

Test(hook_paths, index_literal_and_dots) {
  lh_model *m = load(NN_DIR "/gpt2");
  static const struct {
    const char *path;
    bool relative;
    const char *type;
  } ok[] = {
      {"transformer.h[1].attn", true, "GPT2Attention"},
      {"transformer.h[-1].mlp.act", true, "NewGELUActivation"},
      {"transformer.h[-2]", true, "GPT2Block"},
      {"<transformer>.<h>.<0>.ln_1", true, "LayerNorm"},
      {".transformer..h.0.", true, "GPT2Block"},
      {"td_module.module.transformer.h[1]", false, "GPT2Block"},
  };
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    seen s;
    hook_path(m, "gpt2", ok[i].path, ok[i].relative, &s);
    cr_expect_eq(s.calls[0], 1, "%s fired %d times", ok[i].path, s.calls[0]);
    cr_expect_str_eq(s.name, ok[i].path); /* the name as registered */
    cr_expect_str_eq(s.type, ok[i].type, "%s", ok[i].path);
  }
  static const char *const bad[] = {"transformer.h[2]", "transformer.h[-3]",
                                    "transformer[0]",   "transformer.h[x]",
                                    "<transformer",     "transformer.h.0.attn[0]"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    lh_hook_handle *h = NULL;
    cr_expect_eq(lh_model_hook(m, bad[i], true, LH_HOOK_FWD, (lh_hook_spec){noop, NULL, NULL}, &h),
                 LH_ERR_KEY, "%s", bad[i]);
    cr_expect_null(h);
  }
  lh_model_destroy(&m);
  /* a YAML Sequential indexes its named children */
  m = load(NN_DIR "/mix/model.yaml");
  seen s;
  hook_path(m, "mix", "block[-1]", true, &s);
  cr_expect_str_eq(s.type, "Linear");
  cr_expect_eq(s.calls[0], 1);
  lh_model_destroy(&m);
}

/* tdhook's stopping hook: the forward ends right after the chosen call of a module. In the
 * MLP (linear1, activation, linear2, activation, linear3) stopping after activation's first
 * call leaves linear2, the second activation and linear3 unrun. */
Test(hook_stop, forward_stops_after_the_chosen_call) {
  lh_model *m = load(MLP);
  tagger t = {"fwd"};
  lh_hook_handle *h = NULL;
  int64_t n = 0;
  cr_assert_eq(
      lh_model_hook_pattern(m, "", true, LH_HOOK_FWD, (lh_hook_spec){log_hook, &t, NULL}, &h, &n),
      LH_OK);
  g_log[0] = '\0';
  lh_model_stop_after(m, lh_model_module_find(m, "activation"), 0);
  lh_tensor y = run(m, "mlp");
  cr_expect_eq(y.ndim, 0, "an early-stopped forward has no output");
  cr_expect_str_eq(g_log, "fwd:linear1:0;fwd:activation:0;");
  g_log[0] = '\0';
  lh_model_stop_after(m, lh_model_module_find(m, "activation"), 1);
  run(m, "mlp");
  cr_expect_str_eq(g_log, "fwd:linear1:0;fwd:activation:0;fwd:linear2:0;fwd:activation:1;");
  g_log[0] = '\0';
  lh_model_stop_after(m, -1, 0);
  y = run(m, "mlp");
  cr_expect_eq(y.ndim, 2);
  cr_expect_str_eq(g_log,
                   "fwd:linear1:0;fwd:activation:0;fwd:linear2:0;fwd:activation:1;"
                   "fwd:linear3:0;");
  lh_hook_remove(&h);
  lh_model_destroy(&m);
}
