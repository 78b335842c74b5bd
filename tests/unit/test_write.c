/*
 * Unit tests of xattrs, of creating files and device nodes, and of a read-only overlay
 * refusing every write.
 */
#include "harness.h"

/* ------------------------------------------------------------------------------------------ */
/* xattrs                                                                                     */
/* ------------------------------------------------------------------------------------------ */

static void test_xattr_hidden_and_escaped(void)
{
	struct env e;
	struct ovl_node *n;

	env_init(&e, 1, true);
	mkf(LO1, "f", "data");
	setx(LO1, "f", "user.a", "1");
	setx(LO1, "f", "trusted.t", "2");
	setx(LO1, "f", "trusted.overlay.origin", "private");
	setx(LO1, "f", "trusted.overlay.impure", "y");
	setx(LO1, "f", "trusted.overlay.overlay.foo", "bar");
	mkd(UP, "d", 0755);
	setx(UP, "d", "trusted.overlay.opaque", "y");
	setx(UP, "d", "trusted.overlay.overlay.esc", "e");
	if (!env_mount(&e))
		goto out;

	CHECK_STR(e_getx(FS, "f", "user.a"), "1");
	CHECK_STR(e_getx(FS, "f", "trusted.t"), "2");
	CHECK_STR(e_getx(FS, "f", "trusted.overlay.foo"), "bar");
	CHECK_STR(e_getx(FS, "f", "trusted.overlay.origin"), "<-ENODATA>");
	CHECK_STR(e_getx(FS, "f", "trusted.overlay.impure"), "<-ENODATA>");
	/* The escaped name itself is escaped once more, so it is not found either. */
	CHECK_STR(e_getx(FS, "f", "trusted.overlay.overlay.foo"), "<-ENODATA>");
	CHECK_STR(e_listx(FS, "f"), "trusted.overlay.foo trusted.t user.a");
	CHECK_STR(e_getx(FS, "d", "trusted.overlay.opaque"), "<-ENODATA>");
	CHECK_STR(e_getx(FS, "d", "trusted.overlay.esc"), "e");
	CHECK_STR(e_listx(FS, "d"), "trusted.overlay.esc");

	if (CHECK_INT(walk(FS, "f", &n, NULL), 0)) {
		char buf[256];
		ssize_t need = ovl_listxattr(FS, n, NULL, 0, true);
		CHECK_INT(need, strlen("user.a trusted.t trusted.overlay.foo") + 1);
		CHECK_INT(ovl_listxattr(FS, n, buf, (size_t)need, true), need);
		CHECK_INT(ovl_listxattr(FS, n, buf, (size_t)need - 1, true), -ERANGE);
		CHECK_INT(ovl_getxattr(FS, n, "trusted.overlay.foo", NULL, 0), 3);
		CHECK_INT(ovl_getxattr(FS, n, "trusted.overlay.foo", buf, 2), -ERANGE);
		put(FS, n);
	}
	CHECK_INT(lx(UP, "f", NULL), -ENOENT); /* reading xattrs does not copy up */
out:
	env_fini(&e);
}

static void test_setxattr_escapes(void)
{
	struct env e;

	env_init(&e, 1, true);
	mkd(LO1, "d", 0755);
	mkf(LO1, "d/f", "data");
	if (!env_mount(&e))
		goto out;

	CHECK_INT(e_setx(FS, "d/f", "trusted.overlay.foo", "v1", 0), 0);
	CHECK_INT(lx(UP, "d/f", NULL), 0); /* copied up */
	CHECK_STR(cat(UP, "d/f"), "data");
	CHECK_STR(getx(UP, "d/f", "trusted.overlay.overlay.foo"), "v1");
	CHECK_STR(getx(UP, "d/f", "trusted.overlay.foo"), "<-ENODATA>");
	CHECK_STR(getx(LO1, "d/f", "trusted.overlay.overlay.foo"), "<-ENODATA>");
	CHECK_STR(e_getx(FS, "d/f", "trusted.overlay.foo"), "v1");
	CHECK_INT(e_setx(FS, "d/f", "user.k", "u", 0), 0);
	CHECK_STR(getx(UP, "d/f", "user.k"), "u");
	CHECK_STR(e_listx(FS, "d/f"), "trusted.overlay.foo user.k");
	CHECK_INT(e_setx(FS, "d/f", "user.k", "again", XATTR_CREATE), -EEXIST);
	CHECK_INT(e_removex(FS, "d/f", "trusted.overlay.foo"), 0);
	CHECK_STR(getx(UP, "d/f", "trusted.overlay.overlay.foo"), "<-ENODATA>");
	CHECK_STR(e_listx(FS, "d/f"), "user.k");
	/* A directory: the escaped name goes on the upper copy; the directory stays merged. */
	CHECK_INT(e_setx(FS, "d", "trusted.overlay.opaque", "y", 0), 0);
	CHECK_STR(getx(UP, "d", "trusted.overlay.overlay.opaque"), "y");
	CHECK_STR(getx(UP, "d", "trusted.overlay.opaque"), "<-ENODATA>");
	CHECK_STR(e_cat(FS, "d/f"), "data");
out:
	env_fini(&e);
}

