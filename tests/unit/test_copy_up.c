/*
 * Unit tests of copy-up: what it copies (data, mode, owner, times, xattrs, sparse holes,
 * parents), what triggers it, what must not, and handles across it.
 */
#include "harness.h"

#include <sys/xattr.h>
#include <time.h>

static bool same_time(struct timespec a, struct timespec b)
{
	return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec;
}

/* D24: an O_RDWR open copies up data, mode (setuid too), owner, times and xattrs. */
static void test_copyup_on_write_open(void)
{
	struct env e;
	struct stat lst, ust;
	struct ovl_node *n;
	struct ovl_file *f;

	env_init(&e, 1, true);
	mkd(LO1, "d", 0755);
	mkf(LO1, "d/f", "0123456789");
	if (lchown(lp(LO1, "d/f"), 1234, 5678) < 0 || chmod(lp(LO1, "d/f"), 04755) < 0)
		die("chown/chmod");
	setx(LO1, "d/f", "user.k", "v");
	setx(LO1, "d/f", "trusted.t", "tv");
	setx(LO1, "d/f", "trusted.overlay.overlay.e", "ev");
	setx(LO1, "d/f", "trusted.overlay.origin", "private");
	set_times(LO1, "d/f", 1000000000, 123456789);
	mkf(LO1, "ro", "read only");
	if (lstat(lp(LO1, "d/f"), &lst) < 0)
		die("lstat");
	if (!env_mount(&e))
		goto out;

	/* A read-only open copies nothing. */
	CHECK_STR(e_cat(FS, "ro"), "read only");
	CHECK_INT(lx(UP, "ro", NULL), -ENOENT);

	if (!CHECK_INT(walk(FS, "d/f", &n, NULL), 0))
		goto out;
	if (CHECK_INT(ovl_open(FS, n, O_RDWR, &f), 0)) {
		if (CHECK_INT(lx(UP, "d/f", &ust), 0)) {
			CHECK(S_ISREG(ust.st_mode));
			CHECK_INT(ust.st_mode & 07777, 04755);
			CHECK_INT(ust.st_uid, 1234);
			CHECK_INT(ust.st_gid, 5678);
			CHECK_INT(ust.st_size, 10);
			CHECK(same_time(ust.st_mtim, lst.st_mtim));
			CHECK_INT(ust.st_mtim.tv_nsec, 123456789);
		}
		CHECK_STR(cat(UP, "d/f"), "0123456789");
		CHECK_STR(getx(UP, "d/f", "user.k"), "v");
		CHECK_STR(getx(UP, "d/f", "trusted.t"), "tv");
		CHECK_STR(getx(UP, "d/f", "trusted.overlay.overlay.e"), "ev");
		/* The lower's private marker is not copied; the copy's own origin record names
		 * the lower file (the kernel's layout: version 0, magic 0xfb). */
		unsigned char origin[160];
		ssize_t olen =
		    lgetxattr(lp(UP, "d/f"), "trusted.overlay.origin", origin, sizeof(origin));
		CHECK(olen > 21 && origin[0] == 0 && origin[1] == 0xfb && origin[2] == olen);
		CHECK_INT(ovl_write(FS, f, "AB", 2, 0), 2);
		char buf[32] = {0};
		CHECK_INT(ovl_read(FS, f, buf, sizeof(buf) - 1, 0), 10);
		CHECK_STR(buf, "AB23456789");
		ovl_release(FS, f);
	}
	put(FS, n);
	CHECK_STR(cat(UP, "d/f"), "AB23456789");
	CHECK_STR(e_cat(FS, "d/f"), "AB23456789");
	/* The lower layer is intact. */
	CHECK_STR(cat(LO1, "d/f"), "0123456789");
	CHECK_STR(getx(LO1, "d/f", "user.k"), "v");
	CHECK_STR(getx(LO1, "d/f", "trusted.overlay.origin"), "private");
out:
	env_fini(&e);
}

/* Files the kernel never released (the daemon stopped while they were open) are closed and
 * freed by ovl_fs_destroy: no fd of a layer stays open, and LeakSanitizer sees no leak. */
