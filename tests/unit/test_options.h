/* What the option unit tests (test_options*.c, one binary: build/test_options) share. */
#ifndef OVLFS_TEST_OPTIONS_H
#define OVLFS_TEST_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>

#include "cli/config.h"

struct tally {
	int passed;
	int failed;
};

/* Counts one check; a failure is reported on stderr with the test's line. */
bool check(struct tally *t, bool ok, const char *what, int line);
#define CHECK(t, cond) check((t), (cond), #cond, __LINE__)

/* Two strings (or NULLs) are equal; a failure shows both. */
bool check_str(struct tally *t, const char *got, const char *want, const char *what, int line);
#define CHECK_STR(t, got, want) check_str((t), (got), (want), #got " == " #want, __LINE__)

/* argv[0] is supplied; args is NULL-terminated. */
int parse_list(struct ovl_config *cfg, char *err, size_t errlen, const char *const *args);
#define PARSE(cfg, err, ...)                                                                       \
	parse_list((cfg), (err), sizeof(err), (const char *const[]){__VA_ARGS__, NULL})

/* Whether cfg is as a failed parse must leave it. */
bool cfg_is_empty(const struct ovl_config *c);

/* test_options_parse.c: the parser, option by option. */
void test_basic(struct tally *t);
void test_flags(struct tally *t);
void test_ignored(struct tally *t);
void test_unsupported(struct tally *t);
void test_kernel_features(struct tally *t);
void test_owner_opts(struct tally *t);
void test_fuse_opts(struct tally *t);
void test_escapes(struct tally *t);
void test_remount(struct tally *t);
void test_parse_errors(struct tally *t);

/* test_options_validate.c: the start-up checks, in a scratch tree it makes and removes. */
void test_validate(struct tally *t);

#endif