/* D32: removexattr of an absent name gives ENODATA and copies nothing up. */
static void test_removexattr_absent(void)
{
	struct env e;

	env_init(&e, 1, true);
	mkd(LO1, "d", 0755);
	mkf(LO1, "d/f", "data");
	setx(LO1, "d/f", "user.a", "1");
	if (!env_mount(&e))
		goto out;

	CHECK_INT(e_removex(FS, "d/f", "user.nope"), -ENODATA);
	CHECK_INT(e_removex(FS, "d/f", "trusted.overlay.nope"), -ENODATA);
	CHECK_INT(e_removex(FS, "d", "user.nope"), -ENODATA);
	CHECK_INT(lx(UP, "d", NULL), -ENOENT);
	CHECK_INT(lx(UP, "d/f", NULL), -ENOENT);

	CHECK_INT(e_removex(FS, "d/f", "user.a"), 0);
	CHECK_INT(lx(UP, "d/f", NULL), 0);
	CHECK_STR(getx(UP, "d/f", "user.a"), "<-ENODATA>");
	CHECK_STR(getx(LO1, "d/f", "user.a"), "1");
	CHECK_STR(e_getx(FS, "d/f", "user.a"), "<-ENODATA>");
out:
	env_fini(&e);
}

/* ------------------------------------------------------------------------------------------ */
/* Creating                                                                                   */
/* ------------------------------------------------------------------------------------------ */

static void test_create_over_whiteout(void)
{
	struct env e;
	struct stat st;
	struct ovl_node *n;
	struct ovl_file *f;

	env_init(&e, 1, true);
	mkwh(UP, "a");
	mkf(LO1, "a", "lower");
	mkf(LO1, "b", "lower b");
	if (!env_mount(&e))
		goto out;

	CHECK_INT(lookup_err(FS, "a"), -ENOENT);
	if (CHECK_INT(ovl_create(FS, ovl_root(FS), "a", 0640, O_RDWR, &root_cred, &n, &st, &f),
		      0)) {
		CHECK(S_ISREG(st.st_mode));
		CHECK_INT(st.st_mode & 07777, 0640);
		CHECK_INT(st.st_size, 0);
		CHECK_INT(ovl_write(FS, f, "new", 3, 0), 3);
		ovl_release(FS, f);
		put(FS, n);
	}
	CHECK_INT(lx(UP, "a", &st), 0);
	CHECK(S_ISREG(st.st_mode));
	CHECK_STR(e_cat(FS, "a"), "new");
	CHECK_STR(cat(LO1, "a"), "lower");
	CHECK_INT(e_create(FS, "a", 0644, NULL), -EEXIST);
	CHECK_INT(e_create(FS, "b", 0644, NULL), -EEXIST);
	CHECK_INT(lx(UP, "b", NULL), -ENOENT);
	/* New objects belong to the caller. */
	struct ovl_cred user = {.uid = 1000, .gid = 2000};
	CHECK_INT(e_create_as(FS, "mine", 0644, "m", &user), 0);
	CHECK_INT(lx(UP, "mine", &st), 0);
	CHECK_INT(st.st_uid, 1000);
	CHECK_INT(st.st_gid, 2000);
out:
	env_fini(&e);
}

/* O_TMPFILE: an unnamed file in the upper copy of a lower directory, on a node born
 * unlinked; ovl_link names it (over a whiteout too) and the node becomes that name's; one
 * closed unnamed leaves nothing. */
