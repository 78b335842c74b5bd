/*
 * Unit tests of identity: inode numbers (stable across copy-up, the same in lookup and
 * readdir) and hard links with their aliases.
 */
#include "harness.h"

/* ------------------------------------------------------------------------------------------ */
/* Inode numbers                                                                              */
/* ------------------------------------------------------------------------------------------ */

struct ino_rec {
	char path[256];
	uint64_t ino;
};

struct ino_set {
	struct ino_rec v[256];
	size_t n;
};

static const struct ino_rec *ino_find_path(const struct ino_set *s, const char *path)
{
	for (size_t i = 0; i < s->n; i++)
		if (strcmp(s->v[i].path, path) == 0)
			return &s->v[i];
	return NULL;
}

/* Walks the tree: d_ino == st_ino and d_type matches for every entry, "." and ".." carry
 * the directory's and the parent's numbers, and every number is unique. */
static void check_tree_inos(struct ovl_fs *fs, const char *path, uint64_t parent_ino,
			    struct ino_set *set)
{
	struct listing l;
	struct stat dst;

	if (!CHECK_INT(lookup_st(fs, path, &dst), 0))
		return;
	if (!CHECK_INT(list_dir(fs, path, &l), 0)) {
		listing_free(&l);
		return;
	}
	CHECK_INT(count_name(&l, "."), 1);
	CHECK_INT(count_name(&l, ".."), 1);
	const struct dent *dot = find_dent(&l, "."), *dotdot = find_dent(&l, "..");
	if (dot)
		CHECK_INT(dot->ino, dst.st_ino);
	if (dotdot)
		CHECK_INT(dotdot->ino, parent_ino);
	for (size_t i = 0; i < l.n; i++) {
		const struct dent *d = &l.v[i];
		char child[256];
		struct stat st;

		if (strcmp(d->name, ".") == 0 || strcmp(d->name, "..") == 0)
			continue;
		snprintf(child, sizeof(child), "%s%s%s", path, *path ? "/" : "", d->name);
		if (!CHECK_INT(lookup_st(fs, child, &st), 0))
			continue;
		if (!CHECK_INT(d->ino, st.st_ino))
			fprintf(stderr, "    entry %s\n", child);
		if (!CHECK_INT(d->type, IFTODT(st.st_mode)))
			fprintf(stderr, "    entry %s\n", child);
		for (size_t j = 0; j < set->n; j++)
			if (set->v[j].ino == st.st_ino && !CHECK(false))
				fprintf(stderr, "    %s and %s share st_ino %llu\n", set->v[j].path,
					child, (unsigned long long)st.st_ino);
		if (set->n < 256) {
			snprintf(set->v[set->n].path, sizeof(set->v[0].path), "%s", child);
			set->v[set->n++].ino = st.st_ino;
		}
		if (S_ISDIR(st.st_mode))
			check_tree_inos(fs, child, dst.st_ino, set);
	}
	listing_free(&l);
}

static void build_ino_tree(struct env *e)
{
	static const struct layer_entry spec[] = {
	    /* m merges all three layers, m/sub the lower two; m/shadow is in two */
	    L_DIR(IN_UP | IN_LO1 | IN_LO2, "m"),
	    L_FILE(IN_UP, "m/u", "u"),
	    L_FILE(IN_UP, "m/shadow", "upper shadow"),
	    L_FILE(IN_LO1, "m/l1", "l1"),
	    L_FILE(IN_LO1, "m/shadow", "lower shadow"),
	    L_FILE(IN_LO1, "m/sub/x", "x"),
	    L_SYMLINK(IN_LO1, "m/link", "l1"),
	    L_FILE(IN_LO2, "m/l2", "l2"),
	    L_FILE(IN_LO2, "m/sub/z", "z"),
	    /* the rest in one layer each (parents are made as needed) */
	    L_FILE(IN_UP, "f1", "1"),
	    L_FILE(IN_UP, "d1/g1", "g"),
	    L_FILE(IN_LO1, "f2", "2"),
	    L_FILE(IN_LO1, "only1/y", "y"),
	    L_FILE(IN_LO2, "f3", "3"),
	    L_FILE(IN_LO2, "deep/a/b/c", "c"),
	};

	build(e, spec, N_OF(spec));
	if (mkfifo(lp(e->lower[1], "fifo"), 0644) < 0)
		die("mkfifo");
}

