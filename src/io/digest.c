/*
 * digest.c: SHA-256 digests of strings and files (digest.h) through OpenSSL's EVP interface.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "core/check.h"
#include "latenthook/comm.h"
#include "latenthook/digest.h"
#include "latenthook/mem.h"

#define RAW 32 /* bytes of a SHA-256 digest */
#define READ_CAP ((size_t)4 << 20)

struct lh_digest {
  EVP_MD_CTX *ctx;
  bool failed;
};

lh_status lh_digest_new(lh_digest **out) {
  lh_status st = LH_OK;
  lh_digest *d = NULL;
  LH_TRY(lh_alloc(1, sizeof *d, true, "digest", &d));
  d->ctx = EVP_MD_CTX_new();
  if (!d->ctx || EVP_DigestInit_ex(d->ctx, EVP_sha256(), NULL) != 1) {
    lh_digest_free(&d);
    LH_FAIL(LH_ERR_RUNTIME, "libcrypto: cannot start a SHA-256 digest");
  }
  *out = d;
done:
  return st;
}

void lh_digest_update(lh_digest *d, const void *p, size_t n) {
  if (n > 0 && EVP_DigestUpdate(d->ctx, p, n) != 1) d->failed = true;
}

void lh_digest_string(lh_digest *d, const char *s) {
  if (s)
    lh_digest_update(d, s, strlen(s) + 1);
  else
    lh_digest_update(d, "\xff", 1);
}

static void to_hex(const unsigned char *raw, char hex[LH_DIGEST_HEX]) {
  for (int i = 0; i < RAW; i++) snprintf(hex + 2 * i, 3, "%02x", raw[i]);
}

static lh_status final_raw(lh_digest **d, unsigned char raw[RAW]) {
  unsigned int len = 0;
  bool ok = !(*d)->failed && EVP_DigestFinal_ex((*d)->ctx, raw, &len) == 1 && len == RAW;
  lh_digest_free(d);
  return ok ? LH_OK : LH_ERROR(LH_ERR_RUNTIME, "libcrypto: SHA-256 digest failed");
}

lh_status lh_digest_final(lh_digest **d, char hex[LH_DIGEST_HEX]) {
  unsigned char raw[RAW];
  lh_status st = final_raw(d, raw);
  if (st == LH_OK) to_hex(raw, hex);
  return st;
}

void lh_digest_free(lh_digest **d) {
  if (!d || !*d) return;
  EVP_MD_CTX_free((*d)->ctx);
  lh_free(*d);
  *d = NULL;
}

/* The digest of bytes [off, off + n) of the open file fd into raw. Local. */
static lh_status chunk_digest(int fd, const char *path, int64_t off, int64_t n, unsigned char *buf,
                              unsigned char raw[RAW]) {
  lh_status st = LH_OK;
  lh_digest *d = NULL;
  LH_TRY(lh_digest_new(&d));
  while (n > 0) {
    size_t want = (size_t)(n < (int64_t)READ_CAP ? n : (int64_t)READ_CAP);
    ssize_t got = pread(fd, buf, want, (off_t)off);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0)
      LH_FAIL(LH_ERR_IO, "cannot read '%s' at byte %lld: %s", path, (long long)off,
              got < 0 ? strerror(errno) : "the file became shorter while it was read");
    lh_digest_update(d, buf, (size_t)got);
    off += got;
    n -= got;
  }
  LH_TRY(final_raw(&d, raw));
done:
  lh_digest_free(&d);
  return st;
}

lh_status lh_digest_file(MPI_Comm comm, const char *path, char hex[LH_DIGEST_HEX]) {
  lh_status st = LH_OK, local = LH_OK;
  int rank, nranks, fd = -1;
  unsigned char *raw = NULL, *buf = NULL;
  lh_digest *d = NULL;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &nranks);
  int64_t size = -1;
  if (rank == 0) {
    struct stat sb;
    if (stat(path, &sb) != 0)
      local = LH_ERROR(LH_ERR_IO, "cannot read '%s': %s", path, strerror(errno));
    else if (!S_ISREG(sb.st_mode))
      local = LH_ERROR(LH_ERR_IO, "'%s' is not a regular file", path);
    else
      size = (int64_t)sb.st_size;
  }
  LH_TRY(lh_agree(comm, local));
  MPI_Bcast(&size, 1, MPI_INT64_T, 0, comm);
  int64_t nchunks = (size + LH_DIGEST_CHUNK - 1) / LH_DIGEST_CHUNK;
  bool mine = false;
  for (int64_t c = rank; c < nchunks; c += nranks) mine = true;
  local = lh_alloc((size_t)(nchunks > 0 ? nchunks : 1) * RAW, 1, true, "chunk digests", &raw);
  if (local == LH_OK && mine) local = lh_alloc(READ_CAP, 1, false, "read buffer", &buf);
  if (local == LH_OK && mine) {
    fd = open(path, O_RDONLY);
    if (fd < 0) local = LH_ERROR(LH_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
  }
  for (int64_t c = rank; local == LH_OK && c < nchunks; c += nranks) {
    int64_t off = c * LH_DIGEST_CHUNK,
            n = size - off < LH_DIGEST_CHUNK ? size - off : LH_DIGEST_CHUNK;
    local = chunk_digest(fd, path, off, n, buf, raw + c * RAW);
  }
  LH_TRY(lh_agree(comm, local));
  /* each chunk's bytes were written by one rank, zero elsewhere: a bitwise OR completes them */
  if (nchunks > 0) {
    int64_t total = nchunks * RAW;
    for (int64_t at = 0; at < total; at += 1 << 30) {
      int n = (int)(total - at < (1 << 30) ? total - at : (1 << 30));
      MPI_Allreduce(MPI_IN_PLACE, raw + at, n, MPI_UNSIGNED_CHAR, MPI_BOR, comm);
    }
  }
  local = lh_digest_new(&d);
  if (local == LH_OK) {
    char sz[32];
    snprintf(sz, sizeof sz, "%lld", (long long)size);
    lh_digest_string(d, sz);
    lh_digest_update(d, raw, (size_t)(nchunks * RAW));
    local = lh_digest_final(&d, hex);
  }
  LH_TRY(lh_agree(comm, local));
done:
  if (fd >= 0) close(fd);
  lh_digest_free(&d);
  lh_free(raw);
  lh_free(buf);
  return st;
}