static void test_tmpfile(void)
{
	struct env e;
	struct stat st, st2;
	struct ovl_node *d, *n, *n2;
	struct ovl_file *f;

	env_init(&e, 1, true);
	mkd(LO1, "d", 0777);
	mkf(LO1, "d/gone", "lower");
	if (!env_mount(&e))
		goto out;
	if (!CHECK_INT(walk(FS, "d", &d, &st), 0))
		goto out;
	CHECK_INT(e_unlink(FS, "d/gone"), 0); /* a whiteout now */
	struct ovl_cred user = {.uid = 1000, .gid = 2000, .umask = 022};
	if (CHECK_INT(ovl_tmpfile(FS, d, 0666, O_RDWR, &user, &n, &st, &f), 0)) {
		CHECK_INT(st.st_nlink, 0);
		CHECK_INT(st.st_mode & 07777, 0644);
		CHECK_INT(st.st_uid, 1000);
		CHECK(ovl_node_is_unlinked(n));
		CHECK_INT(ovl_write(FS, f, "data", 4, 0), 4);
		CHECK_STR(e_ls(FS, "d"), "");
		CHECK_INT(ovl_link(FS, n, d, "gone", &n2, &st2), 0);
		CHECK(n2 == n);
		CHECK(!ovl_node_is_unlinked(n));
		CHECK_INT(st2.st_nlink, 1);
		CHECK_INT(st2.st_ino, st.st_ino);
		CHECK_STR(e_cat(FS, "d/gone"), "data");
		CHECK_INT(ovl_getattr(FS, n, &st2), 0);
		CHECK_INT(st2.st_size, 4);
		ovl_release(FS, f);
		put(FS, n);
		put(FS, n);
	}
	if (CHECK_INT(ovl_tmpfile(FS, d, 0600, O_WRONLY, &root_cred, &n, &st, &f), 0)) {
		CHECK_INT(ovl_write(FS, f, "x", 1, 0), 1);
		ovl_release(FS, f);
		put(FS, n);
	}
	CHECK_STR(e_ls(FS, "d"), "gone");
	CHECK_INT(lx(UP, "d/gone", &st), 0);
	CHECK_INT(st.st_nlink, 1);
	CHECK_STR(cat(LO1, "d/gone"), "lower");
	put(FS, d);
out:
	env_fini(&e);
}

/* D35: mknod of a whiteout-shaped device is refused; other nodes work. */
static void test_mknod(void)
{
	struct env e;
	struct stat st;

	env_init(&e, 1, true);
	if (!env_mount(&e))
		goto out;
	CHECK_INT(e_mknod(FS, "wh", S_IFCHR | 0644, makedev(0, 0)), -EPERM);
	CHECK_INT(lx(UP, "wh", NULL), -ENOENT);
	CHECK_INT(e_mknod(FS, "null", S_IFCHR | 0666, makedev(1, 3)), 0);
	if (CHECK_INT(lx(UP, "null", &st), 0)) {
		CHECK(S_ISCHR(st.st_mode));
		CHECK_INT(st.st_rdev, makedev(1, 3));
	}
	CHECK_INT(lookup_st(FS, "null", &st), 0);
	CHECK(S_ISCHR(st.st_mode));
	CHECK_INT(e_mknod(FS, "fifo", S_IFIFO | 0600, 0), 0);
	CHECK_INT(lookup_st(FS, "fifo", &st), 0);
	CHECK(S_ISFIFO(st.st_mode));
	CHECK_INT(e_symlink(FS, "sym", "null"), 0);
	CHECK_INT(lookup_st(FS, "sym", &st), 0);
	CHECK(S_ISLNK(st.st_mode));
	CHECK_STR(e_ls(FS, ""), "fifo null sym");
out:
	env_fini(&e);
}

/* ------------------------------------------------------------------------------------------ */
/* Read-only overlays and parameters                                                          */
/* ------------------------------------------------------------------------------------------ */

