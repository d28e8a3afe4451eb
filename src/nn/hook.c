/*
 * hook.c: registering, firing and removing hooks on the modules of a model (hook.h, model.h).
 *
 * This is torch's register_forward_hook / register_forward_pre_hook plus tdhook's
 * MultiHookManager (SPEC 1.4, 1.6): a hook is registered on one module by name, or on every
 * module whose name re.match()es a pattern (PCRE2, anchored at offset 0 only, which is
 * Python's re.match), seen either from the user's model (relative names: "linear2") or from
 * tdhook's HookedModule around it (absolute names: "td_module", "td_module.module",
 * "td_module.module.linear2"; SPEC 1.2, TV-16). The relative root "" can be hooked by name but
 * a pattern never selects it, as MultiHookManager skips the root of its walk. A name may also
 * be one of tdhook's paths ("h[0]", "h[-1]", "<h>.<0>"); ev->name is then the path as given.
 *
 * Each module has one list of hooks per direction, in registration order; the wrapper
 * "td_module" has its own slot after the last module. A handle owns the entries it registered
 * (one per matched module) and removes them all at once, in any order relative to other
 * handles; its user data is released exactly once, when the handle goes. A handle removed by
 * a hook while a forward runs stops firing at once and is released when the forward ends.
 * Handles still registered when the model is destroyed are released with it.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pcre2.h>

#include "core/check.h"
#include "latenthook/mem.h"
#include "nn/module.h"

#define ABS_WRAPPER "td_module"
#define ABS_ROOT "td_module.module"
#define WRAPPER_TYPE "TensorDictModule"

struct lh_hook_entry {
  lh_hook_handle *owner;
  char *name; /* as registered: relative or absolute */
  int64_t slot;
  lh_hook_dir dir;
};

struct lh_hook_handle {
  lh_model *model;
  lh_hook_spec spec;
  lh_hook_entry *e; /* n entries */
  int64_t n;
  int64_t live; /* index in model->handles */
  bool dead;    /* removed during a forward; released by lh_hook_reap */
};

const char *lh_hook_dir_name(lh_hook_dir d) {
  switch (d) {
    case LH_HOOK_FWD:
      return "fwd";
    case LH_HOOK_FWD_PRE:
      return "fwd_pre";
  }
  return "?";
}

lh_status lh_hook_dir_parse(const char *s, lh_hook_dir *out) {
  if (s && strcmp(s, "fwd") == 0) {
    *out = LH_HOOK_FWD;
    return LH_OK;
  }
  if (s && strcmp(s, "fwd_pre") == 0) {
    *out = LH_HOOK_FWD_PRE;
    return LH_OK;
  }
  return LH_ERROR(LH_ERR_VALUE, "Invalid direction: %s (supported: fwd, fwd_pre)",
                  s ? s : "(null)");
}

static lh_hook_list *list_of(const lh_model *m, int64_t slot, lh_hook_dir dir) {
  return &m->hooks[2 * slot + (int)dir];
}

bool lh_hook_any(const lh_model *m, int64_t slot, lh_hook_dir dir) {
  return list_of(m, slot, dir)->n > 0;
}

lh_status lh_hook_fire(lh_model *m, int64_t slot, lh_hook_dir dir, lh_tensor *t, int call) {
  const lh_hook_list *L = list_of(m, slot, dir);
  const char *type = slot == m->nmod ? WRAPPER_TYPE : m->mod[slot].type;
  for (int64_t i = 0; i < L->n; i++) {
    const lh_hook_entry *e = L->e[i];
    const lh_hook_handle *h = e->owner;
    if (h->dead) continue;
    /* each hook gets its own copy of the view: it may write the data, not redirect it */
    lh_tensor view = *t;
    lh_hook_event ev = {
        .name = e->name, .type = type, .dir = dir, .tensor = &view, .row0 = m->row0, .call = call};
    if (lh_error_pending()) lh_error_clear(); /* a stale message must not pose as the hook's */
    lh_status st = h->spec.fn(&ev, h->spec.user);
    if (st != LH_OK) {
      if (lh_error_pending())
        lh_error_prefix("%s hook on module '%s': ", lh_hook_dir_name(dir), e->name);
      else
        LH_ERROR(st, "%s hook on module '%s' failed (%s)", lh_hook_dir_name(dir), e->name,
                 lh_status_name(st));
      return st;
    }
  }
  return LH_OK;
}

/* --- registration -------------------------------------------------------------------------- */