static void test_ino_consistency(void)
{
	struct env e;
	struct ino_set before = {0}, after = {0};
	struct stat root;

	env_init(&e, 2, true);
	build_ino_tree(&e);
	if (!env_mount(&e))
		goto out;
	CHECK_INT(lookup_st(FS, "", &root), 0);
	check_tree_inos(FS, "", root.st_ino, &before);
	CHECK(before.n >= 20);

	/* Copy everything up (files, directories, a symlink, a fifo) and compare: the same
	 * numbers, in lookup and in readdir. */
	for (size_t i = 0; i < before.n; i++)
		CHECK_INT(e_copy_up(FS, before.v[i].path), 0);
	CHECK_INT(lx(UP, "deep/a/b/c", NULL), 0);
	CHECK_INT(lx(UP, "fifo", NULL), 0);
	check_tree_inos(FS, "", root.st_ino, &after);
	CHECK_INT(after.n, before.n);
	for (size_t i = 0; i < before.n; i++) {
		const struct ino_rec *r = ino_find_path(&after, before.v[i].path);
		if (CHECK(r != NULL) && !CHECK_INT(r->ino, before.v[i].ino))
			fprintf(stderr, "    %s changed st_ino with copy-up\n", r->path);
	}
out:
	env_fini(&e);
}

/* st_ino of a copied-up file stays, both on the live node and after it is forgotten. */
static void test_copyup_ino_stable(void)
{
	struct env e;
	struct ovl_node *n;
	struct stat st0, st;
	struct listing l;

	env_init(&e, 1, true);
	mkf(LO1, "f", "data");
	mkd(LO1, "d", 0755);
	mkf(LO1, "d/g", "g");
	if (!env_mount(&e))
		goto out;

	if (CHECK_INT(walk(FS, "f", &n, &st0), 0)) {
		CHECK_INT(ovl_copy_up(FS, n), 0);
		CHECK_INT(ovl_getattr(FS, n, &st), 0);
		CHECK_INT(st.st_ino, st0.st_ino);
		put(FS, n);
	}
	CHECK_INT(lx(UP, "f", NULL), 0);
	CHECK_INT(lookup_st(FS, "f", &st), 0); /* a fresh node now: found in upper */
	CHECK_INT(st.st_ino, st0.st_ino);
	CHECK_INT(list_dir(FS, "", &l), 0);
	const struct dent *df = find_dent(&l, "f");
	CHECK(df && df->ino == st0.st_ino);
	listing_free(&l);

	/* Written through an open handle; and a directory. */
	struct stat g0, d0;
	CHECK_INT(lookup_st(FS, "d/g", &g0), 0);
	CHECK_INT(lookup_st(FS, "d", &d0), 0);
	CHECK_INT(e_write(FS, "d/g", O_WRONLY, "G", 0), 0);
	CHECK_INT(lookup_st(FS, "d/g", &st), 0);
	CHECK_INT(st.st_ino, g0.st_ino);
	CHECK_INT(lookup_st(FS, "d", &st), 0);
	CHECK_INT(st.st_ino, d0.st_ino);
out:
	env_fini(&e);
}

/* ------------------------------------------------------------------------------------------ */
/* Hard links                                                                                 */
/* ------------------------------------------------------------------------------------------ */

/* D41, D42. */
static void test_link(void)
{
	struct env e;
	struct stat st, sa, sb, ua, ub, la;

	env_init(&e, 1, true);
	mkf(LO1, "a", "A");
	mkd(LO1, "d", 0755);
	mkf(LO1, "c", "C");
	mkwh(UP, "w");
	mkf(LO1, "w", "hidden");
	if (lstat(lp(LO1, "a"), &la) < 0)
		die("lstat");
	if (!env_mount(&e))
		goto out;

	if (CHECK_INT(e_link(FS, "a", "b", &st), 0))
		CHECK_INT(st.st_nlink, 2);
	CHECK_INT(lookup_st(FS, "a", &sa), 0);
	CHECK_INT(lookup_st(FS, "b", &sb), 0);
	CHECK_INT(sa.st_ino, sb.st_ino);
	CHECK_INT(sa.st_nlink, 2);
	CHECK_INT(sb.st_nlink, 2);
	if (CHECK_INT(lx(UP, "a", &ua), 0) && CHECK_INT(lx(UP, "b", &ub), 0)) {
		CHECK_INT(ua.st_ino, ub.st_ino);
		CHECK_INT(ua.st_nlink, 2);
	}
	CHECK_INT(lx(LO1, "b", NULL), -ENOENT);
	CHECK_INT(e_write(FS, "a", O_WRONLY, "Z", 0), 0);
	CHECK_STR(e_cat(FS, "b"), "Z");
	CHECK_STR(cat(LO1, "a"), "A");

	CHECK_INT(e_link(FS, "d", "d2", NULL), -EPERM);
	CHECK_INT(e_link(FS, "a", "c", NULL), -EEXIST);
	CHECK_INT(e_link(FS, "a", "w", NULL), 0); /* over a whiteout */
	CHECK_STR(e_cat(FS, "w"), "Z");
	CHECK_INT(lookup_st(FS, "w", &st), 0);
	CHECK_INT(st.st_nlink, 3);
	CHECK_INT(e_unlink(FS, "a"), 0);
	CHECK(is_whiteout(UP, "a"));
	CHECK_INT(lookup_st(FS, "b", &st), 0);
	CHECK_INT(st.st_nlink, 2);
out:
	env_fini(&e);
}

