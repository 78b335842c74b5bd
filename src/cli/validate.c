/* Start-up checks of the layers and the mount point, so that mistakes fail before mounting. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "config.h"
#include "engine/errmsg.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

/* One directory to check: the name it was given, its canonical path and identity. */
struct dir_info {
	const char *role; /* "lower layer", "upperdir", ... as the message names it */
	const char *given;
	char *canon;
	struct stat st;
};

enum relation { REL_NONE, REL_SAME, REL_INSIDE, REL_CONTAINS };

/* Resolves d->given into d->canon and checks it is a directory. */
static int resolve_dir(struct dir_info *d, char *err, size_t errlen)
{
	d->canon = realpath(d->given, NULL);
	if (!d->canon) {
		int e = errno;

		if (e == ENOTCONN)
			return ovl_errmsg(
			    err, errlen,
			    "%s '%s': %s (a stale FUSE mount? try 'fusermount3 -u %s')", d->role,
			    d->given, strerror(e), d->given);
		return ovl_errmsg(err, errlen, "%s '%s': %s", d->role, d->given, strerror(e));
	}
	if (stat(d->canon, &d->st) < 0)
		return ovl_errmsg(err, errlen, "%s '%s': %s", d->role, d->given, strerror(errno));
	if (!S_ISDIR(d->st.st_mode))
		return ovl_errmsg(err, errlen, "%s '%s' is not a directory", d->role, d->given);
	return 0;
}

static int check_writable(const struct dir_info *d, char *err, size_t errlen)
{
	struct statvfs vfs;

	/* Checked before access(), which would only say EROFS. */
	if (statvfs(d->canon, &vfs) < 0)
		return ovl_errmsg(err, errlen, "%s '%s': %s", d->role, d->given, strerror(errno));
	if (vfs.f_flag & ST_RDONLY)
		return ovl_errmsg(err, errlen, "%s '%s' is on a read-only filesystem", d->role,
				  d->given);
	if (access(d->canon, W_OK) < 0)
		return ovl_errmsg(err, errlen, "%s '%s' is not writable: %s", d->role, d->given,
				  strerror(errno));
	return 0;
}

/* Whether canonical path a is strictly below canonical path b, component-wise. */
static bool path_inside(const char *a, const char *b)
{
	size_t bl = strlen(b);

	if (!strcmp(b, "/"))
		return strcmp(a, "/") != 0;
	return strncmp(a, b, bl) == 0 && a[bl] == '/';
}

static enum relation relate(const struct dir_info *a, const struct dir_info *b)
{
	/* The inode catches one directory reached through two bind mounts. */
	if (!strcmp(a->canon, b->canon) ||
	    (a->st.st_dev == b->st.st_dev && a->st.st_ino == b->st.st_ino))
		return REL_SAME;
	if (path_inside(a->canon, b->canon))
		return REL_INSIDE;
	if (path_inside(b->canon, a->canon))
		return REL_CONTAINS;
	return REL_NONE;
}

/* "'given'", plus the resolved path when it differs, so the user sees why two paths clash. */
static void describe(const struct dir_info *d, char *buf, size_t len)
{
	if (!strcmp(d->given, d->canon))
		snprintf(buf, len, "'%s'", d->given);
	else
		snprintf(buf, len, "'%s' (resolved to '%s')", d->given, d->canon);
}

/* Fails if a and b overlap in any way. */
static int check_apart(const struct dir_info *a, const struct dir_info *b, char *err, size_t errlen)
{
	static const char *const verb[] = {
	    [REL_SAME] = "is the same directory as",
	    [REL_INSIDE] = "is inside",
	    [REL_CONTAINS] = "contains",
	};
	enum relation r = relate(a, b);
	char an[2 * PATH_MAX + 32], bn[2 * PATH_MAX + 32];

	if (r == REL_NONE)
		return 0;
	describe(a, an, sizeof(an));
	describe(b, bn, sizeof(bn));
	return ovl_errmsg(err, errlen, "%s %s %s %s %s", a->role, an, verb[r], b->role, bn);
}

/* The mount id tells two mounts of one filesystem apart; 0 when the kernel can't say. */
static int mount_id(const struct dir_info *d, uint64_t *id, char *err, size_t errlen)
{
	struct statx stx;

	*id = 0;
	if (statx(AT_FDCWD, d->canon, 0, STATX_MNT_ID, &stx) < 0) {
		/* Kernels before 4.11 have no statx; fall back to st_dev alone. */
		if (errno == ENOSYS)
			return 0;
		return ovl_errmsg(err, errlen, "%s '%s': %s", d->role, d->given, strerror(errno));
	}
	if (stx.stx_mask & STATX_MNT_ID)
		*id = stx.stx_mnt_id;
	return 0;
}

/* Decodes the octal escapes (\040 and the like) of a mountinfo path, in place. */
static void unescape_octal(char *s)
{
	char *d = s;

	while (*s) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
		    s[3] >= '0' && s[3] <= '7') {
			*d++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
			s += 4;
		} else {
			*d++ = *s++;
		}
	}
	*d = '\0';
}

/* 1 if canonical path is a mount point in /proc/self/mountinfo, 0 if not, -1 if unreadable. */
static int listed_in_mountinfo(const char *path)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char *line = NULL;
	size_t cap = 0;
	int found = 0;

	if (!f)
		return -1;
	while (!found && getline(&line, &cap, f) >= 0) {
		char *p = line, *end;
		int field;

		/* Fields: id parent major:minor root mount-point ... */
		for (field = 0; field < 4 && p; field++) {
			p = strchr(p, ' ');
			if (p)
				p++;
		}
		if (!p)
			continue;
		end = strchr(p, ' ');
		if (!end)
			continue;
		*end = '\0';
		unescape_octal(p);
		found = strcmp(p, path) == 0;
	}
	if (!found && ferror(f))
		found = -1;
	free(line);
	/* Closing a stream only read from cannot lose data. */
	(void)fclose(f);
	return found;
}

