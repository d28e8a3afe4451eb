/*
 * safetensors.c: a validating, memory-mapped safetensors reader (see safetensors.h).
 *
 * A safetensors file is [u64 little-endian n][n bytes of JSON header][data]. Weights are
 * downloaded by users, so the file is untrusted input: this reader checks everything the
 * format promises before handing out a single pointer, in the order a reader of the file
 * would: the size of the file, the header length (at most 100,000,000 bytes, as the
 * reference implementation, and inside the file), the header as a JSON object (jansson,
 * duplicate keys rejected), then each entry (known dtype, shape of at most LH_ST_MAX_DIMS
 * non-negative integers, data_offsets [begin, end] with begin <= end inside the data section,
 * shape x element size equal to end - begin without overflow, no other keys), and finally,
 * with the tensors sorted by begin, that no two non-empty ranges overlap. Gaps between ranges
 * are accepted (the reference writer never leaves any, but nothing is wrong with reading
 * such a file). The first failure found is reported, naming the file, the tensor and what
 * was expected.
 *
 * The file is mapped read-only and the descriptor closed at once: tensor data are pointers
 * into the mapping, valid until lh_safetensors_close. Names and metadata are copied out of
 * the JSON, which is freed before open returns. Lookups by name go through an index of the
 * tensors sorted by name (bsearch); models have a few hundred tensors.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "core/check.h"
#include "latenthook/mem.h"
#include "latenthook/safetensors.h"

/* The reference implementation's bound on the header (safetensors MAX_HEADER_SIZE). */
#define MAX_HEADER_BYTES UINT64_C(100000000)
#define METADATA_KEY "__metadata__"

typedef struct meta_entry {
  const char *key;
  const char *value;
} meta_entry;

struct lh_safetensors {
  char *path;
  const unsigned char *map; /* the whole file, read-only */
  size_t map_len;
  const unsigned char *data; /* the data section: map + 8 + n */
  uint64_t data_len;
  int64_t count;
  lh_st_tensor *tensors;        /* (count) by data offset, ties by name */
  const lh_st_tensor **by_name; /* (count) sorted by strcmp of the names */
  int64_t nmeta;
  meta_entry *meta; /* (nmeta) in header order */
  char *strings;    /* every name, metadata key and value, NUL-terminated */
};

/* The dtypes of the format and their element sizes. t->dtype points into this table. */
static const struct {
  const char *name;
  int size;
} DTYPES[] = {{"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E4M3", 1}, {"F8_E5M2", 1},
              {"I16", 2},  {"U16", 2}, {"F16", 2}, {"BF16", 2},    {"I32", 4},
              {"U32", 4},  {"F32", 4}, {"F64", 8}, {"I64", 8},     {"U64", 8}};
#define NDTYPES ((int)(sizeof DTYPES / sizeof DTYPES[0]))

/* --- small helpers -------------------------------------------------------------------------- */

static uint16_t load_le16(const unsigned char *b) {
  return (uint16_t)(b[0] | b[1] << 8);
}