/* All names of an upper hard-linked file are one node (alias.c); lower links are not joined
 * (a copy-up would break them, as on the kernel without index=on). */
static void test_hard_link_one_node(void)
{
	struct env e;
	struct ovl_node *a = NULL, *b = NULL, *c = NULL, *l1 = NULL, *l2 = NULL, *n = NULL;
	struct stat st;

	env_init(&e, 1, true);
	mkf(UP, "a", "A");
	mkf(UP, "c", "C");
	mkf(LO1, "l1", "L");
	if (mkdir(lp(UP, "d"), 0755) < 0)
		die("mkdir");
	if (link(lp(UP, "a"), lp(UP, "b")) < 0 || link(lp(LO1, "l1"), lp(LO1, "l2")) < 0)
		die("link");
	if (!env_mount(&e))
		goto out;
	CHECK_INT(walk(FS, "a", &a, NULL), 0);
	CHECK_INT(walk(FS, "b", &b, NULL), 0);
	CHECK_INT(walk(FS, "c", &c, NULL), 0);
	CHECK_INT(walk(FS, "l1", &l1, NULL), 0);
	CHECK_INT(walk(FS, "l2", &l2, NULL), 0);
	if (!a || !b || !c || !l1 || !l2)
		goto put;
	CHECK(a == b);
	CHECK(a != c);
	CHECK(l1 != l2);
	/* link() answers with the source's node */
	if (CHECK_INT(ovl_link(FS, c, ovl_root(FS), "c2", &n, &st), 0)) {
		CHECK(n == c);
		CHECK_INT((int)st.st_nlink, 2);
		put(FS, n);
	}
	/* the node's own name goes: it takes the other, and still reads the object */
	CHECK_INT(ovl_unlink(FS, ovl_root(FS), "a"), 0);
	CHECK(!ovl_node_is_unlinked(b));
	if (CHECK_INT(ovl_getattr(FS, b, &st), 0))
		CHECK_INT((int)st.st_nlink, 1);
	struct ovl_node *again = NULL;
	if (CHECK_INT(walk(FS, "b", &again, NULL), 0)) {
		CHECK(again == b);
		put(FS, again);
	}
	/* another name renamed into a directory, then the node's own removed */
	struct ovl_node *d = NULL;
	if (CHECK_INT(walk(FS, "d", &d, NULL), 0)) {
		CHECK_INT(ovl_rename(FS, ovl_root(FS), "c2", d, "c3", 0), 0);
		CHECK_INT(ovl_unlink(FS, ovl_root(FS), "c"), 0);
		CHECK(!ovl_node_is_unlinked(c));
		if (CHECK_INT(ovl_getattr(FS, c, &st), 0))
			CHECK_INT((int)st.st_size, 1);
		if (CHECK_INT(walk(FS, "d/c3", &again, NULL), 0)) {
			CHECK(again == c);
			put(FS, again);
		}
		put(FS, d);
	}
put:
	for (struct ovl_node **p = (struct ovl_node *[]){a, b, c, l1, l2}, **end = p + 5; p < end;
	     p++)
		if (*p)
			put(FS, *p);
out:
	env_fini(&e);
}

const struct test identity_tests[] = {
    {TEST(test_ino_consistency)},
    {TEST(test_copyup_ino_stable)},
    {TEST(test_link)},
    {TEST(test_hard_link_one_node)},
    {NULL, NULL},
};
