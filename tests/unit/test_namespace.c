/*
 * Unit tests of the namespace: mkdir over a whiteout, unlink, rmdir and rename in their
 * upper/lower/merged cases.
 */
#include "harness.h"

/* ------------------------------------------------------------------------------------------ */
/* Creating and removing                                                                      */
/* ------------------------------------------------------------------------------------------ */

/* D4: a directory made over a whiteout is opaque, so nothing below shows through. */
static void test_mkdir_over_whiteout(void)
{
	struct env e;
	struct stat st;
	struct ovl_node *n;

	env_init(&e, 1, true);
	mkwh(UP, "d");
	mkd(LO1, "d", 0755);
	mkf(LO1, "d/x", "hidden");
	if (!env_mount(&e))
		goto out;

	if (CHECK_INT(ovl_mkdir(FS, ovl_root(FS), "d", 0750, &root_cred, &n, &st), 0)) {
		CHECK(S_ISDIR(st.st_mode));
		CHECK_INT(st.st_mode & 07777, 0750);
		put(FS, n);
	}
	CHECK_INT(lx(UP, "d", &st), 0);
	CHECK(S_ISDIR(st.st_mode));
	CHECK_STR(getx(UP, "d", "trusted.overlay.opaque"), "y");
	CHECK_STR(e_ls(FS, "d"), "");
	CHECK_INT(lookup_err(FS, "d/x"), -ENOENT);
	CHECK_INT(e_mkdir(FS, "d", 0755), -EEXIST);
	CHECK_INT(e_mkdir(FS, "fresh", 0755), 0);
	CHECK_INT(lx(UP, "fresh", &st), 0);
	CHECK(S_ISDIR(st.st_mode));
	CHECK_INT(e_create(FS, "d/in", 0644, "i"), 0);
	CHECK_STR(e_ls(FS, "d"), "in");
out:
	env_fini(&e);
}

/* A default ACL for a directory: owner rwx, group rwx, named user 1002 r-x, mask rwx,
 * others r-x (the xattr form: version, then tag, permissions, id). */
static void set_default_acl(const char *layer, const char *rel)
{
	static const uint16_t e[][2] = {{0x01, 7}, {0x02, 5}, {0x04, 7}, {0x10, 7}, {0x20, 5}};
	unsigned char v[4 + 8 * 5] = {2};

	for (size_t i = 0; i < 5; i++) {
		unsigned char *p = v + 4 + 8 * i;
		uint32_t id = e[i][0] == 0x02 ? 1002 : 0xffffffff;
		p[0] = (unsigned char)e[i][0];
		p[2] = (unsigned char)e[i][1];
		for (int b = 0; b < 4; b++)
			p[4 + b] = (unsigned char)(id >> (8 * b));
	}
	if (setxattr(lp(layer, rel), "system.posix_acl_default", v, sizeof(v), 0) < 0)
		die("setxattr %s: %s", rel, strerror(errno));
}

/* The umask the kernel leaves to us: applied where the (upper) parent has no default ACL,
 * ignored where it has one, also over a whiteout (built in the work directory, where the
 * engine itself gives the object the parent's ACL) and in a lower parent copied up. */