static void test_destroy_closes_open_files(void)
{
	struct env e;
	struct ovl_node *n;
	struct ovl_file *f[3];
	int fds[3], opened = 0;

	env_init(&e, 1, true);
	mkf(LO1, "a", "lower");
	if (!env_mount(&e))
		goto out;
	if (!CHECK_INT(walk(FS, "a", &n, NULL), 0))
		goto out;
	for (int i = 0; i < 3; i++) {
		/* Read-only twice on the lower file, then a write open that copies it up. */
		if (!CHECK_INT(ovl_open(FS, n, i < 2 ? O_RDONLY : O_RDWR, &f[i]), 0))
			break;
		fds[opened++] = ovl_file_get_fd(FS, f[i]);
		ovl_file_put_fd(f[i]);
	}
	put(FS, n);
	ovl_fs_destroy(e.fs);
	e.fs = NULL;
	for (int i = 0; i < opened; i++)
		CHECK(fcntl(fds[i], F_GETFD) < 0 && errno == EBADF);
	CHECK_STR(cat(UP, "a"), "lower");
out:
	env_fini(&e);
}

/* The writeback cache's mtime: after a write of cached pages the layer file keeps the last
 * mtime a setattr gave it, not the time of the write; without such a setattr the write's
 * own time stays. */
static void test_keep_kernel_mtime(void)
{
	struct env e;
	struct stat st, attr = {.st_mtim = {.tv_sec = 1234567, .tv_nsec = 890}};
	struct ovl_node *n;
	struct ovl_file *f;

	env_init(&e, 1, true);
	mkf(LO1, "k", "lower k");
	mkf(LO1, "w", "lower w");
	if (!env_mount(&e))
		goto out;
	if (CHECK_INT(walk(FS, "k", &n, NULL), 0)) {
		if (CHECK_INT(ovl_open(FS, n, O_RDWR, &f), 0)) {
			CHECK_INT(ovl_setattr(FS, n, f, OVL_SET_MTIME, &attr, &st), 0);
			CHECK_INT(ovl_write(FS, f, "K", 1, 0), 1);
			CHECK_INT(ovl_file_keep_kernel_mtime(FS, f), 0);
			ovl_release(FS, f);
		}
		put(FS, n);
	}
	if (CHECK_INT(lx(UP, "k", &st), 0))
		CHECK(same_time(st.st_mtim, attr.st_mtim));
	CHECK_STR(cat(UP, "k"), "Kower k");
	if (CHECK_INT(walk(FS, "w", &n, NULL), 0)) {
		if (CHECK_INT(ovl_open(FS, n, O_RDWR, &f), 0)) {
			CHECK_INT(ovl_write(FS, f, "W", 1, 0), 1);
			CHECK_INT(ovl_file_keep_kernel_mtime(FS, f), 0);
			ovl_release(FS, f);
		}
		put(FS, n);
	}
	if (CHECK_INT(lx(UP, "w", &st), 0))
		CHECK(st.st_mtim.tv_sec > attr.st_mtim.tv_sec);
out:
	env_fini(&e);
}

/* D25, D26: O_TRUNC copies up an empty file, even with O_RDONLY. */
static void test_copyup_trunc(void)
{
	struct env e;
	struct stat st;

	env_init(&e, 1, true);
	mkf(LO1, "f", "hello");
	mkf(LO1, "g", "world");
	if (chmod(lp(LO1, "g"), 0640) < 0)
		die("chmod");
	if (!env_mount(&e))
		goto out;

	CHECK_INT(e_write(FS, "f", O_WRONLY | O_TRUNC, "", 0), 0);
	CHECK_INT(lx(UP, "f", &st), 0);
	CHECK_INT(st.st_size, 0);
	CHECK_STR(e_cat(FS, "f"), "");
	CHECK_STR(cat(LO1, "f"), "hello");

	struct ovl_node *n;
	struct ovl_file *f;
	if (CHECK_INT(walk(FS, "g", &n, NULL), 0)) {
		if (CHECK_INT(ovl_open(FS, n, O_RDONLY | O_TRUNC, &f), 0))
			ovl_release(FS, f);
		put(FS, n);
	}
	CHECK_INT(lx(UP, "g", &st), 0);
	CHECK_INT(st.st_size, 0);
	CHECK_INT(st.st_mode & 07777, 0640);
	CHECK_STR(e_cat(FS, "g"), "");
	CHECK_STR(cat(LO1, "g"), "world");
out:
	env_fini(&e);
}

