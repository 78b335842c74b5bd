/*
 * Unit tests of ownership: the owner mapping options and the setuid/setgid rule for
 * changes by a caller without CAP_FSETID.
 */
#include "harness.h"

/* Ownership options (owner.c): a mapping shown and stored, chown refused before any copy-up
 * for an unmapped ID, override xattrs written by create, chmod and copy-up. */
static void test_owner_options(void)
{
	static struct ovl_owner_opts o; /* large: not on the stack */
	struct ovl_node *n, *root;
	struct stat st, attr;
	char err[256], val[64];
	struct env e;
	const char *lowers[1];

	memset(&o, 0, sizeof(o));
	CHECK_INT(ovl_owner_opt(&o, "uidmapping", "1000:0:1:100000:1:100", err, sizeof(err)), 0);
	CHECK_INT(ovl_owner_opt(&o, "gidmapping", "2000:0:1", err, sizeof(err)), 0);
	CHECK_INT(ovl_owner_opt(&o, "xattr_permissions", "2", err, sizeof(err)), 0);
	env_init(&e, 1, true);
	lowers[0] = LO1;
	mkf(LO1, "f", "data");
	if (lchown(lp(LO1, "f"), 100004, 2000) < 0)
		die("lchown");
	struct ovl_fs_params p = {
	    .lowerdirs = lowers, .nlower = 1, .upperdir = UP, .workdir = e.work, .owner = &o};
	if (!CHECK_INT(ovl_fs_new(&p, &e.fs), 0))
		goto out;
	CHECK_INT(walk(FS, "f", &n, &st), 0);
	CHECK_INT(st.st_uid, 5);
	CHECK_INT(st.st_gid, 0);
	put(FS, n);
	CHECK_INT(walk(FS, "", &root, &st), 0);
	CHECK_INT(st.st_uid, OVL_OVERFLOW_ID); /* the upper root is 0:0 on disk */

	memset(&attr, 0, sizeof(attr));
	attr.st_uid = 500; /* outside 1..100 */
	CHECK_INT(e_setattr(FS, "f", OVL_SET_UID, &attr, &st), -EINVAL);
	CHECK_INT(lx(UP, "f", &st), -ENOENT); /* refused before copy-up */
	attr.st_uid = 7;
	attr.st_mode = 0640;
	CHECK_INT(e_setattr(FS, "f", OVL_SET_UID | OVL_SET_MODE, &attr, &st), 0);
	CHECK_INT(st.st_uid, 7);
	CHECK_INT(st.st_mode & 07777, 0640);
	ssize_t len = lgetxattr(lp(UP, "f"), "user.containers.override_stat", val, sizeof(val) - 1);
	val[len < 0 ? 0 : len] = '\0';
	CHECK_STR(val, "100006:2000:0640:file");
	CHECK_INT(lx(UP, "f", &st), 0);
	CHECK_INT(st.st_uid, 0); /* the inode keeps the daemon's owner */
	CHECK_STR(e_getx(FS, "f", "user.containers.override_stat"), "<-ENODATA>");

	struct ovl_cred c = {.uid = 3, .gid = 0};
	CHECK_INT(ovl_mkdir(FS, root, "d", 0700, &c, &n, &st), 0);
	CHECK_INT(st.st_uid, 3);
	CHECK_INT(st.st_mode & 07777, 0700);
	put(FS, n);
	len = lgetxattr(lp(UP, "d"), "user.containers.override_stat", val, sizeof(val) - 1);
	val[len < 0 ? 0 : len] = '\0';
	CHECK_STR(val, "100002:2000:0700:dir");
	CHECK_INT(lx(UP, "d", &st), 0);
	CHECK_INT(st.st_mode & 07777, 0755);
	put(FS, root);
out:
	env_fini(&e);
}

/* The kernel's setuid rule for changes it leaves to the filesystem: a caller without
 * CAP_FSETID loses setuid, and setgid where the group may run the file or the caller is
 * outside its group; after an ACL, setgid only for a caller outside the group. */
static bool in_group_2000(void *ctx, gid_t gid)
{
	(void)ctx;
	return gid == 2000;
}

static mode_t drop_as(struct ovl_fs *fs, const char *path, const struct ovl_cred *cred, bool acl)
{
	struct ovl_node *n;
	struct stat st;

	if (walk(fs, path, &n, &st))
		return (mode_t)-1;
	int r =
	    acl ? ovl_drop_setgid_on_acl(fs, n, cred) : ovl_drop_setid_on_write(fs, n, NULL, cred);
	put(fs, n);
	if (r < 0 || lookup_st(fs, path, &st))
		return (mode_t)-1;
	return st.st_mode & 07777;
}

static void test_setid_dropped(void)
{
	struct env e;
	const struct ovl_cred root = {.uid = 0, .gid = 0};
	const struct ovl_cred user = {.uid = 1000, .gid = 1000};
	const struct ovl_cred member = {.uid = 1000, .gid = 1000, .in_group = in_group_2000};

	env_init(&e, 1, true);
	mkfm(LO1, "suid", "x", 06755);
	mkfm(UP, "sgid_noexec", "x", 02744);
	mkfm(UP, "sgid_noexec2", "x", 02744);
	mkfm(UP, "acl", "x", 02775);
	mkfm(UP, "acl2", "x", 02775);
	if (lchown(lp(UP, "sgid_noexec"), 0, 2000) || lchown(lp(UP, "sgid_noexec2"), 0, 2000) ||
	    lchown(lp(UP, "acl"), 0, 2000) || lchown(lp(UP, "acl2"), 0, 2000))
		die("lchown");
	/* (chown cleared setgid of the group-executable ones) */
	if (chmod(lp(UP, "acl"), 02775) || chmod(lp(UP, "acl2"), 02775))
		die("chmod");
	if (!env_mount(&e))
		goto out;
	CHECK_INT(drop_as(FS, "suid", &root, false), 06755);
	CHECK_INT(drop_as(FS, "suid", &user, false), 0755); /* copied up on the way */
	CHECK_INT(drop_as(FS, "sgid_noexec", &member, false), 02744);
	CHECK_INT(drop_as(FS, "sgid_noexec2", &user, false), 0744);
	CHECK_INT(drop_as(FS, "acl", &member, true), 02775);
	CHECK_INT(drop_as(FS, "acl2", &user, true), 0775);
out:
	env_fini(&e);
}

const struct test owner_tests[] = {
    {TEST(test_setid_dropped)},
    {TEST(test_owner_options)},
    {NULL, NULL},
};
