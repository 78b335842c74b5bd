/*
 * libFuzzer harness for the layer loader: the fuzz bytes build 1-3 lower layers and an upper
 * in a tmpfs directory (see layer_build.c for the byte format), then the engine (engine.h, no
 * FUSE) walks the merged tree, makes a few changes, and walks it again after a "remount".
 *
 * Invariants (abort on the first broken one, so libFuzzer saves the input):
 * - no crash, hang, leak or sanitizer report;
 * - every result is 0, a size, or a negative errno;
 * - readdir lists ".", ".." first, then unique plain names, each of which looks up with the
 *   listed inode number and type; a name of the alphabet that is not listed does not look up;
 * - every listed xattr can be read, unprivileged lists show no trusted.* names;
 * - a fresh ovl_fs on the changed layers shows the same tree (types, modes, owners, sizes,
 *   data, link targets, xattrs) as the one that made the changes;
 * - the work directory is empty after the operations; nothing outside the layers changes,
 *   nor anything in the lower layers (a read-only mount gets the changes too: all refused).
 *
 * FUZZ_LAYERS_VERBOSE=1 prints the decoded input (to reproduce a finding by hand).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "engine/engine.h"
#include "fuzz_layers.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_NODES 200
#define MAX_DEPTH 4

struct fz_state g;

static const struct ovl_cred root_cred = {.uid = 0, .gid = 0};

/* ------------------------------------------------------------------------------------------ */
/* Engine helpers                                                                              */
/* ------------------------------------------------------------------------------------------ */

static void put(struct ovl_fs *fs, struct ovl_node *n)
{
	if (n && n != ovl_root(fs))
		ovl_forget(fs, n, 1);
}

/* Looks up a relative path; "" is the root. *out holds one lookup (put() it). */
static int walk(struct ovl_fs *fs, const char *path, struct ovl_node **out)
{
	struct ovl_node *cur = ovl_root(fs);
	char buf[64], *save = NULL;
	struct stat st;

	snprintf(buf, sizeof(buf), "%s", path);
	for (char *c = strtok_r(buf, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
		struct ovl_node *next;
		int err = ovl_lookup(fs, cur, c, &next, &st);
		REQUIRE_ERR(err);
		put(fs, cur);
		if (err)
			return err;
		cur = next;
	}
	*out = cur;
	return 0;
}

/* Looks up the parent of path; *name points into path. */
static int walk_parent(struct ovl_fs *fs, char *path, struct ovl_node **parent, const char **name)
{
	char *slash = strrchr(path, '/');
	int err;

	if (!slash) {
		*parent = ovl_root(fs);
		*name = path;
		return 0;
	}
	*slash = '\0';
	err = walk(fs, path, parent);
	*slash = '/';
	*name = slash + 1;
	return err;
}

struct listing {
	struct fz_dent {
		char name[256];
		uint64_t ino;
		unsigned type;
	} v[64];
	int n;
	bool overflow;
};

static int collect(void *ctx, const char *name, uint64_t ino, unsigned dtype, off_t next)
{
	struct listing *l = ctx;

	(void)next;
	REQUIRE(strlen(name) < sizeof(l->v[0].name));
	if (l->n == (int)(sizeof(l->v) / sizeof(l->v[0]))) {
		l->overflow = true;
		return 1;
	}
	snprintf(l->v[l->n].name, sizeof(l->v[0].name), "%s", name);
	l->v[l->n].ino = ino;
	l->v[l->n].type = dtype;
	l->n++;
	return 0;
}

static bool listed(const struct listing *l, const char *name)
{
	for (int i = 0; i < l->n; i++)
		if (!strcmp(l->v[i].name, name))
			return true;
	return false;
}

/* What a walk saw, for comparing the tree before and after a remount: a sum of one hash per
 * entry (its path, type, mode, owner, size, data, link target, xattrs). */
static uint64_t tree_sum;

static uint64_t hash_bytes(uint64_t h, const void *p, size_t n)
{
	const unsigned char *c = p;

	for (size_t i = 0; i < n; i++)
		h = (h ^ c[i]) * 0x100000001b3ULL;
	return h;
}

/* ------------------------------------------------------------------------------------------ */
/* Checks of one node                                                                          */
/* ------------------------------------------------------------------------------------------ */

static uint64_t check_xattrs(struct ovl_fs *fs, struct ovl_node *n, uint64_t h)
{
	static const char *const names[] = {"user.a", "trusted.overlay.opaque", "trusted.overlay.x",
					    "trusted.overlay.overlay.x", "security.capability"};
	char list[4096], val[256];
	ssize_t r, need;

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		r = ovl_getxattr(fs, n, names[i], val, sizeof(val));
		REQUIRE_SIZE(r, sizeof(val));
		r = ovl_getxattr(fs, n, names[i], NULL, 0);
		REQUIRE(r >= -4095);
	}
	for (int priv = 0; priv < 2; priv++) {
		need = ovl_listxattr(fs, n, NULL, 0, priv);
		REQUIRE(need >= -4095);
		r = ovl_listxattr(fs, n, list, sizeof(list), priv);
		REQUIRE_SIZE(r, sizeof(list));
		if (r < 0)
			continue;
		REQUIRE(r == need);
		REQUIRE(r == 0 || list[r - 1] == '\0');
		if (priv) /* names in any order: summed, not chained */
			for (ssize_t off = 0; off < r; off += (ssize_t)strlen(list + off) + 1)
				h += hash_bytes(7, list + off, strlen(list + off));
		for (ssize_t off = 0; off < r; off += (ssize_t)strlen(list + off) + 1) {
			const char *x = list + off;
			REQUIRE(*x);
			REQUIRE(priv || strncmp(x, "trusted.", 8));
			ssize_t g = ovl_getxattr(fs, n, x, val, sizeof(val));
			/* Every listed name reads back (ERANGE: our buffer is small). */
			REQUIRE(g >= 0 || g == -ERANGE);
			if (priv && g >= 0)
				h += hash_bytes(11, val, (size_t)g);
		}
	}
	return h;
}

