/* The safetensors reader: a valid file built byte by byte reads back exact values in every
 * float dtype (half subnormals, signed zeros, infinities, NaN, bf16), lists its tensors in
 * data order, finds them by name and answers metadata; and every malformed file is refused
 * with the right status and a message naming the file, the tensor and what was expected,
 * never a crash. The files are written by the tests into a fresh temporary folder. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "latenthook/safetensors.h"

static char dir[64];

static void setup(void) {
  snprintf(dir, sizeof dir, "/tmp/lh_st_XXXXXX");
  cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void) {
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  cr_expect_eq(system(cmd), 0);
}

TestSuite(safetensors, .init = setup, .fini = teardown);

/* --- building files ------------------------------------------------------------------------- */

static const char *in_dir(char *buf, size_t cap, const char *name) {
  snprintf(buf, cap, "%s/%s", dir, name);
  return buf;
}

static void put_le(unsigned char *b, uint64_t v, int nbytes) {
  for (int i = 0; i < nbytes; i++) b[i] = (unsigned char)(v >> (8 * i));
}

static void write_bytes(const char *path, const void *bytes, size_t len) {
  FILE *f = fopen(path, "wb");
  cr_assert_not_null(f, "cannot create %s", path);
  cr_assert_eq(fwrite(bytes, 1, len, f), len);
  cr_assert_eq(fclose(f), 0);
}

/* [u64 LE claimed_len][header][data]; claimed_len is strlen(header) unless given. */
static void write_st_claim(const char *path, uint64_t claimed_len, const char *header,
                           const void *data, size_t dlen) {
  size_t hlen = strlen(header);
  unsigned char *buf = malloc(8 + hlen + dlen + 1);
  cr_assert_not_null(buf);
  put_le(buf, claimed_len, 8);
  memcpy(buf + 8, header, hlen);
  if (dlen) memcpy(buf + 8 + hlen, data, dlen);
  write_bytes(path, buf, 8 + hlen + dlen);
  free(buf);
}

static void write_st(const char *path, const char *header, const void *data, size_t dlen) {
  write_st_claim(path, strlen(header), header, data, dlen);
}

/* Opens `path`, expecting failure `want` with a message holding the path and `fragment`, and
 * the out-parameter untouched. */
static void expect_open_fails(const char *path, lh_status want, const char *fragment) {
  lh_safetensors *sentinel = (lh_safetensors *)&dir;
  lh_safetensors *s = sentinel;
  lh_error_clear();
  lh_status st = lh_safetensors_open(path, &s);
  cr_expect_eq(st, want, "%s: status %s, expected %s (message: %s)", path, lh_status_name(st),
               lh_status_name(want), lh_error_message());
  cr_expect_eq(s, sentinel, "out-parameter written on failure");
  const char *msg = lh_error_message();
  cr_expect(strstr(msg, path) != NULL, "message does not name the file: %s", msg);
  cr_expect(strstr(msg, fragment) != NULL, "message lacks \"%s\": %s", fragment, msg);
  if (st == LH_OK && s != sentinel) lh_safetensors_close(&s);
}

/* A header with one tensor entry `entry` ("{...}") named t and `dlen` zero data bytes. */
static void expect_entry_fails(const char *entry, size_t dlen, const char *fragment) {
  char path[128], header[1024];
  unsigned char data[64] = {0};
  cr_assert(dlen <= sizeof data);
  snprintf(header, sizeof header, "{\"t\": %s}", entry);
  write_st(in_dir(path, sizeof path, "bad.safetensors"), header, data, dlen);
  expect_open_fails(path, LH_ERR_VALUE, fragment);
  cr_expect(strstr(lh_error_message(), "tensor \"t\"") != NULL, "message lacks the tensor: %s",
            lh_error_message());
}

/* --- the valid file ------------------------------------------------------------------------- */