/* Grows a hook list to hold at least `need` entries. */
static lh_status list_reserve(lh_hook_list *L, int64_t need) {
  if (need <= L->cap) return LH_OK;
  int64_t nc = L->cap ? 2 * L->cap : 4;
  while (nc < need) nc *= 2;
  lh_hook_entry **p = NULL;
  lh_status st = lh_alloc((size_t)nc, sizeof *p, false, "hook list", &p);
  if (st != LH_OK) return st;
  if (L->n) memcpy(p, L->e, (size_t)L->n * sizeof *p);
  lh_free(L->e);
  L->e = p;
  L->cap = nc;
  return LH_OK;
}

static void handle_free(lh_hook_handle *h) {
  if (!h) return;
  for (int64_t i = 0; i < h->n; i++) lh_free(h->e[i].name);
  lh_free(h->e);
  lh_free(h);
}

/* Registers `spec` on the `n` slots with the given names; one handle for all. */
static lh_status register_slots(lh_model *m, const int64_t *slot, const char *const *name,
                                int64_t n, lh_hook_dir dir, lh_hook_spec spec,
                                lh_hook_handle **out) {
  lh_status st = LH_OK;
  lh_hook_handle *h = NULL;
  LH_TRY(lh_alloc(1, sizeof *h, true, "hook handle", &h));
  h->model = m;
  h->spec = spec;
  LH_TRY(lh_alloc((size_t)n, sizeof *h->e, true, "hook entries", &h->e));
  for (int64_t i = 0; i < n; i++) {
    size_t len = strlen(name[i]);
    LH_TRY(lh_alloc(len + 1, 1, false, "hook name", &h->e[i].name));
    memcpy(h->e[i].name, name[i], len + 1);
    h->e[i].owner = h;
    h->e[i].slot = slot[i];
    h->e[i].dir = dir;
    h->n = i + 1;
  }
  /* reserve everything first so that nothing can fail half-registered */
  for (int64_t i = 0; i < n; i++) {
    lh_hook_list *L = list_of(m, slot[i], dir);
    LH_TRY(list_reserve(L, L->n + 1));
  }
  if (m->nhandles + 1 > m->caphandles) {
    int64_t nc = m->caphandles ? 2 * m->caphandles : 8;
    lh_hook_handle **p = NULL;
    LH_TRY(lh_alloc((size_t)nc, sizeof *p, false, "hook handles", &p));
    if (m->nhandles) memcpy(p, m->handles, (size_t)m->nhandles * sizeof *p);
    lh_free(m->handles);
    m->handles = p;
    m->caphandles = nc;
  }
  for (int64_t i = 0; i < n; i++) {
    lh_hook_list *L = list_of(m, slot[i], dir);
    L->e[L->n++] = &h->e[i];
  }
  h->live = m->nhandles;
  m->handles[m->nhandles++] = h;
  *out = h;
  h = NULL;
done:
  handle_free(h);
  return st;
}

static lh_status check_spec(const lh_model *m, lh_hook_dir dir, lh_hook_spec spec) {
  if (!spec.fn) return LH_ERROR(LH_ERR_VALUE, "hook without a function");
  if (dir != LH_HOOK_FWD && dir != LH_HOOK_FWD_PRE)
    return LH_ERROR(LH_ERR_VALUE, "Invalid direction: %d", (int)dir);
  if (m->in_forward)
    return LH_ERROR(LH_ERR_RUNTIME, "hooks cannot be registered while a forward runs");
  return LH_OK;
}

/* Names of every hookable slot in the given mode, in named_modules() order: relative mode
 * lists modules 1.. (not the root), absolute mode the wrapper, the root and then modules 1..
 * *slot receives the slot of each. Strings are allocated in one block (*block). */
static lh_status slot_names(const lh_model *m, bool relative, char ***names, int64_t **slots,
                            int64_t *count, char **block) {
  lh_status st = LH_OK;
  char **nm = NULL, *blk = NULL;
  int64_t *sl = NULL;
  int64_t n = relative ? m->nmod - 1 : m->nmod + 1;
  size_t bytes = 0, prefix = strlen(ABS_ROOT ".");
  for (int64_t i = 1; i < m->nmod; i++)
    bytes += strlen(m->mod[i].name) + 1 + (relative ? 0 : prefix);
  bytes += sizeof ABS_WRAPPER + sizeof ABS_ROOT;
  LH_TRY(lh_alloc((size_t)(n > 0 ? n : 1), sizeof *nm, false, "module names", &nm));
  LH_TRY(lh_alloc((size_t)(n > 0 ? n : 1), sizeof *sl, false, "module slots", &sl));
  LH_TRY(lh_alloc(bytes, 1, false, "module names", &blk));
  {
    char *w = blk;
    int64_t k = 0;
    if (!relative) {
      nm[k] = w;
      sl[k++] = m->nmod;
      w += sprintf(w, "%s", ABS_WRAPPER) + 1;
      nm[k] = w;
      sl[k++] = 0;
      w += sprintf(w, "%s", ABS_ROOT) + 1;
    }
    for (int64_t i = 1; i < m->nmod; i++) {
      nm[k] = w;
      sl[k++] = i;
      w += sprintf(w, "%s%s", relative ? "" : ABS_ROOT ".", m->mod[i].name) + 1;
    }
  }
  *names = nm;
  *slots = sl;
  *count = n;
  *block = blk;
  nm = NULL;
  sl = NULL;
  blk = NULL;
done:
  lh_free(nm);
  lh_free(sl);
  lh_free(blk);
  return st;
}

