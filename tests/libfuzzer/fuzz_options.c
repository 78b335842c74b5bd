/*
 * libFuzzer harness for the command line: ovl_parse_args (src/cli/options.c) and, when parsing
 * succeeds, ovl_validate_config (src/cli/validate.c).
 *
 * Input: the first byte picks the shape (mod 3), the rest is the payload.
 *   0: the payload is one -o string:  ovlfs -o PAYLOAD mnt
 *   1: the payload is argv[1..], split on NUL bytes (at most 16 arguments)
 *   2: round trip: the payload's NUL-separated parts are upperdir, workdir and the lower
 *      layers; escaped (\\ \: \,) into one -o string they must parse back unchanged.
 * Invariants: no crash, leak or sanitizer report; an error leaves a zeroed config and a
 * one-line message; a success leaves a complete config (see check_ok).
 * Relative paths resolve in a private sandbox holding directories l1 l2 u w mnt.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "cli/config.h"

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_ARGS 16

static void die(const char *what)
{
	perror(what);
	abort();
}

/* Fuzzing stops at the first abort(), which is what a broken invariant should do. */
#define REQUIRE(cond)                                                                              \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "fuzz_options: invariant failed: %s (line %d)\n", #cond,   \
				__LINE__);                                                         \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

static char sandbox[] = "/tmp/ovlfs-fuzz-options-XXXXXX";

static int orig_cwd = -1, sandbox_fd = -1;

static void remove_sandbox(void)
{
	static const char *const dirs[] = {"l1", "l2", "u/", "w/work", "w", "u", "mnt"};

	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		char p[sizeof(sandbox) + 16];
		snprintf(p, sizeof(p), "%s/%s", sandbox, dirs[i]);
		rmdir(p);
	}
	rmdir(sandbox);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static const char *const dirs[] = {"l1", "l2", "u", "w", "mnt"};
	int fd;

	(void)argc;
	(void)argv;
	if (!mkdtemp(sandbox))
		die("mkdtemp");
	atexit(remove_sandbox);
	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		char p[sizeof(sandbox) + 16];
		snprintf(p, sizeof(p), "%s/%s", sandbox, dirs[i]);
		if (mkdir(p, 0755) < 0)
			die("mkdir");
	}
	/* libFuzzer reads and writes the corpus relative to the cwd: keep it, move per run. */
	orig_cwd = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
	sandbox_fd = open(sandbox, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (orig_cwd < 0 || sandbox_fd < 0)
		die("open cwd");
	/* --help prints a page to stdout per run; libFuzzer reports on stderr. */
	fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
	if (fd < 0 || dup2(fd, STDOUT_FILENO) < 0)
		die("/dev/null");
	close(fd);
	return 0;
}

static bool all_zero(const struct ovl_config *cfg)
{
	static const struct ovl_config zero;

	return memcmp(cfg, &zero, sizeof(zero)) == 0;
}

/* A parsed config is complete and consistent, so that main() can use it blindly. */
static void check_ok(const struct ovl_config *cfg)
{
	/* A remount names only the mount point: the mount's flags change, no layers. */
	if (cfg->remount) {
		REQUIRE(cfg->mountpoint != NULL);
		return;
	}
	REQUIRE(cfg->nlower >= 1 && cfg->nlower <= OVL_MAX_LOWER);
	REQUIRE(cfg->lowerdirs != NULL);
	for (int i = 0; i < cfg->nlower; i++)
		REQUIRE(cfg->lowerdirs[i] && cfg->lowerdirs[i][0]);
	REQUIRE(cfg->mountpoint != NULL);
	REQUIRE(!cfg->upperdir == !cfg->workdir);
	REQUIRE(!cfg->upperdir || cfg->upperdir[0]);
	REQUIRE(!cfg->workdir || cfg->workdir[0]);
	REQUIRE(cfg->upperdir || cfg->params.readonly);
	REQUIRE(!cfg->debug || cfg->foreground);
}

static void check_validated(const struct ovl_config *cfg)
{
	check_ok(cfg);
	for (int i = 0; i < cfg->nlower; i++)
		REQUIRE(cfg->lowerdirs[i][0] == '/');
	REQUIRE(cfg->mountpoint[0] == '/');
	REQUIRE(!cfg->upperdir || cfg->upperdir[0] == '/');
	REQUIRE(!cfg->workdir || cfg->workdir[0] == '/');
}