/* Data section (119 bytes; the F32 data at offset 3 is deliberately unaligned):
 *   u8     U8   [3]     [0, 3)
 *   aa, zz F32  [0, 4]  [3, 3)   empty, tied with w32 on begin
 *   w32    F32  [2, 3]  [3, 27)
 *   h16    F16  [11]    [27, 49)
 *   b16    BF16 [5]     [49, 59)
 *   d64    F64  [2, 2]  [59, 91)
 *   ids    I64  [3]     [91, 115)
 *   scalar F32  []      [115, 119)
 * The header lists them in another order and is padded with spaces to a multiple of 8, as
 * the reference writer does. */
static const float W32[6] = {1.5f, -2.25f, 0.0f, 3.4028234663852886e38f, 0x1p-149f, -1.0f};
static const uint16_t H16[11] = {0x3c00, 0xc000, 0x0001, 0x8000, 0x7c00, 0xfc00,
                                 0x7e00, 0x3555, 0x7bff, 0x03ff, 0x0400};
static const uint16_t B16[5] = {0x3f80, 0xc049, 0x7f80, 0x0001, 0x7fc0};
static const double D64[4] = {0.1, -1e300, 1e-50, 2.5};

static const char *write_valid(char *path, size_t cap) {
  unsigned char data[119];
  memset(data, 0xee, sizeof data);
  data[0] = 7;
  data[1] = 0;
  data[2] = 255;
  for (int i = 0; i < 6; i++) {
    uint32_t u;
    memcpy(&u, &W32[i], 4);
    put_le(data + 3 + 4 * i, u, 4);
  }
  for (int i = 0; i < 11; i++) put_le(data + 27 + 2 * i, H16[i], 2);
  for (int i = 0; i < 5; i++) put_le(data + 49 + 2 * i, B16[i], 2);
  for (int i = 0; i < 4; i++) {
    uint64_t u;
    memcpy(&u, &D64[i], 8);
    put_le(data + 59 + 8 * i, u, 8);
  }
  for (int i = 0; i < 3; i++) put_le(data + 91 + 8 * i, (uint64_t)(i + 1), 8);
  float four = 4.0f;
  uint32_t u4;
  memcpy(&u4, &four, 4);
  put_le(data + 115, u4, 4);

  char header[2048];
  int len = snprintf(header, sizeof header,
                     "{\"h16\":{\"dtype\":\"F16\",\"shape\":[11],\"data_offsets\":[27,49]},"
                     "\"zz\":{\"dtype\":\"F32\",\"shape\":[0,4],\"data_offsets\":[3,3]},"
                     "\"__metadata__\":{\"format\":\"pt\",\"note\":\"caf\\u00e9\"},"
                     "\"scalar\":{\"shape\":[],\"dtype\":\"F32\",\"data_offsets\":[115,119]},"
                     "\"ids\":{\"dtype\":\"I64\",\"shape\":[3],\"data_offsets\":[91,115]},"
                     "\"w32\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[3,27]},"
                     "\"d64\":{\"dtype\":\"F64\",\"shape\":[2,2],\"data_offsets\":[59,91]},"
                     "\"aa\":{\"dtype\":\"F32\",\"shape\":[0,4],\"data_offsets\":[3,3]},"
                     "\"u8\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[0,3]},"
                     "\"b16\":{\"dtype\":\"BF16\",\"shape\":[5],\"data_offsets\":[49,59]}}");
  while (len % 8) header[len++] = ' ';
  header[len] = '\0';
  write_st(in_dir(path, cap, "model.safetensors"), header, data, sizeof data);
  return path;
}

static lh_safetensors *open_valid(void) {
  char path[128];
  lh_safetensors *s = NULL;
  lh_status st = lh_safetensors_open(write_valid(path, sizeof path), &s);
  cr_assert_eq(st, LH_OK, "%s", lh_error_message());
  cr_assert_not_null(s);
  return s;
}

/* Bitwise equality, so that -0 differs from +0 and NaN equals NaN of the same payload. */
static void same_bits(float got, float want, const char *what, int i) {
  uint32_t g, w;
  memcpy(&g, &got, 4);
  memcpy(&w, &want, 4);
  cr_expect_eq(g, w, "%s[%d]: got %a (0x%08x), expected %a (0x%08x)", what, i, (double)got, g,
               (double)want, w);
}