/* The child of module `parent` registered as `attr` (attr has length n), or -1. */
static int64_t child_named(const lh_model *m, int64_t parent, const char *attr, size_t n) {
  const lh_module *p = &m->mod[parent];
  size_t skip = p->name[0] ? strlen(p->name) + 1 : 0;
  for (int64_t c = 0; c < p->nchild; c++) {
    const char *cn = m->mod[p->child[c]].name + skip;
    if (strlen(cn) == n && strncmp(cn, attr, n) == 0) return p->child[c];
  }
  return -1;
}

/* A tdhook path (SPEC 1.1 resolve_submodule_path, the forms a C port supports) walked from
 * the root: dotted names with runs of dots collapsed and outer dots ignored ("h.0"),
 * literal segments "<name>", and indices "[i]" (negative from the end) into a Sequential or
 * ModuleList. The module index, or -1. */
static int64_t resolve_path(const lh_model *m, const char *path) {
  int64_t cur = 0;
  const char *s = path;
  while (*s) {
    if (*s == '.') {
      s++;
      continue;
    }
    if (*s == '<') {
      const char *e = strchr(s + 1, '>');
      if (!e) return -1;
      cur = child_named(m, cur, s + 1, (size_t)(e - s - 1));
      s = e + 1;
    } else if (*s == '[') {
      char *e = NULL;
      long long i = strtoll(s + 1, &e, 10);
      const lh_module *c = &m->mod[cur];
      if (e == s + 1 || *e != ']') return -1;
      if (c->kind != LH_MOD_SEQUENTIAL && c->kind != LH_MOD_MODULELIST) return -1;
      if (i < 0) i += c->nchild;
      if (i < 0 || i >= c->nchild) return -1;
      cur = c->child[i];
      s = e + 1;
    } else {
      size_t n = strcspn(s, ".[<");
      cur = child_named(m, cur, s, n);
      s += n;
    }
    if (cur < 0) return -1;
  }
  return cur;
}

/* The module called `name` (relative): an exact name, else a path. -1 when there is none. */
static int64_t find_module(const lh_model *m, const char *name) {
  int64_t i = lh_model_module_find(m, name);
  return i >= 0 ? i : resolve_path(m, name);
}

/* The slot called `name` in the given mode, or -1. */
static int64_t find_slot(const lh_model *m, const char *name, bool relative) {
  if (relative) return find_module(m, name);
  if (strcmp(name, ABS_WRAPPER) == 0) return m->nmod;
  if (strcmp(name, ABS_ROOT) == 0) return 0;
  size_t k = strlen(ABS_ROOT);
  if (strncmp(name, ABS_ROOT, k) != 0 || (name[k] != '.' && name[k] != '[')) return -1;
  int64_t i = find_module(m, name + k);
  return i > 0 ? i : -1;
}

static lh_status unknown_name(const lh_model *m, const char *name, bool relative) {
  lh_status st = LH_OK;
  char **names = NULL, *block = NULL;
  int64_t *slots = NULL, n = 0;
  char close[1024] = "";
  const char *hint = "";
  LH_TRY(slot_names(m, relative, &names, &slots, &n, &block));
  lh_mod_closest(name, (const char *const *)names, n, 5, close, sizeof close);
  if (relative && strncmp(name, ABS_WRAPPER, strlen(ABS_WRAPPER)) == 0)
    hint = " (this looks like an absolute name: register it with relative = false)";
  else if (!relative && strncmp(name, ABS_WRAPPER, strlen(ABS_WRAPPER)) != 0)
    hint =
        " (absolute names start with 'td_module.module.'; register relative names with "
        "relative = true)";
  st = LH_ERROR(LH_ERR_KEY, "no module named '%s' in %s%s; closest %s names: %s", name, m->path,
                hint, relative ? "relative" : "absolute", close[0] ? close : "(none)");
done:
  lh_free(names);
  lh_free(slots);
  lh_free(block);
  return st;
}