static int is_mountpoint(const struct dir_info *d, bool *busy, char *err, size_t errlen)
{
	char parent[PATH_MAX];
	struct stat pst;
	int listed;

	*busy = false;
	if (!strcmp(d->canon, "/")) {
		*busy = true;
		return 0;
	}
	listed = listed_in_mountinfo(d->canon);
	if (listed >= 0) {
		*busy = listed;
		return 0;
	}
	/*
	 * Without mountinfo, a directory on another device than its parent is taken for a
	 * mount root (a btrfs subvolume looks the same, hence only as a fallback).
	 */
	if (snprintf(parent, sizeof(parent), "%s/..", d->canon) >= (int)sizeof(parent))
		return ovl_errmsg(err, errlen, "%s '%s': %s", d->role, d->given,
				  strerror(ENAMETOOLONG));
	if (stat(parent, &pst) < 0)
		return ovl_errmsg(err, errlen, "%s '%s': cannot stat its parent: %s", d->role,
				  d->given, strerror(errno));
	*busy = pst.st_dev != d->st.st_dev;
	return 0;
}

static int check_upper_work(struct dir_info *up, struct dir_info *wk, char *err, size_t errlen)
{
	uint64_t up_mnt, wk_mnt;

	if (resolve_dir(up, err, errlen) < 0 || check_writable(up, err, errlen) < 0)
		return -1;
	if (resolve_dir(wk, err, errlen) < 0 || check_writable(wk, err, errlen) < 0)
		return -1;
	/* Copy-up renames from workdir into upperdir, which only works within one mount. */
	if (up->st.st_dev != wk->st.st_dev)
		return ovl_errmsg(err, errlen,
				  "workdir '%s' is not on the same filesystem as upperdir '%s'",
				  wk->given, up->given);
	if (mount_id(up, &up_mnt, err, errlen) < 0 || mount_id(wk, &wk_mnt, err, errlen) < 0)
		return -1;
	if (up_mnt && wk_mnt && up_mnt != wk_mnt)
		return ovl_errmsg(err, errlen,
				  "workdir '%s' is not on the same mount as upperdir '%s'",
				  wk->given, up->given);
	return check_apart(wk, up, err, errlen);
}

static void free_dirs(struct dir_info *d, int n)
{
	int i;

	for (i = 0; i < n; i++)
		free(d[i].canon);
	free(d);
}

int ovl_validate_config(struct ovl_config *cfg, char *err, size_t errlen)
{
	/* Slots: lowers first, then upper, work and the mount point. */
	int nl = cfg->nlower, ndirs = nl + 3, i;
	struct dir_info *d, *up, *wk, *mp;
	bool busy;

	if (errlen)
		err[0] = '\0';
	if (nl < 1 || !cfg->lowerdirs || !cfg->mountpoint)
		return ovl_errmsg(err, errlen, "no lower layer or no mount point to check");
	d = calloc((size_t)ndirs, sizeof(*d));
	if (!d)
		return ovl_errmsg(err, errlen, "out of memory");
	up = &d[nl];
	wk = &d[nl + 1];
	mp = &d[nl + 2];

	for (i = 0; i < nl; i++) {
		d[i].role = "lower layer";
		d[i].given = cfg->lowerdirs[i];
		if (resolve_dir(&d[i], err, errlen) < 0)
			goto fail;
	}

	if (cfg->upperdir || cfg->workdir) {
		if (!cfg->upperdir || !cfg->workdir) {
			ovl_errmsg(err, errlen, "upperdir and workdir must be given together");
			goto fail;
		}
		up->role = "upperdir";
		up->given = cfg->upperdir;
		wk->role = "workdir";
		wk->given = cfg->workdir;
		if (check_upper_work(up, wk, err, errlen) < 0)
			goto fail;
		for (i = 0; i < nl; i++)
			if (check_apart(up, &d[i], err, errlen) < 0 ||
			    check_apart(wk, &d[i], err, errlen) < 0)
				goto fail;
	}

	mp->role = "mount point";
	mp->given = cfg->mountpoint;
	if (resolve_dir(mp, err, errlen) < 0 || is_mountpoint(mp, &busy, err, errlen) < 0)
		goto fail;
	if (busy) {
		ovl_errmsg(err, errlen, "mount point '%s' is busy (already a mount point)",
			   mp->given);
		goto fail;
	}
	/* The daemon would look into its own mount: lookups that hang or recurse. */
	for (i = 0; i < ndirs - 1; i++)
		if (d[i].canon && check_apart(mp, &d[i], err, errlen) < 0)
			goto fail;

	/* Everything passed: only now swap in the canonical paths. */
	for (i = 0; i < nl; i++) {
		free(cfg->lowerdirs[i]);
		cfg->lowerdirs[i] = d[i].canon;
		d[i].canon = NULL;
	}
	if (up->canon) {
		free(cfg->upperdir);
		cfg->upperdir = up->canon;
		up->canon = NULL;
		free(cfg->workdir);
		cfg->workdir = wk->canon;
		wk->canon = NULL;
	}
	free(cfg->mountpoint);
	cfg->mountpoint = mp->canon;
	mp->canon = NULL;
	free_dirs(d, ndirs);
	return 0;

fail:
	free_dirs(d, ndirs);
	return -1;
}