Test(safetensors, order_shapes_and_sizes) {
  lh_safetensors *s = open_valid();
  static const char *order[] = {"u8", "aa", "w32", "zz", "h16", "b16", "d64", "ids", "scalar"};
  cr_assert_eq(lh_safetensors_count(s), 9);
  for (int i = 0; i < 9; i++) cr_expect_str_eq(lh_safetensors_at(s, i)->name, order[i]);
  cr_expect_null(lh_safetensors_at(s, 9));
  cr_expect_null(lh_safetensors_at(s, -1));

  const lh_st_tensor *w = lh_safetensors_find(s, "w32");
  cr_assert_not_null(w);
  cr_expect_str_eq(w->dtype, "F32");
  cr_expect_eq(w->elem_size, 4);
  cr_expect_eq(w->ndim, 2);
  cr_expect(w->shape[0] == 2 && w->shape[1] == 3);
  cr_expect_eq(w->numel, 6);
  cr_expect_eq(w->nbytes, 24);

  const lh_st_tensor *u = lh_safetensors_find(s, "u8");
  cr_assert_not_null(u);
  cr_expect_eq(u->elem_size, 1);
  const unsigned char *ub = u->data;
  cr_expect(ub[0] == 7 && ub[1] == 0 && ub[2] == 255);
  cr_expect_eq((const unsigned char *)w->data - ub, 3, "w32 data not at offset 3 of the data");

  const lh_st_tensor *sc = lh_safetensors_find(s, "scalar");
  cr_assert_not_null(sc);
  cr_expect_eq(sc->ndim, 0);
  cr_expect_eq(sc->numel, 1);
  cr_expect_eq(sc->nbytes, 4);

  const lh_st_tensor *z = lh_safetensors_find(s, "zz");
  cr_assert_not_null(z);
  cr_expect_eq(z->numel, 0);
  cr_expect_eq(z->nbytes, 0);
  cr_expect(z->ndim == 2 && z->shape[0] == 0 && z->shape[1] == 4);

  cr_expect_eq(lh_safetensors_find(s, "ids")->elem_size, 8);
  cr_expect_eq(lh_safetensors_find(s, "h16")->elem_size, 2);
  cr_expect_str_eq(lh_safetensors_find(s, "b16")->dtype, "BF16");
  lh_safetensors_close(&s);
  cr_expect_null(s);
}

Test(safetensors, find_present_and_absent) {
  lh_safetensors *s = open_valid();
  for (int64_t i = 0; i < lh_safetensors_count(s); i++) {
    const lh_st_tensor *t = lh_safetensors_at(s, i);
    cr_expect_eq(lh_safetensors_find(s, t->name), t, "find(\"%s\") is not at(%lld)", t->name,
                 (long long)i);
  }
  cr_expect_null(lh_safetensors_find(s, "nope"));
  cr_expect_null(lh_safetensors_find(s, ""));
  cr_expect_null(lh_safetensors_find(s, "w3"));
  cr_expect_null(lh_safetensors_find(s, "w32 "));
  cr_expect_null(lh_safetensors_find(s, "__metadata__"));
  lh_safetensors_close(&s);
}

Test(safetensors, metadata_and_path) {
  char path[128];
  lh_safetensors *s = NULL;
  cr_assert_eq(lh_safetensors_open(write_valid(path, sizeof path), &s), LH_OK, "%s",
               lh_error_message());
  cr_expect_str_eq(lh_safetensors_path(s), path);
  const char *fmt = lh_safetensors_metadata(s, "format");
  cr_assert_not_null(fmt);
  cr_expect_str_eq(fmt, "pt");
  const char *note = lh_safetensors_metadata(s, "note");
  cr_assert_not_null(note);
  cr_expect_str_eq(note, "caf\xc3\xa9");
  cr_expect_null(lh_safetensors_metadata(s, "w32"));
  cr_expect_null(lh_safetensors_metadata(s, "missing"));
  lh_safetensors_close(&s);
}

