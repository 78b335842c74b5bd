/*
 * Unit tests of merged directory listings: merging, offsets, snapshots of open handles and
 * reads without a handle.
 */
#include "harness.h"

/* Reads dir from off into l (appending). */
static int read_from(struct ovl_fs *fs, struct ovl_dir *d, off_t off, struct listing *l)
{
	return ovl_readdir(fs, d, off, collect, l);
}

static void test_readdir_merged(void)
{
	struct env e;
	struct listing all, part;
	struct ovl_node *n;
	struct ovl_dir *d;

	env_init(&e, 2, true);
	mkd(UP, "m", 0755);
	mkf(UP, "m/a", "upper file over a lower dir");
	mkf(UP, "m/t", "upper file over a lower dir");
	mkwh(UP, "m/wh");
	mkd(LO1, "m", 0755);
	mkf(LO1, "m/b", "b");
	mkd(LO1, "m/t", 0755);
	mkf(LO1, "m/wh", "hidden");
	mksym(LO1, "m/c", "b");
	mkwh(LO1, "m/gone");
	mkd(LO2, "m", 0755);
	mkd(LO2, "m/d", 0755);
	mkd(LO2, "m/a", 0755);
	mkf(LO2, "m/b", "hidden by L1's b");
	mkf(LO2, "m/gone", "hidden");
	if (mkfifo(lp(LO2, "m/e"), 0644) < 0)
		die("mkfifo");
	if (mknod(lp(LO2, "m/cdev"), S_IFCHR | 0644, makedev(1, 3)) < 0)
		die("mknod");
	if (!env_mount(&e))
		goto out;

	if (!CHECK_INT(walk(FS, "m", &n, NULL), 0))
		goto out;
	if (!CHECK_INT(ovl_opendir(FS, n, &d), 0)) {
		put(FS, n);
		goto out;
	}
	memset(&all, 0, sizeof(all));
	CHECK_INT(read_from(FS, d, 0, &all), 0);
	CHECK_STR(names_of(&all), "a b c cdev d e t");
	CHECK_INT(all.n, 9);
	CHECK_INT(count_name(&all, "."), 1);
	CHECK_INT(count_name(&all, ".."), 1);
	const struct dent *x;
	CHECK((x = find_dent(&all, "a")) && x->type == DT_REG); /* the first occurrence's type */
	CHECK((x = find_dent(&all, "t")) && x->type == DT_REG);
	CHECK((x = find_dent(&all, "b")) && x->type == DT_REG);
	CHECK((x = find_dent(&all, "c")) && x->type == DT_LNK);
	CHECK((x = find_dent(&all, "d")) && x->type == DT_DIR);
	CHECK((x = find_dent(&all, "e")) && x->type == DT_FIFO);
	CHECK((x = find_dent(&all, "cdev")) && x->type == DT_CHR);
	CHECK((x = find_dent(&all, ".")) && x->type == DT_DIR);

	/* Resuming at any entry's next offset gives exactly the entries after it. */
	for (size_t k = 0; k < all.n; k++) {
		memset(&part, 0, sizeof(part));
		CHECK_INT(read_from(FS, d, all.v[k].next, &part), 0);
		bool same = part.n == all.n - k - 1;
		for (size_t i = 0; same && i < part.n; i++)
			same = strcmp(part.v[i].name, all.v[k + 1 + i].name) == 0 &&
			       part.v[i].next == all.v[k + 1 + i].next;
		if (!CHECK(same))
			fprintf(stderr, "    resuming after entry %zu (%s) gave %zu entries\n", k,
				all.v[k].name, part.n);
		listing_free(&part);
	}
	/* Paging as a kernel buffer would: the callback refuses the entry that does not fit,
	 * and the next call resumes from the last accepted entry's offset. */
	struct listing pages = {0};
	off_t off = 0;
	for (int guard = 0; guard < 64; guard++) {
		memset(&part, 0, sizeof(part));
		part.limit = 2;
		CHECK_INT(read_from(FS, d, off, &part), 0);
		for (size_t i = 0; i < part.n; i++)
			collect(&pages, part.v[i].name, part.v[i].ino, part.v[i].type,
				part.v[i].next);
		size_t got = part.n;
		if (got)
			off = part.v[got - 1].next;
		listing_free(&part);
		if (got == 0)
			break;
	}
	bool same = pages.n == all.n;
	for (size_t i = 0; same && i < pages.n; i++)
		same = strcmp(pages.v[i].name, all.v[i].name) == 0;
	CHECK(same);
	listing_free(&pages);
	listing_free(&all);
	ovl_releasedir(FS, d);
	put(FS, n);
out:
	env_fini(&e);
}

