/*
 * cmd_info.c: `latenthook info FILE.h5:/dataset` describes a dataset as LatentHook sees it:
 * stored type, shape read as (batch..., N, D), storage layout, and how the N rows of each
 * matrix split over the ranks of the current run. It is the first thing to run on a new
 * input, and what `mpiexec -n P` will do with it.
 */
#include <string.h>

#include "cli/cli.h"
#include "core/check.h"
#include "latenthook/h5.h"
#include "latenthook/partition.h"

static const char HELP[] =
    "usage: mpiexec -n P latenthook info FILE.h5:/path/to/dataset [--json]\n\n"
    "Describes a dataset: stored type, shape as (batch..., N, D) (B = prod(batch) independent\n"
    "N x D matrices), chunking and filters, and the rows each of the P ranks would hold.\n\n"
    "Options:\n"
    "  --json            print one JSON document instead of text\n" CLI_COMMON_HELP;

static lh_status on_option(int code, const char *arg, void *user) {
  cli_common *cc = user;
  if (code == OPT_JSON) {
    cc->json = true;
    return LH_OK;
  }
  return LH_ERROR(LH_ERR_INTERNAL, "unhandled option %d", code);
}

static json_t *int_array(const int64_t *v, int n) {
  json_t *a = json_array();
  for (int k = 0; k < n; k++) json_array_append_new(a, json_integer((json_int_t)v[k]));
  return a;
}

static void print_text(const lh_h5_info *in, int P) {
  char t[64];
  printf("file:      %s\n", in->addr.file);
  printf("dataset:   %s\n", in->addr.path);
  printf("dtype:     %s (read as %s)\n", lh_h5_type_name(in, t, sizeof t),
         lh_dtype_name(in->natural));
  printf("shape:     (");
  for (int k = 0; k < in->ndims; k++) printf("%s%lld", k ? ", " : "", (long long)in->dims[k]);
  printf("%s\n", in->ndims == 1 ? ",)" : ")");
  printf("matrices:  B = %lld of N = %lld rows x D = %lld columns", (long long)in->B,
         (long long)in->N, (long long)in->E);
  if (in->row_axis > 0) {
    printf(" (batch shape (");
    for (int k = 0; k < in->row_axis; k++) printf("%s%lld", k ? ", " : "", (long long)in->dims[k]);
    printf("%s))", in->row_axis == 1 ? "," : "");
  }
  printf("\n");
  if (in->chunked) {
    printf("layout:    chunked (");
    for (int k = 0; k < in->ndims; k++) printf("%s%lld", k ? ", " : "", (long long)in->chunk[k]);
    printf("%s)", in->ndims == 1 ? "," : "");
  } else {
    printf("layout:    contiguous");
  }
  printf("%s%s\n", in->filters[0] ? ", filters: " : "", in->filters);
  printf("ranks:     %d; rows of each matrix per rank:\n", P);
  /* Print every rank for small runs; for large ones the two row counts and where they change. */
  if (P <= 16) {
    for (int r = 0; r < P; r++) {
      int64_t o = lh_part_offset(in->N, P, r), c = lh_part_count(in->N, P, r);
      if (c > 0)
        printf("  rank %-3d rows %lld..%lld (%lld)\n", r, (long long)o, (long long)(o + c - 1),
               (long long)c);
      else
        printf("  rank %-3d no rows\n", r);
    }
  } else {
    int64_t q = in->N / P, rem = in->N % P;
    if (rem) printf("  ranks 0..%lld: %lld rows each\n", (long long)(rem - 1), (long long)(q + 1));
    printf("  ranks %lld..%d: %lld rows each\n", (long long)rem, P - 1, (long long)q);
  }
  fflush(stdout);
}

lh_status cmd_info(MPI_Comm comm, int argc, char **argv, cli_common *cc) {
  lh_status st = LH_OK;
  lh_h5_dset *d = NULL;
  static const struct option opts[] = {{"json", no_argument, NULL, OPT_JSON}, CLI_COMMON_OPTIONS,
                                       {0, 0, 0, 0}};
  int pos = 0, rank, P;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &P);
  LH_TRY(cli_parse("info", argc, argv, opts, NULL, cc, on_option, cc, &pos));
  if (cc->help) {
    cli_print_help(comm, HELP);
    goto done;
  }
  if (argc - pos != 1)
    LH_FAIL(LH_ERR_USAGE, "expected one dataset address FILE.h5:/path, got %d arguments (see "
            "'latenthook info --help')", argc - pos);
  LH_TRY(lh_h5_open(comm, argv[pos], LH_ROWS_SECOND_LAST, &d));
  const lh_h5_info *in = lh_h5_dset_info(d);
  if (rank == 0 && !cc->json) print_text(in, P);
  if (cc->json) {
    char t[64];
    json_t *doc = json_object();
    json_object_set_new(doc, "file", json_string(in->addr.file));
    json_object_set_new(doc, "dataset", json_string(in->addr.path));
    json_object_set_new(doc, "dtype", json_string(lh_h5_type_name(in, t, sizeof t)));
    json_object_set_new(doc, "read_as", json_string(lh_dtype_name(in->natural)));
    json_object_set_new(doc, "shape", int_array(in->dims, in->ndims));
    json_object_set_new(doc, "batch_shape", int_array(in->dims, in->row_axis));
    json_object_set_new(doc, "B", json_integer(in->B));
    json_object_set_new(doc, "N", json_integer(in->N));
    json_object_set_new(doc, "D", json_integer(in->E));
    json_object_set_new(doc, "chunks", in->chunked ? int_array(in->chunk, in->ndims) : json_null());
    json_object_set_new(doc, "filters", json_string(in->filters));
    json_object_set_new(doc, "ranks", json_integer(P));
    json_t *rows = json_array();
    for (int r = 0; r < P && rank == 0; r++) {
      json_t *e = json_object();
      json_object_set_new(e, "offset", json_integer(lh_part_offset(in->N, P, r)));
      json_object_set_new(e, "rows", json_integer(lh_part_count(in->N, P, r)));
      json_array_append_new(rows, e);
    }
    json_object_set_new(doc, "rows_per_rank", rows);
    cli_emit_json(comm, doc);
  }
done:
  lh_h5_close(&d);
  return st;
}
