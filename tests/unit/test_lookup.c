/*
 * Unit tests of lookup and stacking: the top-down search of the layers, whiteouts (device,
 * OCI and file formats), opaque directories, and what ends a merge.
 */
#include "harness.h"

static void test_lookup_topdown(void)
{
	struct env e;
	struct stat st;

	env_init(&e, 2, true);
	mkf(UP, "a", "upper-a");
	mkf(LO1, "a", "lower1-a");
	mkf(LO2, "a", "lower2-a");
	mkf(LO1, "b", "lower1-b");
	mkf(LO2, "b", "lower2-bb");
	mkf(LO2, "c", "lower2-ccc");
	mkd(UP, "d", 0755);
	mkd(LO1, "d", 0755);
	mkd(LO2, "d", 0755);
	mkf(LO1, "d/x", "L1x");
	mkf(LO2, "d/x", "L2-x");
	mkf(LO2, "d/y", "L2-y");
	if (!env_mount(&e))
		goto out;

	CHECK_STR(e_cat(FS, "a"), "upper-a");
	CHECK_STR(e_cat(FS, "b"), "lower1-b");
	CHECK_STR(e_cat(FS, "c"), "lower2-ccc");
	CHECK_STR(e_cat(FS, "d/x"), "L1x");
	CHECK_STR(e_cat(FS, "d/y"), "L2-y");
	CHECK_INT(lookup_st(FS, "b", &st), 0);
	CHECK_INT(st.st_size, strlen("lower1-b"));
	CHECK(S_ISREG(st.st_mode));
	CHECK_INT(lookup_st(FS, "d/x", &st), 0);
	CHECK_INT(st.st_size, strlen("L1x"));
	CHECK_INT(lookup_err(FS, "nope"), -ENOENT);
	CHECK_INT(lookup_err(FS, "d/nope"), -ENOENT);
	/* Nothing was written to upper by reading. */
	CHECK_INT(lx(UP, "b", NULL), -ENOENT);
	CHECK_INT(lx(UP, "d/x", NULL), -ENOENT);
out:
	env_fini(&e);
}

/* Lookups with lent directory fds (readdirplus) answer as plain lookups do, in a merged
 * directory with whiteouts, and stay right after the directory is copied up and renamed. */
static void test_lookup_lent_fds(void)
{
	struct env e;
	struct ovl_node *d = NULL, *n;
	struct stat st, st2;

	env_init(&e, 2, true);
	mkd(UP, "d", 0755);
	mkd(LO1, "d", 0755);
	mkd(LO2, "d", 0755);
	mkf(UP, "d/u", "upper");
	mkf(LO1, "d/x", "L1x");
	mkf(LO2, "d/x", "L2-x");
	mkf(LO2, "d/y", "L2-y");
	mkwh(UP, "d/gone");
	mkf(LO2, "d/gone", "hidden");
	mkd(LO1, "m", 0755);
	mkf(LO1, "m/a", "ma");
	if (!env_mount(&e))
		goto out;
	CHECK_INT(walk(FS, "d", &d, &st), 0);
	struct ovl_dirfds *fds = ovl_dirfds_open(FS, d);
	CHECK(fds != NULL);
	const char *names[] = {"u", "x", "y", "gone", "nope"};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		int a = ovl_lookup_in(FS, d, names[i], fds, &n, &st);
		if (a == 0)
			ovl_forget(FS, n, 1);
		int b = ovl_lookup(FS, d, names[i], &n, &st2);
		if (b == 0)
			ovl_forget(FS, n, 1);
		CHECK_INT(a, b);
		if (a == 0 && b == 0) {
			CHECK_INT(st.st_ino, st2.st_ino);
			CHECK_INT(st.st_size, st2.st_size);
		}
	}
	ovl_dirfds_close(fds);
	put(FS, d);
	d = NULL;

	/* A lower-only directory: fds lent before its copy-up and rename. */
	CHECK_INT(walk(FS, "m", &d, &st), 0);
	fds = ovl_dirfds_open(FS, d);
	CHECK_INT(e_create(FS, "m/new", 0644, "n"), 0); /* copies m up */
	CHECK_INT(e_rename(FS, "m", "m2", 0), 0);
	if (CHECK_INT(ovl_lookup_in(FS, d, "a", fds, &n, &st), 0)) {
		CHECK_INT(st.st_size, 2);
		ovl_forget(FS, n, 1);
	}
	if (CHECK_INT(ovl_lookup_in(FS, d, "new", fds, &n, &st), 0)) {
		CHECK_INT(st.st_size, 1);
		ovl_forget(FS, n, 1);
	}
	ovl_dirfds_close(fds);