/* A merged directory m (upper and lower) holding x, y and z below; n is its node. */
static bool mount_xyz(struct env *env, struct ovl_node **n)
{
	env_init(env, 1, true);
	mkd(env->upper, "m", 0755);
	mkd(env->lower[0], "m", 0755);
	mkf(env->lower[0], "m/x", "x");
	mkf(env->lower[0], "m/y", "y");
	mkf(env->lower[0], "m/z", "z");
	return env_mount(env) && CHECK_INT(walk(env->fs, "m", n, NULL), 0);
}

/* D55: an open directory handle keeps its snapshot until it is read from offset 0 again. */
static void test_readdir_snapshot(void)
{
	struct env e;
	struct listing first, rest, again;
	struct ovl_node *n;
	struct ovl_dir *d, *d2;

	if (!mount_xyz(&e, &n))
		goto out;
	CHECK_INT(ovl_opendir(FS, n, &d), 0);
	CHECK_INT(ovl_opendir(FS, n, &d2), 0);

	memset(&first, 0, sizeof(first));
	first.limit = 3; /* ".", ".." and one entry */
	CHECK_INT(read_from(FS, d, 0, &first), 0);
	CHECK_INT(first.n, 3);
	CHECK_INT(e_create(FS, "m/new", 0644, "n"), 0);
	CHECK_INT(e_unlink(FS, "m/y"), 0);

	memset(&rest, 0, sizeof(rest));
	CHECK_INT(read_from(FS, d, first.v[first.n - 1].next, &rest), 0);
	CHECK_INT(first.n + rest.n, 5); /* ., .., x, y, z: the old snapshot */
	CHECK_INT(count_name(&rest, "new"), 0);
	CHECK_INT(count_name(&first, "y") + count_name(&rest, "y"), 1);

	memset(&again, 0, sizeof(again));
	CHECK_INT(read_from(FS, d, 0, &again), 0); /* rewound: a fresh snapshot */
	CHECK_STR(names_of(&again), "new x z");
	listing_free(&again);
	/* A handle first read after the change sees it. */
	memset(&again, 0, sizeof(again));
	CHECK_INT(read_from(FS, d2, 0, &again), 0);
	CHECK_STR(names_of(&again), "new x z");

	listing_free(&first);
	listing_free(&rest);
	listing_free(&again);
	ovl_releasedir(FS, d);
	ovl_releasedir(FS, d2);
	put(FS, n);
out:
	env_fini(&e);
}

/* An offset one handle gave resumes on another handle of the unchanged directory, also one
 * opened after the first was released: handle offsets are positions in a merge whose order
 * is the layers' (stable while nothing changes). */
static void test_readdir_foreign_offset(void)
{
	struct env e;
	struct listing first, rest, other;
	struct ovl_node *n;
	struct ovl_dir *d, *d2;

	if (!mount_xyz(&e, &n))
		goto out;
	memset(&first, 0, sizeof(first));
	memset(&rest, 0, sizeof(rest));
	memset(&other, 0, sizeof(other));
	CHECK_INT(ovl_opendir(FS, n, &d), 0);
	CHECK_INT(ovl_opendir(FS, n, &d2), 0);
	first.limit = 4; /* ".", ".." and two entries */
	CHECK_INT(read_from(FS, d, 0, &first), 0);
	CHECK_INT(first.n, 4);
	off_t told = first.v[first.n - 1].next;
	CHECK_INT(read_from(FS, d, told, &rest), 0);
	CHECK_INT(rest.n, 1);
	CHECK_INT(read_from(FS, d2, told, &other), 0);
	CHECK_STR(names_of(&other), names_of(&rest));
	ovl_releasedir(FS, d);
	ovl_releasedir(FS, d2);

	listing_free(&other);
	memset(&other, 0, sizeof(other));
	CHECK_INT(ovl_opendir(FS, n, &d2), 0);
	CHECK_INT(read_from(FS, d2, told, &other), 0);
	CHECK_STR(names_of(&other), names_of(&rest));
	ovl_releasedir(FS, d2);

	listing_free(&first);
	listing_free(&rest);
	listing_free(&other);
	put(FS, n);
out:
	env_fini(&e);
}