/* Checks one node; returns a hash of what it shows. */
static uint64_t check_node(struct ovl_fs *fs, struct ovl_node *n, const struct stat *looked)
{
	struct stat st;
	char buf[4096];
	int r = ovl_getattr(fs, n, &st);
	uint64_t h = 1469598103934665603ULL;

	REQUIRE(r == 0);
	h = hash_bytes(h, &st.st_mode, sizeof(st.st_mode));
	h = hash_bytes(h, &st.st_uid, sizeof(st.st_uid));
	h = hash_bytes(h, &st.st_gid, sizeof(st.st_gid));
	if (!S_ISDIR(st.st_mode)) /* a directory's size is the layer's business */
		h = hash_bytes(h, &st.st_size, sizeof(st.st_size));
	if (looked) {
		REQUIRE(st.st_ino == looked->st_ino);
		REQUIRE((st.st_mode & S_IFMT) == (looked->st_mode & S_IFMT));
	}
	REQUIRE_ERR(ovl_access(fs, n, R_OK));
	if (S_ISLNK(st.st_mode)) {
		r = ovl_readlink(fs, n, buf, sizeof(buf));
		REQUIRE(r > 0 && r <= (int)sizeof(buf));
		h = hash_bytes(h, buf, (size_t)r);
	} else {
		REQUIRE(ovl_readlink(fs, n, buf, sizeof(buf)) < 0);
	}
	if (S_ISREG(st.st_mode)) {
		struct ovl_file *f;
		r = ovl_open(fs, n, O_RDONLY, &f);
		REQUIRE_ERR(r);
		if (!r) {
			ssize_t got = ovl_read(fs, f, buf, sizeof(buf), 0);
			REQUIRE_SIZE(got, sizeof(buf));
			REQUIRE(got < 0 || got == (st.st_size < 4096 ? st.st_size : 4096));
			if (got > 0)
				h = hash_bytes(h, buf, (size_t)got);
			ovl_release(fs, f);
		}
	}
	return check_xattrs(fs, n, h);
}

/* ------------------------------------------------------------------------------------------ */
/* The merged tree walk                                                                        */
/* ------------------------------------------------------------------------------------------ */

static int nodes_seen;
/* Lines the engine logged about layer records it cannot serve (ovl_fs_params.warn). */
static unsigned long warnings;

static void count_warning(const char *msg)
{
	warnings++;
	fz_log("engine: %s", msg);
}