static void test_umask_and_default_acl(void)
{
	const struct ovl_cred cred = {.uid = 0, .gid = 0, .umask = 077};
	struct env e;
	struct stat st;
	struct ovl_node *dir, *n;

	env_init(&e, 1, true);
	mkd(LO1, "plain", 0777);
	mkd(LO1, "acl", 0777);
	mkf(LO1, "acl/old", "o");
	mkd(LO1, "acl/olddir", 0755);
	set_default_acl(LO1, "acl");
	if (!env_mount(&e))
		goto out;

	CHECK_INT(e_create_as(FS, "plain/f", 0666, "", &cred), 0);
	CHECK_INT(lx(UP, "plain/f", &st), 0);
	CHECK_INT(st.st_mode & 07777, 0600);
	CHECK_INT(e_create_as(FS, "acl/f", 0640, "", &cred), 0);
	CHECK_INT(lx(UP, "acl/f", &st), 0);
	CHECK_INT(st.st_mode & 07777, 0640);
	CHECK(getxattr(lp(UP, "acl/f"), "system.posix_acl_access", NULL, 0) > 0);
	if (CHECK_INT(walk(FS, "acl", &dir, NULL), 0)) {
		CHECK_INT(ovl_mkdir(FS, dir, "d", 0777, &cred, &n, &st), 0);
		CHECK_INT(st.st_mode & 07777, 0775);
		put(FS, n);
		CHECK_INT(ovl_mknod(FS, dir, "p", S_IFIFO | 0666, 0, &cred, &n, &st), 0);
		CHECK_INT(st.st_mode & 07777, 0664);
		put(FS, n);
		/* over whiteouts */
		CHECK_INT(e_unlink(FS, "acl/old"), 0);
		CHECK_INT(e_rmdir(FS, "acl/olddir"), 0);
		CHECK_INT(ovl_mkdir(FS, dir, "olddir", 0750, &cred, &n, &st), 0);
		CHECK_INT(st.st_mode & 07777, 0750);
		put(FS, n);
		CHECK_INT(ovl_mknod(FS, dir, "old", S_IFIFO | 0666, 0, &cred, &n, &st), 0);
		CHECK_INT(st.st_mode & 07777, 0664);
		put(FS, n);
		put(FS, dir);
	}
	CHECK(getxattr(lp(UP, "acl/olddir"), "system.posix_acl_default", NULL, 0) > 0);
	CHECK(getxattr(lp(UP, "acl/olddir"), "system.posix_acl_access", NULL, 0) > 0);
	CHECK(getxattr(lp(UP, "acl/old"), "system.posix_acl_access", NULL, 0) > 0);
	CHECK_STR(getx(UP, "acl/olddir", "trusted.overlay.opaque"), "y");
	/* A symlink's mode is not the umask's. */
	CHECK_INT(e_symlink(FS, "plain/l", "t"), 0);
	CHECK_INT(lx(UP, "plain/l", &st), 0);
	CHECK_INT(st.st_mode & 0777, 0777);
out:
	env_fini(&e);
}

/* D5, D6, D7. */
static void test_unlink(void)
{
	struct env e;
	struct stat st;
	struct ovl_node *held;

	env_init(&e, 1, true);
	mkf(LO1, "a", "A");
	mkd(LO1, "d", 0755);
	mkf(LO1, "d/b", "B");
	mkf(LO1, "e", "E");
	mkd(LO1, "dir", 0755);
	if (!env_mount(&e))
		goto out;

	CHECK_INT(walk(FS, "a", &held, NULL), 0);
	CHECK_INT(e_unlink(FS, "a"), 0);
	CHECK(is_whiteout(UP, "a"));
	CHECK_INT(lookup_err(FS, "a"), -ENOENT);
	CHECK_STR(cat(LO1, "a"), "A");
	/* A node still referenced after its name went (as by an open fd): nlink 0. */
	CHECK_INT(ovl_getattr(FS, held, &st), 0);
	CHECK_INT(st.st_nlink, 0);
	put(FS, held);

	CHECK_INT(e_unlink(FS, "d/b"), 0);
	CHECK(is_whiteout(UP, "d/b"));
	CHECK_INT(lx(UP, "d", &st), 0);
	CHECK(S_ISDIR(st.st_mode));
	CHECK_STR(e_ls(FS, "d"), "");

	CHECK_INT(e_create(FS, "c", 0644, "C"), 0);
	CHECK_INT(e_unlink(FS, "c"), 0);
	CHECK_INT(lx(UP, "c", NULL), -ENOENT); /* pure upper: nothing left */
	CHECK_INT(lookup_err(FS, "c"), -ENOENT);

	CHECK_INT(e_write(FS, "e", O_WRONLY, "e", 0), 0);
	CHECK_INT(e_unlink(FS, "e"), 0);
	CHECK(is_whiteout(UP, "e"));
	CHECK_INT(lookup_err(FS, "e"), -ENOENT);

	CHECK_INT(e_unlink(FS, "missing"), -ENOENT);
	CHECK_INT(e_unlink(FS, "dir"), -EISDIR);
	CHECK_STR(e_ls(FS, ""), "d dir");
out:
	env_fini(&e);
}