static void test_copyup_sparse(void)
{
	struct env e;
	struct stat lst, ust;
	const off_t mib = 1 << 20;
	char block[4096];

	env_init(&e, 1, true);
	int fd = open(lp(LO1, "s"), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
	if (fd < 0)
		die("create sparse");
	memset(block, 'A', sizeof(block));
	if (pwrite(fd, block, sizeof(block), 0) != (ssize_t)sizeof(block))
		die("pwrite");
	memset(block, 'B', sizeof(block));
	if (pwrite(fd, block, sizeof(block), 32 * mib) != (ssize_t)sizeof(block))
		die("pwrite");
	if (ftruncate(fd, 64 * mib) < 0 || fsync(fd) < 0)
		die("ftruncate");
	close(fd);
	if (lstat(lp(LO1, "s"), &lst) < 0)
		die("lstat");
	if (!env_mount(&e))
		goto out;

	CHECK_INT(e_copy_up(FS, "s"), 0);
	if (CHECK_INT(lx(UP, "s", &ust), 0)) {
		CHECK_INT(ust.st_size, 64 * mib);
		/* Holes stay holes: about as many blocks as the source, far fewer than 64 MiB. */
		if (!CHECK(ust.st_blocks <= lst.st_blocks + 16))
			fprintf(stderr, "    lower %lld blocks, upper %lld blocks\n",
				(long long)lst.st_blocks, (long long)ust.st_blocks);
	}
	struct ovl_node *n;
	struct ovl_file *f;
	char buf[4];
	if (CHECK_INT(walk(FS, "s", &n, NULL), 0)) {
		if (CHECK_INT(ovl_open(FS, n, O_RDONLY, &f), 0)) {
			CHECK_INT(ovl_read(FS, f, buf, 4, 0), 4);
			CHECK(memcmp(buf, "AAAA", 4) == 0);
			CHECK_INT(ovl_read(FS, f, buf, 4, 32 * mib + 100), 4);
			CHECK(memcmp(buf, "BBBB", 4) == 0);
			CHECK_INT(ovl_read(FS, f, buf, 4, 16 * mib), 4);
			CHECK(memcmp(buf, "\0\0\0\0", 4) == 0);
			CHECK_INT(ovl_read(FS, f, buf, 4, 64 * mib - 2), 2);
			ovl_release(FS, f);
		}
		put(FS, n);
	}
out:
	env_fini(&e);
}

/* D43: a read-only handle opened before the copy-up reads the new data afterwards. */
static void test_fd_follows_copy_up(void)
{
	struct env e;
	struct ovl_node *n;
	struct ovl_file *ro, *rw;
	char buf[32];

	env_init(&e, 1, true);
	mkf(LO1, "f", "old-data");
	if (!env_mount(&e))
		goto out;
	if (!CHECK_INT(walk(FS, "f", &n, NULL), 0))
		goto out;
	if (CHECK_INT(ovl_open(FS, n, O_RDONLY, &ro), 0)) {
		memset(buf, 0, sizeof(buf));
		CHECK_INT(ovl_read(FS, ro, buf, sizeof(buf) - 1, 0), 8);
		CHECK_STR(buf, "old-data");
		if (CHECK_INT(ovl_open(FS, n, O_RDWR, &rw), 0)) {
			CHECK_INT(ovl_write(FS, rw, "NEW", 3, 0), 3);
			memset(buf, 0, sizeof(buf));
			CHECK_INT(ovl_read(FS, ro, buf, sizeof(buf) - 1, 0), 8);
			CHECK_STR(buf, "NEW-data");
			CHECK_INT(ovl_write(FS, rw, "more", 4, 8), 4);
			ovl_release(FS, rw);
		}
		memset(buf, 0, sizeof(buf));
		CHECK_INT(ovl_read(FS, ro, buf, sizeof(buf) - 1, 0), 12);
		CHECK_STR(buf, "NEW-datamore");
		CHECK_INT(ovl_lseek(FS, ro, 0, SEEK_END), 12);
		ovl_release(FS, ro);
	}
	put(FS, n);
	CHECK_STR(cat(LO1, "f"), "old-data");
out:
	env_fini(&e);
}

/* D36: creating a/b/f where a/b is lower-only copies up a and a/b with their attributes. */
static void test_parent_chain_copy_up(void)
{
	struct env e;
	struct stat la, lb, ua, ub, st;

	env_init(&e, 1, true);
	mkd(LO1, "a", 0751);
	mkd(LO1, "a/b", 0710);
	mkf(LO1, "a/b/old", "old");
	mkf(LO1, "a/sibling", "s");
	if (lchown(lp(LO1, "a"), 11, 22) < 0 || lchown(lp(LO1, "a/b"), 33, 44) < 0)
		die("lchown");
	set_times(LO1, "a/b", 1100000000, 5);
	set_times(LO1, "a", 1200000000, 7);
	if (lstat(lp(LO1, "a"), &la) < 0 || lstat(lp(LO1, "a/b"), &lb) < 0)
		die("lstat");
	if (!env_mount(&e))
		goto out;

	CHECK_INT(e_create(FS, "a/b/f", 0600, "new"), 0);
	if (CHECK_INT(lx(UP, "a", &ua), 0)) {
		CHECK(S_ISDIR(ua.st_mode));
		CHECK_INT(ua.st_mode & 07777, 0751);
		CHECK_INT(ua.st_uid, 11);
		CHECK_INT(ua.st_gid, 22);
		CHECK(same_time(ua.st_mtim, la.st_mtim)); /* restored after b moved in */
	}
	if (CHECK_INT(lx(UP, "a/b", &ub), 0)) {
		CHECK(S_ISDIR(ub.st_mode));
		CHECK_INT(ub.st_mode & 07777, 0710);
		CHECK_INT(ub.st_uid, 33);
		CHECK_INT(ub.st_gid, 44);
	}
	CHECK_INT(lx(UP, "a/b/f", &st), 0);
	CHECK_INT(st.st_mode & 07777, 0600);
	CHECK_INT(lx(UP, "a/b/old", NULL), -ENOENT); /* a directory copy-up copies no children */
	CHECK_INT(lx(UP, "a/sibling", NULL), -ENOENT);
	CHECK_INT(lx(LO1, "a/b/f", NULL), -ENOENT);
	CHECK_STR(e_ls(FS, "a/b"), "f old");
	CHECK_STR(e_ls(FS, "a"), "b sibling");
	CHECK_STR(e_cat(FS, "a/b/f"), "new");
	/* The merged directory keeps its number through the copy-up. */
	CHECK_INT(lookup_st(FS, "a/b", &st), 0);
	CHECK_INT(st.st_ino, lb.st_ino);
	CHECK_INT(st.st_nlink, 1);
out:
	env_fini(&e);
}

/* D28, D27, D30, D37: setattr copies up first. */
static void test_setattr_copy_up(void)
{
	struct env e;
	struct stat lst, st, attr;
	char target[64];

	env_init(&e, 1, true);
	mkf(LO1, "f", "data");
	set_times(LO1, "f", 1300000000, 42);
	mkf(LO1, "g", "abcdefgh");
	mkf(LO1, "h", "h");
	mksym(LO1, "s", "target-of-s");
	if (lstat(lp(LO1, "f"), &lst) < 0)
		die("lstat");
	if (!env_mount(&e))
		goto out;

	memset(&attr, 0, sizeof(attr));
	attr.st_mode = 0600;
	CHECK_INT(e_setattr(FS, "f", OVL_SET_MODE, &attr, &st), 0);
	CHECK_INT(st.st_mode & 07777, 0600);
	CHECK_INT(st.st_ino, lst.st_ino);
	CHECK_INT(lx(UP, "f", &st), 0);
	CHECK_INT(st.st_mode & 07777, 0600);
	CHECK(same_time(st.st_mtim, lst.st_mtim));
	CHECK_INT(lx(LO1, "f", &st), 0);
	CHECK_INT(st.st_mode & 07777, 0644);

	attr.st_size = 4;
	CHECK_INT(e_setattr(FS, "g", OVL_SET_SIZE, &attr, &st), 0);
	CHECK_INT(st.st_size, 4);
	CHECK_STR(cat(UP, "g"), "abcd");
	CHECK_STR(cat(LO1, "g"), "abcdefgh");

	attr.st_atim = (struct timespec){.tv_sec = 1000, .tv_nsec = 1};
	attr.st_mtim = (struct timespec){.tv_sec = 2000, .tv_nsec = 2};
	CHECK_INT(e_setattr(FS, "h", OVL_SET_ATIME | OVL_SET_MTIME, &attr, &st), 0);
	CHECK_INT(lx(UP, "h", &st), 0);
	CHECK(same_time(st.st_atim, attr.st_atim));
	CHECK(same_time(st.st_mtim, attr.st_mtim));

	attr.st_uid = 1000;
	CHECK_INT(e_setattr(FS, "s", OVL_SET_UID, &attr, &st), 0);
	CHECK(S_ISLNK(st.st_mode));
	CHECK_INT(st.st_uid, 1000);
	ssize_t len = readlink(lp(UP, "s"), target, sizeof(target) - 1);
	CHECK_INT(len, strlen("target-of-s"));
	target[len < 0 ? 0 : len] = '\0';
	CHECK_STR(target, "target-of-s");
	struct ovl_node *n;
	if (CHECK_INT(walk(FS, "s", &n, NULL), 0)) {
		CHECK_INT(ovl_readlink(FS, n, target, sizeof(target)), strlen("target-of-s"));
		put(FS, n);
	}
out:
	env_fini(&e);
}

/* D53 and other calls that must not copy up. */
static void test_no_copy_up_on_read(void)
{
	struct env e;
	struct ovl_node *n, *d;
	struct ovl_file *f;
	struct ovl_dir *dh;
	struct statvfs sv;

	env_init(&e, 1, true);
	mkd(LO1, "d", 0755);
	mkf(LO1, "d/f", "data");
	if (!env_mount(&e))
		goto out;
	if (CHECK_INT(walk(FS, "d/f", &n, NULL), 0)) {
		CHECK_INT(ovl_access(FS, n, R_OK | W_OK), 0);
		if (CHECK_INT(ovl_open(FS, n, O_RDONLY, &f), 0)) {
			CHECK_INT(ovl_fsync(FS, f, false), 0);
			CHECK_INT(ovl_fsync(FS, f, true), 0);
			ovl_release(FS, f);
		}
		CHECK_INT(ovl_opendir(FS, n, &dh), -ENOTDIR);
		put(FS, n);
	}
	if (CHECK_INT(walk(FS, "d", &d, NULL), 0)) {
		CHECK_INT(ovl_open(FS, d, O_RDONLY, &f), -EINVAL);
		CHECK_INT(ovl_open(FS, d, O_RDWR, &f), -EISDIR);
		put(FS, d);
	}
	CHECK_STR(e_ls(FS, "d"), "f");
	CHECK_INT(lx(UP, "d", NULL), -ENOENT);
	CHECK_INT(ovl_statfs(FS, &sv), 0);
	CHECK(sv.f_namemax >= 255);
	char longname[300];
	memset(longname, 'n', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	CHECK_INT(lookup_err(FS, longname), -ENAMETOOLONG);
out:
	env_fini(&e);
}

/* syncfs of the upper layer (0 without one); btime of the object a node shows, the upper
 * file's once copied up. */
static void test_syncfs_and_btime(void)
{
	for (int rw = 0; rw < 2; rw++) {
		struct env e;
		struct ovl_node *n;
		struct timespec before, after;

		env_init(&e, rw ? 1 : 2, rw);
		mkf(LO1, "f", "data");
		if (!env_mount(&e))
			goto next;
		CHECK_INT(ovl_syncfs(FS), 0);
		if (CHECK_INT(walk(FS, "f", &n, NULL), 0)) {
			int r = ovl_btime(FS, n, &before);
			CHECK(r == 0 || r == -ENODATA); /* -ENODATA: the filesystem keeps none */
			if (r == 0 && rw) {
				struct timespec pause = {0, 20 * 1000 * 1000};
				struct ovl_file *f;
				nanosleep(&pause, NULL);
				if (CHECK_INT(ovl_open(FS, n, O_RDWR, &f), 0))
					ovl_release(FS, f);
				CHECK_INT(ovl_btime(FS, n, &after), 0);
				CHECK(after.tv_sec > before.tv_sec ||
				      (after.tv_sec == before.tv_sec &&
				       after.tv_nsec > before.tv_nsec));
			}
			put(FS, n);
		}
	next:
		env_fini(&e);
	}
}

const struct test copy_up_tests[] = {
    {TEST(test_syncfs_and_btime)},
    {TEST(test_copyup_on_write_open)},
    {TEST(test_destroy_closes_open_files)},
    {TEST(test_copyup_trunc)},
    {TEST(test_keep_kernel_mtime)},
    {TEST(test_copyup_sparse)},
    {TEST(test_fd_follows_copy_up)},
    {TEST(test_parent_chain_copy_up)},
    {TEST(test_setattr_copy_up)},
    {TEST(test_no_copy_up_on_read)},
    {NULL, NULL},
};
