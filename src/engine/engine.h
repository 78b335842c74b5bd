/*
 * The overlay engine: layer stack, node table, lookup, copy-up, merged readdir and the
 * namespace operations. No FUSE header here: every operation returns 0 (or a count) or
 * -errno, so unit tests drive the engine without a mount.
 */
#ifndef OVLFS_ENGINE_H
#define OVLFS_ENGINE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>

struct ovl_fs;
struct ovl_node;
struct ovl_file;
struct ovl_dir;

/*
 * Ownership as the mount shows it (fuse-overlayfs's uidmapping=, gidmapping=, squash_to_*,
 * xattr_permissions=; src/idmap.c parses and maps, src/owner.c applies). A range maps the
 * on-disk IDs [disk, disk+len) to the IDs [shown, shown+len) seen through the mount.
 */
#define OVL_IDMAP_MAX 340      /* as many ranges as the kernel's uid_map takes */
#define OVL_OVERFLOW_ID 65534u /* what an unmapped ID shows as (the kernel's overflowuid) */
struct ovl_idrange {
	uint32_t disk, shown, len;
};
struct ovl_idmap {
	int n; /* 0: every ID as on disk */
	struct ovl_idrange r[OVL_IDMAP_MAX];
};
struct ovl_owner_opts {
	struct ovl_idmap uids, gids;
	bool squash_root, has_squash_uid, has_squash_gid;
	uint32_t squash_uid, squash_gid;
	int xattr_permissions; /* 0, 1 (security.*) or 2 (user.*) */
};
/* Applies one ownership option (name=val); -1 with one line in err when val is bad. */
int ovl_owner_opt(struct ovl_owner_opts *o, const char *name, const char *val, char *err,
		  size_t errlen);
/* On-disk ID -> shown ID (OVL_OVERFLOW_ID when unmapped), and back (false when unmapped). */
uint32_t ovl_id_shown(const struct ovl_idmap *m, uint32_t disk);
bool ovl_id_disk(const struct ovl_idmap *m, uint32_t shown, uint32_t *disk);

struct ovl_fs_params {
	const char *const *lowerdirs; /* top layer first */
	int nlower;
	const char *upperdir; /* NULL: read-only overlay */
	const char *workdir;
	bool readonly;
	bool no_fsync;
	const struct ovl_owner_opts *owner; /* NULL: owners as on disk */
	/* On-disk format: userxattr forces user.overlay.* markers (else chosen when trusted.*
	 * cannot be set); whiteout is one of OVL_WHITEOUT_*. See formats.c. */
	bool userxattr;
	int whiteout;
	/* The mount's atime mode (-o noatime, nodiratime): reads of upper files and listings of
	 * upper directories then leave their atime alone. Lower objects' never change. */
	bool noatime;
	bool nodiratime;
	/* -o oci_whiteouts=0: `.wh.*` names are plain names, as on the kernel overlayfs (no
	 * OCI whiteouts read, none written; whiteout=file is then refused). */
	bool no_oci_whiteouts;
	/* -o uuid=off, as the kernel's: new origin records (origin.c) carry a null UUID, and
	 * only records with a null UUID are decoded. */
	bool origin_uuid_off;
	/* -o redirect_dir=nofollow: a directory carrying overlay.redirect is refused (EPERM). */
	bool redirect_nofollow;
	/* -o redirect_dir=on (the front end's default), as the kernel's: a merged or lower
	 * directory renames in O(1), copied up alone and given an overlay.redirect to where its
	 * lower layers hold it. Off: it is copied up whole and made opaque. */
	bool redirect_write;
	/* -o index=: OVL_INDEX_OFF, ON (as the kernel: refused when the layers
	 * do not match the index), AUTO (the front end's default: on where possible; layers
	 * that do not match the index: off, with a warning). */
	int index;
	/* -o metacopy=on: a file carrying overlay.metacopy is served with the data of the file
	 * below it (else refused, EPERM, as the kernel). */
	bool metacopy;
	/* -o verity=, the kernel's: OVL_VERITY_OFF ignores the fs-verity digest a metacopy
	 * record may carry; ON opens such a file only over a data file of that digest, and
	 * records the digest in the stubs it makes; REQUIRE refuses records without one too. */
	int verity;
	/* The last ndata of lowerdirs are data-only layers (lowerdir=a::d): only the data of
	 * metacopy files redirected into them is read there. */
	int ndata;
	/* Called when a node's attributes change as a side effect of another operation (a
	 * directory copied up becomes merged: its link count changes). May be NULL. */
	void (*attr_changed)(void *ctx, struct ovl_node *node);
	void *ctx;
	/* A layer record ovlfs cannot serve (an invalid redirect, say): one line naming it. May
	 * be NULL. */
	void (*warn)(const char *msg);
};