out:
	put(FS, d);
	env_fini(&e);
}

static void test_whiteout_hides(void)
{
	struct env e;

	env_init(&e, 2, true);
	mkwh(UP, "a");
	mkf(LO1, "a", "hidden");
	mkwh(LO1, "b"); /* a whiteout in a lower layer hides the layers below it */
	mkf(LO2, "b", "hidden");
	mkwh(UP, "c"); /* a whiteout hides a whole directory */
	mkd(LO1, "c", 0755);
	mkf(LO1, "c/x", "hidden");
	mkd(UP, "d", 0755);
	mkd(LO1, "d", 0755);
	mkwh(UP, "d/x");
	mkf(LO1, "d/x", "hidden");
	mkf(LO1, "d/y", "visible");
	mkf(LO2, "keep", "k");
	if (!env_mount(&e))
		goto out;

	CHECK_INT(lookup_err(FS, "a"), -ENOENT);
	CHECK_INT(lookup_err(FS, "b"), -ENOENT);
	CHECK_INT(lookup_err(FS, "c"), -ENOENT);
	CHECK_INT(lookup_err(FS, "c/x"), -ENOENT);
	CHECK_INT(lookup_err(FS, "d/x"), -ENOENT);
	CHECK_STR(e_cat(FS, "d/y"), "visible");
	CHECK_STR(e_ls(FS, ""), "d keep");
	CHECK_STR(e_ls(FS, "d"), "y");
out:
	env_fini(&e);
}

/* OCI whiteouts (.wh.<name>, .wh..wh..opq) and fuse-overlayfs's opaque mark, in lower and
 * upper layers; looked up before and after a listing (which caches "no .wh. here"). */
static void test_oci_whiteouts(void)
{
	struct env e;

	env_init(&e, 2, true);
	mkf(UP, ".wh.a", "");
	mkf(LO1, "a", "hidden");
	mkf(LO1, ".wh.b", ""); /* hides b below */
	mkf(LO2, "b", "hidden");
	mkf(LO1, "c", "same layer wins");
	mkf(LO1, ".wh.c", "");
	mkf(LO2, "c", "below");
	mkd(LO1, "o", 0755);
	mkf(LO1, "o/.wh..wh..opq", "");
	mkf(LO1, "o/top", "t");
	mkd(LO2, "o", 0755);
	mkf(LO2, "o/low", "hidden");
	mkd(UP, "f", 0755);
	setx(UP, "f", "user.fuseoverlayfs.opaque", "y");
	mkd(LO2, "f", 0755);
	mkf(LO2, "f/low", "hidden");
	mkf(LO2, "keep", "k");
	if (!env_mount(&e))
		goto out;

	for (int pass = 0; pass < 2; pass++) {
		CHECK_INT(lookup_err(FS, "a"), -ENOENT);
		CHECK_INT(lookup_err(FS, "b"), -ENOENT);
		CHECK_INT(lookup_err(FS, ".wh.a"), -ENOENT);
		CHECK_STR(e_cat(FS, "c"), "same layer wins");
		CHECK_INT(lookup_err(FS, "o/low"), -ENOENT);
		CHECK_INT(lookup_err(FS, "f/low"), -ENOENT);
		CHECK_STR(e_ls(FS, ""), "c f keep o");
		CHECK_STR(e_ls(FS, "o"), "top");
		CHECK_STR(e_ls(FS, "f"), "");
	}
	CHECK_INT(e_create(FS, ".wh.x", 0644, ""), -EINVAL);
	CHECK_INT(e_mkdir(FS, ".wh.x", 0755), -EINVAL);
	CHECK_INT(e_rename(FS, "c", ".wh.c", 0), -EINVAL);
	CHECK_INT(e_create(FS, "a", 0644, "new"), 0); /* over the .wh. file: it goes */
	CHECK_STR(e_cat(FS, "a"), "new");
	CHECK_INT(lx(UP, ".wh.a", NULL), -ENOENT);
out:
	env_fini(&e);
}