Test(safetensors, read_f32_exact) {
  lh_safetensors *s = open_valid();
  float got[11];
  cr_assert_eq(lh_safetensors_read_f32(s, lh_safetensors_find(s, "w32"), got), LH_OK);
  for (int i = 0; i < 6; i++) same_bits(got[i], W32[i], "w32", i);
  cr_assert_eq(lh_safetensors_read_f32(s, lh_safetensors_find(s, "scalar"), got), LH_OK);
  same_bits(got[0], 4.0f, "scalar", 0);
  lh_safetensors_close(&s);
}

Test(safetensors, read_f16_exact) {
  lh_safetensors *s = open_valid();
  float got[11];
  cr_assert_eq(lh_safetensors_read_f32(s, lh_safetensors_find(s, "h16"), got), LH_OK);
  static const float want[11] = {1.0f,     -2.0f,      0x1p-24f,     -0.0f,
                                 INFINITY, -INFINITY,  0.0f /*NaN*/, 0.333251953125f,
                                 65504.0f, 0x3ffp-24f, 0x1p-14f};
  for (int i = 0; i < 11; i++) {
    if (i == 6) continue;
    same_bits(got[i], want[i], "h16", i);
  }
  cr_expect(isnan(got[6]), "h16[6] is %a, expected NaN", (double)got[6]);
  cr_expect(!signbit(got[6]));
  cr_expect(signbit(got[3]), "half -0 lost its sign");
  lh_safetensors_close(&s);
}

Test(safetensors, read_bf16_and_f64) {
  lh_safetensors *s = open_valid();
  float got[5];
  cr_assert_eq(lh_safetensors_read_f32(s, lh_safetensors_find(s, "b16"), got), LH_OK);
  same_bits(got[0], 1.0f, "b16", 0);
  same_bits(got[1], -3.140625f, "b16", 1);
  same_bits(got[2], INFINITY, "b16", 2);
  same_bits(got[3], 0x1p-133f, "b16", 3);
  cr_expect(isnan(got[4]));
  cr_assert_eq(lh_safetensors_read_f32(s, lh_safetensors_find(s, "d64"), got), LH_OK);
  same_bits(got[0], 0.1f, "d64", 0);
  same_bits(got[1], -INFINITY, "d64", 1);
  same_bits(got[2], 0.0f, "d64", 2);
  same_bits(got[3], 2.5f, "d64", 3);
  lh_safetensors_close(&s);
}

Test(safetensors, read_f32_of_empty_tensor) {
  lh_safetensors *s = open_valid();
  float sentinel = 42.0f;
  cr_expect_eq(lh_safetensors_read_f32(s, lh_safetensors_find(s, "aa"), &sentinel), LH_OK);
  cr_expect_eq(sentinel, 42.0f);
  lh_safetensors_close(&s);
}

Test(safetensors, read_f32_refuses_integers) {
  lh_safetensors *s = open_valid();
  float got[3] = {-7.0f, -7.0f, -7.0f};
  lh_status st = lh_safetensors_read_f32(s, lh_safetensors_find(s, "ids"), got);
  cr_expect_eq(st, LH_ERR_TYPE, "status %s", lh_status_name(st));
  cr_expect(strstr(lh_error_message(), "tensor \"ids\"") != NULL, "%s", lh_error_message());
  cr_expect(strstr(lh_error_message(), "I64") != NULL, "%s", lh_error_message());
  cr_expect_eq(got[0], -7.0f, "destination written on failure");
  st = lh_safetensors_read_f32(s, lh_safetensors_find(s, "u8"), got);
  cr_expect_eq(st, LH_ERR_TYPE);
  lh_safetensors_close(&s);
}

