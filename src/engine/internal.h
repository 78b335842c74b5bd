/* Engine internals shared by the engine's files; nothing outside the engine includes this. */
#ifndef OVLFS_INTERNAL_H
#define OVLFS_INTERNAL_H

#include "engine.h"
#include "hashtab.h"

#include <pthread.h>
#include <stdatomic.h>
#include <limits.h>
#include <stdio.h>
#include <sys/sysmacros.h>

#define OVL_XATTR_PREFIX "trusted.overlay."
#define OVL_XATTR_OPAQUE OVL_XATTR_PREFIX "opaque"
#define OVL_XATTR_WHITEOUT OVL_XATTR_PREFIX "whiteout"
/* A caller's trusted.overlay.X is stored as trusted.overlay.overlay.X (kernel 6.7+). */
#define OVL_XATTR_ESCAPED OVL_XATTR_PREFIX "overlay."
/* The same markers under user.overlay. (the kernel's userxattr; ovlfs's rootless mode). */
#define OVL_UXATTR_PREFIX "user.overlay."
/* fuse-overlayfs's own namespace: its opaque mark is read, the whole prefix is hidden. */
#define OVL_FXATTR_PREFIX "user.fuseoverlayfs."
/* OCI image layers (and fuse-overlayfs without mknod): whiteouts as files. */
#define OVL_WH_PREFIX ".wh."
#define OVL_WH_OPAQUE ".wh..wh..opq"

struct ovl_layer {
	char *path;
	int root_fd; /* O_PATH|O_DIRECTORY, the boundary every walk stays beneath */
	dev_t dev;
	int fsid; /* index of dev among the layers' distinct filesystems */
	bool is_upper;
	int override; /* OVL_OVR_*: whether owner and mode live in an xattr (owner.c) */
};

/* One layer in which a directory exists, top-down. */
struct ovl_dirlayer {
	int layer;
	bool xwhiteouts;  /* lower dir marked opaque="x": may hold xattr whiteouts */
	bool no_wh_files; /* a listing found no .wh.* name here (never set where we add some) */
};

/* What an unlinked node keeps for the files still open on it; only unlinked nodes have one,
 * which keeps every other node small. */
struct ovl_orphan {
	struct stat last_st; /* its last attributes, for when the object is gone too */
	int fd;		     /* O_PATH fd of the object if files were open on it, else -1 */
	struct ovl_node *next, *prev; /* fs->orphans: freed at unmount */
};

struct ovl_node {
	struct ovl_node *parent; /* holds a reference on the parent */
	char *name;
	struct ovl_hlink hlink; /* node table chain */
	uint64_t nlookup;	/* kernel references */
	uint64_t refs;		/* nlookup > 0, children in table, internal pins */
	_Atomic uint64_t ino;	/* overlay inode number; set under table_lock, read without */
	_Atomic mode_t type;	/* S_IFMT bits; set under lock, read without */
	atomic_bool unlinked;	/* no longer reachable by name; set under table_lock */
	bool in_table;
	/* The object has no xattrs at all: getxattr answers ENODATA without a syscall (ls -l
	 * asks for ACLs and security labels of every entry). Cleared by our own changes. */
	atomic_bool no_xattrs;
	atomic_bool aliased; /* in the hard-link index (alias.c) */
	/* Guarded by lock (held only for a few loads and stores, hence a spinlock: the mutex
	 * was the largest field): where the object lives. top == 0 with fs->upper: upper. */
	pthread_spinlock_t lock;
	int top;
	int ndirlayers;	  /* directories: the merged layers, top-down */
	atomic_int nopen; /* open files and directories */
	struct ovl_dirlayer *dirlayers;
	struct ovl_orphan *orphan; /* set (before the unlinked mark) when unlinked */
	/* Directories read without a handle: the listing between requests (listing.c), under
	 * fs->listing_lock. */
	struct ovl_listing *listing;
	/* The last mtime a setattr gave this file, tv_nsec UTIME_OMIT if none (guarded by
	 * lock): with the kernel's writeback cache it is the kernel's (see
	 * ovl_file_keep_kernel_mtime). */
	struct timespec kernel_mtime;
	/* Serializes copy-up of this node and namespace changes in this directory. */
	pthread_mutex_t op_lock;
};

/* Maps a copied-up object's upper (dev, ino) to the number it had below, so that st_ino
 * does not change with copy-up for the life of the mount. */