static int env_mount_fmt(struct env *e, bool userxattr, int whiteout)
{
	const char *lowers[3];
	struct ovl_fs_params p = {
	    .lowerdirs = lowers,
	    .nlower = e->nlower,
	    .upperdir = e->upper,
	    .workdir = e->work,
	    .userxattr = userxattr,
	    .whiteout = whiteout,
	};

	for (int i = 0; i < e->nlower; i++)
		lowers[i] = e->lower[i];
	return CHECK_INT(ovl_fs_new(&p, &e->fs), 0);
}

/* -o whiteout=file,userxattr: the rootless format, written and read back. */
static void test_file_whiteouts(void)
{
	struct env e;
	struct stat st;

	env_init(&e, 1, true);
	mkf(LO1, "a", "A");
	mkf(LO1, "b", "B");
	mkd(LO1, "d", 0755);
	mkf(LO1, "d/x", "X");
	mkd(LO1, "m", 0755);
	mkf(LO1, "m/y", "Y");
	if (!env_mount_fmt(&e, true, OVL_WHITEOUT_FILE))
		goto out;

	CHECK_INT(e_unlink(FS, "a"), 0);
	CHECK_INT(lx(UP, ".wh.a", &st), 0);
	CHECK(S_ISREG(st.st_mode) && st.st_size == 0);
	CHECK_INT(lx(UP, "a", NULL), -ENOENT);
	CHECK_INT(e_write(FS, "b", O_WRONLY, "b", 0), 0);
	CHECK_INT(e_unlink(FS, "b"), 0); /* copied up: replaced by a .wh. file */
	CHECK_INT(lx(UP, "b", NULL), -ENOENT);
	CHECK_INT(lx(UP, ".wh.b", NULL), 0);
	CHECK_INT(e_unlink(FS, "d/x"), 0);
	CHECK_INT(e_rmdir(FS, "d"), 0);
	CHECK_INT(lx(UP, ".wh.d", NULL), 0);
	CHECK_INT(lx(UP, "d", NULL), -ENOENT);
	CHECK_INT(e_mkdir(FS, "d", 0755), 0);
	CHECK_STR(getx(UP, "d", "user.overlay.opaque"), "y");
	CHECK_INT(lx(UP, "d/.wh..wh..opq", NULL), 0);
	CHECK_INT(lx(UP, ".wh.d", NULL), -ENOENT);
	CHECK_INT(e_rename(FS, "m", "n", 0), 0);
	CHECK_INT(lx(UP, ".wh.m", NULL), 0);
	CHECK_INT(lx(UP, "n/.wh..wh..opq", NULL), 0);
	CHECK_STR(e_ls(FS, ""), "d n");
	CHECK_STR(e_ls(FS, "n"), "y");
	CHECK_STR(e_ls(FS, "d"), "");
	CHECK_STR(getx(UP, ".", "user.overlay.ovlfs"), "whiteout=file");
	ovl_fs_destroy(FS);
	FS = NULL;
	/* Default options: the record keeps userxattr and file whiteouts. */
	if (!env_mount_fmt(&e, false, OVL_WHITEOUT_AUTO))
		goto out;
	CHECK_STR(e_ls(FS, ""), "d n");
	CHECK_STR(e_ls(FS, "d"), "");
	CHECK_STR(e_listx(FS, "d"), "");
	CHECK_INT(e_unlink(FS, "n/y"), 0);
	CHECK_INT(lx(UP, "n/y", NULL), -ENOENT); /* n is opaque: no whiteout needed */
	CHECK_INT(e_unlink(FS, "d"), -EISDIR);
out:
	env_fini(&e);
}