/* D8 - D11. */
static void test_rmdir(void)
{
	struct env e;
	struct stat st;

	env_init(&e, 2, true);
	mkd(UP, "m", 0755);
	mkd(LO1, "m", 0755);
	mkf(LO1, "m/f", "f");
	mkd(LO1, "empty", 0755);
	mkd(LO1, "c", 0755);
	if (mknod(lp(LO1, "c/dev"), S_IFCHR | 0644, makedev(1, 3)) < 0)
		die("mknod");
	mkd(UP, "w", 0755);
	mkwh(UP, "w/x");
	mkd(LO1, "w", 0755);
	mkf(LO1, "w/x", "hidden");
	mkd(LO1, "q", 0755);
	mkd(LO2, "q", 0755);
	mkf(LO2, "q/z", "z");
	mkf(LO1, "file", "f");
	if (!env_mount(&e))
		goto out;

	CHECK_INT(e_rmdir(FS, "m"), -ENOTEMPTY);
	CHECK_INT(e_unlink(FS, "m/f"), 0);
	CHECK_INT(e_rmdir(FS, "m"), 0);
	CHECK(is_whiteout(UP, "m"));
	CHECK_INT(lookup_err(FS, "m"), -ENOENT);
	CHECK_INT(lx(LO1, "m/f", NULL), 0);

	CHECK_INT(e_rmdir(FS, "empty"), 0);
	CHECK(is_whiteout(UP, "empty"));
	CHECK_INT(e_rmdir(FS, "c"), -ENOTEMPTY); /* a char device other than 0/0 is an entry */
	CHECK_INT(e_rmdir(FS, "w"), 0);		 /* holds only a whiteout */
	CHECK(is_whiteout(UP, "w"));
	CHECK_INT(e_rmdir(FS, "q"), -ENOTEMPTY);
	CHECK_INT(e_unlink(FS, "q/z"), 0);
	CHECK_INT(e_rmdir(FS, "q"), 0);
	CHECK(is_whiteout(UP, "q"));
	CHECK_INT(e_rmdir(FS, "file"), -ENOTDIR);
	CHECK_INT(e_rmdir(FS, "missing"), -ENOENT);

	CHECK_INT(e_mkdir(FS, "p", 0755), 0);
	CHECK_INT(e_rmdir(FS, "p"), 0);
	CHECK_INT(lx(UP, "p", NULL), -ENOENT);
	/* mkdir over what rmdir left: opaque, empty. */
	CHECK_INT(e_mkdir(FS, "m", 0755), 0);
	CHECK_STR(e_ls(FS, "m"), "");
	CHECK_INT(lx(UP, "m", &st), 0);
	CHECK(S_ISDIR(st.st_mode));
	CHECK_STR(e_ls(FS, ""), "c file m");
out:
	env_fini(&e);
}

/* ------------------------------------------------------------------------------------------ */
/* rename                                                                                     */
/* ------------------------------------------------------------------------------------------ */

static void test_rename_files(void)
{
	struct env e;
	struct stat st;

	env_init(&e, 1, true);
	mkf(LO1, "a", "A");
	mkf(LO1, "b", "B");
	mkf(LO1, "g", "G");
	mkf(LO1, "x", "X");
	mkf(LO1, "y", "Y");
	mkf(LO1, "p", "P");
	mkf(LO1, "q", "Q");
	mkf(LO1, "cu", "CU");
	mkwh(UP, "w");
	mkf(LO1, "w", "whited out");
	if (!env_mount(&e))
		goto out;

	/* D16: the source is copied up and renamed; a whiteout is left where it exists below. */
	CHECK_INT(e_rename(FS, "a", "na", 0), 0);
	CHECK_STR(cat(UP, "na"), "A");
	CHECK(is_whiteout(UP, "a"));
	CHECK_STR(cat(LO1, "a"), "A");
	CHECK_INT(lookup_err(FS, "a"), -ENOENT);
	CHECK_STR(e_cat(FS, "na"), "A");

	/* D17: over another lower file. */
	CHECK_INT(e_rename(FS, "b", "g", 0), 0);
	CHECK_STR(e_cat(FS, "g"), "B");
	CHECK_INT(lookup_err(FS, "b"), -ENOENT);
	CHECK(is_whiteout(UP, "b"));

	/* A copied-up file: the name still exists below. */
	CHECK_INT(e_write(FS, "cu", O_WRONLY, "cu", 0), 0);
	CHECK_INT(e_rename(FS, "cu", "cu2", 0), 0);
	CHECK(is_whiteout(UP, "cu"));
	CHECK_INT(lookup_err(FS, "cu"), -ENOENT);
	CHECK_STR(e_cat(FS, "cu2"), "cu");

	/* A pure upper file leaves nothing behind. */
	CHECK_INT(e_create(FS, "c", 0644, "C"), 0);
	CHECK_INT(e_rename(FS, "c", "c2", 0), 0);
	CHECK_INT(lx(UP, "c", NULL), -ENOENT);
	CHECK_STR(e_cat(FS, "c2"), "C");

	/* D19. */
	CHECK_INT(e_rename(FS, "x", "y", RENAME_NOREPLACE), -EEXIST);
	CHECK_STR(e_cat(FS, "x"), "X");
	CHECK_STR(e_cat(FS, "y"), "Y");
	CHECK_INT(lx(UP, "x", NULL), -ENOENT);
	CHECK_INT(e_rename(FS, "x", "w", RENAME_NOREPLACE), 0);
	CHECK_STR(e_cat(FS, "w"), "X");
	CHECK_INT(lookup_err(FS, "x"), -ENOENT);
	CHECK(is_whiteout(UP, "x"));

	/* D20. */
	CHECK_INT(e_rename(FS, "p", "q", RENAME_EXCHANGE), 0);
	CHECK_STR(e_cat(FS, "p"), "Q");
	CHECK_STR(e_cat(FS, "q"), "P");
	CHECK_INT(e_rename(FS, "p", "absent", RENAME_EXCHANGE), -ENOENT);
	CHECK_INT(e_rename(FS, "absent", "p", 0), -ENOENT);

	/* D21 and other flags. */
	CHECK_INT(e_rename(FS, "p", "p2", RENAME_WHITEOUT), -EINVAL);
	CHECK_INT(e_rename(FS, "p", "q", RENAME_NOREPLACE | RENAME_EXCHANGE), -EINVAL);
	CHECK_INT(e_rename(FS, "p", "p2", 1u << 7), -EINVAL);
	CHECK_INT(lookup_err(FS, "p2"), -ENOENT);

	/* Onto itself: nothing happens. */
	CHECK_INT(e_rename(FS, "y", "y", 0), 0);
	CHECK_STR(e_cat(FS, "y"), "Y");
	CHECK_INT(lookup_st(FS, "y", &st), 0);
	CHECK_STR(e_ls(FS, ""), "c2 cu2 g na p q w y");
out:
	env_fini(&e);
}