enum { OVL_VERITY_OFF, OVL_VERITY_ON, OVL_VERITY_REQUIRE };

/* The caller of a request: new objects belong to it. */
struct ovl_cred {
	uid_t uid;
	gid_t gid;
	/* Whether the caller is in group gid through a supplementary group; asked only when a
	 * rule needs it (reading them costs the front end a /proc read). NULL: none. */
	bool (*in_group)(void *ctx, gid_t gid);
	void *ctx;
	/* The caller's umask for a new object, left for us to apply (acl.c): 0 when the
	 * kernel applied it already. */
	mode_t umask;
};

enum { OVL_WHITEOUT_AUTO, OVL_WHITEOUT_CHARDEV, OVL_WHITEOUT_FILE };
enum { OVL_INDEX_OFF, OVL_INDEX_ON, OVL_INDEX_AUTO };

int ovl_fs_new(const struct ovl_fs_params *params, struct ovl_fs **out);
/* The on-disk format in use: user.overlay.* markers; .wh. file whiteouts. */
void ovl_fs_format(const struct ovl_fs *fs, bool *userxattr, bool *file_whiteouts);
/* Once no request runs any more: closes every fd the engine holds in the layers (open
 * files', unlinked objects', the layer roots), since while one is open their filesystems
 * cannot be unmounted, and container runtimes unmount them right after the overlay. Only
 * ovl_fs_destroy may follow. */
void ovl_fs_close_layers(struct ovl_fs *fs);
void ovl_fs_destroy(struct ovl_fs *fs);
/* syncfs(2) of the upper layer's filesystem (0 without one). */
int ovl_syncfs(struct ovl_fs *fs);
/* Nodes in the node table: names the kernel holds, and their ancestors. */
size_t ovl_node_count(struct ovl_fs *fs);
struct ovl_node *ovl_root(struct ovl_fs *fs);
bool ovl_is_readonly(const struct ovl_fs *fs);

/* Lookup: on success the node's lookup count is raised by one (drop with ovl_forget). */
int ovl_lookup(struct ovl_fs *fs, struct ovl_node *parent, const char *name, struct ovl_node **out,
	       struct stat *st);
/* Directory fds of each layer of a directory, lent to many lookups in it (readdirplus): one
 * path walk per layer instead of one per entry and layer. NULL if they cannot be had (the
 * lookups then walk as usual). */
struct ovl_dirfds;
struct ovl_dirfds *ovl_dirfds_open(struct ovl_fs *fs, struct ovl_node *dir);
void ovl_dirfds_close(struct ovl_dirfds *d);
int ovl_lookup_in(struct ovl_fs *fs, struct ovl_node *parent, const char *name,
		  struct ovl_dirfds *d, struct ovl_node **out, struct stat *st);
void ovl_forget(struct ovl_fs *fs, struct ovl_node *node, uint64_t nlookup);

int ovl_getattr(struct ovl_fs *fs, struct ovl_node *node, struct stat *st);
/* The same, through an open file of the node when it has one on the upper object (fstat
 * instead of a path walk); file may be NULL. */
int ovl_getattr_file(struct ovl_fs *fs, struct ovl_node *node, struct ovl_file *file,
		     struct stat *st);
/* The creation time of the layer object node shows (as the kernel overlayfs reports the
 * real file's): -ENODATA where the layer's filesystem keeps none. */
int ovl_btime(struct ovl_fs *fs, struct ovl_node *node, struct timespec *btime);
/* A btime went out (ovl_btime) and the node was copied up since: what the kernel caches of
 * it is the old object's, so its attributes must not be cached until it asks again. */
bool ovl_node_btime_stale(struct ovl_node *node);
int ovl_readlink(struct ovl_fs *fs, struct ovl_node *node, char *buf, size_t size);
int ovl_statfs(struct ovl_fs *fs, struct statvfs *st);
int ovl_access(struct ovl_fs *fs, struct ovl_node *node, int mask);

/* setattr: which fields to change. */
enum {
	OVL_SET_MODE = 1 << 0,
	OVL_SET_UID = 1 << 1,
	OVL_SET_GID = 1 << 2,
	OVL_SET_SIZE = 1 << 3,
	OVL_SET_ATIME = 1 << 4,
	OVL_SET_MTIME = 1 << 5,
	OVL_SET_ATIME_NOW = 1 << 6,
	OVL_SET_MTIME_NOW = 1 << 7,
	/* A ctime came with it: the kernel writing back the times it keeps (writeback
	 * cache), after any change of its own, a ctime-only one (link, unlink, rename) too. */
	OVL_SET_CTIME = 1 << 8,
};
int ovl_setattr(struct ovl_fs *fs, struct ovl_node *node, struct ovl_file *file, int to_set,
		const struct stat *attr, struct stat *out);
