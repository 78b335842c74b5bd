/*
 * The harness of the engine's unit tests (see harness.h): checks, environments, layer and
 * engine helpers, and the runner. Run as root: trusted.* xattrs and mknod of whiteouts are
 * needed.
 *
 * Usage: test_engine [substring]   (runs only the tests whose name contains substring)
 */
#include "harness.h"

#include <ftw.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>

/* ------------------------------------------------------------------------------------------ */
/* Checks                                                                                     */
/* ------------------------------------------------------------------------------------------ */

static atomic_int n_passed, n_failed;
const char *cur_test = "(setup)";

bool check_(bool ok, const char *what, int line)
{
	if (ok) {
		atomic_fetch_add(&n_passed, 1);
	} else {
		atomic_fetch_add(&n_failed, 1);
		fprintf(stderr, "FAIL %s (line %d): %s\n", cur_test, line, what);
	}
	return ok;
}

/* " (-ENOENT)" for a small negative value, "" otherwise. Main thread only. */
static const char *errname_of(long long v)
{
	static char bufs[8][48];
	static int next;
	char *b = bufs[next++ & 7];

	if (v >= 0 || v < -4095)
		return "";
	const char *s = strerrorname_np((int)-v);
	snprintf(b, 48, " (-%s)", s ? s : "?");
	return b;
}

bool check_int_(long long got, long long want, const char *what, int line)
{
	bool ok = got == want;

	if (!check_(ok, what, line))
		fprintf(stderr, "    got  %lld%s\n    want %lld%s\n", got, errname_of(got), want,
			errname_of(want));
	return ok;
}

bool check_str_(const char *got, const char *want, const char *what, int line)
{
	bool ok = got && want && strcmp(got, want) == 0;

	if (!check_(ok, what, line))
		fprintf(stderr, "    got  '%s'\n    want '%s'\n", got ? got : "(null)",
			want ? want : "(null)");
	return ok;
}

/* A broken test environment (not an engine failure): give up. */
void die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "test_engine: setup failed in %s: ", cur_test);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, " (%s)\n", strerror(errno));
	exit(2);
}

/* ------------------------------------------------------------------------------------------ */
/* Environments: temporary layers and an ovl_fs on them                                       */
/* ------------------------------------------------------------------------------------------ */

static char g_base[PATH_MAX];
static int g_env_counter;

const struct ovl_cred root_cred = {.uid = 0, .gid = 0};

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

void rm_tree(const char *path)
{
	nftw(path, rm_entry, 32, FTW_DEPTH | FTW_PHYS);
}

static void remove_base(void)
{
	if (g_base[0])
		rm_tree(g_base);
}

/* snprintf that gives up on truncation. */
void fmt(char *buf, size_t size, const char *f, ...)
{
	va_list ap;

	va_start(ap, f);
	int n = vsnprintf(buf, size, f, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= size)
		die("path too long");
}

void xmkdir(const char *path, mode_t mode)
{
	if (mkdir(path, mode) < 0)
		die("mkdir %s", path);
}

void env_init(struct env *e, int nlower, bool upper)
{
	memset(e, 0, sizeof(*e));
	fmt(e->dir, sizeof(e->dir), "%s/t%03d", g_base, ++g_env_counter);
	xmkdir(e->dir, 0755);
	e->nlower = nlower;
	for (int i = 0; i < nlower; i++) {
		fmt(e->lower[i], sizeof(e->lower[i]), "%s/lower%d", e->dir, i + 1);
		xmkdir(e->lower[i], 0755);
	}
	e->has_upper = upper;
	if (upper) {
		fmt(e->upper, sizeof(e->upper), "%s/upper", e->dir);
		fmt(e->work, sizeof(e->work), "%s/work", e->dir);
		xmkdir(e->upper, 0755);
		xmkdir(e->work, 0755);
	}
}

int env_open(struct env *e, bool readonly)
{
	const char *lowers[3];
	struct ovl_fs_params p = {
	    .lowerdirs = lowers,
	    .nlower = e->nlower,
	    .upperdir = e->has_upper ? e->upper : NULL,
	    .workdir = e->has_upper ? e->work : NULL,
	    .readonly = readonly,
	};

	for (int i = 0; i < e->nlower; i++)
		lowers[i] = e->lower[i];
	return ovl_fs_new(&p, &e->fs);
}

bool env_mount(struct env *e)
{
	return CHECK_INT(env_open(e, false), 0);
}