/* D45, D46: a non-directory ends the merge; a directory below it is not seen. */
static void test_nondir_hides_dir(void)
{
	struct env e;
	struct listing l;
	struct stat st;

	env_init(&e, 2, true);
	mkf(UP, "x", "file");
	mkd(LO1, "x", 0755);
	mkf(LO1, "x/c", "hidden");
	mkf(LO1, "y", "file-y");
	mkd(LO2, "y", 0755);
	mkf(LO2, "y/z", "hidden");
	mkd(UP, "w", 0755);
	mkf(UP, "w/own", "o");
	mkf(LO1, "w", "a file between");
	mkd(LO2, "w", 0755);
	mkf(LO2, "w/hidden", "h");
	mkd(UP, "w/sub", 0755);
	if (!env_mount(&e))
		goto out;

	CHECK_INT(lookup_st(FS, "x", &st), 0);
	CHECK(S_ISREG(st.st_mode));
	CHECK_INT(lookup_err(FS, "x/c"), -ENOTDIR);
	CHECK_STR(e_cat(FS, "x"), "file");
	CHECK_INT(lookup_st(FS, "y", &st), 0);
	CHECK(S_ISREG(st.st_mode));
	CHECK_INT(lookup_err(FS, "y/z"), -ENOTDIR);
	CHECK_INT(list_dir(FS, "", &l), 0);
	const struct dent *dx = find_dent(&l, "x"), *dy = find_dent(&l, "y");
	CHECK(dx && dx->type == DT_REG);
	CHECK(dy && dy->type == DT_REG);
	listing_free(&l);
	CHECK_STR(e_ls(FS, "w"), "own sub");
	CHECK_INT(lookup_err(FS, "w/hidden"), -ENOENT);
	/* w merges nothing: upper only, so its real link count (2 + one subdirectory). */
	CHECK_INT(lookup_st(FS, "w", &st), 0);
	CHECK_INT(st.st_nlink, 3);
out:
	env_fini(&e);
}

static void test_merge_three_layers(void)
{
	static const struct layer_entry spec[] = {
	    /* m in every layer; its s1 merges three lower directories, the first empty */
	    L_DIR(IN_UP | IN_LO1 | IN_LO2 | IN_LO3, "m"),
	    L_DIR(IN_LO1 | IN_LO2 | IN_LO3, "m/s1"),
	    L_FILE(IN_UP, "m/u", "U"),
	    L_FILE(IN_UP, "m/same", "U-same"),
	    L_FILE(IN_LO1, "m/l1", "L1"),
	    L_FILE(IN_LO1, "m/same", "L1-same"),
	    L_FILE(IN_LO2, "m/l2", "L2"),
	    L_FILE(IN_LO2, "m/same", "L2-same"),
	    L_FILE(IN_LO2, "m/s1/deep", "deep"),
	    L_DIR(IN_LO2, "m/s2"),
	    L_FILE(IN_LO3, "m/l3", "L3"),
	    L_FILE(IN_LO3, "m/s1/deeper", "deeper"),
	    /* n in lower layers only */
	    L_FILE(IN_LO2, "n/a", "A"),
	    L_FILE(IN_LO3, "n/b", "B"),
	};
	struct env e;

	env_init(&e, 3, true);
	build(&e, spec, N_OF(spec));
	if (!env_mount(&e))
		goto out;

	CHECK_STR(e_ls(FS, "m"), "l1 l2 l3 s1 s2 same u");
	CHECK_STR(e_cat(FS, "m/same"), "U-same");
	CHECK_STR(e_cat(FS, "m/l1"), "L1");
	CHECK_STR(e_cat(FS, "m/l2"), "L2");
	CHECK_STR(e_cat(FS, "m/l3"), "L3");
	CHECK_STR(e_ls(FS, "m/s1"), "deep deeper"); /* s1 merges L1 (empty), L2 and L3 */
	CHECK_STR(e_cat(FS, "m/s1/deeper"), "deeper");
	CHECK_STR(e_ls(FS, "n"), "a b");
	CHECK_STR(e_cat(FS, "n/b"), "B");
	CHECK_STR(e_ls(FS, ""), "m n");
out:
	env_fini(&e);
}