static void walk_dir(struct ovl_fs *fs, struct ovl_node *dir, const char *path, int depth)
{
	struct listing *l = calloc(1, sizeof(*l));
	struct ovl_dir *d;
	int r;

	REQUIRE(l);
	r = ovl_opendir(fs, dir, &d);
	REQUIRE(r == 0);
	r = ovl_readdir(fs, d, 0, collect, l);
	REQUIRE_ERR(r);
	ovl_releasedir(fs, d);
	if (r) {
		free(l);
		return;
	}
	REQUIRE(!l->overflow);
	REQUIRE(l->n >= 2 && !strcmp(l->v[0].name, ".") && !strcmp(l->v[1].name, ".."));
	for (int i = 2; i < l->n; i++) {
		const char *name = l->v[i].name;
		REQUIRE(*name && !strchr(name, '/') && strcmp(name, ".") && strcmp(name, ".."));
		for (int j = 2; j < i; j++)
			REQUIRE(strcmp(name, l->v[j].name)); /* unique */
	}
	for (int i = 2; i < l->n; i++) {
		struct ovl_node *c;
		struct stat st;
		unsigned long before = warnings;
		r = ovl_lookup(fs, dir, l->v[i].name, &c, &st);
		if (r)
			fz_log("listed '%s' does not look up: %d", l->v[i].name, r);
		/* Every listed name looks up, unless the kernel would refuse its record too (an
		 * invalid redirect, a metacopy file without data or without metacopy=on): then
		 * with a line logged. */
		if (r && warnings > before &&
		    (r == -EINVAL || r == -EACCES || r == -EIO || r == -EPERM))
			continue;
		REQUIRE(r == 0);
		REQUIRE(st.st_ino == l->v[i].ino);
		REQUIRE(l->v[i].type == DT_UNKNOWN || l->v[i].type == IFTODT(st.st_mode));
		if (nodes_seen++ < MAX_NODES) {
			char cpath[300];
			snprintf(cpath, sizeof(cpath), "%s/%s", path, l->v[i].name);
			tree_sum += hash_bytes(check_node(fs, c, &st), cpath, strlen(cpath));
			if (S_ISDIR(st.st_mode) && depth < MAX_DEPTH)
				walk_dir(fs, c, cpath, depth + 1);
		}
		put(fs, c);
	}
	/* The other way round: a name that is not listed does not exist. */
	for (int i = 0; i < FZ_NNAMES; i++) {
		struct ovl_node *c;
		struct stat st;
		if (listed(l, fz_names[i]))
			continue;
		r = ovl_lookup(fs, dir, fz_names[i], &c, &st);
		if (r == 0) {
			fz_log("unlisted '%s' looks up", fz_names[i]);
			put(fs, c);
		}
		REQUIRE(r == -ENOENT);
	}
	free(l);
}

/* Walks the whole merged tree, checking everything; returns its hash. */
static uint64_t walk_all(struct ovl_fs *fs)
{
	struct stat st;

	nodes_seen = 0;
	tree_sum = 0;
	REQUIRE(ovl_getattr(fs, ovl_root(fs), &st) == 0 && S_ISDIR(st.st_mode));
	tree_sum += check_node(fs, ovl_root(fs), NULL);
	walk_dir(fs, ovl_root(fs), "", 0);
	return tree_sum;
}

/* ------------------------------------------------------------------------------------------ */
/* Changes                                                                                     */
/* ------------------------------------------------------------------------------------------ */