Test(safetensors, empty_header_and_close_null) {
  char path[128];
  write_st(in_dir(path, sizeof path, "empty.safetensors"), "{}", NULL, 0);
  lh_safetensors *s = NULL;
  cr_assert_eq(lh_safetensors_open(path, &s), LH_OK, "%s", lh_error_message());
  cr_expect_eq(lh_safetensors_count(s), 0);
  cr_expect_null(lh_safetensors_find(s, "x"));
  cr_expect_null(lh_safetensors_metadata(s, "x"));
  lh_safetensors_close(&s);
  cr_expect_null(s);
  lh_safetensors_close(&s);
  lh_safetensors_close(NULL);
}

Test(safetensors, gaps_and_one_byte_dtypes_accepted) {
  char path[128];
  unsigned char data[16] = {0};
  write_st(in_dir(path, sizeof path, "gap.safetensors"),
           "{\"a\":{\"dtype\":\"F8_E4M3\",\"shape\":[2],\"data_offsets\":[0,2]},"
           "\"b\":{\"dtype\":\"BOOL\",\"shape\":[4],\"data_offsets\":[8,12]},"
           "\"c\":{\"dtype\":\"F8_E5M2\",\"shape\":[1,1],\"data_offsets\":[12,13]}}",
           data, sizeof data);
  lh_safetensors *s = NULL;
  cr_assert_eq(lh_safetensors_open(path, &s), LH_OK, "%s", lh_error_message());
  cr_expect_eq(lh_safetensors_count(s), 3);
  cr_expect_eq(lh_safetensors_find(s, "a")->elem_size, 1);
  cr_expect_eq(lh_safetensors_find(s, "c")->nbytes, 1);
  lh_safetensors_close(&s);
}

/* --- malformed files ------------------------------------------------------------------------ */

Test(safetensors, missing_file_is_io) {
  char path[128];
  expect_open_fails(in_dir(path, sizeof path, "absent.safetensors"), LH_ERR_IO, strerror(ENOENT));
}

Test(safetensors, directory_is_io) {
  expect_open_fails(dir, LH_ERR_IO, "not a regular file");
}

Test(safetensors, shorter_than_8_bytes) {
  char path[128];
  write_bytes(in_dir(path, sizeof path, "short.safetensors"), "\x02\0\0\0\0", 5);
  expect_open_fails(path, LH_ERR_VALUE, "too short");
  write_bytes(path, "", 0);
  expect_open_fails(path, LH_ERR_VALUE, "file of 0 bytes is too short");
}

Test(safetensors, header_length_beyond_file) {
  char path[128];
  write_st_claim(in_dir(path, sizeof path, "long.safetensors"), 1000, "{}", NULL, 0);
  expect_open_fails(path, LH_ERR_VALUE, "header length 1000 runs past the end of the file");
  write_st_claim(path, 3, "{}", NULL, 0); /* one byte too many */
  expect_open_fails(path, LH_ERR_VALUE, "header length 3 runs past the end");
}

Test(safetensors, header_length_over_100MB) {
  char path[128];
  write_st_claim(in_dir(path, sizeof path, "huge.safetensors"), 100000001, "{}", NULL, 0);
  expect_open_fails(path, LH_ERR_VALUE, "exceeds the limit of 100000000 bytes");
  write_st_claim(path, UINT64_MAX, "{}", NULL, 0);
  expect_open_fails(path, LH_ERR_VALUE, "header length 18446744073709551615 exceeds the limit");
}

Test(safetensors, invalid_json) {
  char path[128];
  write_st(in_dir(path, sizeof path, "json.safetensors"), "{\"a\": ", NULL, 0);
  expect_open_fails(path, LH_ERR_VALUE, "header is not valid JSON");
  write_st(path, "", NULL, 0);
  expect_open_fails(path, LH_ERR_VALUE, "header is not valid JSON");
  write_st(path, "{} x", NULL, 0);
  expect_open_fails(path, LH_ERR_VALUE, "header is not valid JSON");
}

