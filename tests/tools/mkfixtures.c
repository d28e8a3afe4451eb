/*
 * mkfixtures.c: writes the HDF5 files the tests read, with values given by closed forms so
 * that tests can check every element they read.
 *
 *   good.h5  /a        float32 (3, 100, 8)   a[b,i,j] = 1000 b + i + j / 8
 *            /f16      float16 (10, 4)       i * 4 + j
 *            /i32      int32 (7, 3)          -(i * 3 + j)
 *            /u8       uint8 (5, 2)          200 + i * 2 + j
 *            /i64      int64 (4, 2)          2^40 + i * 2 + j
 *            /z        float64 (50, 6) chunked (7, 6) + shuffle + deflate: i + 0.25 j
 *            /grp/sub/deep float64 (2, 3, 4, 5): ((b0 * 3 + b1) * 4 + i) * 5 + j
 *            /tiny     float64 (2, 3)        i * 3 + j
 *            /empty    float32 (0, 4)
 *            /zerocols float32 (5, 0)
 *            /g        group holding /g/member (a dataset)
 *            /v        int64 (10,)  (1-D)
 *            /s        strings
 *            /sc       scalar float64
 *            /cmp      compound
 *   not_hdf5.h5        a text file
 *   id.h5    (intrinsic dimension and kNN; SPEC section 10 test vectors, all float64)
 *            /tv5      (5, 1)        [0, 1, 3, 7, 15]                    (TV-2, TV-5)
 *            /tv6      (4, 1)        [0, -0.4, 0.4, 5]                   (TV-6)
 *            /tv7      (6, 1)        [0, 0, 1, 3, 7, 15]                 (TV-7)
 *            /tv8      (5, 2)        [[0,0],[1,0],[0,2],[3,1],[1,1]]     (TV-8)
 *            /tv3      (5, 2)        square corners + centre             (TV-3)
 *            /tv4      (5, 1)        [0, 1, 2, 3, 4]                     (TV-4)
 *            /batch6   (2, 3, 5, 1)  item b = tv5 * SCALE6[b], SCALE6 = {1, 2, 3, 0.5, 10, 0.25}
 *            /batch2   (2, 5, 1)     item b = tv5 * SCALE2[b], SCALE2 = {4, 0.75}
 *            /scales_mixed (2, 64, 1) item 0: i^1.5 + 0.1 i; item 1: 1, 2, 3, 4, then 60 zeros
 *            /two      (2, 3)        i * 3 + j
 *            /ones     (5, 3)        1
 *            /four     (4, 5)        (i * 5 + j) % 7 - 3
 *            /cloud    float32 (320, 5)  splitmix64(i * 5 + j) >> 54, divided by 64 (a grid of
 *                      1024 levels in [0, 16)), then: rows 1 and 2 = row 0 +- (1/64, 0, 0, 0, 0)
 *                      (equidistant neighbours of row 0), row 101 = row 37 (a duplicate),
 *                      row 203 column 2 = NaN
 *   sim.h5   (CKA, information imbalance, similarity; SPEC 10 TV-9..TV-11; float64 unless said)
 *            /empty_ba (2, 0, 4, 2), /empty_bb (2, 0, 4, 3): empty batches
 *            /tv9_1x, /tv9_1y  (4, 1)  [0,1,2,3], [0,1,4,9]                     (TV-9 case 1)
 *            /tv9_2x, /tv9_2y  (4, 2)  [[1,0],[0,1],[-1,0],[0,-1]], X diag(2,1)  (TV-9 case 2)
 *            /tv9_3x (4, 2), /tv9_3y (4, 3)  [[1,2],[3,1],[0,0],[2,5]],
 *                      [[1,0,2],[0,1,1],[2,2,0],[1,3,1]]                         (TV-9 case 3)
 *            /cka_ba (2, 3, 4, 2), /cka_bb (2, 3, 4, 3)  item (r, c) = TV-9 case
 *                      {{1,2,3},{3,1,2}}[r][c], X (Y) padded with zero columns and scaled by
 *                      {{1,2,0.5},{3,0.25,4}}[r][c] ({{4,1,8},{0.5,2,1}}[r][c])
 *            /rbf_a, /rbf_b  (2, 24, 3)  R[i][j] = (splitmix64(1000 + i * 3 + j) >> 54) / 64;
 *                      rbf_a = [R, R], rbf_b = [R, 7.5 R]
 *            /arange   int64 (128, 4)  i * 4 + j
 *            /const    (4, 2)        3
 *            /tv10_a, /tv10_b  (5, 1)  [0,1,3,7,15], [0,6,1,13,4]                (TV-10)
 *            /tv11_a, /tv11_b  (3, 1)  [0,1,2], [0,2,1]                          (TV-11)
 *            /ii_ba, /ii_bb  (2, 2, 5, 1)  item pairs (A, B), (3B, A/2), (4A, A), (B, A) with
 *                      A = tv10_a, B = tv10_b
 *            /one      (1, 3)        [1, 2, 3]
 *            /vec      (4,)          [0, 1, 2, 3]
 *            /layers/labels int64 (32,)  i (1-D: skipped by `similarity`)
 *            /layers/layer0 (32, 5)  h_j(i) s_j with h_j(i) = 1 - 2 bit_j((13 i + 5) mod 32),
 *                      s = (1, 2, 3, 5, 7): orthogonal centred columns, distinct distances
 *            /layers/layer1 (32, 5)  2 layer0[i][4 - j]
 *            /layers/layer2 (32, 5)  t_j g_j(i), g = (h0, h1, h0 h1 h2, h2 h3, h3 h4),
 *                      t = (7, 5, 1, 2, 3); CKA(layer0, layer2) = (7^2 + 10^2) / 3124
 *            /single/layer0 (32, 5)  as /layers/layer0 (a group with one (N, D) dataset)
 *            /mixed/a  (32, 5)       as /layers/layer0; /mixed/b (5, 1) as /tv10_a (a group
 *                      whose datasets differ in N)
 *
 * Usage: lh_mkfixtures OUTDIR
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <hdf5.h>

static int failed;
#define CHECK(x)                                                  \
  do {                                                            \
    if ((x) < 0) {                                                \
      fprintf(stderr, "mkfixtures: %s failed (line %d)\n", #x, __LINE__); \
      failed = 1;                                                 \
    }                                                             \
  } while (0)

static uint64_t splitmix64(uint64_t x) {
  x += UINT64_C(0x9E3779B97F4A7C15);
  x = (x ^ (x >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
  x = (x ^ (x >> 27)) * UINT64_C(0x94D049BB133111EB);
  return x ^ (x >> 31);
}

static void write_ds(hid_t f, const char *name, hid_t ftype, hid_t mtype, int nd,
                     const hsize_t *dims, const void *data, hid_t dcpl) {
  hid_t s = H5Screate_simple(nd, dims, NULL);
  hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
  H5Pset_create_intermediate_group(lcpl, 1);
  hid_t d = H5Dcreate2(f, name, ftype, s, lcpl, dcpl, H5P_DEFAULT);
  CHECK(d);
  CHECK(H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data));
  H5Dclose(d);
  H5Pclose(lcpl);
  H5Sclose(s);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: lh_mkfixtures OUTDIR\n");
    return 2;
  }
  mkdir(argv[1], 0755);
  char path[4096];
  snprintf(path, sizeof path, "%s/good.h5", argv[1]);
  hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  CHECK(f);

  static float a[3][100][8];
  for (int b = 0; b < 3; b++)
    for (int i = 0; i < 100; i++)
      for (int j = 0; j < 8; j++) a[b][i][j] = (float)(1000 * b + i + j / 8.0);
  write_ds(f, "/a", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 3, (hsize_t[]){3, 100, 8}, a, H5P_DEFAULT);

  /* IEEE half precision: 1 sign, 5 exponent, 10 mantissa bits, bias 15. */
  hid_t f16 = H5Tcopy(H5T_IEEE_F32LE);
  CHECK(H5Tset_fields(f16, 15, 10, 5, 0, 10));
  CHECK(H5Tset_size(f16, 2));
  CHECK(H5Tset_ebias(f16, 15));
  float h[10][4];
  for (int i = 0; i < 10; i++)
    for (int j = 0; j < 4; j++) h[i][j] = (float)(i * 4 + j);
  write_ds(f, "/f16", f16, H5T_NATIVE_FLOAT, 2, (hsize_t[]){10, 4}, h, H5P_DEFAULT);
  H5Tclose(f16);

  int32_t i32[7][3];
  for (int i = 0; i < 7; i++)
    for (int j = 0; j < 3; j++) i32[i][j] = -(i * 3 + j);
  write_ds(f, "/i32", H5T_STD_I32LE, H5T_NATIVE_INT32, 2, (hsize_t[]){7, 3}, i32, H5P_DEFAULT);
  uint8_t u8[5][2];
  for (int i = 0; i < 5; i++)
    for (int j = 0; j < 2; j++) u8[i][j] = (uint8_t)(200 + i * 2 + j);
  write_ds(f, "/u8", H5T_STD_U8LE, H5T_NATIVE_UINT8, 2, (hsize_t[]){5, 2}, u8, H5P_DEFAULT);
  int64_t i64[4][2];
  for (int i = 0; i < 4; i++)
    for (int j = 0; j < 2; j++) i64[i][j] = ((int64_t)1 << 40) + i * 2 + j;
  write_ds(f, "/i64", H5T_STD_I64BE, H5T_NATIVE_INT64, 2, (hsize_t[]){4, 2}, i64, H5P_DEFAULT);

  static double z[50][6];
  for (int i = 0; i < 50; i++)
    for (int j = 0; j < 6; j++) z[i][j] = i + 0.25 * j;
  hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
  CHECK(H5Pset_chunk(dcpl, 2, (hsize_t[]){7, 6}));
  CHECK(H5Pset_shuffle(dcpl));
  CHECK(H5Pset_deflate(dcpl, 6));
  write_ds(f, "/z", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 2, (hsize_t[]){50, 6}, z, dcpl);
  H5Pclose(dcpl);

  static double deep[2][3][4][5];
  for (int b0 = 0; b0 < 2; b0++)
    for (int b1 = 0; b1 < 3; b1++)
      for (int i = 0; i < 4; i++)
        for (int j = 0; j < 5; j++) deep[b0][b1][i][j] = ((b0 * 3 + b1) * 4 + i) * 5 + j;
  write_ds(f, "/grp/sub/deep", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 4, (hsize_t[]){2, 3, 4, 5},
           deep, H5P_DEFAULT);

  double tiny[2][3] = {{0, 1, 2}, {3, 4, 5}};
  write_ds(f, "/tiny", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 2, (hsize_t[]){2, 3}, tiny, H5P_DEFAULT);
  float dummy = 0;
  write_ds(f, "/empty", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, (hsize_t[]){0, 4}, &dummy,
           H5P_DEFAULT);

  write_ds(f, "/zerocols", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, (hsize_t[]){5, 0}, &dummy,
           H5P_DEFAULT);

  double member[2][2] = {{1, 2}, {3, 4}};
  write_ds(f, "/g/member", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 2, (hsize_t[]){2, 2}, member,
           H5P_DEFAULT);
  int64_t v[10];
  for (int i = 0; i < 10; i++) v[i] = i;
  write_ds(f, "/v", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, (hsize_t[]){10}, v, H5P_DEFAULT);

  hid_t st = H5Tcopy(H5T_C_S1);
  H5Tset_size(st, 4);
  char strs[2][4] = {"abc", "de"};
  write_ds(f, "/s", st, st, 1, (hsize_t[]){2}, strs, H5P_DEFAULT);
  H5Tclose(st);

  hid_t ss = H5Screate(H5S_SCALAR);
  hid_t sd = H5Dcreate2(f, "/sc", H5T_IEEE_F64LE, ss, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  double one = 1.0;
  CHECK(H5Dwrite(sd, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, &one));
  H5Dclose(sd);
  H5Sclose(ss);

  typedef struct {
    double x;
    int y;
  } pair;
  hid_t ct = H5Tcreate(H5T_COMPOUND, sizeof(pair));
  H5Tinsert(ct, "x", HOFFSET(pair, x), H5T_NATIVE_DOUBLE);
  H5Tinsert(ct, "y", HOFFSET(pair, y), H5T_NATIVE_INT);
  pair pr[3][2];
  memset(pr, 0, sizeof pr);
  write_ds(f, "/cmp", ct, ct, 2, (hsize_t[]){3, 2}, pr, H5P_DEFAULT);
  H5Tclose(ct);
  CHECK(H5Fclose(f));

  snprintf(path, sizeof path, "%s/id.h5", argv[1]);
  f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  CHECK(f);
  static const double tv5[5] = {0, 1, 3, 7, 15};
  write_ds(f, "/tv5", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 2, (hsize_t[]){5, 1}, tv5, H5P_DEFAULT);
  write_ds(f, "/tv6", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 2, (hsize_t[]){4, 1},
           (double[]){0, -0.4, 0.4, 5}, H5P_DEFAULT);
  write_ds(f, "/tv7", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 2, (hsize_t[]){6, 1},
           (double[]){0, 0, 1, 3, 7, 15}, H5P_DEFAULT);
  write_ds(f, "/tv8", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 2, (hsize_t[]){5, 2},
           (double[]){0, 0, 1, 0, 0, 2, 3, 1, 1, 1}, H5P_DEFAULT);
  write_ds(f, "/tv3", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 2, (hsize_t[]){5, 2},
           (double[]){1, 1, 1, -1, -1, 1, -1, -1, 0, 0}, H5P_DEFAULT);
  write_ds(f, "/tv4", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 2, (hsize_t[]){5, 1},
           (double[]){0, 1, 2, 3, 4}, H5P_DEFAULT);
  static const double scale6[6] = {1, 2, 3, 0.5, 10, 0.25}, scale2[2] = {4, 0.75};
  double b6[6][5], b2[2][5];
  for (int b = 0; b < 6; b++)
    for (int i = 0; i < 5; i++) b6[b][i] = tv5[i] * scale6[b];
  for (int b = 0; b < 2; b++)
    for (int i = 0; i < 5; i++) b2[b][i] = tv5[i] * scale2[b];
  write_ds(f, "/batch6", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 4, (hsize_t[]){2, 3, 5, 1}, b6,
           H5P_DEFAULT);
  write_ds(f, "/batch2", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 3, (hsize_t[]){2, 5, 1}, b2,
           H5P_DEFAULT);
  /* Two items whose block analyses stop at different scales: item 0 (64 distinct points)
   * reaches subsets of 32 and 16; item 1 (60 copies of one point) has no valid subsets. */
  static double mixed[2][64];
  for (int i = 0; i < 64; i++) {
    mixed[0][i] = pow(i, 1.5) + 0.1 * i;
    mixed[1][i] = i < 4 ? i + 1 : 0;
  }
  write_ds(f, "/scales_mixed", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 3, (hsize_t[]){2, 64, 1},
           mixed, H5P_DEFAULT);
  double two[2][3], ones[5][3], four[4][5];
  for (int i = 0; i < 2; i++)
    for (int j = 0; j < 3; j++) two[i][j] = i * 3 + j;
  for (int i = 0; i < 5; i++)
    for (int j = 0; j < 3; j++) ones[i][j] = 1;
  for (int i = 0; i < 4; i++)
    for (int j = 0; j < 5; j++) four[i][j] = (i * 5 + j) % 7 - 3;
  write_ds(f, "/two", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 2, (hsize_t[]){2, 3}, two, H5P_DEFAULT);
  write_ds(f, "/ones", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 2, (hsize_t[]){5, 3}, ones, H5P_DEFAULT);
  write_ds(f, "/four", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 2, (hsize_t[]){4, 5}, four, H5P_DEFAULT);
  static float cloud[320][5];
  for (int i = 0; i < 320; i++)
    for (int j = 0; j < 5; j++) cloud[i][j] = (float)(splitmix64((uint64_t)(i * 5 + j)) >> 54) / 64.0f;
  memcpy(cloud[1], cloud[0], sizeof cloud[0]);
  memcpy(cloud[2], cloud[0], sizeof cloud[0]);
  cloud[1][0] += 1.0f / 64;
  cloud[2][0] -= 1.0f / 64;
  memcpy(cloud[101], cloud[37], sizeof cloud[0]);
  cloud[203][2] = NAN;
  write_ds(f, "/cloud", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, (hsize_t[]){320, 5}, cloud,
           H5P_DEFAULT);
  CHECK(H5Fclose(f));

  snprintf(path, sizeof path, "%s/sim.h5", argv[1]);
  f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  CHECK(f);
  /* TV-9: X of each case padded to 2 columns, Y to 3 (zero columns change no CKA) */
  static const double tv9x[3][4][2] = {{{0, 0}, {1, 0}, {2, 0}, {3, 0}},
                                       {{1, 0}, {0, 1}, {-1, 0}, {0, -1}},
                                       {{1, 2}, {3, 1}, {0, 0}, {2, 5}}};
  static const double tv9y[3][4][3] = {{{0, 0, 0}, {1, 0, 0}, {4, 0, 0}, {9, 0, 0}},
                                       {{2, 0, 0}, {0, 1, 0}, {-2, 0, 0}, {0, -1, 0}},
                                       {{1, 0, 2}, {0, 1, 1}, {2, 2, 0}, {1, 3, 1}}};
  for (int c = 0; c < 3; c++) { /* unpadded: X is (4, 1), (4, 2), (4, 2); Y (4, c + 1) */
    const int dx = c == 0 ? 1 : 2, dy = c + 1;
    double xs[4 * 2], ys[4 * 3];
    for (int i = 0; i < 4; i++) {
      for (int j = 0; j < dx; j++) xs[i * dx + j] = tv9x[c][i][j];
      for (int j = 0; j < dy; j++) ys[i * dy + j] = tv9y[c][i][j];
    }
    char nx[16], ny[16];
    snprintf(nx, sizeof nx, "/tv9_%dx", c + 1);
    snprintf(ny, sizeof ny, "/tv9_%dy", c + 1);
    write_ds(f, nx, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 2, (hsize_t[]){4, (hsize_t)dx}, xs,
             H5P_DEFAULT);
    write_ds(f, ny, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 2, (hsize_t[]){4, (hsize_t)dy}, ys,
             H5P_DEFAULT);
  }
  static const int sim_case[2][3] = {{0, 1, 2}, {2, 0, 1}};
  static const double sim_sa[2][3] = {{1, 2, 0.5}, {3, 0.25, 4}},
                      sim_sb[2][3] = {{4, 1, 8}, {0.5, 2, 1}};
  double cba[2][3][4][2], cbb[2][3][4][3];
  for (int r = 0; r < 2; r++)
    for (int c = 0; c < 3; c++)
      for (int i = 0; i < 4; i++) {
        for (int j = 0; j < 2; j++) cba[r][c][i][j] = tv9x[sim_case[r][c]][i][j] * sim_sa[r][c];
        for (int j = 0; j < 3; j++) cbb[r][c][i][j] = tv9y[sim_case[r][c]][i][j] * sim_sb[r][c];
      }
  write_ds(f, "/cka_ba", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 4, (hsize_t[]){2, 3, 4, 2}, cba,
           H5P_DEFAULT);
  write_ds(f, "/cka_bb", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 4, (hsize_t[]){2, 3, 4, 3}, cbb,
           H5P_DEFAULT);
  /* empty batches: (2, 0, N, D) holds no matrix at all */
  double nothing = 0;
  write_ds(f, "/empty_ba", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 4, (hsize_t[]){2, 0, 4, 2}, &nothing,
           H5P_DEFAULT);
  write_ds(f, "/empty_bb", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 4, (hsize_t[]){2, 0, 4, 3}, &nothing,
           H5P_DEFAULT);
  static double rbf_a[2][24][3], rbf_b[2][24][3];
  for (int i = 0; i < 24; i++)
    for (int j = 0; j < 3; j++) {
      double r = (double)(splitmix64((uint64_t)(1000 + i * 3 + j)) >> 54) / 64.0;
      rbf_a[0][i][j] = rbf_a[1][i][j] = rbf_b[0][i][j] = r;
      rbf_b[1][i][j] = 7.5 * r;
    }
  write_ds(f, "/rbf_a", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 3, (hsize_t[]){2, 24, 3}, rbf_a,
           H5P_DEFAULT);
  write_ds(f, "/rbf_b", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 3, (hsize_t[]){2, 24, 3}, rbf_b,
           H5P_DEFAULT);
  static int64_t arange[128][4];
  for (int i = 0; i < 128; i++)
    for (int j = 0; j < 4; j++) arange[i][j] = i * 4 + j;
  write_ds(f, "/arange", H5T_STD_I64LE, H5T_NATIVE_INT64, 2, (hsize_t[]){128, 4}, arange,
           H5P_DEFAULT);
  write_ds(f, "/const", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 2, (hsize_t[]){4, 2},
           (double[]){3, 3, 3, 3, 3, 3, 3, 3}, H5P_DEFAULT);
  static const double tv10a[5] = {0, 1, 3, 7, 15}, tv10b[5] = {0, 6, 1, 13, 4};
  write_ds(f, "/tv10_a", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 2, (hsize_t[]){5, 1}, tv10a,
           H5P_DEFAULT);
  write_ds(f, "/tv10_b", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 2, (hsize_t[]){5, 1}, tv10b,
           H5P_DEFAULT);
  write_ds(f, "/tv11_a", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 2, (hsize_t[]){3, 1},
           (double[]){0, 1, 2}, H5P_DEFAULT);
  write_ds(f, "/tv11_b", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 2, (hsize_t[]){3, 1},
           (double[]){0, 2, 1}, H5P_DEFAULT);
  double iba[2][2][5], ibb[2][2][5];
  for (int i = 0; i < 5; i++) {
    iba[0][0][i] = tv10a[i], ibb[0][0][i] = tv10b[i];
    iba[0][1][i] = 3 * tv10b[i], ibb[0][1][i] = tv10a[i] / 2;
    iba[1][0][i] = 4 * tv10a[i], ibb[1][0][i] = tv10a[i];
    iba[1][1][i] = tv10b[i], ibb[1][1][i] = tv10a[i];
  }
  write_ds(f, "/ii_ba", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 4, (hsize_t[]){2, 2, 5, 1}, iba,
           H5P_DEFAULT);
  write_ds(f, "/ii_bb", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 4, (hsize_t[]){2, 2, 5, 1}, ibb,
           H5P_DEFAULT);
  write_ds(f, "/one", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 2, (hsize_t[]){1, 3},
           (double[]){1, 2, 3}, H5P_DEFAULT);
  write_ds(f, "/vec", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, (hsize_t[]){4},
           (double[]){0, 1, 2, 3}, H5P_DEFAULT);
  /* Three layers on the 32 sign patterns of 5 bits (rows in the order 13 i + 5 mod 32). */
  static const double s0[5] = {1, 2, 3, 5, 7}, t2[5] = {7, 5, 1, 2, 3};
  static int64_t labels[32];
  static double l0[32][5], l1[32][5], l2[32][5];
  for (int i = 0; i < 32; i++) {
    int p = (13 * i + 5) % 32;
    double sg[5]; /* the signs of pattern p */
    for (int j = 0; j < 5; j++) sg[j] = 1 - 2 * ((p >> j) & 1);
    const double g[5] = {sg[0], sg[1], sg[0] * sg[1] * sg[2], sg[2] * sg[3], sg[3] * sg[4]};
    labels[i] = i;
    for (int j = 0; j < 5; j++) {
      l0[i][j] = s0[j] * sg[j];
      l2[i][j] = t2[j] * g[j];
    }
    for (int j = 0; j < 5; j++) l1[i][j] = 2 * l0[i][4 - j];
  }
  write_ds(f, "/layers/labels", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, (hsize_t[]){32}, labels,
           H5P_DEFAULT);
  write_ds(f, "/layers/layer0", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 2, (hsize_t[]){32, 5}, l0,
           H5P_DEFAULT);
  write_ds(f, "/layers/layer1", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 2, (hsize_t[]){32, 5}, l1,
           H5P_DEFAULT);
  write_ds(f, "/layers/layer2", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 2, (hsize_t[]){32, 5}, l2,
           H5P_DEFAULT);
  write_ds(f, "/single/layer0", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 2, (hsize_t[]){32, 5}, l0,
           H5P_DEFAULT);
  write_ds(f, "/mixed/a", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 2, (hsize_t[]){32, 5}, l0,
           H5P_DEFAULT);
  write_ds(f, "/mixed/b", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 2, (hsize_t[]){5, 1}, tv10a,
           H5P_DEFAULT);
  CHECK(H5Fclose(f));

  snprintf(path, sizeof path, "%s/not_hdf5.h5", argv[1]);
  FILE *t = fopen(path, "w");
  if (!t) {
    perror(path);
    return 1;
  }
  fputs("this is not an HDF5 file\n", t);
  fclose(t);
  return failed;
}