static void mutate(struct ovl_fs *fs, struct fz_reader *rd)
{
	for (int k = 0; k < 12 && rd->n >= 3; k++) {
		unsigned op = fz_take(rd);
		char p1[32], p2[32];
		struct ovl_node *par, *par2, *n;
		const char *name, *name2;
		struct ovl_file *f;
		struct stat st;
		int r;

		fz_path(fz_take(rd), p1, sizeof(p1));
		fz_path(fz_take(rd), p2, sizeof(p2));
		fz_log("change %u: %s %s", op % 10, p1, p2);
		if (walk_parent(fs, p1, &par, &name))
			continue;
		switch (op % 10) {
		case 0:
			r = ovl_unlink(fs, par, name);
			break;
		case 1:
			r = ovl_rmdir(fs, par, name);
			break;
		case 2:
		case 3:
			r = walk_parent(fs, p2, &par2, &name2);
			if (!r) {
				static const unsigned flags[] = {0, 1 /* NOREPLACE */,
								 2 /* EXCHANGE */, 0};
				r = ovl_rename(fs, par, name, par2, name2, flags[(op >> 4) % 4]);
				put(fs, par2);
			}
			break;
		case 4: /* copy-up through an open for writing */
			r = ovl_lookup(fs, par, name, &n, &st);
			/* FUSE sends OPEN for regular files only (a fifo's open would block). */
			if (!r) {
				if (S_ISREG(st.st_mode))
					r = ovl_open(fs, n,
						     (op & 0x10) ? O_RDWR | O_TRUNC : O_WRONLY, &f);
				else
					r = -EINVAL; /* not tried */
				if (!r) {
					REQUIRE_SIZE(ovl_write(fs, f, "xyz", 3, op >> 5), 3);
					ovl_release(fs, f);
				}
				put(fs, n);
			}
			break;
		case 5:
			r = ovl_lookup(fs, par, name, &n, &st);
			if (!r) {
				static const char *const xn[] = {"user.a", "user.new",
								 "trusted.overlay.opaque",
								 "trusted.overlay.x"};
				const char *x = xn[(op >> 4) % 4];
				r = (op & 0x40) ? ovl_removexattr(fs, n, x)
						: ovl_setxattr(fs, n, x, "y", 1, 0);
				put(fs, n);
			}
			break;
		case 6:
			if (op & 0x10)
				r = ovl_mkdir(fs, par, name, 0755, &root_cred, &n, &st);
			else
				r = ovl_symlink(fs, par, name, (op & 0x20) ? "../a" : "/x",
						&root_cred, &n, &st);
			if (!r)
				put(fs, n);
			break;
		case 7:
			r = ovl_create(fs, par, name, 0644, O_RDWR | ((op & 0x10) ? O_EXCL : 0),
				       &root_cred, &n, &st, &f);
			if (!r) {
				ovl_release(fs, f);
				put(fs, n);
			}
			break;
		case 8:
			r = ovl_lookup(fs, par, name, &n, &st);
			if (!r) {
				struct stat a = {.st_mode = 0700, .st_size = op >> 4};
				r = ovl_setattr(fs, n, NULL,
						(op & 0x10) ? OVL_SET_SIZE : OVL_SET_MODE, &a, &st);
				put(fs, n);
			}
			break;
		default:
			r = ovl_lookup(fs, par, name, &n, &st);
			if (!r) {
				r = walk_parent(fs, p2, &par2, &name2);
				if (!r) {
					struct ovl_node *ln;
					r = ovl_link(fs, n, par2, name2, &ln, &st);
					if (!r)
						put(fs, ln);
					put(fs, par2);
				}
				put(fs, n);
			}
			break;
		}
		fz_log("  -> %d", r);
		REQUIRE_ERR(r);
		REQUIRE(g.has_upper || r != 0); /* a read-only overlay changes nothing */
		put(fs, par);
	}
}

/* ------------------------------------------------------------------------------------------ */
/* One input                                                                                   */
/* ------------------------------------------------------------------------------------------ */

static int open_fs(struct ovl_fs **fs)
{
	const char *lowers[FZ_MAX_LOWER];
	struct ovl_fs_params p = {
	    .lowerdirs = lowers,
	    .nlower = g.nlower,
	    .upperdir = g.has_upper ? g.upper : NULL,
	    .workdir = g.has_upper ? g.work : NULL,
	    .redirect_write = g.redirect_write,
	    .metacopy = g.metacopy,
	    .ndata = g.ndata,
	    .warn = count_warning,
	};

	for (int i = 0; i < g.nlower; i++)
		lowers[i] = g.lower[i];
	return ovl_fs_new(&p, fs);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	umask(0); /* as the daemon */
	fz_base_init();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz_reader rd = {data, size};
	struct ovl_fs *fs;
	int r;

	fz_build(&rd);
	r = open_fs(&fs);
	REQUIRE_ERR(r);
	if (r == 0) {
		uint64_t seen;

		walk_all(fs);
		mutate(fs, &rd);
		seen = walk_all(fs);
		ovl_fs_destroy(fs);
		REQUIRE(fz_work_empty());
		/* What the changes left on disk reads back consistently. */
		r = open_fs(&fs);
		REQUIRE(r == 0);
		REQUIRE(walk_all(fs) == seen); /* what the mount showed is what is on disk */
		ovl_fs_destroy(fs);
	}
	REQUIRE(fz_decoy_intact());
	REQUIRE(fz_lowers_intact());
	fz_teardown();
	return 0;
}
