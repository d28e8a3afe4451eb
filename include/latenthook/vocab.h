/*
 * vocab.h: token vocabularies, to show token ids as text in tables and figure labels.
 *
 * Two file formats, chosen by content:
 *  - a Hugging Face `vocab.json`: one JSON object {"token": id, ...} with non-negative integer
 *    ids (read with jansson). GPT-2's byte-level tokens are decoded back to their bytes: each
 *    character of a token stands for one byte under GPT-2's byte-to-unicode table (printable
 *    Latin-1 bytes stand for themselves, the other 68 bytes for U+0100 .. U+0143, so that
 *    "\u0120the" is " the" and "\u010a" is a newline). A token containing a character outside
 *    that table (a non-byte-level vocabulary) is kept as written.
 *  - a text file with one token per line: line i (from 0) is the token of id i; a final newline
 *    is optional and "\r\n" line ends are accepted.
 * Ids without a token (gaps in a vocab.json) have the empty token "".
 *
 * All functions are Local and do no MPI; an lh_vocab is read-only after loading, so threads may
 * share one.
 */
#ifndef LATENTHOOK_VOCAB_H
#define LATENTHOOK_VOCAB_H

#include <stddef.h>
#include <stdint.h>

#include "latenthook/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lh_vocab lh_vocab;

/* Loads path (vocab.json if its first non-blank byte is '{', else one token per line).
 * Errors: LH_ERR_IO (cannot open or read), LH_ERR_VALUE (invalid JSON with its line and column,
 * an id that is not an integer in [0, 2^27), two tokens with one id, an empty file),
 * LH_ERR_NOMEM. *out is written only on success; free it with lh_vocab_free. */
LH_NODISCARD lh_status lh_vocab_load(const char *path, lh_vocab **out);

/* Number of ids: the largest id + 1. */
int64_t lh_vocab_size(const lh_vocab *v);

/* The token's text (UTF-8 bytes as decoded; may contain spaces and newlines; "" for an id
 * without a token), or NULL when id < 0 or id >= size. Borrowed, valid until lh_vocab_free. */
const char *lh_vocab_token(const lh_vocab *v, int64_t id);

/* The token made printable for one table cell or plot label, written to buf (NUL-terminated,
 * truncated to cap bytes on a UTF-8 character boundary): newline, tab and carriage return as
 * \n \t \r, other control bytes and invalid UTF-8 bytes as \xNN, a backslash as \\, and leading
 * or trailing spaces as U+00B7 '·'; the empty token as "<empty>". An id out of range (or v ==
 * NULL) gives "<id>" with the number. Returns buf (cap >= 1 required). */
const char *lh_vocab_display(const lh_vocab *v, int64_t id, char *buf, size_t cap);

void lh_vocab_free(lh_vocab *v);

#ifdef __cplusplus
}
#endif

#endif