/*
 * The kernel's rule against writable setuid programs, for the changes it leaves to the
 * filesystem (O_DIRECT writes, open with O_TRUNC, ACLs): the layer I/O runs as the daemon,
 * who has CAP_FSETID and would keep the bits. After cred changed a regular file's data,
 * ovl_drop_setid_on_write clears setuid, and setgid where the group may run the file or
 * cred is outside the file's group; after cred set an access ACL, ovl_drop_setgid_on_acl
 * clears setgid when cred is outside the file's group. A caller with uid 0 keeps them
 * (CAP_FSETID). file may be NULL. Returns 1 when the mode changed, 0 when it did not.
 */
int ovl_drop_setid_on_write(struct ovl_fs *fs, struct ovl_node *node, struct ovl_file *file,
			    const struct ovl_cred *cred);
int ovl_drop_setgid_on_acl(struct ovl_fs *fs, struct ovl_node *node, const struct ovl_cred *cred);
/* For a setattr the kernel asks to clear the set-id bits with (a chown, a truncate by a
 * caller without CAP_FSETID, when the filesystem handles it: FUSE_HANDLE_KILLPRIV_V2) and
 * that sets no mode: the mode the kernel used to send along (fs/fuse/dir.c fuse_setattr):
 * setuid off, setgid off where the group may run the file. Adds OVL_SET_MODE to *to_set
 * and the mode to attr when a bit goes. 0 or -errno. */
int ovl_setattr_kill_suidgid(struct ovl_fs *fs, struct ovl_node *node, struct ovl_file *file,
			     int *to_set, struct stat *attr);

/* Regular files. */
int ovl_open(struct ovl_fs *fs, struct ovl_node *node, int flags, struct ovl_file **out);
int ovl_create(struct ovl_fs *fs, struct ovl_node *parent, const char *name, mode_t mode, int flags,
	       const struct ovl_cred *cred, struct ovl_node **node, struct stat *st,
	       struct ovl_file **out);
/* O_TMPFILE: an unnamed regular file in parent's upper directory (copied up first), open
 * with flags, on a node born unlinked (*node has one lookup); ovl_link of the node gives it
 * a name, and the node becomes that name's. Closed and forgotten unnamed, nothing is left. */
int ovl_tmpfile(struct ovl_fs *fs, struct ovl_node *parent, mode_t mode, int flags,
		const struct ovl_cred *cred, struct ovl_node **node, struct stat *st,
		struct ovl_file **out);
/* The fd to read from (switches to the upper copy if the file was copied up since open).
 * The fd stays valid until ovl_file_put_fd. */
int ovl_file_get_fd(struct ovl_fs *fs, struct ovl_file *file);
void ovl_file_put_fd(struct ovl_file *file);
ssize_t ovl_read(struct ovl_fs *fs, struct ovl_file *file, void *buf, size_t size, off_t off);
ssize_t ovl_write(struct ovl_fs *fs, struct ovl_file *file, const void *buf, size_t size,
		  off_t off);
bool ovl_file_is_direct(const struct ovl_file *file);
/* The file is open on its upper object (stays so: copy-up only moves files to upper). */
bool ovl_file_on_upper(struct ovl_file *file);
/* The node's file type (S_IFMT bits). */
mode_t ovl_node_type(struct ovl_node *node);
/* The node's name was removed (it lives on while open or known to the kernel). */
bool ovl_node_is_unlinked(struct ovl_node *node);
/* ovl_write without O_DIRECT: the kernel's writeback cache writes its pages back through
 * any writable handle of the file, an O_DIRECT one too, in lengths O_DIRECT refuses. */
ssize_t ovl_write_buffered(struct ovl_fs *fs, struct ovl_file *file, const void *buf, size_t size,
			   off_t off);
/* With the kernel's writeback cache the kernel owns a file's mtime and sends each value it
 * gives it (setattr); a write of cached pages may reach us after that setattr. This puts
 * the last such mtime back after the write. */
int ovl_file_keep_kernel_mtime(struct ovl_fs *fs, struct ovl_file *file);
int ovl_fsync(struct ovl_fs *fs, struct ovl_file *file, bool datasync);
/* Syncs the directory on upper (its entries: creates, renames, removals). */
int ovl_fsyncdir(struct ovl_fs *fs, struct ovl_node *node, bool datasync);
int ovl_fallocate(struct ovl_fs *fs, struct ovl_file *file, int mode, off_t off, off_t len);
off_t ovl_lseek(struct ovl_fs *fs, struct ovl_file *file, off_t off, int whence);
ssize_t ovl_copy_file_range(struct ovl_fs *fs, struct ovl_file *in, off_t off_in,
			    struct ovl_file *out, off_t off_out, size_t len, unsigned flags);