static void check_all_writes_erofs(struct ovl_fs *fs)
{
	struct ovl_node *f, *d, *n;
	struct ovl_file *h;
	struct stat st, attr;

	if (!CHECK_INT(walk(fs, "f", &f, NULL), 0))
		return;
	if (!CHECK_INT(walk(fs, "d", &d, NULL), 0)) {
		put(fs, f);
		return;
	}
	CHECK(ovl_is_readonly(fs));
	CHECK_INT(ovl_create(fs, d, "new", 0644, O_RDWR, &root_cred, &n, &st, &h), -EROFS);
	CHECK_INT(ovl_mkdir(fs, d, "nd", 0755, &root_cred, &n, &st), -EROFS);
	CHECK_INT(ovl_mknod(fs, d, "nn", S_IFIFO | 0644, 0, &root_cred, &n, &st), -EROFS);
	CHECK_INT(ovl_symlink(fs, d, "ns", "f", &root_cred, &n, &st), -EROFS);
	CHECK_INT(ovl_link(fs, f, d, "nl", &n, &st), -EROFS);
	CHECK_INT(ovl_unlink(fs, ovl_root(fs), "f"), -EROFS);
	CHECK_INT(ovl_unlink(fs, d, "x"), -EROFS);
	CHECK_INT(ovl_rmdir(fs, ovl_root(fs), "d"), -EROFS);
	CHECK_INT(ovl_rename(fs, ovl_root(fs), "f", ovl_root(fs), "f2", 0), -EROFS);
	CHECK_INT(ovl_open(fs, f, O_RDWR, &h), -EROFS);
	CHECK_INT(ovl_open(fs, f, O_WRONLY, &h), -EROFS);
	CHECK_INT(ovl_open(fs, f, O_RDONLY | O_TRUNC, &h), -EROFS);
	memset(&attr, 0, sizeof(attr));
	attr.st_mode = 0600;
	CHECK_INT(ovl_setattr(fs, f, NULL, OVL_SET_MODE, &attr, &st), -EROFS);
	CHECK_INT(ovl_setattr(fs, f, NULL, OVL_SET_SIZE, &attr, &st), -EROFS);
	CHECK_INT(ovl_setxattr(fs, f, "user.x", "1", 1, 0), -EROFS);
	CHECK_INT(ovl_removexattr(fs, f, "user.a"), -EROFS);
	CHECK_INT(ovl_copy_up(fs, f), -EROFS);
	CHECK_INT(ovl_access(fs, f, W_OK), -EROFS);
	CHECK_INT(ovl_access(fs, f, R_OK), 0);
	put(fs, d);
	put(fs, f);
	/* Reading works. */
	CHECK_STR(e_cat(fs, "f"), "F");
	CHECK_STR(e_ls(fs, "d"), "x y");
	CHECK_STR(e_getx(fs, "f", "user.a"), "1");
}

/* D50, A40. */
static void test_readonly(void)
{
	struct env e;
	struct ovl_fs *fs;

	/* No upper layer. */
	env_init(&e, 2, false);
	mkf(LO1, "f", "F");
	setx(LO1, "f", "user.a", "1");
	mkd(LO1, "d", 0755);
	mkf(LO1, "d/x", "x");
	mkd(LO2, "d", 0755);
	mkf(LO2, "d/y", "y");
	if (env_mount(&e))
		check_all_writes_erofs(FS);
	env_fini(&e);

	/* An upper layer, but mounted read-only: nothing is written, not even the work dir. */
	env_init(&e, 1, true);
	mkf(LO1, "f", "F");
	setx(LO1, "f", "user.a", "1");
	mkd(LO1, "d", 0755);
	mkf(LO1, "d/x", "x");
	mkf(LO1, "d/y", "y");
	if (CHECK_INT(env_open(&e, true), 0)) {
		check_all_writes_erofs(FS);
		CHECK_STR(e_ls(FS, ""), "d f");
		CHECK_INT(lx(e.work, "work", NULL), -ENOENT);
		CHECK_INT(lx(UP, "d", NULL), -ENOENT);
	}
	env_fini(&e);

	/* One lower layer alone mounts read-only. */
	env_init(&e, 1, false);
	mkf(LO1, "f", "F");
	if (CHECK_INT(env_open(&e, false), 0)) {
		CHECK(ovl_is_readonly(FS));
		CHECK_STR(e_cat(FS, "f"), "F");
		CHECK_INT(e_create(FS, "g", 0644, NULL), -EROFS);
	}
	env_fini(&e);

	/* Bad parameters. */
	env_init(&e, 1, true);
	const char *lowers[1] = {LO1};
	const char *missing[1] = {lp(e.dir, "no-such-dir")};
	struct ovl_fs_params p = {.lowerdirs = lowers, .nlower = 0};
	CHECK_INT(ovl_fs_new(&p, &fs), -EINVAL);
	p.nlower = 1;
	p.upperdir = UP; /* no workdir */
	CHECK_INT(ovl_fs_new(&p, &fs), -EINVAL);
	p.upperdir = NULL;
	p.lowerdirs = missing;
	CHECK_INT(ovl_fs_new(&p, &fs), -ENOENT);
	env_fini(&e);
}

const struct test write_tests[] = {
    {TEST(test_xattr_hidden_and_escaped)},
    {TEST(test_setxattr_escapes)},
    {TEST(test_removexattr_absent)},
    {TEST(test_create_over_whiteout)},
    {TEST(test_mknod)},
    {TEST(test_tmpfile)},
    {TEST(test_readonly)},
    {NULL, NULL},
};
