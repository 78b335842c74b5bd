/* Unit tests of the command-line parser (options.c, option_table.c, help.c) and the start-up
 * checks (validate.c): the shared checks, --help and --version, and main. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "test_options.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef OVLFS_VERSION
#define OVLFS_VERSION "0.1.0"
#endif

bool check(struct tally *t, bool ok, const char *what, int line)
{
	if (ok) {
		t->passed++;
	} else {
		t->failed++;
		fprintf(stderr, "FAIL line %d: %s\n", line, what);
	}
	return ok;
}

bool check_str(struct tally *t, const char *got, const char *want, const char *what, int line)
{
	bool ok = (!got && !want) || (got && want && !strcmp(got, want));

	if (!check(t, ok, what, line))
		fprintf(stderr, "    got:  %s%s%s\n    want: %s%s%s\n", got ? "'" : "",
			got ? got : "NULL", got ? "'" : "", want ? "'" : "", want ? want : "NULL",
			want ? "'" : "");
	return ok;
}

int parse_list(struct ovl_config *cfg, char *err, size_t errlen, const char *const *args)
{
	char *argv[64];
	int argc = 0;

	argv[argc++] = "ovlfs";
	while (*args && argc < 63)
		argv[argc++] = (char *)*args++;
	argv[argc] = NULL;
	return ovl_parse_args(argc, argv, cfg, err, errlen);
}

bool cfg_is_empty(const struct ovl_config *c)
{
	return !c->lowerdirs && !c->nlower && !c->upperdir && !c->workdir && !c->mountpoint &&
	       !c->fuse_opts && !c->foreground && !c->debug && !c->single_thread &&
	       !c->params.readonly && !c->params.no_fsync && !c->kernel_cache;
}

/* Runs the parser with stdout sent to a temporary file whose contents land in out. */
static int parse_captured(struct tally *t, const char *const *args, char *out, size_t outlen)
{
	struct ovl_config cfg;
	char err[512];
	FILE *tmp = tmpfile();
	int saved, rc;
	size_t n;

	out[0] = '\0';
	if (!CHECK(t, tmp != NULL))
		return -100;
	if (fflush(stdout) == EOF)
		perror("fflush");
	saved = dup(STDOUT_FILENO);
	if (!CHECK(t, saved >= 0) || !CHECK(t, dup2(fileno(tmp), STDOUT_FILENO) >= 0)) {
		fclose(tmp);
		return -100;
	}
	rc = parse_list(&cfg, err, sizeof(err), args);
	if (fflush(stdout) == EOF)
		perror("fflush");
	CHECK(t, dup2(saved, STDOUT_FILENO) >= 0);
	close(saved);
	rewind(tmp);
	n = fread(out, 1, outlen - 1, tmp);
	out[n] = '\0';
	fclose(tmp);
	CHECK(t, cfg_is_empty(&cfg));
	ovl_config_free(&cfg);
	return rc;
}

static void test_help_version(struct tally *t)
{
	static const char *const names[] = {
	    "-o",
	    "-f",
	    "-d",
	    "-s",
	    "--help",
	    "--version",
	    "lowerdir=",
	    "upperdir=",
	    "workdir=",
	    "ro",
	    "rw",
	    "fsync=",
	    "volatile",
	    "uring=",
	    "debug",
	    "kernel_cache",
	    "allow_other",
	    "allow_root",
	    "default_permissions",
	    "fsname=",
	    "subtype=",
	    "nosuid",
	    "nodev",
	    "noexec",
	    "noatime",
	    "auto_unmount",
	    "max_read=",
	    "timeout=",
	    "threaded=",
	    "fast_ino=",
	    "writeback=",
	    "noacl",
	    "static_nlink",
	    "index=on|off",
	    "nfs_export=on|off",
	    "metacopy=on|off",
	    "redirect_dir=on|follow|nofollow|off",
	    "xino=off|auto|on",
	    "uuid=on|off|null|auto",
	    "context=",
	    "sync=",
	    "fast_ino_check=",
	    "xino=",
	    "noxattrs=",
	    "max_write=",
	    "splice_read",
	    "clone_fd",
	    "max_idle_threads=",
	    "uidmapping=",
	    "gidmapping=",
	    "squash_to_root",
	    "squash_to_uid=",
	    "squash_to_gid=",
	    "xattr_permissions=",
	    "plugins=",
	    "ino32_t",
	    "relatime",
	    "defaults",
	    "dirsync",
	    "lazytime",
	    "x-*",
	};
	char out[8192];
	size_t i;
	int rc;

	rc = parse_captured(t, (const char *const[]){"--help", NULL}, out, sizeof(out));
	CHECK(t, rc == OVL_ARGS_EXIT);
	CHECK(t, !strncmp(out, "usage: ovlfs [OPTIONS] [SOURCE] MOUNTPOINT\n", 43));
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (!check(t, strstr(out, names[i]) != NULL, names[i], __LINE__))
			fprintf(stderr, "    missing from --help\n");

	/* -h wins even before a mount point or lowerdir is seen. */
	rc = parse_captured(t, (const char *const[]){"-o", "allow_other", "-h", NULL}, out,
			    sizeof(out));
	CHECK(t, rc == OVL_ARGS_EXIT && !strncmp(out, "usage: ovlfs", 12));

	rc = parse_captured(t, (const char *const[]){"--version", NULL}, out, sizeof(out));
	CHECK(t, rc == OVL_ARGS_EXIT);
	CHECK_STR(t, out, "ovlfs " OVLFS_VERSION "\n");
	rc = parse_captured(t, (const char *const[]){"/m", "-V", NULL}, out, sizeof(out));
	CHECK(t, rc == OVL_ARGS_EXIT);
	CHECK_STR(t, out, "ovlfs " OVLFS_VERSION "\n");
}