/* Reads without a handle (the kernel's zero-message opendir): a reader that started before
 * a change keeps its listing even after another reader started over; a told offset read
 * again after the end (the listing let go) gives the same entries. */
static void test_readdir_node(void)
{
	struct env e;
	struct listing first, rest, other, again;
	struct ovl_node *n;

	if (!mount_xyz(&e, &n))
		goto out;

	memset(&first, 0, sizeof(first));
	first.limit = 3; /* ".", ".." and one entry */
	CHECK_INT(ovl_readdir_node(FS, n, 0, collect, &first), 0);
	CHECK_INT(first.n, 3);
	CHECK_INT(e_create(FS, "m/new", 0644, "n"), 0);
	CHECK_INT(e_unlink(FS, "m/y"), 0);
	memset(&other, 0, sizeof(other));
	CHECK_INT(ovl_readdir_node(FS, n, 0, collect, &other), 0);
	CHECK_STR(names_of(&other), "new x z");

	memset(&rest, 0, sizeof(rest));
	CHECK_INT(ovl_readdir_node(FS, n, first.v[first.n - 1].next, collect, &rest), 0);
	CHECK_INT(first.n + rest.n, 5); /* ., .., x, y, z: the first reader's listing */
	CHECK_INT(count_name(&rest, "new"), 0);
	CHECK_INT(count_name(&first, "y") + count_name(&rest, "y"), 1);
	CHECK(first.v[2].next > 0 && first.v[2].next < (1LL << 31)); /* fits 32-bit d_off */

	/* The end, then the told offset again: a fresh merge of the unchanged directory. */
	off_t told = other.v[2].next;
	struct listing tail;
	memset(&tail, 0, sizeof(tail));
	CHECK_INT(ovl_readdir_node(FS, n, told, collect, &tail), 0);
	memset(&again, 0, sizeof(again));
	CHECK_INT(ovl_readdir_node(FS, n, other.v[other.n - 1].next, collect, &again), 0);
	CHECK_INT(again.n, 0);
	CHECK_INT(ovl_readdir_node(FS, n, told, collect, &again), 0);
	CHECK_STR(names_of(&again), names_of(&tail));
	CHECK_INT(again.n, 2);

	/* A reply that reached the end, a change, then a read from the middle (the kernel
	 * passed on part of the reply): still the listing from before the change. */
	struct listing whole, middle;
	memset(&whole, 0, sizeof(whole));
	CHECK_INT(ovl_readdir_node(FS, n, 0, collect, &whole), 0);
	CHECK_STR(names_of(&whole), "new x z");
	CHECK_INT(e_create(FS, "m/later", 0644, "l"), 0);
	memset(&middle, 0, sizeof(middle));
	CHECK_INT(ovl_readdir_node(FS, n, whole.v[2].next, collect, &middle), 0);
	CHECK_INT(count_name(&middle, "later"), 0);
	CHECK_INT(middle.n, 2);
	listing_free(&whole);
	listing_free(&middle);

	listing_free(&first);
	listing_free(&rest);
	listing_free(&other);
	listing_free(&tail);
	listing_free(&again);
	put(FS, n);
out:
	env_fini(&e);
}

const struct test readdir_tests[] = {
    {TEST(test_readdir_merged)},
    {TEST(test_readdir_snapshot)},
    {TEST(test_readdir_foreign_offset)},
    {TEST(test_readdir_node)},
    {NULL, NULL},
};