Test(safetensors, duplicate_and_nul_names_are_invalid_json) {
  char path[128];
  unsigned char data[8] = {0};
  write_st(in_dir(path, sizeof path, "dup.safetensors"),
           "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
           "\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4,8]}}",
           data, sizeof data);
  expect_open_fails(path, LH_ERR_VALUE, "duplicate");
  write_st(path, "{\"a\\u0000b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}", data,
           sizeof data);
  expect_open_fails(path, LH_ERR_VALUE, "header is not valid JSON");
}

Test(safetensors, json_not_an_object) {
  char path[128];
  write_st(in_dir(path, sizeof path, "arr.safetensors"), "[1, 2]", NULL, 0);
  expect_open_fails(path, LH_ERR_VALUE, "header is a JSON array, expected an object");
  write_st(path, "\"weights\"", NULL, 0);
  expect_open_fails(path, LH_ERR_VALUE, "header is a JSON string, expected an object");
}

Test(safetensors, entry_not_an_object) {
  expect_entry_fails("[1]", 0, "entry is a JSON array, expected an object");
}

Test(safetensors, missing_fields) {
  expect_entry_fails("{\"shape\":[1],\"data_offsets\":[0,4]}", 4, "missing \"dtype\"");
  expect_entry_fails("{\"dtype\":\"F32\",\"data_offsets\":[0,4]}", 4, "missing \"shape\"");
  expect_entry_fails("{\"dtype\":\"F32\",\"shape\":[1]}", 4, "missing \"data_offsets\"");
}

Test(safetensors, unknown_dtype) {
  expect_entry_fails("{\"dtype\":\"F12\",\"shape\":[1],\"data_offsets\":[0,4]}", 4,
                     "unknown dtype \"F12\" (expected one of BOOL");
  expect_entry_fails("{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}", 4,
                     "unknown dtype \"f32\"");
  expect_entry_fails("{\"dtype\":32,\"shape\":[1],\"data_offsets\":[0,4]}", 4,
                     "\"dtype\" is a JSON integer, expected a string");
}

Test(safetensors, unknown_key_in_entry) {
  expect_entry_fails("{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"offset\":0}", 4,
                     "unknown key \"offset\"");
}

Test(safetensors, shape_negative) {
  expect_entry_fails("{\"dtype\":\"F32\",\"shape\":[1,-1],\"data_offsets\":[0,4]}", 4,
                     "shape[1] is -1, expected a non-negative integer");
}

Test(safetensors, shape_not_integer) {
  expect_entry_fails("{\"dtype\":\"F32\",\"shape\":[1.0],\"data_offsets\":[0,4]}", 4,
                     "shape[0] is a JSON real number, expected a non-negative integer");
  expect_entry_fails("{\"dtype\":\"F32\",\"shape\":[\"1\"],\"data_offsets\":[0,4]}", 4,
                     "shape[0] is a JSON string");
  expect_entry_fails("{\"dtype\":\"F32\",\"shape\":1,\"data_offsets\":[0,4]}", 4,
                     "\"shape\" is a JSON integer, expected an array");
}

Test(safetensors, shape_too_many_dims) {
  expect_entry_fails("{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}", 4,
                     "shape has 9 dimensions, at most 8 supported");
}

Test(safetensors, shape_of_8_dims_accepted) {
  char path[128];
  unsigned char data[4] = {0};
  write_st(in_dir(path, sizeof path, "dims.safetensors"),
           "{\"t\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", data,
           sizeof data);
  lh_safetensors *s = NULL;
  cr_assert_eq(lh_safetensors_open(path, &s), LH_OK, "%s", lh_error_message());
  cr_expect_eq(lh_safetensors_find(s, "t")->ndim, 8);
  lh_safetensors_close(&s);
}