/* Destroys the fs, checks no temporary object was left in the work directory, removes all. */
void env_fini(struct env *e)
{
	char path[PATH_MAX + 8];

	if (e->fs)
		ovl_fs_destroy(e->fs);
	e->fs = NULL;
	snprintf(path, sizeof(path), "%s/work", e->work);
	DIR *d = e->has_upper ? opendir(path) : NULL;
	if (d) {
		struct dirent *de;
		int left = 0;
		while ((de = readdir(d))) {
			if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
				continue;
			fprintf(stderr, "    left in work dir: %s\n", de->d_name);
			left++;
		}
		closedir(d);
		CHECK_INT(left, 0); /* work directory clean after the operations */
	}
	rm_tree(e->dir);
}

/* ------------------------------------------------------------------------------------------ */
/* Layer helpers: build and inspect layer contents directly                                   */
/* ------------------------------------------------------------------------------------------ */

/* "<layer>/<rel>" in a small ring of buffers. */
const char *lp(const char *layer, const char *rel)
{
	static char bufs[8][PATH_MAX];
	static int next;
	char *b = bufs[next++ & 7];

	if (snprintf(b, PATH_MAX, "%s/%s", layer, rel) >= PATH_MAX)
		die("path too long");
	return b;
}

void mkd(const char *layer, const char *rel, mode_t mode)
{
	xmkdir(lp(layer, rel), mode);
}

void mkfm(const char *layer, const char *rel, const char *data, mode_t mode)
{
	const char *p = lp(layer, rel);
	int fd = open(p, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, mode);

	if (fd < 0)
		die("create %s", p);
	size_t len = strlen(data);
	if (write(fd, data, len) != (ssize_t)len)
		die("write %s", p);
	close(fd);
}

void mkf(const char *layer, const char *rel, const char *data)
{
	mkfm(layer, rel, data, 0644);
}

void mkwh(const char *layer, const char *rel)
{
	if (mknod(lp(layer, rel), S_IFCHR | 0600, makedev(0, 0)) < 0)
		die("whiteout %s", rel);
}

void mksym(const char *layer, const char *rel, const char *target)
{
	if (symlink(target, lp(layer, rel)) < 0)
		die("symlink %s", rel);
}

void setx(const char *layer, const char *rel, const char *name, const char *value)
{
	if (lsetxattr(lp(layer, rel), name, value, strlen(value), 0) < 0)
		die("setxattr %s %s", rel, name);
}

void set_times(const char *layer, const char *rel, time_t sec, long nsec)
{
	struct timespec ts[2] = {{.tv_sec = sec - 1000, .tv_nsec = 0},
				 {.tv_sec = sec, .tv_nsec = nsec}};

	if (utimensat(AT_FDCWD, lp(layer, rel), ts, AT_SYMLINK_NOFOLLOW) < 0)
		die("utimensat %s", rel);
}

/* lstat in a layer: 0 or -errno. */
int lx(const char *layer, const char *rel, struct stat *st)
{
	struct stat tmp;

	return lstat(lp(layer, rel), st ? st : &tmp) < 0 ? -errno : 0;
}

bool is_whiteout(const char *layer, const char *rel)
{
	struct stat st;

	return lx(layer, rel, &st) == 0 && S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0);
}

/* An xattr value in a layer as a string, or "<-ENODATA>" and the like. */
const char *getx(const char *layer, const char *rel, const char *name)
{
	static char bufs[8][256];
	static int next;
	char *b = bufs[next++ & 7];
	ssize_t n = lgetxattr(lp(layer, rel), name, b, 255);

	if (n < 0)
		snprintf(b, 256, "<-%s>", strerrorname_np(errno));
	else
		b[n] = '\0';
	return b;
}

/* A layer file's contents, or "<-ENOENT>" and the like. */
const char *cat(const char *layer, const char *rel)
{
	static char bufs[8][4096];
	static int next;
	char *b = bufs[next++ & 7];
	int fd = open(lp(layer, rel), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);

	if (fd < 0) {
		snprintf(b, 4096, "<-%s>", strerrorname_np(errno));
		return b;
	}
	ssize_t n = read(fd, b, 4095);
	close(fd);
	b[n < 0 ? 0 : n] = '\0';
	return b;
}

