/*
 * Unit test of concurrency: threads creating, renaming, removing, listing and copying up in
 * one directory; invariants checked as they go, and a watchdog against a deadlock.
 */
#include "harness.h"

#include <pthread.h>
#include <signal.h>

#define CONC_THREADS 4
#define CONC_OPS 3000
#define CONC_FILES 8
#define CONC_DIRS 3

static const char *const conc_files[CONC_FILES] = {"n0", "n1", "n2", "n3", "n4", "n5", "n6", "n7"};
static const char *const conc_dirs[CONC_DIRS] = {"d0", "d1", "d2"};

struct conc {
	struct ovl_fs *fs;
	struct ovl_node *dir;
	unsigned seed;
	int unexpected;
	char first[160];
	long errs[8]; /* ENOENT, EEXIST, ESTALE, ENOTEMPTY, other */
};

static void conc_note(struct conc *c, const char *op, const char *name, int err)
{
	switch (err) {
	case 0:
		return;
	case -ENOENT:
		c->errs[0]++;
		return;
	case -EEXIST:
		c->errs[1]++;
		return;
	case -ESTALE: /* a node whose name went meanwhile: the kernel would look it up again */
		c->errs[2]++;
		return;
	case -ENOTEMPTY:
		c->errs[3]++;
		return;
	}
	c->errs[4]++;
	if (c->unexpected++ == 0)
		snprintf(c->first, sizeof(c->first), "%s %s: %d (%s)", op, name, err,
			 strerrorname_np(-err) ? strerrorname_np(-err) : "?");
}

/* An invariant broken under concurrency (not an error code). */
static void conc_fail(struct conc *c, const char *what, const char *name)
{
	c->errs[4]++;
	if (c->unexpected++ == 0)
		snprintf(c->first, sizeof(c->first), "%s %s", what, name);
}

static void *conc_thread(void *arg)
{
	struct conc *c = arg;
	struct ovl_fs *fs = c->fs;
	char buf[64];

	for (int i = 0; i < CONC_OPS; i++) {
		unsigned r = (unsigned)rand_r(&c->seed);
		const char *name = conc_files[r % CONC_FILES];
		const char *other = conc_files[(r >> 4) % CONC_FILES];
		const char *dname = conc_dirs[(r >> 8) % CONC_DIRS];
		struct ovl_node *n;
		struct ovl_file *f;
		struct ovl_dir *d;
		struct stat st;
		int err;

		switch ((r >> 12) % 10) {
		case 0: /* lookup */
			err = ovl_lookup(fs, c->dir, name, &n, &st);
			if (!err)
				ovl_forget(fs, n, 1);
			conc_note(c, "lookup", name, err);
			break;
		case 1: /* create */
			err = ovl_create(fs, c->dir, name, 0644, O_RDWR, &root_cred, &n, &st, &f);
			if (!err) {
				if (ovl_write(fs, f, "created", 7, 0) != 7)
					conc_note(c, "write-new", name, -EIO);
				ovl_release(fs, f);
				ovl_forget(fs, n, 1);
			}
			conc_note(c, "create", name, err);
			break;
		case 2: /* unlink */
			conc_note(c, "unlink", name, ovl_unlink(fs, c->dir, name));
			break;
		case 3: /* copy-up by open for write */
			err = ovl_lookup(fs, c->dir, name, &n, &st);
			if (!err) {
				err = ovl_open(fs, n, O_RDWR, &f);
				if (!err) {
					ssize_t w = ovl_write(fs, f, "w", 1, 0);
					ssize_t rd = ovl_read(fs, f, buf, sizeof(buf), 0);
					if (w != 1 || rd < 1)
						conc_note(c, "rw", name, w < 0 ? (int)w : -EIO);
					ovl_release(fs, f);
				}
				ovl_forget(fs, n, 1);
			}
			conc_note(c, "open-rw", name, err);
			break;
		case 4: /* getattr and read */
			err = ovl_lookup(fs, c->dir, name, &n, &st);
			if (!err) {
				mode_t type = st.st_mode & S_IFMT;
				err = ovl_getattr(fs, n, &st);
				/* A node's type never changes, whatever happens to its name. */
				if (!err && (st.st_mode & S_IFMT) != type)
					conc_fail(c, "getattr: type of node changed for", name);
				if (!err) {
					err = ovl_open(fs, n, O_RDONLY, &f);
					if (!err) {
						ssize_t rd = ovl_read(fs, f, buf, sizeof(buf), 0);
						if (rd < 0)
							conc_note(c, "read", name, (int)rd);
						ovl_release(fs, f);
					}
				}
				ovl_forget(fs, n, 1);
			}
			conc_note(c, "getattr/open-ro", name, err);
			break;
		case 5: /* rename */
			conc_note(c, "rename", name,
				  ovl_rename(fs, c->dir, name, c->dir, other, 0));
			break;
		case 6: /* mkdir / rmdir */
			if (r & 1) {
				err = ovl_mkdir(fs, c->dir, dname, 0755, &root_cred, &n, &st);
				if (!err)
					ovl_forget(fs, n, 1);
				conc_note(c, "mkdir", dname, err);
			} else {
				conc_note(c, "rmdir", dname, ovl_rmdir(fs, c->dir, dname));
			}
			break;
		case 7: /* readdir */
			err = ovl_opendir(fs, c->dir, &d);
			if (!err) {
				struct listing l = {0};
				err = ovl_readdir(fs, d, 0, collect, &l);
				for (size_t k = 0; !err && k < l.n; k++)
					if (count_name(&l, l.v[k].name) != 1)
						conc_fail(
						    c, "readdir: name listed twice:", l.v[k].name);
				if (!err && !find_dent(&l, ".."))
					conc_fail(c, "readdir: missing", "..");
				listing_free(&l);
				ovl_releasedir(fs, d);
			}
			conc_note(c, "readdir", ".", err);
			break;
		case 8: /* setxattr: a copy-up */
			err = ovl_lookup(fs, c->dir, name, &n, &st);
			if (!err) {
				err = ovl_setxattr(fs, n, "user.t", "1", 1, 0);
				ovl_forget(fs, n, 1);
			}
			conc_note(c, "setxattr", name, err);
			break;
		case 9: /* explicit copy-up */
			err = ovl_lookup(fs, c->dir, name, &n, &st);
			if (!err) {
				err = ovl_copy_up(fs, n);
				ovl_forget(fs, n, 1);
			}
			conc_note(c, "copy-up", name, err);
			break;
		}
	}
	return NULL;
}