struct ovl_origin {
	dev_t dev;
	ino_t ino;
	uint64_t ovl_ino;
	struct ovl_hlink link;
};

struct ovl_fs {
	struct ovl_layer *layers; /* upper (if any) first, then the lower layers */
	int nlayers;
	bool has_upper;
	bool readonly;
	bool no_fsync;
	void (*attr_changed)(void *ctx, struct ovl_node *node);
	void *attr_changed_ctx;
	int work_fd; /* <workdir>/work */
	int ndevs;
	int xino_bits; /* high bits used for the filesystem index */
	long namemax;
	/* On-disk format (formats.c): the marker prefix ovlfs writes and reads as its own
	 * (trusted.overlay. or user.overlay.), and whether whiteouts are .wh. files. */
	bool userxattr;
	bool file_whiteouts;
	bool read_trusted; /* trusted.* is readable (privileged) */
	char x_opaque[32], x_whiteout[32];
	atomic_ulong tmp_counter;
	pthread_rwlock_t rename_lock;
	pthread_mutex_t table_lock;   /* node table, refs, origin map, fallback ino map */
	pthread_mutex_t listing_lock; /* the nodes' listing pointers */
	/* Every open file not yet freed: those the kernel never released (the daemon stopped
	 * while they were open) are closed by ovl_fs_destroy. */
	pthread_mutex_t files_lock;
	struct ovl_file *open_files;
	struct ovl_htab table; /* nodes by (parent, name) */
	struct ovl_htab origins;
	struct ovl_htab inomap; /* fallback for inodes that do not fit beside the fsid */
	uint64_t next_private_ino;
	struct ovl_node *root;
	struct ovl_node *orphans;
	struct ovl_htab aliases;      /* hard-link index by ino, under table_lock */
	_Atomic size_t aliases_count; /* read without the lock for a quick "none" */
	struct ovl_owner_opts owner;
	bool owner_active; /* some ownership option or override xattr is in effect */
	bool owner_xattrs; /* some layer keeps owners in override xattrs */
};

struct ovl_file {
	struct ovl_fs *fs;
	struct ovl_node *node;
	atomic_int refs;       /* the open handle, and each fd user: a reply may race the release */
	pthread_rwlock_t lock; /* read: fd in use; write: fd being switched */
	int fd;
	bool on_upper;
	int flags;
	struct ovl_file *prev_open, *next_open; /* fs->open_files, under fs->files_lock */
};

/* layer.c: fd-relative walks that never leave a layer root. */
int ovl_layer_open(struct ovl_fs *fs, int layer, const char *relpath, int flags);
int ovl_node_path(struct ovl_node *node, char *buf, size_t size);
/* An fd of node's parent directory in layer, or of the node itself with *name = ".". */
int ovl_open_parent(struct ovl_fs *fs, struct ovl_node *node, int layer, const char **name);
int ovl_open_in_layer(struct ovl_fs *fs, struct ovl_node *node, int layer, int flags);
uint64_t ovl_map_ino(struct ovl_fs *fs, int layer, dev_t dev, ino_t ino);
void ovl_record_origin(struct ovl_fs *fs, dev_t dev, ino_t ino, uint64_t ovl_ino);
void ovl_maps_free(struct ovl_fs *fs);
bool ovl_is_whiteout_stat(const struct stat *st);
int ovl_fd_getxattr(int fd, const char *name, void *buf, size_t size);
int ovl_proc_path(int fd, char *buf, size_t size);
int ovl_getxattr_at(int dirfd, const char *name, const char *xname, void *buf, size_t size);

int ovl_remove_tree_at(int dirfd, const char *name);
/* Before `name` in parent goes away: a record that keeps its object for the node's open
 * files (allocated first, so that nothing can fail after the name is removed). */
int ovl_keep_orphan(struct ovl_fs *fs, struct ovl_node *parent, const char *name,
		    struct ovl_orphan **out);
void ovl_orphan_free(struct ovl_orphan *orphan);
/* The unlinked node's kept object fd, or -1. */
int ovl_orphan_fd(struct ovl_node *node);
int ovl_node_object_fd(struct ovl_fs *fs, struct ovl_node *node, int layer);
/* A duplicate of the open file's fd if it is on the upper object, else -1. */
int ovl_file_upper_dup(struct ovl_file *file);
/* fstat of the open file if it is on the upper object: 1 if done, 0 if not, -errno. */
int ovl_file_upper_fstat(struct ovl_file *file, struct stat *st);

