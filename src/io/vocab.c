/*
 * vocab.c: token vocabularies (vocab.h): a Hugging Face vocab.json read with jansson, with
 * GPT-2's byte-level characters mapped back to bytes, or a text file of one token per line.
 */
#define _POSIX_C_SOURCE 200809L
#include "latenthook/vocab.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "core/check.h"

#define VOCAB_MAX_IDS ((int64_t)1 << 27)

struct lh_vocab {
  int64_t n;
  char **tok; /* n entries; NULL = no token (shown as "") */
};

void lh_vocab_free(lh_vocab *v) {
  if (!v) return;
  for (int64_t i = 0; i < v->n; i++) free(v->tok[i]);
  free(v->tok);
  free(v);
}

int64_t lh_vocab_size(const lh_vocab *v) { return v ? v->n : 0; }

const char *lh_vocab_token(const lh_vocab *v, int64_t id) {
  if (!v || id < 0 || id >= v->n) return NULL;
  return v->tok[id] ? v->tok[id] : "";
}

/* --- GPT-2 byte-level decoding ---------------------------------------------------------------- */

/* GPT-2's bytes_to_unicode: printable bytes ('!'..'~', 0xA1..0xAC, 0xAE..0xFF) stand for
 * themselves; the others, in increasing order, for U+0100 onwards. Returns the byte a code point
 * stands for, or -1 when it is not in the table. */
static int byte_of_codepoint(uint32_t cp) {
  static int table[0x144];
  static bool ready = false; /* idempotent fill: racing threads write the same values */
  if (!ready) {
    for (int i = 0; i < 0x144; i++) table[i] = -1;
    int next = 0x100;
    for (int b = 0; b < 256; b++) {
      bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
      table[printable ? b : next++] = b;
    }
    ready = true;
  }
  return cp < 0x144 ? table[cp] : -1;
}

/* Decodes one UTF-8 character at s (length len > 0); returns its length, or 0 if invalid. */
static int utf8_decode(const unsigned char *s, size_t len, uint32_t *cp) {
  if (s[0] < 0x80) {
    *cp = s[0];
    return 1;
  }
  int n = (s[0] & 0xE0) == 0xC0 ? 2 : (s[0] & 0xF0) == 0xE0 ? 3 : (s[0] & 0xF8) == 0xF0 ? 4 : 0;
  if (n == 0 || (size_t)n > len) return 0;
  uint32_t c = s[0] & (0x7F >> n);
  for (int i = 1; i < n; i++) {
    if ((s[i] & 0xC0) != 0x80) return 0;
    c = (c << 6) | (s[i] & 0x3F);
  }
  static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};
  if (c < min[n] || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) return 0;
  *cp = c;
  return n;
}

/* The byte-level decoding of tok (new string), or a copy when a character is not in the table. */
static char *decode_token(const char *tok) {
  size_t len = strlen(tok);
  char *out = malloc(len + 1);
  if (!out) return NULL;
  size_t o = 0;
  const unsigned char *s = (const unsigned char *)tok;
  for (size_t i = 0; i < len;) {
    uint32_t cp;
    int k = utf8_decode(s + i, len - i, &cp);
    int b = k ? byte_of_codepoint(cp) : -1;
    if (b < 0) { /* not byte-level: keep the token as written */
      memcpy(out, tok, len + 1);
      return out;
    }
    out[o++] = (char)b;
    i += (size_t)k;
  }
  out[o] = '\0';
  return out;
}

/* --- loading ---------------------------------------------------------------------------------- */

static lh_status load_json(const char *path, lh_vocab *v) {
  lh_status st = LH_OK;
  json_error_t jerr;
  json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
  if (!root)
    LH_FAIL(LH_ERR_VALUE, "vocabulary %s, line %d, column %d: invalid JSON: %s", path, jerr.line,
            jerr.column, jerr.text);
  if (!json_is_object(root))
    LH_FAIL(LH_ERR_VALUE, "vocabulary %s: expected one JSON object {\"token\": id, ...}", path);
  if (json_object_size(root) == 0) LH_FAIL(LH_ERR_VALUE, "vocabulary %s: no tokens", path);
  const char *key;
  json_t *val;
  int64_t n = 0;
  json_object_foreach(root, key, val) {
    if (!json_is_integer(val) || json_integer_value(val) < 0 ||
        json_integer_value(val) >= VOCAB_MAX_IDS)
      LH_FAIL(LH_ERR_VALUE,
              "vocabulary %s: token \"%s\" has id %s; expected an integer in [0, %" PRId64 ")",
              path, key, json_is_integer(val) ? "out of range" : "that is not an integer",
              VOCAB_MAX_IDS);
    n = LH_MAX(n, (int64_t)json_integer_value(val) + 1);
  }
  v->tok = calloc((size_t)n, sizeof *v->tok);
  if (!v->tok) LH_FAIL(LH_ERR_NOMEM, "vocabulary %s: out of memory for %" PRId64 " ids", path, n);
  v->n = n;
  json_object_foreach(root, key, val) {
    int64_t id = (int64_t)json_integer_value(val);
    if (v->tok[id])
      LH_FAIL(LH_ERR_VALUE, "vocabulary %s: id %" PRId64 " is given to two tokens", path, id);
    v->tok[id] = decode_token(key);
    if (!v->tok[id]) LH_FAIL(LH_ERR_NOMEM, "vocabulary %s: out of memory", path);
  }
done:
  json_decref(root);
  return st;
}

