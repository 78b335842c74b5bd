/*
 * The mode of a new object and the umask (POSIX.1e): where the parent directory has a
 * default ACL, the umask is ignored and the ACL shapes the mode; elsewhere the umask
 * applies. The kernel sends the caller's umask unapplied (FUSE_DONT_MASK), so this is
 * decided here, on the upper parent (after its copy-up, which copies its ACLs). Objects
 * made in the parent itself get the default ACL from the upper filesystem (the daemon runs
 * with umask 0); those built in the work directory get it from acl_inherit.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>
#include <unistd.h>

#define ACL_ACCESS "system.posix_acl_access"
#define ACL_DEFAULT "system.posix_acl_default"

/* The xattr form (linux/posix_acl_xattr.h): a little-endian u32 version 2, then entries
 * of u16 tag, u16 permissions, u32 id. */
#define ACL_HEADER 4
#define ACL_ENTRY 8
enum {
	TAG_USER_OBJ = 0x01,
	TAG_USER = 0x02,
	TAG_GROUP_OBJ = 0x04,
	TAG_GROUP = 0x08,
	TAG_MASK = 0x10,
	TAG_OTHER = 0x20,
};

static uint16_t get16(const unsigned char *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static void put16(unsigned char *p, uint16_t v)
{
	p[0] = (unsigned char)v;
	p[1] = (unsigned char)(v >> 8);
}

bool ovl_has_default_acl(int dirfd)
{
	return ovl_dir_getxattr(dirfd, ACL_DEFAULT, NULL, 0) > 0;
}

/*
 * Fits an ACL taken from a parent's default to the mode asked for (POSIX.1e's rule for
 * new objects): the owner, other and group-class entries keep only the permissions the
 * mode grants, and the mode keeps only what they grant. The group class is the mask entry
 * when there is one, else the owning group's. Returns whether the ACL says more than the
 * mode can (named entries or a mask), i.e. whether it must be stored.
 */
static bool fit_acl(unsigned char *acl, size_t n, mode_t *mode)
{
	unsigned char *group_class = NULL;
	bool extended = false;

	for (size_t i = 0; i < n; i++) {
		unsigned char *e = acl + ACL_HEADER + i * ACL_ENTRY;
		uint16_t perm = get16(e + 2) & 7;
		int shift = -1;

		switch (get16(e)) {
		case TAG_USER_OBJ:
			shift = 6;
			break;
		case TAG_OTHER:
			shift = 0;
			break;
		case TAG_MASK:
			group_class = e;
			extended = true;
			break;
		case TAG_GROUP_OBJ:
			if (!group_class || get16(group_class) != TAG_MASK)
				group_class = e;
			break;
		default: /* named users and groups */
			extended = true;
			break;
		}
		if (shift < 0)
			continue;
		perm &= (*mode >> shift) & 7;
		put16(e + 2, perm);
		*mode = (*mode & ~(mode_t)(7 << shift)) | (mode_t)perm << shift;
	}
	if (group_class) {
		uint16_t perm = get16(group_class + 2) & 7 & ((*mode >> 3) & 7);
		put16(group_class + 2, perm);
		*mode = (*mode & ~(mode_t)070) | (mode_t)perm << 3;
	}
	return extended;
}

static int set_acl(const char *path, const char *name, const void *v, size_t len)
{
	return setxattr(path, name, v, len, 0) < 0 ? -errno : 0;
}

int ovl_acl_inherit(int pdfd, int dirfd, const char *name, mode_t *mode)
{
	unsigned char *acl = NULL, *fitted = NULL;
	char proc[64];
	int n, fd = -1, err;

	if (S_ISLNK(*mode))
		return 0;
	n = ovl_dir_getxattr(pdfd, ACL_DEFAULT, NULL, 0);
	if (n <= 0)
		return n == -ENODATA || n == -ENOTSUP || n == 0 ? 0 : n;
	acl = malloc((size_t)n);
	fitted = malloc((size_t)n);
	err = acl && fitted ? 0 : -ENOMEM;
	if (!err && (n = ovl_dir_getxattr(pdfd, ACL_DEFAULT, acl, (size_t)n)) < 0)
		err = n; /* ERANGE: it changed meanwhile; the caller's create fails */
	if (!err && (n < ACL_HEADER || (n - ACL_HEADER) % ACL_ENTRY))
		err = -EIO;
	if (!err) {
		fd = openat(dirfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			err = -errno;
	}
	if (!err)
		err = ovl_proc_path(fd, proc, sizeof(proc));
	if (!err) {
		mode_t perms = *mode & 0777;
		memcpy(fitted, acl, (size_t)n);
		bool extended = fit_acl(fitted, (size_t)(n - ACL_HEADER) / ACL_ENTRY, &perms);
		*mode = (*mode & ~(mode_t)0777) | perms;
		/* The mode first: storing an access ACL sets the group class from its mask. */
		if (chmod(proc, *mode & 07777) < 0)
			err = -errno;
		if (!err && extended)
			err = set_acl(proc, ACL_ACCESS, fitted, (size_t)n);
		if (!err && S_ISDIR(*mode))
			err = set_acl(proc, ACL_DEFAULT, acl, (size_t)n);
	}
	if (fd >= 0)
		close(fd);
	free(acl);
	free(fitted);
	return err;
}