/* A node the kernel still holds (an open file) after rename replaced its name behaves like
 * one whose name was unlinked: its attributes stay, with nlink 0. */
static void test_rename_replaced_node(void)
{
	struct env e;
	struct ovl_node *held, *held2;
	struct stat st0, st;

	env_init(&e, 1, true);
	mkf(LO1, "a", "A");
	mkf(LO1, "b", "BB");
	mkf(LO1, "c", "C");
	if (!env_mount(&e))
		goto out;

	if (CHECK_INT(walk(FS, "b", &held, &st0), 0)) {
		CHECK_INT(e_rename(FS, "a", "b", 0), 0);
		CHECK_STR(e_cat(FS, "b"), "A");
		CHECK_INT(ovl_getattr(FS, held, &st), 0);
		CHECK(S_ISREG(st.st_mode));
		CHECK_INT(st.st_size, 2);
		CHECK_INT(st.st_ino, st0.st_ino);
		CHECK_INT(st.st_nlink, 0);
		put(FS, held);
	}
	/* The same for a name removed by unlink, for comparison. */
	if (CHECK_INT(walk(FS, "c", &held2, &st0), 0)) {
		CHECK_INT(e_unlink(FS, "c"), 0);
		CHECK_INT(ovl_getattr(FS, held2, &st), 0);
		CHECK(S_ISREG(st.st_mode));
		CHECK_INT(st.st_ino, st0.st_ino);
		CHECK_INT(st.st_nlink, 0);
		put(FS, held2);
	}
out:
	env_fini(&e);
}

static void test_rename_errors(void)
{
	struct env e;

	env_init(&e, 1, true);
	mkd(LO1, "D", 0755);
	mkd(LO1, "D/sub", 0755);
	mkd(LO1, "E", 0755);
	mkf(LO1, "E/e1", "e");
	mkd(LO1, "F", 0755);
	mkd(LO1, "G", 0755);
	mkf(LO1, "q", "Q");
	mkd(UP, "H", 0755);
	mkd(LO1, "H", 0755);
	mkf(LO1, "H/below", "b");
	if (!env_mount(&e))
		goto out;

	CHECK_INT(e_rename(FS, "D", "D/sub/inner", 0), -EINVAL);
	CHECK_INT(e_rename(FS, "D", "D/x", 0), -EINVAL);
	CHECK_INT(e_rename(FS, "q", "F", 0), -EISDIR);
	CHECK_INT(e_rename(FS, "F", "q", 0), -ENOTDIR);
	CHECK_INT(e_rename(FS, "F", "E", 0), -ENOTEMPTY);
	CHECK_INT(e_rename(FS, "F", "H", 0), -ENOTEMPTY); /* H's entries are below */
	CHECK_STR(e_ls(FS, ""), "D E F G H q");
	CHECK_STR(e_cat(FS, "E/e1"), "e");
	/* Onto an empty directory: replaces it. */
	CHECK_INT(e_rename(FS, "F", "G", 0), 0);
	CHECK_INT(lookup_err(FS, "F"), -ENOENT);
	CHECK_STR(e_ls(FS, "G"), "");
	CHECK_STR(e_ls(FS, ""), "D E G H q");
out:
	env_fini(&e);
}