static lh_status load_lines(const char *path, char *text, size_t len, lh_vocab *v) {
  lh_status st = LH_OK;
  int64_t n = 0;
  for (size_t i = 0; i < len; i++) n += text[i] == '\n';
  if (len > 0 && text[len - 1] != '\n') n++; /* last line without its newline */
  if (n > VOCAB_MAX_IDS)
    LH_FAIL(LH_ERR_VALUE, "vocabulary %s: %" PRId64 " lines; at most %" PRId64 " ids", path, n,
            VOCAB_MAX_IDS);
  v->tok = calloc((size_t)n, sizeof *v->tok);
  if (!v->tok) LH_FAIL(LH_ERR_NOMEM, "vocabulary %s: out of memory", path);
  v->n = n;
  size_t start = 0;
  for (int64_t id = 0; id < n; id++) {
    size_t end = start;
    while (end < len && text[end] != '\n') end++;
    size_t e = end > start && text[end - 1] == '\r' ? end - 1 : end;
    v->tok[id] = strndup(text + start, e - start);
    if (!v->tok[id]) LH_FAIL(LH_ERR_NOMEM, "vocabulary %s: out of memory", path);
    start = end + 1;
  }
done:
  return st;
}

lh_status lh_vocab_load(const char *path, lh_vocab **out) {
  lh_status st = LH_OK;
  char *text = NULL;
  lh_vocab *v = calloc(1, sizeof *v);
  if (!v) LH_FAIL(LH_ERR_NOMEM, "vocabulary %s: out of memory", path);
  FILE *f = fopen(path, "rb");
  if (!f) LH_FAIL(LH_ERR_IO, "vocabulary %s: %s", path, strerror(errno));
  size_t cap = 1 << 16, len = 0;
  text = malloc(cap);
  while (text) {
    len += fread(text + len, 1, cap - len, f);
    if (len < cap) break;
    char *bigger = realloc(text, cap *= 2);
    if (!bigger) free(text);
    text = bigger;
  }
  bool bad = !text || ferror(f);
  fclose(f);
  if (!text) LH_FAIL(LH_ERR_NOMEM, "vocabulary %s: out of memory", path);
  if (bad) LH_FAIL(LH_ERR_IO, "vocabulary %s: read error", path);
  size_t first = 0;
  while (first < len && strchr(" \t\r\n", text[first])) first++;
  if (first == len) LH_FAIL(LH_ERR_VALUE, "vocabulary %s: the file is empty", path);
  if (text[first] == '{')
    LH_TRY(load_json(path, v));
  else
    LH_TRY(load_lines(path, text, len, v));
  *out = v;
  v = NULL;
done:
  free(text);
  lh_vocab_free(v);
  return st;
}

/* --- display ---------------------------------------------------------------------------------- */

/* Appends piece (n bytes) to buf if it fits with the terminating NUL; returns false if not. */
static bool put(char *buf, size_t cap, size_t *o, const char *piece, size_t n) {
  if (*o + n + 1 > cap) return false;
  memcpy(buf + *o, piece, n);
  *o += n;
  buf[*o] = '\0';
  return true;
}

const char *lh_vocab_display(const lh_vocab *v, int64_t id, char *buf, size_t cap) {
  if (cap == 0) return buf;
  buf[0] = '\0';
  const char *tok = lh_vocab_token(v, id);
  if (!tok) {
    snprintf(buf, cap, "<%" PRId64 ">", id);
    return buf;
  }
  if (!*tok) {
    snprintf(buf, cap, "<empty>");
    return buf;
  }
  const unsigned char *s = (const unsigned char *)tok;
  size_t len = strlen(tok), lead = 0, trail = 0, o = 0;
  while (lead < len && s[lead] == ' ') lead++;
  while (trail < len - lead && s[len - 1 - trail] == ' ') trail++;
  static const char dot[] = "\xC2\xB7"; /* U+00B7 */
  for (size_t i = 0; i < len;) {
    char esc[8];
    const char *piece = esc;
    size_t n = 0, adv = 1;
    uint32_t cp;
    int k;
    if (s[i] == ' ' && (i < lead || i >= len - trail)) {
      piece = dot;
      n = 2;
    } else if (s[i] == '\n' || s[i] == '\t' || s[i] == '\r' || s[i] == '\\') {
      esc[0] = '\\';
      esc[1] = s[i] == '\n' ? 'n' : s[i] == '\t' ? 't' : s[i] == '\r' ? 'r' : '\\';
      n = 2;
    } else if (s[i] < 0x20 || s[i] == 0x7F || !(k = utf8_decode(s + i, len - i, &cp))) {
      n = (size_t)snprintf(esc, sizeof esc, "\\x%02X", s[i]);
    } else {
      piece = (const char *)s + i;
      n = adv = (size_t)k;
    }
    if (!put(buf, cap, &o, piece, n)) break;
    i += adv;
  }
  return buf;
}