/* node.c */
struct ovl_node *ovl_node_get_child(struct ovl_fs *fs, struct ovl_node *parent, const char *name);
struct ovl_node *ovl_node_new(struct ovl_fs *fs, struct ovl_node *parent, const char *name);
void ovl_node_unref(struct ovl_fs *fs, struct ovl_node *node, uint64_t nlookup, uint64_t refs);
void ovl_node_ref(struct ovl_fs *fs, struct ovl_node *node, uint64_t nlookup, uint64_t refs);
/* Takes orphan over (may free it); st: the object's last attributes. */
void ovl_node_detach(struct ovl_fs *fs, struct ovl_node *node, struct ovl_orphan *orphan,
		     const struct stat *st);
void ovl_node_move(struct ovl_fs *fs, struct ovl_node *node, struct ovl_node *newparent,
		   const char *newname);
int ovl_node_init_table(struct ovl_fs *fs);
void ovl_node_free_all(struct ovl_fs *fs);
/* file.c: at teardown, the open files the kernel never released. */
void ovl_files_free_all(struct ovl_fs *fs);
int ovl_node_top(struct ovl_node *node);
/* Copies the merged layer list of a directory; caller frees. */
int ovl_node_dirlayers(struct ovl_node *node, struct ovl_dirlayer **out);

/* namei.c */
struct ovl_found {
	int top; /* -1: not found (or whited out) */
	struct stat st;
	int ndirlayers;
	struct ovl_dirlayer *dirlayers;
	bool opaque;
	bool whiteout_in_upper; /* the upper parent holds a whiteout of that name */
	bool whfile_in_upper;	/* ... in the form of a .wh.<name> file (name itself is free) */
	bool below;		/* the name exists in a layer under the top one */
};
int ovl_find(struct ovl_fs *fs, struct ovl_node *parent, const char *name, bool want_below,
	     struct ovl_found *f);
/* The same, with directory fds of parent the caller already holds, by layer index (-1 for
 * none; NULL for no array): one path walk fewer per layer lent. */
int ovl_find_in(struct ovl_fs *fs, struct ovl_node *parent, const char *name, bool want_below,
		const int *dirfds, struct ovl_found *f);
void ovl_found_free(struct ovl_found *f);
int ovl_lookup_locked(struct ovl_fs *fs, struct ovl_node *parent, const char *name,
		      struct ovl_node **out, struct stat *st);
int ovl_stat_node(struct ovl_fs *fs, struct ovl_node *node, struct stat *st);
int ovl_node_install(struct ovl_fs *fs, struct ovl_node *parent, const char *name,
		     struct ovl_found *f, bool fresh, struct ovl_node **out, struct stat *st);
void ovl_fill_stat(struct ovl_fs *fs, struct ovl_node *node, struct stat *st);

/* copy_up.c */
int ovl_copy_up_locked(struct ovl_fs *fs, struct ovl_node *node, bool truncate);
int ovl_tmpname(struct ovl_fs *fs, char *buf, size_t size);
int ovl_copy_xattrs(struct ovl_fs *fs, const char *src, const char *dst);

/* file.c */
struct ovl_file *ovl_file_new(struct ovl_fs *fs, struct ovl_node *node, int fd, int flags,
			      bool on_upper);

/* readdir.c */
struct ovl_dirent {
	char *name;
	uint64_t ino;
	unsigned char type;
};
/* The merged listing of a directory node, without . and .. */
int ovl_merge_dir(struct ovl_fs *fs, struct ovl_node *node, struct ovl_dirent **out, size_t *count,
		  bool *has_whiteouts);
void ovl_dirents_free(struct ovl_dirent *ents, size_t count);
/* Calls fn for ".", "..", then ents[] from position pos (0 and 1 are the dots) until fn
 * returns non-zero; next_off(i, arg) is the offset that resumes at position i. */
void ovl_emit_dirents(struct ovl_fs *fs, struct ovl_node *dir, const struct ovl_dirent *ents,
		      size_t count, size_t pos, off_t (*next_off)(size_t next, const void *arg),
		      const void *arg, ovl_dirent_fn fn, void *ctx);
struct ovl_listing;
void ovl_listing_put(struct ovl_listing *l);

