/* Token vocabularies: GPT-2 byte-level tokens decode to the bytes of GPT-2's bytes_to_unicode
 * table (checked at its edges: space = U+0120, newline = U+010A, byte 0 = U+0100, DEL = U+0121,
 * soft hyphen 0xAD = U+0143, printable bytes themselves), other vocabularies stay as written,
 * text vocabularies map line i to id i, the display form escapes what a table cell or label
 * cannot show, and every malformed file is refused with a message naming it. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "latenthook/status.h"
#include "latenthook/vocab.h"

static char dir[64], path[128];

static void setup(void) {
  snprintf(dir, sizeof dir, "/tmp/lh_vocab_XXXXXX");
  cr_assert_not_null(mkdtemp(dir));
  snprintf(path, sizeof path, "%s/vocab", dir);
}

static void teardown(void) {
  unlink(path);
  rmdir(dir);
}

TestSuite(vocab, .init = setup, .fini = teardown);

static void write_file(const char *text, size_t len) {
  FILE *f = fopen(path, "wb");
  cr_assert_not_null(f);
  cr_assert_eq(fwrite(text, 1, len, f), len);
  cr_assert_eq(fclose(f), 0);
}

static lh_vocab *load(const char *text) {
  write_file(text, strlen(text));
  lh_vocab *v = NULL;
  lh_status st = lh_vocab_load(path, &v);
  cr_assert_eq(st, LH_OK, "load failed: %s", lh_error_message());
  return v;
}

static void refuse(const char *text, lh_status want, const char *needle) {
  write_file(text, strlen(text));
  lh_vocab *v = (lh_vocab *)0x1;
  lh_status st = lh_vocab_load(path, &v);
  cr_assert_eq(st, want, "status %d for %s", st, text);
  cr_assert_eq(v, (lh_vocab *)0x1, "out written on failure");
  cr_assert_not_null(strstr(lh_error_message(), needle), "message '%s' lacks '%s'",
                     lh_error_message(), needle);
  cr_assert_not_null(strstr(lh_error_message(), path), "message '%s' lacks the file",
                     lh_error_message());
  lh_error_clear();
}

Test(vocab, gpt2_byte_level_tokens) {
  /* "\u0120the" = " the", "\u010a" = "\n", U+0100 = byte 0, U+0121 = 0x7F, U+0143 = 0xAD, and
   * 'é' (U+00E9, a printable Latin-1 byte) = the single byte 0xE9; ids out of order, with a gap. */
  lh_vocab *v = load("{\"\\u0120the\": 3, \"hello\": 0, \"\\u010a\": 1, \"\\u0100\\u0121\\u0143\": 2,"
                     " \"\\u00e9\": 5}");
  cr_assert_eq(lh_vocab_size(v), 6);
  cr_assert_str_eq(lh_vocab_token(v, 0), "hello");
  cr_assert_str_eq(lh_vocab_token(v, 1), "\n");
  const char *t2 = lh_vocab_token(v, 2);
  cr_assert_eq(t2[0], '\0', "byte 0 ends the C string");
  cr_assert_str_eq(lh_vocab_token(v, 3), " the");
  cr_assert_str_eq(lh_vocab_token(v, 4), "", "a gap has the empty token");
  cr_assert_str_eq(lh_vocab_token(v, 5), "\xE9");
  cr_assert_null(lh_vocab_token(v, 6));
  cr_assert_null(lh_vocab_token(v, -1));
  lh_vocab_free(v);
}

Test(vocab, gpt2_table_edges) {
  lh_vocab *v = load("{\"\\u0121\\u0143\\u0142!~\\u00a1\\u00ac\\u00ae\\u00ff\": 0}");
  /* U+0121 = 0x7F, U+0143 = 0xAD, U+0142 = 0xA0 (the last of 0x7F..0xA0), then printables */
  cr_assert_str_eq(lh_vocab_token(v, 0), "\x7F\xAD\xA0!~\xA1\xAC\xAE\xFF");
  lh_vocab_free(v);
}

