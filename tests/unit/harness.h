/*
 * The shared harness of the engine's unit tests (test_engine): checks and their counters,
 * temporary layers with an ovl_fs on them, helpers that build and inspect layers directly,
 * helpers that drive the engine by path, and the registry of tests the runner goes through.
 * Every test_*.c file (but test_options*.c) holds the tests of one engine area and lists them
 * in its own array (see "Registry" below).
 */
#ifndef OVLFS_TESTS_UNIT_HARNESS_H
#define OVLFS_TESTS_UNIT_HARNESS_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "engine/engine.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/xattr.h>
#include <unistd.h>

/* ------------------------------------------------------------------------------------------ */
/* Checks                                                                                     */
/* ------------------------------------------------------------------------------------------ */

/* The running test's name, for failure messages. */
extern const char *cur_test;

bool check_(bool ok, const char *what, int line);
bool check_int_(long long got, long long want, const char *what, int line);
bool check_str_(const char *got, const char *want, const char *what, int line);

#define CHECK(cond) check_((cond), #cond, __LINE__)
#define CHECK_INT(got, want)                                                                       \
	check_int_((long long)(got), (long long)(want), #got " == " #want, __LINE__)
#define CHECK_STR(got, want) check_str_((got), (want), #got " == " #want, __LINE__)

/* A broken test environment (not an engine failure): give up. */
void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* ------------------------------------------------------------------------------------------ */
/* Environments: temporary layers and an ovl_fs on them                                       */
/* ------------------------------------------------------------------------------------------ */

struct env {
	char dir[PATH_MAX];
	char lower[3][PATH_MAX];
	char upper[PATH_MAX];
	char work[PATH_MAX];
	int nlower;
	bool has_upper;
	struct ovl_fs *fs;
};

/* Every test names its environment `e`. */
#define UP e.upper
#define LO1 e.lower[0]
#define LO2 e.lower[1]
#define LO3 e.lower[2]
#define FS e.fs

extern const struct ovl_cred root_cred;

void rm_tree(const char *path);
/* snprintf that gives up on truncation. */
void fmt(char *buf, size_t size, const char *f, ...) __attribute__((format(printf, 3, 4)));
void xmkdir(const char *path, mode_t mode);
void env_init(struct env *e, int nlower, bool upper);
int env_open(struct env *e, bool readonly);
bool env_mount(struct env *e);
/* Destroys the fs, checks no temporary object was left in the work directory, removes all. */
void env_fini(struct env *e);

/* ------------------------------------------------------------------------------------------ */
/* Layer helpers: build and inspect layer contents directly                                   */
/* ------------------------------------------------------------------------------------------ */

/* "<layer>/<rel>" in a small ring of buffers. */
const char *lp(const char *layer, const char *rel);
void mkd(const char *layer, const char *rel, mode_t mode);
void mkfm(const char *layer, const char *rel, const char *data, mode_t mode);
void mkf(const char *layer, const char *rel, const char *data);
void mkwh(const char *layer, const char *rel);
void mksym(const char *layer, const char *rel, const char *target);
void setx(const char *layer, const char *rel, const char *name, const char *value);
void set_times(const char *layer, const char *rel, time_t sec, long nsec);
/* lstat in a layer: 0 or -errno. */
int lx(const char *layer, const char *rel, struct stat *st);
bool is_whiteout(const char *layer, const char *rel);
/* An xattr value in a layer as a string, or "<-ENODATA>" and the like. */
const char *getx(const char *layer, const char *rel, const char *name);
/* A layer file's contents, or "<-ENOENT>" and the like. */
const char *cat(const char *layer, const char *rel);

/* Layers from a table, as tests/helpers.py build_layer does for the mount tests: each entry
 * is made, in table order, in every layer its bits name, with missing parent directories
 * made 0755 first. One row can so put the same directory in several layers:
 *	static const struct layer_entry spec[] = {
 *	    L_DIR(IN_UP | IN_LO1, "d"),
 *	    L_FILE(IN_LO1, "d/f", "data"),
 *	};
 *	build(&e, spec, N_OF(spec)); */
enum { IN_UP = 1, IN_LO1 = 2, IN_LO2 = 4, IN_LO3 = 8 };

enum entry_kind {
	K_FILE,	    /* data: the contents */
	K_DIR,	    /* data: unused */
	K_WHITEOUT, /* the 0/0 character device */
	K_SYMLINK,  /* data: the target */
	K_XATTR,    /* data: "name=value", set on an existing path ("." is the layer root) */
};

struct layer_entry {
	unsigned layers; /* IN_UP | IN_LO1 ... */
	const char *path;
	enum entry_kind kind;
	const char *data;
	mode_t mode; /* 0: 0644 for a file, 0755 for a directory */
};

/* The rows, with every field given (for -Wmissing-field-initializers); one a line. */
/* clang-format off */
#define L_FILE(layers, path, data) {(layers), (path), K_FILE, (data), 0}
#define L_FILE_MODE(layers, path, data, mode) {(layers), (path), K_FILE, (data), (mode)}
#define L_DIR(layers, path) {(layers), (path), K_DIR, NULL, 0}
#define L_DIR_MODE(layers, path, mode) {(layers), (path), K_DIR, NULL, (mode)}
#define L_WHITEOUT(layers, path) {(layers), (path), K_WHITEOUT, NULL, 0}
#define L_SYMLINK(layers, path, target) {(layers), (path), K_SYMLINK, (target), 0}
/* name and value: string literals. */
#define L_XATTR(layers, path, name, value) {(layers), (path), K_XATTR, name "=" value, 0}
/* clang-format on */

void build(struct env *e, const struct layer_entry *spec, size_t n);

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

/* ------------------------------------------------------------------------------------------ */
/* Engine helpers: paths are relative to the overlay root; every lookup is forgotten          */
/* ------------------------------------------------------------------------------------------ */

/* Drops one lookup (the root is never looked up by these helpers). */
void put(struct ovl_fs *fs, struct ovl_node *node);
/* Looks up a slash-separated path ("" is the root). *out holds one lookup: put() it. */
int walk(struct ovl_fs *fs, const char *path, struct ovl_node **out, struct stat *st);
int lookup_st(struct ovl_fs *fs, const char *path, struct stat *st);
int lookup_err(struct ovl_fs *fs, const char *path);
/* "a/b/c" -> parent "a/b", name "c". */
const char *split(const char *path, char *parent, size_t size);
/* Reads a file through the engine, or "<-ENOENT>" and the like. */
const char *e_cat(struct ovl_fs *fs, const char *path);
/* Opens an existing file with flags and writes data at off. */
int e_write(struct ovl_fs *fs, const char *path, int flags, const char *data, off_t off);
int e_create_as(struct ovl_fs *fs, const char *path, mode_t mode, const char *data,
		const struct ovl_cred *cred);
int e_create(struct ovl_fs *fs, const char *path, mode_t mode, const char *data);
int e_mkdir(struct ovl_fs *fs, const char *path, mode_t mode);
int e_mknod(struct ovl_fs *fs, const char *path, mode_t mode, dev_t rdev);
int e_symlink(struct ovl_fs *fs, const char *path, const char *target);
int e_remove(struct ovl_fs *fs, const char *path, bool dir);
int e_unlink(struct ovl_fs *fs, const char *path);
int e_rmdir(struct ovl_fs *fs, const char *path);
int e_rename(struct ovl_fs *fs, const char *from, const char *to, unsigned flags);
int e_link(struct ovl_fs *fs, const char *from, const char *to, struct stat *st);
int e_copy_up(struct ovl_fs *fs, const char *path);
int e_setattr(struct ovl_fs *fs, const char *path, int to_set, const struct stat *attr,
	      struct stat *out);
/* An xattr value through the engine as a string, or "<-ENODATA>" and the like. */
const char *e_getx(struct ovl_fs *fs, const char *path, const char *name);
int e_setx(struct ovl_fs *fs, const char *path, const char *name, const char *value, int flags);
int e_removex(struct ovl_fs *fs, const char *path, const char *name);
/* A list of NUL-separated names, sorted and joined with spaces (ring buffer). */
const char *join_names(char *list, size_t len);
/* The names listxattr shows through the engine, sorted and space-separated. */
const char *e_listx(struct ovl_fs *fs, const char *path);

/* ------------------------------------------------------------------------------------------ */
/* Directory listings                                                                         */
/* ------------------------------------------------------------------------------------------ */

struct dent {
	char *name;
	uint64_t ino;
	unsigned type;
	off_t next;
};

struct listing {
	struct dent *v;
	size_t n, cap;
	size_t limit; /* accept at most this many entries (0: no limit) */
};

/* An ovl_readdir callback appending to the struct listing ctx. */
int collect(void *ctx, const char *name, uint64_t ino, unsigned type, off_t next);
void listing_free(struct listing *l);
int list_dir(struct ovl_fs *fs, const char *path, struct listing *l);
const struct dent *find_dent(const struct listing *l, const char *name);
int count_name(const struct listing *l, const char *name);
/* The entries but . and .., sorted and space-separated (ring buffer). */
const char *names_of(const struct listing *l);
/* The names of a directory listing through the engine, or "<-ENOENT>" and the like. */
const char *e_ls(struct ovl_fs *fs, const char *path);

/* ------------------------------------------------------------------------------------------ */
/* Registry: each test file lists its tests; the runner (harness.c) goes through the files    */
/* ------------------------------------------------------------------------------------------ */

struct test {
	const char *name;
	void (*fn)(void);
};

/* An entry of a test list: {TEST(test_name)}. */
#define TEST(f) #f, f

/* Each ends with {NULL, NULL}. */
extern const struct test lookup_tests[];
extern const struct test identity_tests[];
extern const struct test readdir_tests[];
extern const struct test write_tests[];
extern const struct test copy_up_tests[];
extern const struct test owner_tests[];
extern const struct test namespace_tests[];
extern const struct test concurrency_tests[];

#endif
