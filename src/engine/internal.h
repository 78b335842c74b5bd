/* Engine internals shared by the engine's files; nothing outside the engine includes this. */
#ifndef OVLFS_INTERNAL_H
#define OVLFS_INTERNAL_H

/*
 * Locking
 *
 * The locks, outermost first; a thread holding one only takes those listed after it:
 *
 * 1. A file's lock (ovl_file.lock, rwlock) and a directory handle's lock (ovl_dir.lock in
 *    readdir.c, mutex). The file's: read while its fd is in use, written while the fd is
 *    switched to the upper copy or its O_DIRECT flag is toggled (fd, on_upper). The
 *    handle's: its cached listing, one readdir at a time. Both are held across calls that
 *    take the rename lock (reopening the upper copy, merging the listing), never the
 *    other way round: ovl_setattr takes what it needs from the file before the rename lock.
 * 2. fs->rename_lock (rwlock). Written by rename (ovl_rename2), which moves names on
 *    disk and in the node table and copies up whole trees, and by the link that names an
 *    unlinked node again (an O_TMPFILE's, dir.c link_unnamed); read by every operation that
 *    walks a node's path (node->parent, node->name and what the layers hold there). A
 *    node's parent and name are changed only with it written and the table lock held, so
 *    either one keeps them still. Never taken twice by one thread: POSIX lets a rename
 *    waiting for it block the second read lock.
 * 3. A node's op lock (ovl_node.op_lock, mutex): copy-up of that node, and namespace
 *    changes (create, link, unlink, the copy-up's final rename) in that directory, which
 *    therefore see the upper directory's names stay as they found them. Always under the
 *    rename lock, read or written. Two at most are held, a child's, then its parent's:
 *    a copy-up holds the node's own lock for the whole copy (the data copy can be long,
 *    and a second copy-up of the node must wait for it and then find it done) and takes
 *    the parent's only for the rename into place (ovl_copy_up_locked, do_copy_up), so that
 *    namespace changes in the directory do not wait for the data. The parent-then-child
 *    order never occurs: a namespace change copies its directory up (ovl_copy_up_locked)
 *    before taking that directory's op lock, and copies nothing up while holding it.
 * 4. fs->table_lock (mutex): the node table (table, table_size, table_count, each node's
 *    hnext and in_table), nlookup and refs, the origin map and the fallback inode map
 *    (layer.c), the hard-linked objects and their other names (objects, object_nodes,
 *    altnames: alias.c; each node's aliased mark is written under it and read without it
 *    for a quick "none"), the orphan list (fs->orphans and
 *    each node's orphan record), and the writes of a node's unlinked mark and ino (both
 *    atomic: read without it; a copied-up hard link is renumbered under the op locks
 *    instead, in do_copy_up).
 *    fs->listing_lock (mutex): each node's listing chain (node->listing and the listings'
 *    older links); a listing itself is immutable and counted by its atomic refs.
 *    fs->files_lock (mutex): the list of open files (fs->open_files, prev_open, next_open).
 *    These three never nest in one another.
 *    fs->mcdata_lock (mutex): the metacopy map (metacopy.c); taken under fs->table_lock
 *    too (a node freed), nothing is taken under it.
 *    fs->whiteout_lock (mutex): the shared whiteout (formats.c); taken under op locks,
 *    nothing is taken under it.
 *    The directory fd cache's lock (mutex, dircache.c): its entries; taken by walks under
 *    the rename lock and op locks, never with fs->table_lock or another lock of this level
 *    held, and nothing is taken under it. Its generation is atomic: bumped under any lock.
 * 5. A node's spinlock (ovl_node.lock), innermost: where the object lives (top,
 *    ndirlayers, dirlayers, kernel_mtime; type is written under it, read without). Held
 *    for a few loads and stores: no other lock, no syscall, no malloc under it.
 *
 * Names: a function ending in _locked needs the rename lock held by its caller (read or
 * written); one ending in _table_locked needs fs->table_lock. Other needs are stated in a
 * "Preconditions:" line above the prototype; "not held" marks a lock the function takes
 * itself (all of them are non-recursive).
 */

#include "engine.h"
#include "format.h"
#include "hashtab.h"

#include <pthread.h>
#include <stdatomic.h>
#include <limits.h>
#include <stdio.h>
#include <sys/sysmacros.h>

/* Layers of one overlay at most (the command line allows 500 lower ones and the upper). */
#define OVL_MAX_LAYERS 1024

struct ovl_layer {
	char *path;
	int root_fd; /* O_PATH|O_DIRECTORY, the boundary every walk stays beneath */
	dev_t dev;
	int fsid; /* index of dev among the layers' distinct filesystems */
	bool is_upper;
	/* A data-only layer (lowerdir=...::data): never looked up by name, only the data of
	 * metacopy files redirected into it (metacopy.c). */
	bool data_only;
	int override; /* OVL_OVR_*: whether owner and mode live in an xattr (owner.c) */
	/* The filesystem's UUID as the kernel puts it in file handles (origin.c); shared: another
	 * filesystem among the layers has the same one, so a handle cannot name it. */
	unsigned char uuid[16];
	bool uuid_shared;
	/* A directory fd (not O_PATH) on the first layer of each filesystem, -1 on the others:
	 * what open_by_handle_at decodes handles of that filesystem against. */
	int handle_fd;
};

