/*
 * The layer fuzzer's input decoder: bytes -> a small layer tree on tmpfs.
 *
 * Format: byte 0: its value mod 3 picks 1-3 lower layers, bits 2-4 == 7 means no upper
 * layer, bit 5 mounts with metacopy=on, bit 6 makes the last of 2-3 lowers data-only;
 * byte 1: number of build steps (mod 40); then 3 bytes per step:
 *   op   (low nibble: what, high nibble: which layer; upper first, then lowers top-down)
 *   path (bits 6-7: depth 1-3, then three 2-bit name indices into fz_names)
 *   arg  (a value, symlink target, xattr choice, or a second path)
 * What is left drives the changes (fuzz_layers.c). Every step works only below the
 * layer root: parents are made as with mkdir -p, and no symlink is ever followed.
 * A decoy directory beside the layers is what escaping symlinks point at; it must be left
 * untouched by the engine.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "fuzz_layers.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

const char *const fz_names[FZ_NNAMES] = {"a", "b", "c", "d"};

static struct stat decoy_st[3];
static uint64_t lowers_digest_at_build;
static uint64_t digest_acc;
static size_t digest_skip;

static void die(const char *what)
{
	fprintf(stderr, "fuzz_layers: setup: %s: %s\n", what, strerror(errno));
	abort();
}

void fz_log(const char *fmt, ...)
{
	va_list ap;

	if (!g.verbose)
		return;
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

void fz_path(unsigned byte, char *buf, size_t size)
{
	int depth = 1 + (int)((byte >> 6) % 3);
	size_t len = 0;

	buf[0] = '\0';
	for (int i = 0; i < depth; i++)
		len += (size_t)snprintf(buf + len, size - len, "%s%s", i ? "/" : "",
					fz_names[(byte >> (2 * i)) & 3]);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	if (remove(path) < 0 && errno != ENOENT)
		die(path);
	return 0;
}

static void rm_tree(const char *path)
{
	if (nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS) < 0 && errno != ENOENT)
		die("nftw");
}

static void remove_base(void)
{
	rm_tree(g.base);
}

static void xmkdir(const char *path)
{
	if (mkdir(path, 0755) < 0)
		die(path);
}

/*
 * libFuzzer may end the process in the middle of an input (time limit, a crash, a signal),
 * when the exit handler races with the build or does not run: every run first removes the
 * trees of runs whose process is gone (named by pid, so parallel jobs keep theirs).
 */
static void remove_stale(const char *dir)
{
	static const char prefix[] = "ovlfs-fuzz-layers.";
	DIR *d = opendir(dir);
	struct dirent *de;

	if (!d)
		return;
	while ((de = readdir(d))) {
		char p[PATH_MAX];
		long pid;

		if (strncmp(de->d_name, prefix, sizeof(prefix) - 1))
			continue;
		pid = strtol(de->d_name + sizeof(prefix) - 1, NULL, 10);
		if (pid <= 0 || kill((pid_t)pid, 0) == 0 || errno != ESRCH)
			continue;
		snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
		rm_tree(p);
	}
	closedir(d);
}

void fz_base_init(void)
{
	/* tmpfs keeps every step cheap; fall back to /tmp where /dev/shm is missing. */
	const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";

	remove_stale(dir);
	snprintf(g.base, sizeof(g.base), "%s/ovlfs-fuzz-layers.%d", dir, (int)getpid());
	rm_tree(g.base); /* a recycled pid's leftovers */
	xmkdir(g.base);
	atexit(remove_base);
	g.verbose = getenv("FUZZ_LAYERS_VERBOSE") != NULL;
	snprintf(g.it, sizeof(g.it), "%s/it", g.base);
	snprintf(g.upper, sizeof(g.upper), "%s/u", g.it);
	snprintf(g.work, sizeof(g.work), "%s/w", g.it);
	snprintf(g.decoy, sizeof(g.decoy), "%s/decoy", g.it);
	for (int i = 0; i < FZ_MAX_LOWER; i++)
		snprintf(g.lower[i], sizeof(g.lower[i]), "%s/l%d", g.it, i);
}

/* Opens the directory that holds rel's last component, making missing parents; -1 if a
 * parent is not a directory. */
