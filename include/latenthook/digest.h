/*
 * digest.h: SHA-256 content digests (OpenSSL's libcrypto), as lowercase hex strings. The batch
 * runner records them to recognise a step whose inputs and configuration have not changed.
 *
 * A file's digest does not depend on the rank count: the file is cut into fixed 64 MiB chunks,
 * each chunk is digested by one rank (round robin), and the digest of the file is the SHA-256
 * of its size followed by the chunk digests in order.
 */
#ifndef LATENTHOOK_DIGEST_H
#define LATENTHOOK_DIGEST_H

#include <stddef.h>
#include <stdint.h>

#include <mpi.h>

#include "latenthook/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define LH_DIGEST_HEX 65 /* 64 hex digits and the terminating NUL */
#define LH_DIGEST_CHUNK ((int64_t)64 << 20)

typedef struct lh_digest lh_digest;

/* A new running digest. Local. Errors: LH_ERR_NOMEM, LH_ERR_RUNTIME (libcrypto failed). */
LH_NODISCARD lh_status lh_digest_new(lh_digest **out);

/* Adds n bytes. Local; never fails (a libcrypto failure is reported by lh_digest_final). */
void lh_digest_update(lh_digest *d, const void *p, size_t n);

/* Adds a string and its terminating NUL (so "ab","c" and "a","bc" differ); NULL adds "\xff".
 * Local. */
void lh_digest_string(lh_digest *d, const char *s);

/* Writes the hex digest and frees *d (set to NULL). Local. Errors: LH_ERR_RUNTIME. */
LH_NODISCARD lh_status lh_digest_final(lh_digest **d, char hex[LH_DIGEST_HEX]);

/* Frees without a result (NULL and *d == NULL are fine). Local. */
void lh_digest_free(lh_digest **d);

/* The digest of a file's content, the same on every rank. Collective over comm.
 * Errors: LH_ERR_IO naming the file (missing, unreadable, changed size while read),
 * LH_ERR_NOMEM, LH_ERR_RUNTIME. */
LH_NODISCARD lh_status lh_digest_file(MPI_Comm comm, const char *path, char hex[LH_DIGEST_HEX]);

#ifdef __cplusplus
}
#endif
#endif