/* One layer in which a directory exists, top-down. */
struct ovl_dirlayer {
	int layer;
	/* The directory's path from that layer's root when a redirect (overlay.redirect) put
	 * it elsewhere; NULL: its parent's path there and its name. Owned by the array; copies
	 * (ovl_node_dirlayers) carry NULL. */
	char *path;
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
	atomic_bool aliased;	     /* stands for an object with several links (alias.c) */
	_Atomic unsigned char btime; /* OVL_BTIME_*: what the kernel may have cached of the btime */
	/* The lower object it was last found as has no immutable or append-only flag
	 * (fileattr.c): lower layers do not change, so the check is made once per lookup. */
	atomic_bool lower_unprotected;
	/* A metacopy file whose data is elsewhere: where is in fs->mcdata (metacopy.c), which
	 * keeps this rare case out of every node. */
	atomic_bool metacopy;
	/* The object of an index entry (index.c): its link count is the overlay's. */
	atomic_bool indexed;
	/* Guarded by lock (held only for a few loads and stores, hence a spinlock: the mutex
	 * was the largest field): where the object lives. top == 0 with fs->upper: upper. */
	pthread_spinlock_t lock;
	int16_t top;	    /* a layer index: at most OVL_MAX_LOWER + 1 layers (501) */
	int16_t ndirlayers; /* directories: the merged layers, top-down */
	atomic_int nopen;   /* open files and directories */
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

/* ovl_node.btime: the kernel keeps the btime of a STATX answer until a STATX asks again,
 * which it does only for attributes it holds no longer valid. */
enum { OVL_BTIME_NONE, OVL_BTIME_SHOWN, OVL_BTIME_STALE };

struct ovl_fs {
	struct ovl_layer *layers; /* upper (if any) first, then the lower layers */
	int nlayers;
	bool has_upper;
	bool readonly;
	bool no_fsync;
	bool noatime, nodiratime; /* the mount's atime mode, for upper objects (layer.c) */
	/* The daemon's own ids, which never change: the owner a new object gets by itself. */
	uid_t euid;
	gid_t egid;
	/* O_NOATIME was refused (EPERM: the daemon neither owns the object nor has CAP_FOWNER):
	 * layer objects are opened without it from then on. */
	atomic_bool noatime_denied;
	void (*attr_changed)(void *ctx, struct ovl_node *node);
	void *attr_changed_ctx;
	void (*warn)(const char *msg);
	/* Some directory was found through a redirect: walks look for redirected ancestors. */
	atomic_bool redirects_seen;
	int work_fd; /* <workdir>/work */
	/* The whiteout in the work directory that new whiteouts link to, as the kernel's
	 * (formats.c); its name is empty until made. Sharing stops if a link fails. */
	pthread_mutex_t whiteout_lock;
	char whiteout_name[64];
	atomic_bool whiteout_unshared;
	int ndevs;
	int xino_bits; /* high bits used for the filesystem index */
	long namemax;
	/* On-disk format (formats.c): the marker prefix ovlfs writes and reads as its own
	 * (trusted.overlay. or user.overlay.), and whether whiteouts are .wh. files. */
	bool userxattr;
	bool file_whiteouts;
	bool oci_whiteouts;    /* `.wh.*` names are OCI markers (else plain names) */
	bool origin_decodable; /* file handles decode here (CAP_DAC_READ_SEARCH): origin.c */
	bool origin_uuid_off;
	bool redirect_nofollow; /* -o redirect_dir=nofollow (redirect.c) */
	bool redirect_write; /* -o redirect_dir=on: directory renames write redirects (rename.c) */
	/* index=on: the index directory as a layer after all others (index.c), else -1. */
	int index_layer;
	bool metacopy;	   /* metacopy files are served (metacopy.c) */
	bool metacopy_up;  /* -o metacopy=on itself: metadata changes copy no data */
	int verity;	   /* OVL_VERITY_*: digests of metacopy records (metacopy.c) */
	int nregular;	   /* layers but the data-only ones, which come last */
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
	/* Upper objects with several links: by (dev, ino) and by node; their other names by
	 * (parent, name) (alias.c), under table_lock. */
	struct ovl_htab objects, object_nodes, altnames;
	pthread_mutex_t mcdata_lock;
	struct ovl_htab mcdata; /* metacopy nodes' data files, by node (metacopy.c) */
	struct ovl_owner_opts owner;
	bool owner_active; /* some ownership option or override xattr is in effect */
	bool owner_xattrs; /* some layer keeps owners in override xattrs */
	/* Directory fds by node and layer (dircache.c). */
	struct ovl_dircache *dircache;
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

/* redirect.c: the overlay.redirect of directory dirfd/name into buf (NUL-terminated): 0
 * none, OVL_REDIRECT_RELATIVE (a name in the same parent), OVL_REDIRECT_ABSOLUTE (a path
 * from the layer root, without the leading '/'), -EINVAL or -EACCES (invalid: logged). */
enum { OVL_REDIRECT_RELATIVE = 1, OVL_REDIRECT_ABSOLUTE = 2 };
int ovl_read_redirect(struct ovl_fs *fs, int dirfd, const char *name, char *buf, size_t size);
/* The raw overlay.redirect of upper directory dirfd/name into buf (NUL-terminated): its
 * length, 0 if none, or -errno. */
/* The redirect xattr's name in this mount's namespace. */
const char *ovl_redirect_xattr(const struct ovl_fs *fs);
int ovl_get_redirect_raw(struct ovl_fs *fs, int dirfd, const char *name, char *buf, size_t size);
/* *below (set from f: the found object has layers below) becomes whether the parent's
 * lower layers hold name itself, as the kernel's ovl_lower_positive asks before leaving a
 * whiteout: a directory found through a redirect has its layers below under another name.
 * Preconditions: the rename lock. */
struct ovl_found;
int ovl_name_below(struct ovl_fs *fs, struct ovl_node *parent, const char *name,
		   const struct ovl_found *f, bool *below);
/* How the kernel's walk of absolute redirect path abs goes through layer, up to its last
 * component: OVL_WALK_ON (plain directories, or one missing: the layers below are searched
 * too), OVL_WALK_LAST (an opaque parent: no layer below this one is searched),
 * OVL_WALK_STOP (a parent that is no directory: nothing here or below), or -errno. */
enum { OVL_WALK_ON, OVL_WALK_LAST, OVL_WALK_STOP };
int ovl_redirect_parents(struct ovl_fs *fs, int layer, const char *abs);
/* Sets the overlay.redirect of upper directory dirfd/name to value. */
int ovl_write_redirect(struct ovl_fs *fs, int dirfd, const char *name, const char *value);

/* Frees an array of dirlayers with the paths it owns. */
void ovl_dirlayers_free(struct ovl_dirlayer *dl, int n);
/* One line about a layer record that cannot be served (params.warn). */
__attribute__((format(printf, 2, 3))) void ovl_warn(struct ovl_fs *fs, const char *fmt, ...);

/* layer.c: fd-relative walks that never leave a layer root. A read of a lower object is
 * opened O_NOATIME, an upper one too under -o noatime (and a directory under nodiratime). */
int ovl_layer_open(struct ovl_fs *fs, int layer, const char *relpath, int flags);
/* openat of a lower object for reading (copy-up's source), O_NOATIME where permitted. */
int ovl_openat_noatime(struct ovl_fs *fs, int dirfd, const char *name, int flags);
/* Preconditions: the rename lock (the node's path must not move meanwhile). */
int ovl_node_path(struct ovl_node *node, char *buf, size_t size);
/* The same in layer, where redirects may have put a directory elsewhere (redirect.c).
 * Preconditions: the rename lock. */
int ovl_node_layer_path(struct ovl_fs *fs, struct ovl_node *node, int layer, char *buf,
			size_t size);
/* An fd of node's parent directory in layer, or of the node itself with *name = ".".
 * Preconditions: the rename lock. */
int ovl_open_parent(struct ovl_fs *fs, struct ovl_node *node, int layer, const char **name);
/* node's object in layer, at any depth (paths of PATH_MAX and more are walked in steps).
 * Preconditions: the rename lock. */
int ovl_open_in_layer(struct ovl_fs *fs, struct ovl_node *node, int layer, int flags);
/* parent/name in layer, as ovl_open_in_layer. Preconditions: the rename lock. */
int ovl_open_child_in_layer(struct ovl_fs *fs, struct ovl_node *parent, const char *name, int layer,
			    int flags);
struct ovl_dircache_entry;
/* An O_PATH fd of directory node dir in layer, lent from the directory fd cache (*entry
 * set) or opened for the caller (*entry NULL): either way given back with ovl_dir_return,
 * never closed or changed by the borrower. Preconditions: the rename lock (held until it is
 * given back). */
int ovl_dir_borrow(struct ovl_fs *fs, struct ovl_node *dir, int layer,
		   struct ovl_dircache_entry **entry);
/* ovl_open_parent, lent in the same way. Preconditions: as ovl_dir_borrow. */
int ovl_parent_borrow(struct ovl_fs *fs, struct ovl_node *node, int layer, const char **name,
		      struct ovl_dircache_entry **entry);
void ovl_dir_return(struct ovl_fs *fs, int fd, struct ovl_dircache_entry *entry);
/* What ovl_dirfds_open lends (engine.h). */
struct ovl_dirfds {
	int n;
	int fd[]; /* by layer index, fs->nlayers of them; -1: not open */
};
/* Preconditions: fs->table_lock not held. */
uint64_t ovl_map_ino(struct ovl_fs *fs, int layer, dev_t dev, ino_t ino);
/* Preconditions: fs->table_lock not held. */
void ovl_record_origin(struct ovl_fs *fs, dev_t dev, ino_t ino, uint64_t ovl_ino);
void ovl_maps_free(struct ovl_fs *fs);
int ovl_fd_getxattr(int fd, const char *name, void *buf, size_t size);
/* The same for an fd known to be O_PATH: straight through its magic link, one syscall
 * (fgetxattr, and getxattrat with AT_EMPTY_PATH, refuse O_PATH fds with EBADF). */
int ovl_opath_getxattr(int fd, const char *name, void *buf, size_t size);
int ovl_proc_path(int fd, char *buf, size_t size);
int ovl_getxattr_at(int dirfd, const char *name, const char *xname, void *buf, size_t size);
/* Sets xname of dirfd/name (not following a symlink): 0 or -errno. */
int ovl_setxattr_at(int dirfd, const char *name, const char *xname, const void *value, size_t size);
/* getxattr of the directory dirfd (O_PATH or not) in one syscall where the kernel has
 * getxattrat (fgetxattr refuses O_PATH fds: ovl_fd_getxattr takes two there). */
int ovl_dir_getxattr(int dirfd, const char *xname, void *buf, size_t size);

/* dircache.c: O_PATH fds of directory nodes' objects by (node, layer), so that a
 * walk to a name in a directory starts at the directory (layer.c). */
int ovl_dircache_init(struct ovl_fs *fs);
/* Closes the fds (unmount); ovl_dircache_free also frees the cache. */
void ovl_dircache_close(struct ovl_fs *fs);
void ovl_dircache_free(struct ovl_fs *fs);
/* Every entry becomes stale: a directory node's path may name another object now (or
 * none) in some layer. Called after such a change, under whatever lock the change holds. */
void ovl_dircache_invalidate(struct ovl_fs *fs);
/* Sets fs->redirects_seen (invalidating the cache the first time). */
void ovl_redirects_seen(struct ovl_fs *fs);
/* The generation an fd opened from now on belongs to (read before the walk opens it). */
uint64_t ovl_dircache_gen(struct ovl_fs *fs);
/* The cached fd of (node, layer), lent until ovl_dircache_put(*entry); -1 if none. */
int ovl_dircache_get(struct ovl_fs *fs, const struct ovl_node *node, int layer,
		     struct ovl_dircache_entry **entry);
void ovl_dircache_put(struct ovl_fs *fs, struct ovl_dircache_entry *entry);
/* Caches fd (opened in generation gen) for (node, layer), lent to the caller as by
 * ovl_dircache_get: true; false if every entry of its set is in use (fd stays the
 * caller's). */
bool ovl_dircache_add(struct ovl_fs *fs, const struct ovl_node *node, int layer, uint64_t gen,
		      int fd, struct ovl_dircache_entry **entry);

/* acl.c: whether a new object in the directory gets its mode from a default ACL (and not
 * from the umask). */
bool ovl_has_default_acl(int dirfd);
/* Gives dirfd/name, just made with *mode outside pdfd (in the work directory), what the
 * upper filesystem would have given it in pdfd: the access ACL and mode from pdfd's default
 * ACL, and that default ACL for a directory. *mode becomes the mode set. */
int ovl_acl_inherit(int pdfd, int dirfd, const char *name, mode_t *mode);

int ovl_remove_tree_at(int dirfd, const char *name);
/* Before `name` in parent goes away: a record that keeps its object for the node's open
 * files (allocated first, so that nothing can fail after the name is removed).
 * Preconditions: the rename lock and parent's op lock, or the rename lock written;
 * fs->table_lock not held. */
int ovl_keep_orphan(struct ovl_fs *fs, struct ovl_node *parent, const char *name,
		    struct ovl_orphan **out);
void ovl_orphan_free(struct ovl_orphan *orphan);
/* The unlinked node's kept object fd, or -1. */
int ovl_orphan_fd(struct ovl_node *node);
/* Preconditions: the rename lock. */
int ovl_node_object_fd(struct ovl_fs *fs, struct ovl_node *node, int layer);
/* A duplicate of the open file's fd if it is on the upper object, else -1.
 * Preconditions: the file's lock not held. */
int ovl_file_upper_dup(struct ovl_file *file);
/* fstat of the open file if it is on the upper object: 1 if done, 0 if not, -errno.
 * Preconditions: the file's lock not held. */
int ovl_file_upper_fstat(struct ovl_file *file, struct stat *st);

/* node.c */
/* Preconditions: fs->table_lock held. */
struct ovl_node *ovl_node_get_child(struct ovl_fs *fs, struct ovl_node *parent, const char *name);
/* Preconditions: fs->table_lock held. */
struct ovl_node *ovl_node_new(struct ovl_fs *fs, struct ovl_node *parent, const char *name);
/* Preconditions: fs->table_lock not held. */
void ovl_node_unref(struct ovl_fs *fs, struct ovl_node *node, uint64_t nlookup, uint64_t refs);
/* Preconditions: fs->table_lock not held. */
void ovl_node_ref(struct ovl_fs *fs, struct ovl_node *node, uint64_t nlookup, uint64_t refs);
/* Takes orphan over (may free it); st: the object's last attributes.
 * Preconditions: the rename lock and the parent's op lock, or the rename lock written;
 * fs->table_lock not held. */
void ovl_node_detach(struct ovl_fs *fs, struct ovl_node *node, struct ovl_orphan *orphan,
		     const struct stat *st);
/* An unlinked node named again (its object was just linked at parent/name): back in the
 * table, one more lookup for the kernel's link reply; -EEXIST if the table holds that name.
 * Preconditions: the rename lock written; fs->table_lock not held. */
int ovl_node_relink(struct ovl_fs *fs, struct ovl_node *node, struct ovl_node *parent,
		    const char *name);
/* Preconditions: the rename lock written; fs->table_lock not held. */
void ovl_node_move(struct ovl_fs *fs, struct ovl_node *node, struct ovl_node *newparent,
		   const char *newname);
/* The same; -EEXIST if the table holds a node of the new name, -ENOMEM.
 * Preconditions: the rename lock written; fs->table_lock not held. */
int ovl_node_move_to(struct ovl_fs *fs, struct ovl_node *node, struct ovl_node *newparent,
		     const char *newname);
/* Drops refs references of node, freeing what nobody holds any more, up the parents.
 * Preconditions: fs->table_lock held. */
void ovl_node_drop_refs_table_locked(struct ovl_fs *fs, struct ovl_node *node, uint64_t refs);
int ovl_node_init_table(struct ovl_fs *fs);
void ovl_node_free_all(struct ovl_fs *fs);
/* file.c: at teardown, the open files the kernel never released. */
void ovl_files_free_all(struct ovl_fs *fs);
/* Preconditions: the node's spinlock not held. */
int ovl_node_top(struct ovl_node *node);
/* Copies the merged layer list of a directory; caller frees.
 * Preconditions: the node's spinlock not held. */
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
	bool no_xattrs;		/* an upper file of one name found without any xattr */
	/* A metacopy file: where its data is (as ovl_node.data_path; owned), else NULL. */
	char *data_path;
	int data_layer;
	/* The object's inode number when not the top's: a merged directory's is its first
	 * lower directory's, an object copied up keeps its origin's (OVL_FIND_IDENTITY). */
	uint64_t ino;
	bool indexed; /* the object of an index entry (index.c): st_nlink is the overlay's */
};
/* How ovl_find_in looks: OVL_FIND_BELOW also learns whether a layer under the top one
 * holds the name (a whiteout is then needed to remove it); OVL_FIND_IDENTITY reads the
 * origin record of an upper object (lookups that show the object). */
enum { OVL_FIND_BELOW = 1, OVL_FIND_IDENTITY = 2 };
/* Preconditions: the rename lock; for a result acted on in the upper directory, parent's op
 * lock too (or the rename lock written), so that it still holds. */
int ovl_find(struct ovl_fs *fs, struct ovl_node *parent, const char *name, unsigned how,
	     struct ovl_found *f);
/* The same, with directory fds of parent the caller already holds, by layer index (-1 for
 * none; NULL for no array): one path walk fewer per layer lent. Preconditions: as ovl_find. */
int ovl_find_in(struct ovl_fs *fs, struct ovl_node *parent, const char *name, unsigned how,
		const int *dirfds, struct ovl_found *f);
void ovl_found_free(struct ovl_found *f);
/* Preconditions: the rename lock; fs->table_lock not held. */
int ovl_lookup_locked(struct ovl_fs *fs, struct ovl_node *parent, const char *name,
		      struct ovl_node **out, struct stat *st);
/* Preconditions: the rename lock; fs->table_lock not held. */
int ovl_stat_node(struct ovl_fs *fs, struct ovl_node *node, struct stat *st);
/* Preconditions: the rename lock; fs->table_lock not held. */
/* how: OVL_INSTALL_FRESH, a new object (its own inode number); OVL_INSTALL_EXCLUSIVE, the
 * rename lock is written; OVL_INSTALL_MAY_RETRY: -EAGAIN asks to call again with it written
 * (a node whose own name is gone takes this one, ovl_alias_resolve_table_locked). */
enum { OVL_INSTALL_FRESH = 1, OVL_INSTALL_EXCLUSIVE = 2, OVL_INSTALL_MAY_RETRY = 4 };
int ovl_node_install(struct ovl_fs *fs, struct ovl_node *parent, const char *name,
		     struct ovl_found *f, unsigned how, struct ovl_node **out, struct stat *st);
/* The node now stands at the name f was found for (takes f's layers over).
 * Preconditions: the rename lock written; fs->table_lock not held. */
void ovl_node_refound(struct ovl_fs *fs, struct ovl_node *node, struct ovl_found *f);
/* Preconditions: fs->table_lock and the node's spinlock not held. */
void ovl_fill_stat(struct ovl_fs *fs, struct ovl_node *node, struct stat *st);

/* copy_up.c */
/* Copies node and its ancestors up, taking each one's op lock, then its parent's.
 * Preconditions: the rename lock; no op lock, fs->table_lock not held. */
int ovl_copy_up_locked(struct ovl_fs *fs, struct ovl_node *node, bool truncate);
/* The object of parent/name (found in layer), another name of group's hard-link group than
 * group's own, copied up through the index for this name; group then shows the index entry.
 * Preconditions: the rename lock; no op lock; parent copied up. */
int ovl_copy_up_name_locked(struct ovl_fs *fs, struct ovl_node *group, struct ovl_node *parent,
			    const char *name, int layer);
/* The same before a change of metadata only: with metacopy=on a regular file's data stays
 * below (metacopy.c). Preconditions: as ovl_copy_up_locked. */
int ovl_copy_up_meta_locked(struct ovl_fs *fs, struct ovl_node *node);
int ovl_tmpname(struct ovl_fs *fs, char *buf, size_t size);
/* Puts back the atime and mtime st of directory dfd, which a name added or moved changed. */
void ovl_restore_times(int dfd, const struct stat *st);
/* in's data into out (st: in's, st_size the length wanted), holes kept as holes. */
int ovl_copy_data(int in, int out, const struct stat *st);
int ovl_copy_xattrs(struct ovl_fs *fs, const char *src, const char *dst);

/* metacopy.c: files whose data stays in a layer below (the kernel's metacopy=on). */
/* 1 if the regular file dirfd/name (as st) is a metacopy file, 0 if not, or -errno. */
int ovl_is_metacopy(struct ovl_fs *fs, int dirfd, const char *name, const struct stat *st);
/* The metacopy xattr's name in this mount's namespace. */
const char *ovl_metacopy_xattr(const struct ovl_fs *fs);
/* Whether node's data lives elsewhere than its object. */
bool ovl_node_metacopy(struct ovl_node *node);
/* Records where node's data is (path taken over; NULL: in its own object).
 * Preconditions: fs->mcdata_lock not held. */
void ovl_metacopy_set(struct ovl_fs *fs, struct ovl_node *node, int layer, char *path);
void ovl_metacopy_free_all(struct ovl_fs *fs);
/* Opens the data file of a metacopy node (-ENODATA: not one any more).
 * Preconditions: fs->mcdata_lock not held. */
int ovl_node_data_open(struct ovl_fs *fs, struct ovl_node *node, int flags);
/* Copies a metacopy upper node's data into its object, then drops the mark (the kernel's
 * order: the mark keeps a partial copy unseen). Preconditions: the rename lock; no op lock. */
int ovl_copy_up_data_locked(struct ovl_fs *fs, struct ovl_node *node);
/* Before node, as name, moves (samedir: within its directory) or takes another name (link:
 * name NULL, samedir false): with metacopy=on and redirect_dir=on a regular file goes up
 * metadata-only and its stub names its data below with an overlay.redirect, as the
 * kernel's; otherwise as ovl_copy_up_locked. Preconditions: as ovl_copy_up_locked. */
int ovl_copy_up_for_move_locked(struct ovl_fs *fs, struct ovl_node *node, const char *name,
				bool samedir);
/* The record for a new stub over the data file data_fd (open for reading), as the
 * kernel's: into rec (METACOPY_MAX bytes) its length, 0 for the empty record; -ENODATA when
 * verity=require and data_fd has no fs-verity digest (the copy-up copies the data then). */
int ovl_metacopy_record(struct ovl_fs *fs, int data_fd, unsigned char *rec);
#define OVL_METACOPY_MAX (4 + 64)
/* A metacopy node's data file: st_blocks into st (the kernel shows the data's).
 * Preconditions: fs->mcdata_lock not held. */
void ovl_metacopy_blocks(struct ovl_fs *fs, struct ovl_node *node, struct stat *st);

/* file.c */
/* Preconditions: fs->table_lock and fs->files_lock not held. */
struct ovl_file *ovl_file_new(struct ovl_fs *fs, struct ovl_node *node, int fd, int flags,
			      bool on_upper);

/* readdir.c */
struct ovl_dirent {
	char *name;
	uint64_t ino;
	unsigned char type;
};
/* The merged listing of a directory node, without . and ..
 * Preconditions: the rename lock. */
int ovl_merge_dir(struct ovl_fs *fs, struct ovl_node *node, struct ovl_dirent **out, size_t *count,
		  bool *has_whiteouts);
void ovl_dirents_free(struct ovl_dirent *ents, size_t count);
/* Calls fn for ".", "..", then ents[] from position pos (0 and 1 are the dots) until fn
 * returns non-zero; next_off(i, arg) is the offset that resumes at position i.
 * Preconditions: the rename lock not held. */
void ovl_emit_dirents(struct ovl_fs *fs, struct ovl_node *dir, const struct ovl_dirent *ents,
		      size_t count, size_t pos, off_t (*next_off)(size_t next, const void *arg),
		      const void *arg, ovl_dirent_fn fn, void *ctx);
struct ovl_listing;
void ovl_listing_put(struct ovl_listing *l);

/* formats.c: whiteouts and opaque marks in both the kernel's and the OCI form, read from
 * and written to layers (the names and pure checks: format.h). */
struct ovl_fs_params;
int ovl_formats_init(struct ovl_fs *fs, const struct ovl_fs_params *p);
/* A `.wh.*` name, which this mount reserves as an OCI marker: never shown, never created.
 * With -o oci_whiteouts=0 there are none (plain names, as on the kernel overlayfs). */
static inline bool ovl_oci_name(const struct ovl_fs *fs, const char *name)
{
	return fs->oci_whiteouts && ovl_is_wh_name(name);
}
/* 1 if dfd holds .wh.<name>, 0 if not (or name is too long to have one), or -errno. */
int ovl_has_wh_file(int dfd, const char *name);
/* The opaque mark of directory dfd/name ("." for dfd itself): OVL_OPAQUE_YES,
 * OVL_OPAQUE_XWHITEOUTS or 0. With below, layers under this one would merge: the marks that
 * only hide them are read too. */
int ovl_dir_opaque(struct ovl_fs *fs, int dfd, const char *name, bool below);
/* The same, and in *listed what one listing of its xattrs showed: 0 none at all, -1
 * unknown, else bits (OVL_REC_ANY among them). */
int ovl_dir_opaque_listed(struct ovl_fs *fs, int dfd, const char *name, bool below, int *listed);
/* Which records an upper file dfd/name carries, from one listing of its xattrs (most files
 * have none: then neither record is read): OVL_REC_ORIGIN, OVL_REC_METACOPY, and
 * OVL_REC_ANY when it has any xattr at all; -1 (every bit): unknown, read each. */
enum { OVL_REC_ORIGIN = 1, OVL_REC_METACOPY = 2, OVL_REC_ANY = 1 << 8 };
int ovl_upper_records(struct ovl_fs *fs, int dfd, const char *name);
int ovl_is_xwhiteout(struct ovl_fs *fs, int dirfd, const char *name, const struct stat *st);
/* The writers below change the names in directory dirfd. Preconditions: the rename lock and
 * the op lock of dirfd's node, or the rename lock written (neither for the work directory). */
/* A whiteout at dirfd/name; with replace, atomically over what is there (a non-directory). */
int ovl_make_whiteout(struct ovl_fs *fs, int dirfd, const char *name, bool replace);
/* A whiteout at pdfd/name while a directory is there: the directory ends up in the work
 * directory as tmp. */
int ovl_whiteout_dir(struct ovl_fs *fs, int pdfd, const char *name, const char *tmp);
int ovl_set_opaque(struct ovl_fs *fs, int dirfd, const char *name);
/* After name was created over a .wh.<name> file: the file is no longer needed. */
void ovl_drop_wh_file(int dfd, const char *name);

/* origin.c: the kernel's overlay.origin and overlay.impure records. */
#define OVL_ORIGIN_MAX (21 + 128) /* header, uuid and the largest file handle */
/* Reads the layers' filesystem UUIDs and whether handles decode here. */
void ovl_origin_init(struct ovl_fs *fs);
const char *ovl_origin_xattr(const struct ovl_fs *fs);
/* The origin value naming dirfd/name of layer: its length, 0 for the kernel's "origin
 * unknown" (no handles on that filesystem, or none decodable here), or -errno. */
ssize_t ovl_origin_encode(struct ovl_fs *fs, int layer, int dirfd, const char *name,
			  unsigned char *buf, size_t size);
/* (ovl_origin_check, the record's layout: format.h) */
/* The inode number the upper object dirfd/name (of that type) shows through its origin
 * record, as the kernel: its lower object's, while that has one link (a lower hard link's
 * copies may be several); 0 for none, unknown, stale, foreign, mistyped or malformed.
 * Only the lower object's identity is read. */
uint64_t ovl_origin_ino(struct ovl_fs *fs, int dirfd, const char *name, mode_t type, bool *indexed);
/* The same with name_to_handle_at's flags, for an upper object (the handle says so). */
ssize_t ovl_origin_encode_at(struct ovl_fs *fs, int layer, int dirfd, const char *name,
			     int at_flags, bool upper, unsigned char *buf, size_t size);
/* Records on work/tmp that it is a copy of dirfd/name in layer (copy-up). */
int ovl_origin_record(struct ovl_fs *fs, int layer, int dirfd, const char *name, const char *tmp);
/* Marks the upper directory dirfd impure (it holds entries with an origin, whose numbers
 * a reader of the directory must look up), once. */
int ovl_set_impure(struct ovl_fs *fs, int dirfd);
/* After dirfd/name got a name in the upper directory dirfd (link, rename): the directory is
 * impure if that entry has an origin, as the kernel marks it. */
int ovl_mark_impure_for(struct ovl_fs *fs, int dirfd, const char *name);
/* Whether the upper directory dirfd is marked impure. */
bool ovl_is_impure(struct ovl_fs *fs, int dirfd);

/* dir.c helpers used by rename.c */
/* Preconditions: the rename lock and the op lock of pdfd's node, or the rename lock written. */
int ovl_remove_upper(struct ovl_fs *fs, int pdfd, const char *name, const struct ovl_found *f);
/* Preconditions: the rename lock. */
int ovl_check_empty(struct ovl_fs *fs, struct ovl_node *dir);

/* fileattr.c: immutable and append-only, as the kernel overlayfs enforces them. */
enum { OVL_PROT_APPEND = 1, OVL_PROT_IMMUTABLE = 2 };
/* The OVL_PROT_* bits of dirfd/name (of type mode) in layer: overlay.protattr on upper, the
 * object's own flags below; or -errno. */
int ovl_prot_at(struct ovl_fs *fs, int layer, int dirfd, const char *name, mode_t mode);
/* The same for a node's object (0 once it is unlinked). Preconditions: the rename lock. */
int ovl_node_prot(struct ovl_fs *fs, struct ovl_node *node);
/* The same for what ovl_find found at parent/name. Preconditions: as ovl_find. */
int ovl_found_prot(struct ovl_fs *fs, struct ovl_node *parent, const char *name,
		   const struct ovl_found *f);
/* Copy-up: sync and noatime from sfd's object to dfd's, immutable/append-only into dfd's
 * protattr (both fds opened for reading or writing, not O_PATH). */
int ovl_copy_fileattr(struct ovl_fs *fs, int sfd, int dfd);

/* index.c: the kernel's inode index (index=on): lower hard links stay one file. */
#define OVL_INDEX_NAME_MAX (2 * OVL_ORIGIN_MAX + 1)
/* At mount, with <workdir> as wfd: the index directory and its records (mode: OVL_INDEX_*);
 * sets fs->index_layer (-1: no index). */
int ovl_index_init(struct ovl_fs *fs, int wfd, int mode);
void ovl_index_close(struct ovl_fs *fs);
void ovl_index_free(struct ovl_fs *fs);
/* A node's layer entry for the index entry hex: its path there (NULL without memory). */
struct ovl_dirlayer *ovl_index_dirlayer(struct ovl_fs *fs, const char *hex);
/* Whether a copy-up of an object of layer (as st) goes through the index. */
bool ovl_index_wanted(const struct ovl_fs *fs, int layer, const struct stat *st);
/* The index entry's name of the lower object dirfd/name of layer (-ENODATA: none). */
int ovl_index_name_at(struct ovl_fs *fs, int layer, int dirfd, const char *name,
		      char hex[OVL_INDEX_NAME_MAX]);
/* Whether the upper object dirfd/name is the object of its origin's index entry (hex). */
bool ovl_index_entry_of(struct ovl_fs *fs, int dirfd, const char *name,
			char hex[OVL_INDEX_NAME_MAX]);
/* The overlay's link count of an indexed object dirfd/name (st: its stat; name NULL: the
 * object dirfd). */
nlink_t ovl_index_nlink(struct ovl_fs *fs, int dirfd, const char *name, const struct stat *st);
/* Moves the copy work/tmp of a group of `names` lower names into the index as hex;
 * -EEXIST: it is indexed already. */
int ovl_index_store(struct ovl_fs *fs, const char *tmp, const char *hex, nlink_t names);
/* Links the index entry hex at dirfd/name (a lower name of it linked up).
 * Preconditions: the op lock of dirfd's node. */
int ovl_index_link(struct ovl_fs *fs, const char *hex, int dirfd, const char *name);
/* A find's lower non-directory (layer, dirfd/name) with several links: when the index holds
 * it, f becomes the index entry's object (top: the index layer). */
int ovl_index_find_lower(struct ovl_fs *fs, int layer, int dirfd, const char *name,
			 struct ovl_found *f);
/* After an upper name of the indexed object hex went: the entry goes with the last name. */
void ovl_index_name_removed(struct ovl_fs *fs, const char *hex);
/* Before parent/name is removed or renamed: a lower name of a hard-link group is copied up
 * through the index (linked up), as the kernel does, so that the group's count follows.
 * Preconditions: the rename lock; no op lock. */
int ovl_index_prepare_locked(struct ovl_fs *fs, struct ovl_node *parent, const char *name);
/* A node found in the index, whose name was just linked up: it lives in upper now. */
void ovl_node_linked_up(struct ovl_node *node);

/* alias.c: all names of an upper hard-linked file are one node; the names other than the
 * node's own are recorded there. */
/* Returned by ovl_alias_resolve_table_locked: the name belongs to a node whose own name is
 * gone; taking it needs the rename lock written. */
#define OVL_ALIAS_RETRY ((struct ovl_node *)-1)
/* The node that stands for the upper object (st, several links) found at parent/name, where
 * node is the table's node of that name (or NULL): node itself (now recorded as the object's
 * if none was), another node (parent/name becomes one of its names; if it is unlinked, it
 * is to be relinked there, which exclusive says the caller can), OVL_ALIAS_RETRY (only with
 * may_retry), or NULL: a new node for the name (record it with ovl_alias_record_new...).
 * Preconditions: fs->table_lock held; the rename lock (written if exclusive). */
struct ovl_node *ovl_alias_resolve_table_locked(struct ovl_fs *fs, struct ovl_node *parent,
						const char *name, struct ovl_node *node,
						const struct stat *st, bool exclusive,
						bool may_retry);
/* Preconditions: fs->table_lock held. */
void ovl_alias_record_new_table_locked(struct ovl_fs *fs, struct ovl_node *node,
				       const struct stat *st);
/* parent/name was just linked to node's upper object (st: its raw stat): one of node's names.
 * -EEXIST: another node stands for the object. Preconditions: fs->table_lock held. */
int ovl_alias_link_table_locked(struct ovl_fs *fs, struct ovl_node *node, struct ovl_node *parent,
				const char *name, const struct stat *st);
/* Forgets parent/name as a node's other name: whether it was one.
 * Preconditions: fs->table_lock held. */
bool ovl_alias_drop_name_table_locked(struct ovl_fs *fs, struct ovl_node *parent, const char *name);
/* A rename of one of a node's other names: 1 if parent/name was one, 0 if not, -ENOMEM.
 * Preconditions: fs->table_lock held; the rename lock written. */
int ovl_alias_move_name_table_locked(struct ovl_fs *fs, struct ovl_node *parent, const char *name,
				     struct ovl_node *newparent, const char *newname);
/* Whether the node of parent/name (its own name) has other names.
 * Preconditions: fs->table_lock held. */
bool ovl_alias_child_has_names_table_locked(struct ovl_fs *fs, struct ovl_node *parent,
					    const char *name);
/* node's own name is gone: it takes another of its names (checked on disk). False if it has
 * none left. Preconditions: the rename lock written; fs->table_lock not held. */
bool ovl_alias_promote(struct ovl_fs *fs, struct ovl_node *node);
/* Forgets the object of node and its other names.
 * Preconditions: fs->table_lock held (or the only thread left). */
void ovl_alias_del_table_locked(struct ovl_fs *fs, struct ovl_node *node);
void ovl_alias_free_all(struct ovl_fs *fs);
/* node's object is now the upper object st (a copy-up through the index): found by it.
 * Preconditions: fs->table_lock not held. */
void ovl_alias_rekey(struct ovl_fs *fs, struct ovl_node *node, const struct stat *st);
/* parent/name, one of node's names, was removed: forgotten if it was another name; node
 * takes another name if it was its own (exclusive: the rename lock is written), else it is
 * detached (ovl_node_detach, which takes orphan over).
 * Preconditions: the rename lock (written if exclusive) and parent's op lock, or the rename
 * lock written; fs->table_lock not held. */
void ovl_name_removed(struct ovl_fs *fs, struct ovl_node *node, struct ovl_node *parent,
		      const char *name, struct ovl_orphan *orphan, const struct stat *st,
		      bool exclusive);
/* parent/name, one of node's names, moved to newparent/newname.
 * Preconditions: the rename lock written; fs->table_lock not held. */
void ovl_name_moved(struct ovl_fs *fs, struct ovl_node *node, struct ovl_node *parent,
		    const char *name, struct ovl_node *newparent, const char *newname);
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
/* The same for an object held by fd (an O_TMPFILE has no name). */
int ovl_owner_init_new_fd(struct ovl_fs *fs, int fd, mode_t mode, dev_t rdev, uid_t uid, gid_t gid,
			  bool *done);
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

#endif