static void test_opaque_y(void)
{
	static const struct layer_entry spec[] = {
	    /* o: opaque in upper, over a lower o */
	    L_DIR(IN_UP | IN_LO1, "o"),
	    L_XATTR(IN_UP, "o", "trusted.overlay.opaque", "y"),
	    L_FILE(IN_UP, "o/u", "U"),
	    L_FILE(IN_LO1, "o/l", "hidden"),
	    /* p: opaque in lower1, over a lower2 p */
	    L_DIR(IN_LO1 | IN_LO2, "p"),
	    L_XATTR(IN_LO1, "p", "trusted.overlay.opaque", "y"),
	    L_FILE(IN_LO1, "p/l1", "L1"),
	    L_FILE(IN_LO2, "p/l2", "hidden"),
	    /* q: upper over an opaque lower1 over lower2 */
	    L_DIR(IN_UP | IN_LO1 | IN_LO2, "q"),
	    L_FILE(IN_UP, "q/u", "U"),
	    L_XATTR(IN_LO1, "q", "trusted.overlay.opaque", "y"),
	    L_FILE(IN_LO1, "q/l1", "L1"),
	    L_FILE(IN_LO2, "q/l2", "hidden"),
	};
	struct env e;

	env_init(&e, 2, true);
	build(&e, spec, N_OF(spec));
	if (!env_mount(&e))
		goto out;

	CHECK_STR(e_ls(FS, "o"), "u");
	CHECK_INT(lookup_err(FS, "o/l"), -ENOENT);
	CHECK_STR(e_ls(FS, "p"), "l1");
	CHECK_INT(lookup_err(FS, "p/l2"), -ENOENT);
	CHECK_STR(e_ls(FS, "q"), "l1 u"); /* merging stops after the opaque L1 directory */
	CHECK_INT(lookup_err(FS, "q/l2"), -ENOENT);
	CHECK_STR(e_cat(FS, "q/l1"), "L1");
out:
	env_fini(&e);
}

/* The opaque value is read with size 1: "yes" (or "n") is not opaque. */
static void test_opaque_yes(void)
{
	static const struct layer_entry spec[] = {
	    /* o: "yes" in upper, over a lower o */
	    L_DIR(IN_UP | IN_LO1, "o"),
	    L_XATTR(IN_UP, "o", "trusted.overlay.opaque", "yes"),
	    L_FILE(IN_UP, "o/u", "U"),
	    L_FILE(IN_LO1, "o/l", "L"),
	    /* p: "yes" in lower1, and n: "n" in lower1, each over a lower2 directory */
	    L_DIR(IN_LO1 | IN_LO2, "p"),
	    L_XATTR(IN_LO1, "p", "trusted.overlay.opaque", "yes"),
	    L_FILE(IN_LO1, "p/l1", "L1"),
	    L_FILE(IN_LO2, "p/l2", "L2"),
	    L_DIR(IN_LO1 | IN_LO2, "n"),
	    L_XATTR(IN_LO1, "n", "trusted.overlay.opaque", "n"),
	    L_FILE(IN_LO2, "n/l2", "L2"),
	};
	struct env e;
	struct stat st;

	env_init(&e, 2, true);
	build(&e, spec, N_OF(spec));
	if (!env_mount(&e))
		goto out;

	CHECK_STR(e_ls(FS, "o"), "l u");
	CHECK_STR(e_cat(FS, "o/l"), "L");
	CHECK_STR(e_ls(FS, "p"), "l1 l2");
	CHECK_STR(e_cat(FS, "p/l2"), "L2");
	CHECK_STR(e_ls(FS, "n"), "l2");
	CHECK_INT(lookup_st(FS, "o", &st), 0);
	CHECK_INT(st.st_nlink, 1); /* merged */
out:
	env_fini(&e);
}

/* D48: in a lower directory marked opaque="x", a zero-size regular file carrying
 * trusted.overlay.whiteout is a whiteout. */