/* gVisor's way (section A, rule 32): a merged directory renames; descendants are copied up,
 * the new name is opaque and a whiteout marks the source. */
static void test_rename_merged_dir(void)
{
	struct env e;
	struct ovl_node *held;
	struct stat st;

	env_init(&e, 2, true);
	mkd(UP, "m", 0755);
	mkf(UP, "m/u", "U");
	mkwh(UP, "m/wh");
	mkd(LO1, "m", 0755);
	mkf(LO1, "m/l", "L");
	mkf(LO1, "m/wh", "hidden");
	mkd(LO1, "m/sub", 0755);
	mkf(LO1, "m/sub/deep", "D");
	mksym(LO1, "m/sym", "l");
	mkd(LO2, "m", 0755);
	mkf(LO2, "m/l2", "L2");
	mkd(LO2, "m/sub", 0755);
	mkf(LO2, "m/sub/deeper", "DD");
	mkd(LO1, "k", 0755);
	mkf(LO1, "k/f", "kf");
	if (!env_mount(&e))
		goto out;

	CHECK_INT(walk(FS, "m/l", &held, NULL), 0);
	CHECK_INT(e_rename(FS, "m", "n", 0), 0);
	CHECK_INT(lookup_err(FS, "m"), -ENOENT);
	CHECK(is_whiteout(UP, "m"));
	if (CHECK_INT(lx(UP, "n", &st), 0)) {
		CHECK(S_ISDIR(st.st_mode));
		CHECK_STR(getx(UP, "n", "trusted.overlay.opaque"), "y");
	}
	CHECK_STR(cat(UP, "n/l"), "L");
	CHECK_STR(cat(UP, "n/l2"), "L2");
	CHECK_STR(cat(UP, "n/sub/deep"), "D");
	CHECK_STR(cat(UP, "n/sub/deeper"), "DD");
	CHECK_INT(lx(UP, "n/sym", &st), 0);
	CHECK(S_ISLNK(st.st_mode));
	CHECK_STR(e_ls(FS, "n"), "l l2 sub sym u");
	CHECK_STR(e_ls(FS, "n/sub"), "deep deeper");
	CHECK_INT(lookup_err(FS, "n/wh"), -ENOENT);
	CHECK_STR(e_cat(FS, "n/sub/deeper"), "DD");
	/* A node known before the rename follows it. */
	if (held) {
		struct ovl_file *f;
		char buf[8] = {0};
		CHECK_INT(ovl_getattr(FS, held, &st), 0);
		if (CHECK_INT(ovl_open(FS, held, O_RDWR, &f), 0)) {
			CHECK_INT(ovl_read(FS, f, buf, sizeof(buf) - 1, 0), 1);
			CHECK_STR(buf, "L");
			CHECK_INT(ovl_write(FS, f, "W", 1, 0), 1);
			ovl_release(FS, f);
		}
		CHECK_STR(cat(UP, "n/l"), "W");
		put(FS, held);
	}
	/* The lower layers are intact. */
	CHECK_STR(cat(LO1, "m/l"), "L");
	CHECK_STR(cat(LO2, "m/sub/deeper"), "DD");

	/* A lower-only directory. */
	CHECK_INT(e_rename(FS, "k", "k2", 0), 0);
	CHECK(is_whiteout(UP, "k"));
	CHECK_STR(getx(UP, "k2", "trusted.overlay.opaque"), "y");
	CHECK_STR(e_cat(FS, "k2/f"), "kf");
	CHECK_STR(e_ls(FS, ""), "k2 n");

	/* A pure upper directory into the renamed one and back. */
	CHECK_INT(e_mkdir(FS, "pu", 0755), 0);
	CHECK_INT(e_create(FS, "pu/f", 0644, "pf"), 0);
	CHECK_INT(e_rename(FS, "pu", "n/pu", 0), 0);
	CHECK_INT(lx(UP, "pu", NULL), -ENOENT);
	CHECK_STR(e_cat(FS, "n/pu/f"), "pf");
out:
	env_fini(&e);
}

const struct test namespace_tests[] = {
    {TEST(test_mkdir_over_whiteout)},
    {TEST(test_umask_and_default_acl)},
    {TEST(test_unlink)},
    {TEST(test_rmdir)},
    {TEST(test_rename_files)},
    {TEST(test_rename_replaced_node)},
    {TEST(test_rename_errors)},
    {TEST(test_rename_merged_dir)},
    {NULL, NULL},
};