/*
 * The mount options --help names: the leading name of each comma-separated item on the
 * lines that name options (two spaces in; descriptions start further in), from the
 * "Overlay options:" heading on. Returns how many, at most max.
 */
static size_t help_option_names(const char *help, char names[][48], size_t max)
{
	const char *line = strstr(help, "\nOverlay options:\n");
	size_t n = 0;

	for (; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
		size_t len = strcspn(line, "\n"), end, off;

		if (len < 3 || line[0] != ' ' || line[1] != ' ' || line[2] == ' ')
			continue;
		/* The names end where two spaces start the description. */
		for (end = 2; end < len && !(line[end] == ' ' && line[end + 1] == ' '); end++)
			;
		for (off = 2; off < end && n < max;) {
			size_t nl = strspn(line + off, "abcdefghijklmnopqrstuvwxyz0123456789_-*+");
			size_t item = off;

			snprintf(names[n++], sizeof(names[0]), "%.*s", (int)nl, line + off);
			/* On to the next item, after ", ". */
			while (item + 1 < end && !(line[item] == ',' && line[item + 1] == ' '))
				item++;
			off = item + 2;
		}
	}
	return n;
}

/* --help is made from the option table: every row is in it, and each name it lists parses. */
static void test_help_matches_table(struct tally *t)
{
	static char names[256][48];
	char out[8192], opt[128], err[512];
	size_t n, i, j;
	int rc;

	rc = parse_captured(t, (const char *const[]){"--help", NULL}, out, sizeof(out));
	CHECK(t, rc == OVL_ARGS_EXIT);
	n = help_option_names(out, names, sizeof(names) / sizeof(names[0]));
	for (i = 0; ovl_option_name(i); i++) {
		for (j = 0; j < n && strcmp(names[j], ovl_option_name(i)); j++)
			;
		if (!check(t, j < n, ovl_option_name(i), __LINE__))
			fprintf(stderr, "    in the option table, missing from --help\n");
	}
	CHECK(t, n >= i);
	for (j = 0; j < n; j++) {
		struct ovl_config cfg;
		char *star;

		/* x-* stands for any x-something (fstab's userspace options). The precision
		 * keeps GCC from sizing the name as the whole names array. */
		snprintf(opt, sizeof(opt), "lowerdir=/l,%.*s", (int)sizeof(names[j]) - 1, names[j]);
		star = strchr(opt, '*');
		if (star)
			*star = 'y';
		rc = PARSE(&cfg, err, "-o", opt, "/m");
		if (!check(t, rc == OVL_ARGS_OK || strncmp(err, "unknown option", 14), names[j],
			   __LINE__))
			fprintf(stderr, "    named in --help, refused: %s\n", err);
		ovl_config_free(&cfg);
	}
}

int main(void)
{
	struct tally t = {0, 0};

	test_basic(&t);
	test_flags(&t);
	test_ignored(&t);
	test_unsupported(&t);
	test_kernel_features(&t);
	test_owner_opts(&t);
	test_fuse_opts(&t);
	test_escapes(&t);
	test_help_version(&t);
	test_help_matches_table(&t);
	test_remount(&t);
	test_parse_errors(&t);
	test_validate(&t);
	printf("options: %d passed, %d failed\n", t.passed, t.failed);
	return t.failed ? 1 : 0;
}