static void run(int argc, char **argv)
{
	struct ovl_config cfg;
	char err[256];
	int ret;

	memset(err, 'X', sizeof(err));
	ret = ovl_parse_args(argc, argv, &cfg, err, sizeof(err));
	REQUIRE(ret == OVL_ARGS_OK || ret == OVL_ARGS_EXIT || ret == OVL_ARGS_ERROR);
	REQUIRE(memchr(err, '\0', sizeof(err)) != NULL);
	if (ret == OVL_ARGS_ERROR) {
		REQUIRE(err[0] != '\0');
		REQUIRE(all_zero(&cfg));
		return;
	}
	if (ret == OVL_ARGS_EXIT) {
		REQUIRE(all_zero(&cfg));
		return;
	}
	check_ok(&cfg);
	memset(err, 'X', sizeof(err));
	if (ovl_validate_config(&cfg, err, sizeof(err)) == 0)
		check_validated(&cfg);
	else
		REQUIRE(err[0] != '\0' && memchr(err, '\0', sizeof(err)) != NULL);
	ovl_config_free(&cfg);
	REQUIRE(all_zero(&cfg));
	ovl_config_free(&cfg); /* freeing twice is harmless */
}

/* Appends s with '\\', ':' and ',' escaped. */
static char *put_escaped(char *out, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\' || *s == ':' || *s == ',')
			*out++ = '\\';
		*out++ = *s;
	}
	return out;
}

static void round_trip(char *payload, size_t len)
{
	const char *parts[MAX_ARGS];
	int nparts = 0, nlower;
	char *opts = malloc(4 * len + 64), *o = opts;
	char *argv[] = {"ovlfs", "-o", opts, "mnt", NULL};
	struct ovl_config cfg;
	char err[256];

	if (!opts)
		return;
	/* Empty parts would be refused (as they should), so they are left out. */
	for (char *p = payload; p < payload + len && nparts < MAX_ARGS; p += strlen(p) + 1)
		if (*p)
			parts[nparts++] = p;
	nlower = nparts - 2;
	for (int i = 0; i < nlower; i++)
		if (!strncmp(parts[2 + i], "//", 2)) /* plugin syntax, refused on purpose */
			nlower = 0;
	if (nlower < 1) {
		free(opts);
		return;
	}
	o += sprintf(o, "upperdir=");
	o = put_escaped(o, parts[0]);
	o += sprintf(o, ",workdir=");
	o = put_escaped(o, parts[1]);
	o += sprintf(o, ",lowerdir=");
	for (int i = 0; i < nlower; i++) {
		if (i)
			*o++ = ':';
		o = put_escaped(o, parts[2 + i]);
	}
	*o = '\0';
	if (ovl_parse_args(4, argv, &cfg, err, sizeof(err)) != OVL_ARGS_OK) {
		fprintf(stderr, "fuzz_options: '%s' refused: %s\n", opts, err);
		abort();
	}
	REQUIRE(!strcmp(cfg.upperdir, parts[0]) && !strcmp(cfg.workdir, parts[1]));
	REQUIRE(cfg.nlower == nlower);
	for (int i = 0; i < nlower; i++)
		REQUIRE(!strcmp(cfg.lowerdirs[i], parts[2 + i]));
	ovl_config_free(&cfg);
	free(opts);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *copy, *argv[MAX_ARGS + 2];
	int argc = 0;

	if (size < 1)
		return 0;
	/* One extra NUL so that the last argument is terminated. */
	copy = calloc(1, size);
	if (!copy)
		return 0;
	memcpy(copy, data + 1, size - 1);
	argv[argc++] = "ovlfs";
	if (data[0] % 3 == 2) {
		round_trip(copy, size - 1);
		free(copy);
		return 0;
	}
	if (data[0] % 3 == 0) {
		argv[argc++] = "-o";
		argv[argc++] = copy;
		argv[argc++] = "mnt";
	} else {
		char *p = copy, *end = copy + size - 1;
		while (argc < MAX_ARGS + 1) {
			argv[argc++] = p;
			p += strlen(p) + 1;
			if (p >= end)
				break;
		}
	}
	argv[argc] = NULL;
	if (fchdir(sandbox_fd) < 0)
		die("fchdir sandbox");
	run(argc, argv);
	if (fchdir(orig_cwd) < 0)
		die("fchdir back");
	free(copy);
	return 0;
}