Test(safetensors, data_offsets_wrong_arity) {
  expect_entry_fails("{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}", 4,
                     "\"data_offsets\" has 1 elements, expected [begin, end]");
  expect_entry_fails("{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}", 8,
                     "\"data_offsets\" has 3 elements");
  expect_entry_fails("{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":{\"begin\":0}}", 4,
                     "\"data_offsets\" is a JSON object, expected [begin, end]");
  expect_entry_fails("{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,-4]}", 4,
                     "data_offsets[1] is -4");
}

Test(safetensors, data_offsets_end_before_begin) {
  expect_entry_fails("{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}", 8,
                     "data_offsets [8, 4]: end is before begin");
}

Test(safetensors, data_offsets_beyond_data_section) {
  expect_entry_fails("{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}", 4,
                     "data_offsets [0, 8] extend past the data section of 4 bytes");
  expect_entry_fails("{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[5,5]}", 4,
                     "data_offsets [5, 5] extend past the data section");
}

Test(safetensors, size_mismatch) {
  expect_entry_fails("{\"dtype\":\"F32\",\"shape\":[48,144],\"data_offsets\":[0,60]}", 64,
                     "shape [48, 144] x F32 is 27648 bytes but data_offsets span 60");
  expect_entry_fails("{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,0]}", 4,
                     "shape [] x F32 is 4 bytes but data_offsets span 0");
}

Test(safetensors, element_count_overflow) {
  expect_entry_fails("{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,4]}",
                     4, "more than 2^63 elements");
  expect_entry_fails("{\"dtype\":\"F64\",\"shape\":[4611686018427387904],\"data_offsets\":[0,8]}",
                     8, "overflows a byte count");
}

Test(safetensors, zero_dim_with_huge_dims_is_empty) {
  char path[128];
  write_st(in_dir(path, sizeof path, "zero.safetensors"),
           "{\"t\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,0],\"data_offsets\":[0,0]}}",
           NULL, 0);
  lh_safetensors *s = NULL;
  cr_assert_eq(lh_safetensors_open(path, &s), LH_OK, "%s", lh_error_message());
  cr_expect_eq(lh_safetensors_find(s, "t")->numel, 0);
  lh_safetensors_close(&s);
}

Test(safetensors, overlapping_ranges) {
  char path[128];
  unsigned char data[16] = {0};
  write_st(in_dir(path, sizeof path, "overlap.safetensors"),
           "{\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]},"
           "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
           data, sizeof data);
  expect_open_fails(path, LH_ERR_VALUE,
                    "tensor \"b\": data_offsets [4, 12] overlap those of tensor \"a\" [0, 8]");
  /* a short range nested in a long one, after a third that ends earlier */
  write_st(path,
           "{\"long\":{\"dtype\":\"U8\",\"shape\":[12],\"data_offsets\":[0,12]},"
           "\"mid\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[1,3]},"
           "\"in\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[8,10]}}",
           data, sizeof data);
  expect_open_fails(path, LH_ERR_VALUE, "tensor \"mid\": data_offsets [1, 3] overlap");
  /* identical ranges */
  write_st(path,
           "{\"x\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
           "\"y\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
           data, sizeof data);
  expect_open_fails(path, LH_ERR_VALUE, "tensor \"y\": data_offsets [0, 4] overlap");
}

Test(safetensors, touching_ranges_and_empty_inside_are_fine) {
  char path[128];
  unsigned char data[8] = {0};
  write_st(in_dir(path, sizeof path, "touch.safetensors"),
           "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
           "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4,8]},"
           "\"e\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[2,2]}}",
           data, sizeof data);
  lh_safetensors *s = NULL;
  cr_assert_eq(lh_safetensors_open(path, &s), LH_OK, "%s", lh_error_message());
  cr_expect_str_eq(lh_safetensors_at(s, 1)->name, "e");
  lh_safetensors_close(&s);
}

Test(safetensors, metadata_value_not_a_string) {
  char path[128];
  write_st(in_dir(path, sizeof path, "meta.safetensors"),
           "{\"__metadata__\":{\"format\":\"pt\",\"step\":1000}}", NULL, 0);
  expect_open_fails(path, LH_ERR_VALUE,
                    "\"__metadata__\" entry \"step\" is a JSON integer, expected a string");
  write_st(path, "{\"__metadata__\":[\"pt\"]}", NULL, 0);
  expect_open_fails(path, LH_ERR_VALUE,
                    "\"__metadata__\" is a JSON array, expected an object of strings");
}