Test(vocab, non_byte_level_kept) {
  /* U+20AC (euro) and U+0144 (just past the table) are not GPT-2 byte characters */
  lh_vocab *v = load("{\"\\u20ac5\": 0, \"a\\u0144\": 1}");
  cr_assert_str_eq(lh_vocab_token(v, 0), "\xE2\x82\xAC" "5");
  cr_assert_str_eq(lh_vocab_token(v, 1), "a\xC5\x84");
  lh_vocab_free(v);
}

Test(vocab, text_lines) {
  lh_vocab *v = load("<bos>\r\na\n\nthe cat\n|");
  cr_assert_eq(lh_vocab_size(v), 5);
  cr_assert_str_eq(lh_vocab_token(v, 0), "<bos>");
  cr_assert_str_eq(lh_vocab_token(v, 1), "a");
  cr_assert_str_eq(lh_vocab_token(v, 2), "");
  cr_assert_str_eq(lh_vocab_token(v, 3), "the cat");
  cr_assert_str_eq(lh_vocab_token(v, 4), "|");
  lh_vocab_free(v);
  v = load("x\ny\n");
  cr_assert_eq(lh_vocab_size(v), 2, "a final newline adds no token");
  lh_vocab_free(v);
}

Test(vocab, display) {
  lh_vocab *v = load("{\"\\u0120\\u0120the\\u0120\": 0, \"a\\u010ab\\u0109\\\\\": 1,"
                     " \"\\u0101\\u00ff\": 2, \"x\": 4, \"\\u00e9t\\u00e9\": 5}");
  char buf[64];
  cr_assert_str_eq(lh_vocab_display(v, 0, buf, sizeof buf), "\xC2\xB7\xC2\xB7the\xC2\xB7");
  cr_assert_str_eq(lh_vocab_display(v, 1, buf, sizeof buf), "a\\nb\\t\\\\");
  /* byte 0x01 and the lone byte 0xFF (invalid UTF-8) are escaped */
  cr_assert_str_eq(lh_vocab_display(v, 2, buf, sizeof buf), "\\x01\\xFF");
  cr_assert_str_eq(lh_vocab_display(v, 3, buf, sizeof buf), "<empty>");
  cr_assert_str_eq(lh_vocab_display(v, 9, buf, sizeof buf), "<9>");
  cr_assert_str_eq(lh_vocab_display(NULL, 7, buf, sizeof buf), "<7>");
  /* "été" is the three bytes E9 74 E9 from the byte-level table: not valid UTF-8 */
  cr_assert_str_eq(lh_vocab_display(v, 5, buf, sizeof buf), "\\xE9t\\xE9");
  /* truncation never splits an escape or a character */
  cr_assert_str_eq(lh_vocab_display(v, 0, buf, 4), "\xC2\xB7");
  cr_assert_str_eq(lh_vocab_display(v, 1, buf, 4), "a\\n");
  cr_assert_str_eq(lh_vocab_display(v, 1, buf, 3), "a");
  lh_vocab_free(v);
  v = load("caf\xC3\xA9\n");
  cr_assert_str_eq(lh_vocab_display(v, 0, buf, sizeof buf), "caf\xC3\xA9");
  cr_assert_str_eq(lh_vocab_display(v, 0, buf, 5), "caf", "a 2-byte character is not split");
  lh_vocab_free(v);
}

Test(vocab, errors) {
  refuse("{\"a\": 0, \"b\": 0}", LH_ERR_VALUE, "id 0 is given to two tokens");
  refuse("{\"a\": -1}", LH_ERR_VALUE, "out of range");
  refuse("{\"a\": 1.5}", LH_ERR_VALUE, "not an integer");
  refuse("{\"a\": 134217728}", LH_ERR_VALUE, "out of range");
  refuse("{\"a\": 0,\n \"b\" 1}", LH_ERR_VALUE, "line 2");
  refuse("{\"a\": 0, \"a\": 1}", LH_ERR_VALUE, "invalid JSON");
  refuse("{}", LH_ERR_VALUE, "no tokens");
  refuse(" \n\t", LH_ERR_VALUE, "empty");
  refuse("", LH_ERR_VALUE, "empty");
  unlink(path);
  lh_vocab *v = (lh_vocab *)0x1;
  cr_assert_eq(lh_vocab_load(path, &v), LH_ERR_IO);
  cr_assert_not_null(strstr(lh_error_message(), "No such file"));
  lh_error_clear();
}