static uint32_t load_le32(const unsigned char *b) {
  return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static uint64_t load_le64(const unsigned char *b) {
  return (uint64_t)load_le32(b) | (uint64_t)load_le32(b + 4) << 32;
}

static float float_of_bits(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

/* IEEE binary16 -> binary32, exact for every value: normals re-biased, subnormals scaled
 * (mant * 2^-24 is exact in float), signed zeros, infinities and NaN payloads kept. */
static float half_to_float(uint16_t h) {
  uint32_t sign = (uint32_t)(h >> 15) << 31;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t mant = h & 0x3ff;
  if (exp == 0) {
    float mag = (float)mant * 0x1p-24f;
    return sign ? -mag : mag;
  }
  if (exp == 31) return float_of_bits(sign | UINT32_C(0x7f800000) | mant << 13);
  return float_of_bits(sign | (exp + 112) << 23 | mant << 13);
}

static const char *json_kind(const json_t *v) {
  switch (json_typeof(v)) {
    case JSON_OBJECT:
      return "object";
    case JSON_ARRAY:
      return "array";
    case JSON_STRING:
      return "string";
    case JSON_INTEGER:
      return "integer";
    case JSON_REAL:
      return "real number";
    case JSON_TRUE:
    case JSON_FALSE:
      return "boolean";
    case JSON_NULL:
      return "null";
  }
  return "value";
}

/* "[48, 144]" (or "[]" for a scalar). */
static const char *format_shape(char *buf, size_t cap, const int64_t *shape, int ndim) {
  size_t len = (size_t)snprintf(buf, cap, "[");
  for (int i = 0; i < ndim && len < cap; i++)
    len += (size_t)snprintf(buf + len, cap - len, "%s%" PRId64, i ? ", " : "", shape[i]);
  if (len < cap) snprintf(buf + len, cap - len, "]");
  return buf;
}

static int find_dtype(const char *name) {
  for (int i = 0; i < NDTYPES; i++)
    if (strcmp(DTYPES[i].name, name) == 0) return i;
  return -1;
}

/* A non-negative JSON integer, or an error naming what it is. */
static lh_status get_index(const char *path, const char *tensor, const char *what, size_t i,
                           const json_t *v, uint64_t *out) {
  if (!json_is_integer(v))
    return LH_ERROR(LH_ERR_VALUE,
                    "%s: tensor \"%s\": %s[%zu] is a JSON %s, expected a non-negative integer",
                    path, tensor, what, i, json_kind(v));
  json_int_t x = json_integer_value(v);
  if (x < 0)
    return LH_ERROR(LH_ERR_VALUE,
                    "%s: tensor \"%s\": %s[%zu] is %lld, expected a non-negative integer", path,
                    tensor, what, i, (long long)x);
  *out = (uint64_t)x;
  return LH_OK;
}

/* --- one header entry ----------------------------------------------------------------------- */

/* Validates the entry `name` -> `v` against a data section of data_len bytes and fills *t
 * (t->name is left to the caller). On error *t may be partly written. */
static lh_status parse_entry(const char *path, const char *name, json_t *v,
                             const unsigned char *data, uint64_t data_len, lh_st_tensor *t) {
  lh_status st = LH_OK;
  if (!json_is_object(v))
    LH_FAIL(LH_ERR_VALUE,
            "%s: tensor \"%s\": entry is a JSON %s, expected an object with \"dtype\", "
            "\"shape\" and \"data_offsets\"",
            path, name, json_kind(v));

  const char *key;
  json_t *val;
  json_object_foreach(v, key, val) {
    if (strcmp(key, "dtype") != 0 && strcmp(key, "shape") != 0 && strcmp(key, "data_offsets") != 0)
      LH_FAIL(LH_ERR_VALUE,
              "%s: tensor \"%s\": unknown key \"%s\" (expected only \"dtype\", \"shape\" and "
              "\"data_offsets\")",
              path, name, key);
  }

  /* dtype */
  json_t *jd = json_object_get(v, "dtype");
  if (!jd) LH_FAIL(LH_ERR_VALUE, "%s: tensor \"%s\": missing \"dtype\"", path, name);
  if (!json_is_string(jd))
    LH_FAIL(LH_ERR_VALUE, "%s: tensor \"%s\": \"dtype\" is a JSON %s, expected a string", path,
            name, json_kind(jd));
  int d = find_dtype(json_string_value(jd));
  if (d < 0) {
    char list[256];
    size_t len = 0;
    for (int i = 0; i < NDTYPES; i++)
      len += (size_t)snprintf(list + len, sizeof list - len, "%s%s", i ? ", " : "", DTYPES[i].name);
    LH_FAIL(LH_ERR_VALUE, "%s: tensor \"%s\": unknown dtype \"%s\" (expected one of %s)", path,
            name, json_string_value(jd), list);
  }
  t->dtype = DTYPES[d].name;
  t->elem_size = DTYPES[d].size;

  /* shape */
  json_t *js = json_object_get(v, "shape");
  if (!js) LH_FAIL(LH_ERR_VALUE, "%s: tensor \"%s\": missing \"shape\"", path, name);
  if (!json_is_array(js))
    LH_FAIL(LH_ERR_VALUE,
            "%s: tensor \"%s\": \"shape\" is a JSON %s, expected an array of non-negative "
            "integers",
            path, name, json_kind(js));
  size_t ndim = json_array_size(js);
  if (ndim > LH_ST_MAX_DIMS)
    LH_FAIL(LH_ERR_VALUE, "%s: tensor \"%s\": shape has %zu dimensions, at most %d supported", path,
            name, ndim, LH_ST_MAX_DIMS);
  t->ndim = (int)ndim;
  bool has_zero = false;
  for (size_t i = 0; i < ndim; i++) {
    uint64_t x;
    LH_TRY(get_index(path, name, "shape", i, json_array_get(js, i), &x));
    t->shape[i] = (int64_t)x; /* x <= LLONG_MAX: it came from a json_int_t */
    if (x == 0) has_zero = true;
  }
  for (size_t i = ndim; i < LH_ST_MAX_DIMS; i++) t->shape[i] = 0;

  /* data_offsets */
  json_t *jo = json_object_get(v, "data_offsets");
  if (!jo) LH_FAIL(LH_ERR_VALUE, "%s: tensor \"%s\": missing \"data_offsets\"", path, name);
  if (!json_is_array(jo))
    LH_FAIL(LH_ERR_VALUE, "%s: tensor \"%s\": \"data_offsets\" is a JSON %s, expected [begin, end]",
            path, name, json_kind(jo));
  if (json_array_size(jo) != 2)
    LH_FAIL(LH_ERR_VALUE,
            "%s: tensor \"%s\": \"data_offsets\" has %zu elements, expected [begin, end]", path,
            name, json_array_size(jo));
  uint64_t begin, end;
  LH_TRY(get_index(path, name, "data_offsets", 0, json_array_get(jo, 0), &begin));
  LH_TRY(get_index(path, name, "data_offsets", 1, json_array_get(jo, 1), &end));
  if (end < begin)
    LH_FAIL(LH_ERR_VALUE,
            "%s: tensor \"%s\": data_offsets [%" PRIu64 ", %" PRIu64 "]: end is before begin", path,
            name, begin, end);
  if (end > data_len)
    LH_FAIL(LH_ERR_VALUE,
            "%s: tensor \"%s\": data_offsets [%" PRIu64 ", %" PRIu64
            "] extend past the data section of %" PRIu64 " bytes",
            path, name, begin, end, data_len);

  /* numel x elem_size == end - begin. A zero dimension makes the tensor empty whatever the
   * others are, so it is not an overflow. */
  char sbuf[256];
  uint64_t numel = 1, nbytes;
  if (has_zero) {
    numel = 0;
  } else {
    for (int i = 0; i < t->ndim; i++) {
      uint64_t x = (uint64_t)t->shape[i];
      if (numel > (uint64_t)INT64_MAX / x)
        LH_FAIL(LH_ERR_VALUE, "%s: tensor \"%s\": shape %s has more than 2^63 elements", path, name,
                format_shape(sbuf, sizeof sbuf, t->shape, t->ndim));
      numel *= x;
    }
  }
  if (numel > SIZE_MAX / (uint64_t)t->elem_size)
    LH_FAIL(LH_ERR_VALUE, "%s: tensor \"%s\": shape %s x %s overflows a byte count", path, name,
            format_shape(sbuf, sizeof sbuf, t->shape, t->ndim), t->dtype);
  nbytes = numel * (uint64_t)t->elem_size;
  if (nbytes != end - begin)
    LH_FAIL(LH_ERR_VALUE,
            "%s: tensor \"%s\": shape %s x %s is %" PRIu64 " bytes but data_offsets span %" PRIu64,
            path, name, format_shape(sbuf, sizeof sbuf, t->shape, t->ndim), t->dtype, nbytes,
            end - begin);
  t->numel = (int64_t)numel;
  t->nbytes = (size_t)nbytes;
  t->data = data + begin;
done:
  return st;
}

/* --- ordering ------------------------------------------------------------------------------- */

static int by_offset(const void *pa, const void *pb) {
  const lh_st_tensor *a = pa, *b = pb;
  const unsigned char *da = a->data, *db = b->data;
  if (da != db) return da < db ? -1 : 1;
  return strcmp(a->name, b->name);
}

static int by_name(const void *pa, const void *pb) {
  const lh_st_tensor *const *a = pa, *const *b = pb;
  return strcmp((*a)->name, (*b)->name);
}

static int name_vs_tensor(const void *key, const void *elem) {
  const lh_st_tensor *const *t = elem;
  return strcmp((const char *)key, (*t)->name);
}

/* --- public --------------------------------------------------------------------------------- */

lh_status lh_safetensors_open(const char *path, lh_safetensors **out) {
  lh_status st = LH_OK;
  int fd = -1;
  void *map = MAP_FAILED;
  size_t map_len = 0;
  json_t *root = NULL;
  lh_safetensors *s = NULL;

  fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) LH_FAIL(LH_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
  struct stat sb;
  if (fstat(fd, &sb) != 0) LH_FAIL(LH_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
  if (!S_ISREG(sb.st_mode)) LH_FAIL(LH_ERR_IO, "%s: not a regular file", path);
  uint64_t file_len = (uint64_t)sb.st_size;
  if (file_len < 8)
    LH_FAIL(LH_ERR_VALUE,
            "%s: file of %" PRIu64
            " bytes is too short for a safetensors file (expected at "
            "least the 8-byte header length)",
            path, file_len);
  if (file_len > SIZE_MAX)
    LH_FAIL(LH_ERR_IO, "%s: file of %" PRIu64 " bytes cannot be mapped", path, file_len);
  map_len = (size_t)file_len;
  map = mmap(NULL, map_len, PROT_READ, MAP_PRIVATE, fd, 0);
  if (map == MAP_FAILED) LH_FAIL(LH_ERR_IO, "%s: cannot map: %s", path, strerror(errno));
  close(fd);
  fd = -1;

  const unsigned char *bytes = map;
  uint64_t n = load_le64(bytes);
  if (n > MAX_HEADER_BYTES)
    LH_FAIL(LH_ERR_VALUE,
            "%s: header length %" PRIu64 " exceeds the limit of %" PRIu64
            " bytes (not a safetensors file?)",
            path, n, MAX_HEADER_BYTES);
  if (n > file_len - 8)
    LH_FAIL(LH_ERR_VALUE,
            "%s: header length %" PRIu64 " runs past the end of the file (%" PRIu64
            " bytes follow the 8-byte length)",
            path, n, file_len - 8);
  const unsigned char *data = bytes + 8 + n;
  uint64_t data_len = file_len - 8 - n;

  json_error_t jerr;
  root = json_loadb((const char *)bytes + 8, (size_t)n, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY,
                    &jerr);
  if (!root)
    LH_FAIL(LH_ERR_VALUE, "%s: header is not valid JSON: %s (line %d, column %d)", path, jerr.text,
            jerr.line, jerr.column);
  if (!json_is_object(root))
    LH_FAIL(LH_ERR_VALUE, "%s: header is a JSON %s, expected an object", path, json_kind(root));

  /* Sizes first, so that everything lives in four allocations. */
  json_t *jmeta = json_object_get(root, METADATA_KEY);
  if (jmeta && !json_is_object(jmeta))
    LH_FAIL(LH_ERR_VALUE, "%s: \"" METADATA_KEY "\" is a JSON %s, expected an object of strings",
            path, json_kind(jmeta));
  size_t nmeta = jmeta ? json_object_size(jmeta) : 0;
  size_t count = json_object_size(root) - (jmeta ? 1 : 0);
  size_t strings_len = 1;
  const char *key;
  json_t *val;
  json_object_foreach(root, key, val) {
    if (val != jmeta) strings_len += strlen(key) + 1;
  }
  if (jmeta) {
    json_object_foreach(jmeta, key, val) {
      if (!json_is_string(val))
        LH_FAIL(LH_ERR_VALUE,
                "%s: \"" METADATA_KEY "\" entry \"%s\" is a JSON %s, expected a string", path, key,
                json_kind(val));
      strings_len += strlen(key) + 1 + json_string_length(val) + 1;
    }
  }

  LH_TRY(lh_alloc(1, sizeof *s, true, "safetensors reader", &s));
  LH_TRY(lh_alloc(strlen(path) + 1, 1, false, "safetensors path", &s->path));
  memcpy(s->path, path, strlen(path) + 1);
  LH_TRY(lh_alloc(count, sizeof *s->tensors, true, "safetensors tensor table", &s->tensors));
  LH_TRY(lh_alloc(count, sizeof *s->by_name, false, "safetensors name index", &s->by_name));
  LH_TRY(lh_alloc(nmeta, sizeof *s->meta, false, "safetensors metadata", &s->meta));
  LH_TRY(lh_alloc(strings_len, 1, false, "safetensors names", &s->strings));

  char *p = s->strings;
  size_t i = 0;
  json_object_foreach(root, key, val) {
    if (val == jmeta) continue;
    lh_st_tensor *t = &s->tensors[i++];
    size_t kl = strlen(key) + 1;
    memcpy(p, key, kl);
    t->name = p;
    p += kl;
    LH_TRY(parse_entry(path, t->name, val, data, data_len, t));
  }
  if (jmeta) {
    size_t m = 0;
    json_object_foreach(jmeta, key, val) {
      size_t kl = strlen(key) + 1, vl = json_string_length(val) + 1;
      memcpy(p, key, kl);
      s->meta[m].key = p;
      p += kl;
      memcpy(p, json_string_value(val), vl); /* no NUL inside: JSON_ALLOW_NUL is off */
      s->meta[m].value = p;
      p += vl;
      m++;
    }
  }

  /* In file order; then no two non-empty ranges may overlap. `last` is the non-empty tensor
   * reaching furthest so far. */
  qsort(s->tensors, count, sizeof *s->tensors, by_offset);
  const lh_st_tensor *last = NULL;
  for (i = 0; i < count; i++) {
    const lh_st_tensor *t = &s->tensors[i];
    if (t->nbytes == 0) continue;
    const unsigned char *tb = t->data;
    if (last && tb < (const unsigned char *)last->data + last->nbytes) {
      uint64_t b0 = (uint64_t)((const unsigned char *)last->data - data), b1 = b0 + last->nbytes;
      uint64_t c0 = (uint64_t)(tb - data), c1 = c0 + t->nbytes;
      LH_FAIL(LH_ERR_VALUE,
              "%s: tensor \"%s\": data_offsets [%" PRIu64 ", %" PRIu64
              "] overlap those of tensor \"%s\" [%" PRIu64 ", %" PRIu64
              "] (expected disjoint ranges)",
              path, t->name, c0, c1, last->name, b0, b1);
    }
    if (!last || tb + t->nbytes > (const unsigned char *)last->data + last->nbytes) last = t;
  }
  for (i = 0; i < count; i++) s->by_name[i] = &s->tensors[i];
  qsort(s->by_name, count, sizeof *s->by_name, by_name);

  s->map = map;
  s->map_len = map_len;
  s->data = data;
  s->data_len = data_len;
  s->count = (int64_t)count;
  s->nmeta = (int64_t)nmeta;
  map = MAP_FAILED; /* owned by s now */
  *out = s;
  s = NULL;
done:
  json_decref(root);
  if (fd >= 0) close(fd);
  if (map != MAP_FAILED) munmap(map, map_len);
  lh_safetensors_close(&s);
  return st;
}

void lh_safetensors_close(lh_safetensors **ps) {
  if (!ps || !*ps) return;
  lh_safetensors *s = *ps;
  if (s->map) munmap((void *)s->map, s->map_len);
  lh_free(s->strings);
  lh_free(s->meta);
  lh_free(s->by_name);
  lh_free(s->tensors);
  lh_free(s->path);
  lh_free(s);
  *ps = NULL;
}

int64_t lh_safetensors_count(const lh_safetensors *s) {
  return s ? s->count : 0;
}

const lh_st_tensor *lh_safetensors_at(const lh_safetensors *s, int64_t i) {
  if (!s || i < 0 || i >= s->count) return NULL;
  return &s->tensors[i];
}

const lh_st_tensor *lh_safetensors_find(const lh_safetensors *s, const char *name) {
  if (!s || !name || s->count == 0) return NULL;
  const lh_st_tensor *const *hit =
      bsearch(name, s->by_name, (size_t)s->count, sizeof *s->by_name, name_vs_tensor);
  return hit ? *hit : NULL;
}

const char *lh_safetensors_metadata(const lh_safetensors *s, const char *key) {
  if (!s || !key) return NULL;
  for (int64_t i = 0; i < s->nmeta; i++)
    if (strcmp(s->meta[i].key, key) == 0) return s->meta[i].value;
  return NULL;
}

const char *lh_safetensors_path(const lh_safetensors *s) {
  return s ? s->path : NULL;
}

lh_status lh_safetensors_read_f32(const lh_safetensors *s, const lh_st_tensor *t, float *dst) {
  lh_status st = LH_OK;
  /* t may be a copy of one of s's tensors; its bytes must still lie in s's data section. */
  const unsigned char *b = t->data;
  uintptr_t at = (uintptr_t)b, lo = (uintptr_t)s->data;
  if (at < lo || t->nbytes > s->data_len || at - lo > s->data_len - t->nbytes || t->numel < 0 ||
      t->elem_size <= 0 || (uint64_t)t->numel * (uint64_t)t->elem_size != t->nbytes)
    LH_FAIL(LH_ERR_VALUE, "%s: tensor \"%s\" is not a tensor of this file", s->path, t->name);
  int64_t n = t->numel;
  if (strcmp(t->dtype, "F32") == 0) {
    for (int64_t i = 0; i < n; i++) dst[i] = float_of_bits(load_le32(b + 4 * i));
  } else if (strcmp(t->dtype, "F16") == 0) {
    for (int64_t i = 0; i < n; i++) dst[i] = half_to_float(load_le16(b + 2 * i));
  } else if (strcmp(t->dtype, "BF16") == 0) {
    for (int64_t i = 0; i < n; i++) dst[i] = float_of_bits((uint32_t)load_le16(b + 2 * i) << 16);
  } else if (strcmp(t->dtype, "F64") == 0) {
    for (int64_t i = 0; i < n; i++) {
      uint64_t u = load_le64(b + 8 * i);
      double d;
      memcpy(&d, &u, sizeof d);
      dst[i] = (float)d; /* round to nearest; beyond FLT_MAX gives +-inf (IEEE, Annex F) */
    }
  } else {
    LH_FAIL(LH_ERR_TYPE,
            "%s: tensor \"%s\" has dtype %s, expected F32, F16, BF16 or F64 to read as float32",
            s->path, t->name, t->dtype);
  }
done:
  return st;
}