/* Makes the missing directories above rel, 0755. */
static void mkparents(const char *layer, const char *rel)
{
	char dir[PATH_MAX];

	fmt(dir, sizeof(dir), "%s", rel);
	for (char *slash = strchr(dir, '/'); slash; slash = strchr(slash + 1, '/')) {
		*slash = '\0';
		if (lx(layer, dir, NULL) == -ENOENT)
			mkd(layer, dir, 0755);
		*slash = '/';
	}
}

static void build_entry(const char *layer, const struct layer_entry *s)
{
	mkparents(layer, s->path);
	switch (s->kind) {
	case K_FILE:
		mkfm(layer, s->path, s->data ? s->data : "", s->mode ? s->mode : 0644);
		break;
	case K_DIR:
		mkd(layer, s->path, s->mode ? s->mode : 0755);
		break;
	case K_WHITEOUT:
		mkwh(layer, s->path);
		break;
	case K_SYMLINK:
		mksym(layer, s->path, s->data);
		break;
	case K_XATTR: {
		const char *eq = s->data ? strchr(s->data, '=') : NULL;
		char name[256];

		if (!eq)
			die("xattr spec of %s is not name=value", s->path);
		fmt(name, sizeof(name), "%.*s", (int)(eq - s->data), s->data);
		setx(layer, s->path, name, eq + 1);
		break;
	}
	default:
		die("unknown kind %d for %s", (int)s->kind, s->path);
	}
}

void build(struct env *e, const struct layer_entry *spec, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (!spec[i].layers ||
		    spec[i].layers & ~(unsigned)(IN_UP | IN_LO1 | IN_LO2 | IN_LO3))
			die("spec entry %s names no known layer", spec[i].path);
		if ((spec[i].layers & IN_UP) && !e->has_upper)
			die("spec entry %s is for an upper layer the environment lacks",
			    spec[i].path);
		if (spec[i].layers & IN_UP)
			build_entry(e->upper, &spec[i]);
		for (int l = 0; l < 3; l++) {
			if (!(spec[i].layers & (IN_LO1 << l)))
				continue;
			if (l >= e->nlower)
				die("spec entry %s is for lower%d of %d", spec[i].path, l + 1,
				    e->nlower);
			build_entry(e->lower[l], &spec[i]);
		}
	}
}

/* ------------------------------------------------------------------------------------------ */
/* Runner                                                                                     */
/* ------------------------------------------------------------------------------------------ */

/* The test files in the order they run; each lists its tests in its own order. */
static const struct test *const suites[] = {
    lookup_tests,  identity_tests, readdir_tests,   write_tests,
    copy_up_tests, owner_tests,	   namespace_tests, concurrency_tests,
};

#ifndef __SANITIZE_ADDRESS__
/* Names the test that crashed (AddressSanitizer has its own, better report). */
static void crash_report(int sig)
{
	char msg[256];
	int n = snprintf(msg, sizeof(msg), "test_engine: crashed with signal %d in %s\n", sig,
			 cur_test);

	if (n > 0 && write(2, msg, (size_t)n) < 0) {
		/* nothing more to do */
	}
	signal(sig, SIG_DFL);
	raise(sig);
}
#endif

int main(int argc, char **argv)
{
	const char *filter = argc > 1 ? argv[1] : NULL;
	const char *tmp = getenv("TMPDIR");

	umask(0); /* as the daemon */
	if (geteuid() != 0)
		fprintf(stderr,
			"test_engine: warning: not root; trusted.* xattrs and mknod fail\n");
	snprintf(g_base, sizeof(g_base), "%s/ovlfs-engine-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(g_base)) {
		g_base[0] = '\0';
		die("mkdtemp");
	}
	atexit(remove_base);
#ifndef __SANITIZE_ADDRESS__
	signal(SIGSEGV, crash_report);
	signal(SIGBUS, crash_report);
#endif

	for (size_t s = 0; s < sizeof(suites) / sizeof(suites[0]); s++) {
		for (const struct test *t = suites[s]; t->name; t++) {
			if (filter && !strstr(t->name, filter))
				continue;
			int failed_before = atomic_load(&n_failed);
			cur_test = t->name;
			t->fn();
			int failed = atomic_load(&n_failed) - failed_before;
			printf("%-32s %s\n", t->name, failed ? "FAILED" : "ok");
			fflush(stdout);
		}
	}
	printf("engine: %d passed, %d failed\n", atomic_load(&n_passed), atomic_load(&n_failed));
	return atomic_load(&n_failed) ? 1 : 0;
}