static void test_xwhiteout(void)
{
	struct env e;
	struct stat st;

	env_init(&e, 2, true);
	mkd(UP, "d", 0755);
	mkf(UP, "d/u", "U");
	mkd(LO1, "d", 0755);
	setx(LO1, "d", "trusted.overlay.opaque", "x");
	mkf(LO1, "d/f", "");
	setx(LO1, "d/f", "trusted.overlay.whiteout", "y");
	mkf(LO1, "d/g", "not empty");
	setx(LO1, "d/g", "trusted.overlay.whiteout", "y"); /* not zero-size: a file */
	mkf(LO1, "d/k", "");				   /* no xattr: a file */
	mkd(LO2, "d", 0755);
	mkf(LO2, "d/f", "hidden");
	mkf(LO2, "d/h", "below an x dir"); /* "x" is not opaque */
	/* Not marked "x": the same file is an ordinary empty file. */
	mkd(LO1, "e", 0755);
	mkf(LO1, "e/f", "");
	setx(LO1, "e/f", "trusted.overlay.whiteout", "y");
	mkd(LO2, "e", 0755);
	mkf(LO2, "e/f", "below");
	/* "x" on an upper directory is ignored. */
	mkd(UP, "z", 0755);
	setx(UP, "z", "trusted.overlay.opaque", "x");
	mkf(UP, "z/f", "");
	setx(UP, "z/f", "trusted.overlay.whiteout", "y");
	mkd(LO1, "z", 0755);
	mkf(LO1, "z/f", "below");
	mkf(LO1, "z/other", "o");
	/* The lower root itself marked "x". */
	setx(LO1, ".", "trusted.overlay.opaque", "x");
	mkf(LO1, "rootwh", "");
	setx(LO1, "rootwh", "trusted.overlay.whiteout", "y");
	mkf(LO2, "rootwh", "hidden");
	if (!env_mount(&e))
		goto out;

	CHECK_INT(lookup_err(FS, "d/f"), -ENOENT);
	CHECK_STR(e_ls(FS, "d"), "g h k u");
	CHECK_STR(e_cat(FS, "d/g"), "not empty");
	CHECK_STR(e_cat(FS, "d/h"), "below an x dir");
	CHECK_INT(lookup_st(FS, "d/k", &st), 0);
	CHECK_INT(st.st_size, 0);
	CHECK_INT(lookup_st(FS, "e/f", &st), 0);
	CHECK_INT(st.st_size, 0);
	CHECK_STR(e_ls(FS, "e"), "f");
	CHECK_INT(lookup_st(FS, "z/f", &st), 0);
	CHECK(S_ISREG(st.st_mode));
	CHECK_INT(st.st_size, 0);
	CHECK_STR(e_ls(FS, "z"), "f other");
	CHECK_INT(lookup_err(FS, "rootwh"), -ENOENT);
	CHECK_STR(e_ls(FS, ""), "d e z");
out:
	env_fini(&e);
}

/* D38: a merged directory has nlink 1; one in a single layer its real count. */
static void test_dir_nlink(void)
{
	static const struct layer_entry spec[] = {
	    /* m and r merge two layers; s and t are in one */
	    L_DIR(IN_UP | IN_LO1, "m"),
	    L_DIR(IN_UP, "m/a"),
	    L_DIR(IN_LO1 | IN_LO2, "r"),
	    L_DIR(IN_LO2, "r/x"),
	    /* (parents are made as needed) */
	    L_DIR(IN_LO1, "s/c1"),
	    L_DIR(IN_UP, "t/c"),
	    L_DIR(IN_UP, "t/c2"),
	};
	struct env e;
	struct stat st;

	env_init(&e, 2, true);
	build(&e, spec, N_OF(spec));
	if (!env_mount(&e))
		goto out;

	CHECK_INT(lookup_st(FS, "m", &st), 0);
	CHECK_INT(st.st_nlink, 1);
	CHECK_INT(lookup_st(FS, "r", &st), 0);
	CHECK_INT(st.st_nlink, 1);
	CHECK_INT(lookup_st(FS, "s", &st), 0);
	CHECK_INT(st.st_nlink, 3);
	CHECK_INT(lookup_st(FS, "t", &st), 0);
	CHECK_INT(st.st_nlink, 4);
	CHECK_INT(lookup_st(FS, "", &st), 0); /* the root merges all layers */
	CHECK_INT(st.st_nlink, 1);
out:
	env_fini(&e);
}

const struct test lookup_tests[] = {
    {TEST(test_lookup_topdown)},     {TEST(test_lookup_lent_fds)}, {TEST(test_whiteout_hides)},
    {TEST(test_oci_whiteouts)},	     {TEST(test_file_whiteouts)},  {TEST(test_nondir_hides_dir)},
    {TEST(test_merge_three_layers)}, {TEST(test_opaque_y)},	   {TEST(test_opaque_yes)},
    {TEST(test_xwhiteout)},	     {TEST(test_dir_nlink)},	   {NULL, NULL},
};