lh_status lh_model_hook(lh_model *m, const char *name, bool relative, lh_hook_dir dir,
                        lh_hook_spec spec, lh_hook_handle **out) {
  lh_status st = LH_OK;
  if (!m || !name || !out) LH_FAIL(LH_ERR_VALUE, "lh_model_hook: NULL argument");
  LH_TRY(check_spec(m, dir, spec));
  int64_t slot = find_slot(m, name, relative);
  if (slot < 0) LH_TRY(unknown_name(m, name, relative));
  LH_TRY(register_slots(m, &slot, &name, 1, dir, spec, out));
done:
  return st;
}

lh_status lh_model_hook_pattern(lh_model *m, const char *pattern, bool relative, lh_hook_dir dir,
                                lh_hook_spec spec, lh_hook_handle **out, int64_t *count) {
  lh_status st = LH_OK;
  pcre2_code *re = NULL;
  pcre2_match_data *md = NULL;
  char **names = NULL, *block = NULL;
  int64_t *slots = NULL, n = 0, k = 0;
  if (!m || !pattern || !out || !count)
    LH_FAIL(LH_ERR_VALUE, "lh_model_hook_pattern: NULL argument");
  LH_TRY(check_spec(m, dir, spec));
  int errcode = 0;
  PCRE2_SIZE erroff = 0;
  re =
      pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, PCRE2_UTF, &errcode, &erroff, NULL);
  if (!re) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(errcode, msg, sizeof msg);
    LH_FAIL(LH_ERR_VALUE, "invalid module pattern '%s': %s at offset %zu", pattern,
            (const char *)msg, (size_t)erroff);
  }
  md = pcre2_match_data_create_from_pattern(re, NULL);
  if (!md) LH_FAIL(LH_ERR_NOMEM, "cannot allocate PCRE2 match data");
  LH_TRY(slot_names(m, relative, &names, &slots, &n, &block));
  for (int64_t i = 0; i < n; i++) {
    /* re.match: anchored at the start, free at the end */
    int rc = pcre2_match(re, (PCRE2_SPTR)names[i], strlen(names[i]), 0, PCRE2_ANCHORED, md, NULL);
    if (rc == PCRE2_ERROR_NOMATCH) continue;
    if (rc < 0) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(rc, msg, sizeof msg);
      LH_FAIL(LH_ERR_RUNTIME, "module pattern '%s' on '%s': %s", pattern, names[i],
              (const char *)msg);
    }
    names[k] = names[i]; /* compact the matches in place, order kept */
    slots[k++] = slots[i];
  }
  LH_TRY(register_slots(m, slots, (const char *const *)names, k, dir, spec, out));
  *count = k;
done:
  pcre2_match_data_free(md);
  pcre2_code_free(re);
  lh_free(names);
  lh_free(slots);
  lh_free(block);
  return st;
}

/* --- removal ------------------------------------------------------------------------------- */

static void finish_remove(lh_hook_handle *h) {
  lh_model *m = h->model;
  for (int64_t i = 0; i < h->n; i++) {
    lh_hook_list *L = list_of(m, h->e[i].slot, h->e[i].dir);
    for (int64_t j = 0; j < L->n; j++)
      if (L->e[j] == &h->e[i]) {
        memmove(&L->e[j], &L->e[j + 1], (size_t)(L->n - j - 1) * sizeof *L->e);
        L->n--;
        break;
      }
  }
  int64_t last = m->nhandles - 1;
  m->handles[h->live] = m->handles[last];
  m->handles[h->live]->live = h->live;
  m->nhandles = last;
  if (h->spec.user_free) h->spec.user_free(h->spec.user);
  handle_free(h);
}

void lh_hook_remove(lh_hook_handle **hp) {
  if (!hp || !*hp) return;
  lh_hook_handle *h = *hp;
  *hp = NULL;
  if (h->model->in_forward) {
    h->dead = true; /* a hook may be running with this handle's data right now */
    return;
  }
  finish_remove(h);
}

void lh_hook_reap(lh_model *m) {
  for (int64_t i = m->nhandles - 1; i >= 0; i--)
    if (m->handles[i]->dead) finish_remove(m->handles[i]);
}

void lh_hook_remove_all(lh_model *m) {
  while (m->nhandles > 0) finish_remove(m->handles[m->nhandles - 1]);
}