static int open_parent(const char *layer, char *rel, const char **last)
{
	int fd = open(layer, O_PATH | O_DIRECTORY | O_CLOEXEC);
	char *comp = rel, *slash;

	if (fd < 0)
		die(layer);
	while ((slash = strchr(comp, '/'))) {
		*slash = '\0';
		(void)mkdirat(fd, comp, 0755); /* EEXIST and the like: the open decides */
		int nfd = openat(fd, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		*slash = '/';
		close(fd);
		if (nfd < 0)
			return -1;
		fd = nfd;
		comp = slash + 1;
	}
	*last = comp;
	return fd;
}

/* lsetxattr on dirfd/name without following a symlink at name. */
static void set_x(int dirfd, const char *name, const char *x, const void *v, size_t len)
{
	char p[64];

	snprintf(p, sizeof(p), "/proc/self/fd/%d/%s", dirfd, name);
	if (lsetxattr(p, x, v, len, 0) == 0)
		fz_log("  xattr %s (%zu bytes)", x, len);
}

/* "../" repeated n times. */
static void ups(char *buf, size_t size, int n)
{
	buf[0] = '\0';
	for (int i = 0; i < n && strlen(buf) + 4 < size; i++)
		strcat(buf, "../");
}

static void symlink_target(unsigned arg, int depth, char *t, size_t size)
{
	char up[16];

	switch (arg % 8) {
	case 0: /* absolute, out of the layer */
		snprintf(t, size, "%s", g.decoy);
		break;
	case 1:
		snprintf(t, size, "%s/f", g.decoy);
		break;
	case 2: /* relative, escaping the layer root by one level */
		ups(up, sizeof(up), depth);
		snprintf(t, size, "%sdecoy", up);
		break;
	case 3:
		snprintf(t, size, "a");
		break;
	case 4:
		snprintf(t, size, "..");
		break;
	case 5:
		snprintf(t, size, "../b/../a");
		break;
	case 6:
		snprintf(t, size, "/nonexistent/x");
		break;
	default: /* the layer's own a/b, through .. */
		ups(up, sizeof(up), depth - 1);
		snprintf(t, size, "%sa/b", up);
		break;
	}
}

static void build_step(unsigned op, unsigned pathb, unsigned arg)
{
	static const char *const opaque[] = {"y", "n", "x", "", "Y", "yes", "\0y", "y\n"};
	static const char *const others[] = {"whiteout", "redirect", "origin", "metacopy",
					     "impure",	 "nlink",    "upper",  "overlay.x"};
	static const char *const values[] = {"", "y", "/a", "\xfb\x00\x01"};
	int nlayers = g.nlower + g.has_upper;
	int layer = (int)((op >> 4) % (unsigned)nlayers);
	const char *lpath = g.has_upper ? (layer ? g.lower[layer - 1] : g.upper) : g.lower[layer];
	int depth = 1 + (int)((pathb >> 6) % 3);
	char rel[32], rel2[32], t[PATH_MAX + 8];
	const char *last, *last2;
	int dfd, dfd2, fd;

	fz_path(pathb, rel, sizeof(rel));
	fz_log("build %u in %s: %s (arg %u)", op & 15, lpath + strlen(g.it) + 1, rel, arg);
	dfd = open_parent(lpath, rel, &last);
	if (dfd < 0)
		return;
	switch (op & 15) {
	case 0:
	case 1:
	case 2:
		(void)mkdirat(dfd, last, 0755);
		break;
	case 3:
	case 4:
		fd = openat(dfd, last, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
		if (fd >= 0) {
			char data[255 * 16];
			memset(data, 'z', sizeof(data));
			if (write(fd, data, arg * 16) < 0)
				die("write");
			close(fd);
		}
		break;
	case 5:
		symlink_target(arg, depth, t, sizeof(t));
		fz_log("  -> %s", t);
		(void)symlinkat(t, dfd, last);
		break;
	case 6:
	case 7:
		(void)mknodat(dfd, last, S_IFCHR | 0600, makedev(0, 0));
		break;
	case 8:
		(void)mknodat(dfd, last, S_IFIFO | 0644, 0);
		break;
	case 9:
		set_x(dfd, last, "trusted.overlay.opaque", opaque[arg % 8],
		      (arg % 8) == 6 ? 2 : strlen(opaque[arg % 8]));
		break;
	case 10:
		snprintf(t, sizeof(t), "trusted.overlay.%s", others[arg % 8]);
		set_x(dfd, last, t, values[(arg >> 3) % 4],
		      (arg >> 3) % 4 == 3 ? 3 : strlen(values[(arg >> 3) % 4]));
		break;
	case 11:
		set_x(dfd, last, (arg & 1) ? "user.a" : "user.b", "v", 1);
		break;
	case 12:
		if (arg % 3 == 0)
			(void)mknodat(dfd, last, S_IFCHR | 0644, makedev(1, 3));
		else if (arg % 3 == 1)
			(void)mknodat(dfd, last, S_IFSOCK | 0644, 0);
		else
			(void)mknodat(dfd, last, S_IFBLK | 0600, makedev(7, 255));
		break;
	case 13: /* a hard link to what the path names, at the path in arg */
		fz_path(arg, rel2, sizeof(rel2));
		dfd2 = open_parent(lpath, rel2, &last2);
		if (dfd2 >= 0) {
			(void)linkat(dfd, last, dfd2, last2, 0);
			close(dfd2);
		}
		break;
	case 14:
		(void)fchmodat(dfd, last, (arg << 1) & 0777, AT_SYMLINK_NOFOLLOW);
		break;
	default: /* an xattr whiteout (kernel 6.7+) in a directory marked opaque="x" */
		fd = openat(dfd, last, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
		if (fd >= 0)
			close(fd);
		set_x(dfd, last, "trusted.overlay.whiteout", "", 0);
		if (arg & 1)
			set_x(dfd, ".", "trusted.overlay.opaque", "x", 1);
		break;
	}
	close(dfd);
}

static void decoy_stat(void)
{
	char p[PATH_MAX + 8];

	if (lstat(g.decoy, &decoy_st[0]) < 0)
		die("decoy");
	snprintf(p, sizeof(p), "%s/f", g.decoy);
	if (lstat(p, &decoy_st[1]) < 0)
		die("decoy/f");
	snprintf(p, sizeof(p), "%s/sub", g.decoy);
	if (lstat(p, &decoy_st[2]) < 0)
		die("decoy/sub");
}

static uint64_t mix(uint64_t h, uint64_t v)
{
	h ^= v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
	return h * 0xff51afd7ed558ccdULL;
}

/* Order-independent: the sum of one hash per entry (name, inode, and every change time). */
static int digest_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	uint64_t h = 1469598103934665603ULL;

	(void)flag;
	(void)ftw;
	for (const char *c = path + digest_skip; *c; c++)
		h = mix(h, (unsigned char)*c);
	h = mix(h, st->st_ino);
	h = mix(h, st->st_mode);
	h = mix(h, (uint64_t)st->st_size);
	h = mix(h, st->st_nlink);
	h = mix(h, st->st_rdev);
	h = mix(h, (uint64_t)st->st_ctim.tv_sec * 1000000000u + (uint64_t)st->st_ctim.tv_nsec);
	h = mix(h, (uint64_t)st->st_mtim.tv_sec * 1000000000u + (uint64_t)st->st_mtim.tv_nsec);
	digest_acc += h;
	return 0;
}

static uint64_t lowers_digest(void)
{
	digest_acc = 0;
	for (int i = 0; i < g.nlower; i++) {
		digest_skip = strlen(g.lower[i]);
		if (nftw(g.lower[i], digest_entry, 16, FTW_PHYS) < 0)
			die("nftw");
	}
	return digest_acc;
}

void fz_build(struct fz_reader *rd)
{
	unsigned hdr = fz_take(rd), steps;
	char p[PATH_MAX + 8];
	int fd;

	g.nlower = 1 + (int)(hdr % 3);
	g.has_upper = ((hdr >> 2) & 7) != 7;
	g.metacopy = (hdr >> 5) & 1;
	g.ndata = ((hdr >> 6) & 1) && g.nlower >= 2 ? 1 : 0;
	g.redirect_write = !((hdr >> 7) & 1);
	xmkdir(g.it);
	for (int i = 0; i < g.nlower; i++)
		xmkdir(g.lower[i]);
	if (g.has_upper) {
		xmkdir(g.upper);
		xmkdir(g.work);
	}
	xmkdir(g.decoy);
	snprintf(p, sizeof(p), "%s/sub", g.decoy);
	xmkdir(p);
	snprintf(p, sizeof(p), "%s/f", g.decoy);
	fd = open(p, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
	if (fd < 0 || write(fd, "decoy", 5) != 5)
		die("decoy/f");
	close(fd);
	fz_log("%d lower layers (%d data-only), %s%s", g.nlower, g.ndata,
	       g.has_upper ? "upper" : "read-only", g.metacopy ? ", metacopy=on" : "");
	steps = fz_take(rd) % 40;
	for (unsigned i = 0; i < steps && rd->n >= 3; i++) {
		unsigned op = fz_take(rd), pathb = fz_take(rd), arg = fz_take(rd);
		build_step(op, pathb, arg);
	}
	decoy_stat();
	lowers_digest_at_build = lowers_digest();
}

bool fz_work_empty(void)
{
	char p[PATH_MAX + 8];
	struct dirent *de;
	int left = 0;
	DIR *d;

	if (!g.has_upper)
		return true;
	snprintf(p, sizeof(p), "%s/work", g.work);
	d = opendir(p);
	if (!d)
		return false;
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
			fprintf(stderr, "fuzz_layers: left in the work dir: %s\n", de->d_name);
			left++;
		}
	closedir(d);
	return left == 0;
}

static bool same(const struct stat *a, const struct stat *b)
{
	return a->st_ino == b->st_ino && a->st_mode == b->st_mode && a->st_size == b->st_size &&
	       a->st_nlink == b->st_nlink && a->st_ctim.tv_sec == b->st_ctim.tv_sec &&
	       a->st_ctim.tv_nsec == b->st_ctim.tv_nsec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

bool fz_decoy_intact(void)
{
	struct stat now[3];
	char p[PATH_MAX + 8];

	if (lstat(g.decoy, &now[0]) < 0)
		return false;
	snprintf(p, sizeof(p), "%s/f", g.decoy);
	if (lstat(p, &now[1]) < 0)
		return false;
	snprintf(p, sizeof(p), "%s/sub", g.decoy);
	if (lstat(p, &now[2]) < 0)
		return false;
	for (int i = 0; i < 3; i++)
		if (!same(&now[i], &decoy_st[i]))
			return false;
	return true;
}

bool fz_lowers_intact(void)
{
	return lowers_digest() == lowers_digest_at_build;
}

void fz_teardown(void)
{
	rm_tree(g.it);
}