static void watchdog(int sig)
{
	static const char msg[] = "test_engine: watchdog: the concurrency test hung (deadlock?)\n";

	(void)sig;
	if (write(2, msg, sizeof(msg) - 1) < 0) {
		/* nothing more to do */
	}
	abort();
}

static void test_concurrency(void)
{
	struct env e;
	struct conc c[CONC_THREADS];
	pthread_t th[CONC_THREADS];
	struct ovl_node *dir;
	struct stat st;
	struct listing l;

	env_init(&e, 2, true);
	mkd(LO1, "c", 0755);
	mkd(LO2, "c", 0755);
	mkf(LO1, "c/n0", "lower n0");
	mkf(LO1, "c/n1", "lower n1");
	mkf(LO2, "c/n2", "lower n2");
	mkf(LO2, "c/n3", "lower n3");
	mkd(LO2, "c/d0", 0755);
	if (!env_mount(&e))
		goto out;
	if (!CHECK_INT(walk(FS, "c", &dir, NULL), 0))
		goto out;

	signal(SIGALRM, watchdog);
	alarm(240);
	int started = 0;
	for (int i = 0; i < CONC_THREADS; i++) {
		memset(&c[i], 0, sizeof(c[i]));
		c[i].fs = FS;
		c[i].dir = dir;
		c[i].seed = 0x5eed0000u + (unsigned)i * 7919u;
		if (pthread_create(&th[i], NULL, conc_thread, &c[i]) != 0)
			break;
		started++;
	}
	CHECK_INT(started, CONC_THREADS);
	for (int i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	alarm(0);

	for (int i = 0; i < started; i++) {
		if (!CHECK_INT(c[i].unexpected, 0))
			fprintf(stderr, "    thread %d: first unexpected error: %s\n", i,
				c[i].first);
	}

	/* Afterwards the tree is consistent: what readdir lists can be looked up with the
	 * listed type, and no name that can be looked up is missing from readdir. */
	if (CHECK_INT(list_dir(FS, "c", &l), 0)) {
		for (size_t i = 0; i < l.n; i++) {
			char path[300];
			if (strcmp(l.v[i].name, ".") == 0 || strcmp(l.v[i].name, "..") == 0)
				continue;
			snprintf(path, sizeof(path), "c/%s", l.v[i].name);
			if (!CHECK_INT(lookup_st(FS, path, &st), 0)) {
				fprintf(stderr, "    listed but not found: %s\n", path);
				continue;
			}
			CHECK_INT(l.v[i].type, IFTODT(st.st_mode));
			CHECK_INT(l.v[i].ino, st.st_ino);
			if (S_ISREG(st.st_mode))
				CHECK(e_cat(FS, path)[0] != '<');
		}
		for (int i = 0; i < CONC_FILES + CONC_DIRS; i++) {
			const char *name =
			    i < CONC_FILES ? conc_files[i] : conc_dirs[i - CONC_FILES];
			char path[64];
			snprintf(path, sizeof(path), "c/%s", name);
			bool found = lookup_err(FS, path) == 0;
			if (!CHECK_INT(found, find_dent(&l, name) != NULL))
				fprintf(stderr, "    %s: lookup and readdir disagree\n", path);
		}
	}
	listing_free(&l);
	put(FS, dir);
out:
	env_fini(&e);
}

const struct test concurrency_tests[] = {
    {TEST(test_concurrency)},
    {NULL, NULL},
};