/* formats.c: whiteouts and opaque marks in both the kernel's and the OCI form. */
struct ovl_fs_params;
int ovl_formats_init(struct ovl_fs *fs, const struct ovl_fs_params *p);
bool ovl_is_wh_name(const char *name);
/* 1 if dfd holds .wh.<name>, 0 if not (or name is too long to have one), or -errno. */
int ovl_has_wh_file(int dfd, const char *name);
/* The opaque mark of directory dfd/name ("." for dfd itself): 'y', 'x' or 0. With
 * below, layers under this one would merge: the marks that only hide them are read too. */
int ovl_dir_opaque(struct ovl_fs *fs, int dfd, const char *name, bool below);
int ovl_is_xwhiteout(struct ovl_fs *fs, int dirfd, const char *name, const struct stat *st);
/* A whiteout at dirfd/name; with replace, atomically over what is there (a non-directory). */
int ovl_make_whiteout(struct ovl_fs *fs, int dirfd, const char *name, bool replace);
/* A whiteout at pdfd/name while a directory is there: the directory ends up in the work
 * directory as tmp. */
int ovl_whiteout_dir(struct ovl_fs *fs, int pdfd, const char *name, const char *tmp);
int ovl_set_opaque(struct ovl_fs *fs, int dirfd, const char *name);
/* After name was created over a .wh.<name> file: the file is no longer needed. */
void ovl_drop_wh_file(int dfd, const char *name);
/* Private marker xattrs: never shown, never copied up. */
bool ovl_is_private_xattr(const struct ovl_fs *fs, const char *name);

/* dir.c helpers used by rename.c */
int ovl_remove_upper(struct ovl_fs *fs, int pdfd, const char *name, const struct ovl_found *f);
int ovl_check_empty(struct ovl_fs *fs, struct ovl_node *dir);

/* alias.c: the other names' nodes of an upper hard-linked file. */
void ovl_alias_add_locked(struct ovl_fs *fs, struct ovl_node *node);
void ovl_alias_del_locked(struct ovl_fs *fs, struct ovl_node *node);
void ovl_alias_note(struct ovl_fs *fs, struct ovl_node *node, const struct stat *st, int top);
void ovl_alias_free_all(struct ovl_fs *fs);
/* owner.c: ownership as the mount shows it. IDs on disk and in override xattrs are the
 * disk side; mapping and squashing apply only where attributes cross the mount. */
enum { OVL_OVR_NONE, OVL_OVR_PRIVILEGED, OVL_OVR_CONTAINERS, OVL_OVR_USER };
int ovl_owner_setup(struct ovl_fs *fs, const struct ovl_owner_opts *opts);
/* A layer's stat of node's object -> what the mount shows (the one place: ovl_fill_stat). */
void ovl_owner_show(struct ovl_fs *fs, struct ovl_node *node, struct stat *st);
/* Disk-side owner of a new object in the upper directory pdfd (whose stat is *pst). */
void ovl_owner_new_ids(struct ovl_fs *fs, const struct ovl_cred *cred, int pdfd, struct stat *pst,
		       uid_t *uid, gid_t *gid, bool *sgid);
/* Records a new object's owner and mode in an override xattr; *done false: chown it. */
int ovl_owner_init_new(struct ovl_fs *fs, int dirfd, const char *name, mode_t mode, dev_t rdev,
		       uid_t uid, gid_t gid, bool *done);
bool ovl_owner_device_as_file(struct ovl_fs *fs, mode_t mode);
/* A setattr's owner as stored (-EINVAL for an ID outside the mapping), before anything is
 * copied up; then what goes to an override xattr or is squashed is done and cleared from
 * *to_set, the rest is for the inode. */
int ovl_owner_map_attr(struct ovl_fs *fs, int *to_set, const struct stat *attr,
		       struct stat *disk_attr);
int ovl_owner_setattr(struct ovl_fs *fs, int fd, int *to_set, const struct stat *disk_attr);
/* A copy-up to an upper layer with override xattrs: records the owner there; *done false:
 * chown the copy as usual. */
int ovl_owner_copy_up(struct ovl_fs *fs, int layer, int sfd, int dirfd, const char *tmp,
		      const struct stat *st, bool *done);
bool ovl_owner_hidden_xattr(struct ovl_fs *fs, const char *name);
size_t ovl_owner_filter_xattrs(struct ovl_fs *fs, char *list, size_t len);

/* makedev(0, 0) with the type of st_rdev */
#define OVL_WHITEOUT_DEV ((dev_t)0)

#define OVL_PATH_MAX (PATH_MAX * 2)

#endif