void ovl_release(struct ovl_fs *fs, struct ovl_file *file);

/* Directories: a merged, per-handle snapshot. Offsets are positions in it. */
typedef int (*ovl_dirent_fn)(void *ctx, const char *name, uint64_t ino, unsigned dtype,
			     off_t next_off);
int ovl_opendir(struct ovl_fs *fs, struct ovl_node *node, struct ovl_dir **out);
/* Calls fn for each entry from off on until fn returns non-zero or the end. */
int ovl_readdir(struct ovl_fs *fs, struct ovl_dir *dir, off_t off, ovl_dirent_fn fn, void *ctx);
void ovl_releasedir(struct ovl_fs *fs, struct ovl_dir *dir);
/* The same without a handle (the kernel's zero-message opendir): the node keeps the
 * listing between requests, and the offsets name it (listing.c). */
int ovl_readdir_node(struct ovl_fs *fs, struct ovl_node *node, off_t off, ovl_dirent_fn fn,
		     void *ctx);

/* xattrs: the returned value is the size, as getxattr(2) returns it. */
ssize_t ovl_getxattr(struct ovl_fs *fs, struct ovl_node *node, const char *name, void *buf,
		     size_t size);
/* privileged: the caller may see trusted.* names (CAP_SYS_ADMIN); others never do. */
ssize_t ovl_listxattr(struct ovl_fs *fs, struct ovl_node *node, char *buf, size_t size,
		      bool privileged);
int ovl_setxattr(struct ovl_fs *fs, struct ovl_node *node, const char *name, const void *value,
		 size_t size, int flags);
int ovl_removexattr(struct ovl_fs *fs, struct ovl_node *node, const char *name);

/* File attributes (chattr): FS_IOC_GETFLAGS/SETFLAGS flags and the FS_IOC_FSGETXATTR/
 * FSSETXATTR form, of a regular file or directory (-ENOTTY for others). A change copies up
 * first; immutable and append-only are kept in overlay.protattr and enforced by the
 * engine, as the kernel overlayfs does (fileattr.c). */
struct fsxattr;
int ovl_get_flags(struct ovl_fs *fs, struct ovl_node *node, unsigned *flags);
int ovl_set_flags(struct ovl_fs *fs, struct ovl_node *node, unsigned flags);
int ovl_get_fsxattr(struct ovl_fs *fs, struct ovl_node *node, struct fsxattr *fa);
int ovl_set_fsxattr(struct ovl_fs *fs, struct ovl_node *node, const struct fsxattr *fa);

/* Namespace operations. On success *node has one more lookup. */
int ovl_mkdir(struct ovl_fs *fs, struct ovl_node *parent, const char *name, mode_t mode,
	      const struct ovl_cred *cred, struct ovl_node **node, struct stat *st);
int ovl_mknod(struct ovl_fs *fs, struct ovl_node *parent, const char *name, mode_t mode, dev_t rdev,
	      const struct ovl_cred *cred, struct ovl_node **node, struct stat *st);
int ovl_symlink(struct ovl_fs *fs, struct ovl_node *parent, const char *name, const char *target,
		const struct ovl_cred *cred, struct ovl_node **node, struct stat *st);
int ovl_link(struct ovl_fs *fs, struct ovl_node *src, struct ovl_node *parent, const char *name,
	     struct ovl_node **node, struct stat *st);
int ovl_unlink(struct ovl_fs *fs, struct ovl_node *parent, const char *name);
int ovl_rmdir(struct ovl_fs *fs, struct ovl_node *parent, const char *name);
int ovl_rename(struct ovl_fs *fs, struct ovl_node *parent, const char *name,
	       struct ovl_node *newparent, const char *newname, unsigned flags);
/* The same; *both_names_kept (if given) is set when the two names were links of one file,
 * which POSIX leaves both in place (a caller that told others about a move must undo it). */
int ovl_rename2(struct ovl_fs *fs, struct ovl_node *parent, const char *name,
		struct ovl_node *newparent, const char *newname, unsigned flags,
		bool *both_names_kept);

/* Whether the node's object lives in the upper layer (changing it needs no copy-up). */
bool ovl_node_is_upper(struct ovl_fs *fs, struct ovl_node *node);

/* Whether changing the node would copy up a regular file larger than `big` bytes (worth
 * doing away from a request loop). */
bool ovl_copy_up_is_long(struct ovl_fs *fs, struct ovl_node *node, off_t big);

/* Copies a node up to the upper layer (parents first). Exposed for tests. */
int ovl_copy_up(struct ovl_fs *fs, struct ovl_node *node);

#endif
