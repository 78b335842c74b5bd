/*
 * The kernel's overlay.redirect record, read: a directory renamed by a kernel mounted with
 * redirect_dir=on keeps its lower directories where they were and names them in this
 * xattr of the moved directory; an absolute path from the layers' root ("/a/b"), or a
 * name in the same parent ("b") for a rename within a directory. Lookup then continues
 * in the layers below at that path (namei.c), and walks in those layers start from it
 * (layer.c). Every path is resolved beneath the layer root like any other walk.
 * Written by rename.c with redirect_dir=on, as the kernel writes it; on a metacopy file
 * moved or linked, by metacopy.c.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <string.h>
#include <sys/xattr.h>
#include <unistd.h>

const char *ovl_redirect_xattr(const struct ovl_fs *fs)
{
	return fs->userxattr ? OVL_UXATTR_PREFIX OVL_X_REDIRECT : OVL_XATTR_PREFIX OVL_X_REDIRECT;
}

/* The kernel's rules: -EINVAL for what it calls an invalid redirect (empty, a '/' in a
 * relative one, an empty component), -EACCES for "." and "..", which it cannot look up. */
static int check_component(const char *s, size_t len)
{
	if (len == 0 || len > NAME_MAX)
		return -EINVAL;
	if ((len == 1 && s[0] == '.') || (len == 2 && s[0] == '.' && s[1] == '.'))
		return -EACCES;
	return 0;
}

static int check_redirect(const char *v)
{
	int err = 0;

	if (v[0] != '/')
		return strchr(v, '/') ? -EINVAL : check_component(v, strlen(v));
	for (const char *s = v; *s == '/';) {
		const char *next = strchrnul(s + 1, '/');
		int r = check_component(s + 1, (size_t)(next - s - 1));
		if (r == -EINVAL)
			return r;
		if (r)
			err = r;
		s = next;
	}
	return err;
}

int ovl_read_redirect(struct ovl_fs *fs, int dirfd, const char *name, char *buf, size_t size)
{
	int n = ovl_getxattr_at(dirfd, name, ovl_redirect_xattr(fs), buf, size - 1);

	if (n == -ENODATA || n == -EOPNOTSUPP)
		return 0;
	if (n == -ERANGE) {
		ovl_warn(fs, "redirect of %s longer than %zu bytes: not followed", name, size - 1);
		return -EINVAL;
	}
	if (n < 0)
		return n;
	buf[n] = '\0';
	int err = n == 0 || strlen(buf) != (size_t)n ? -EINVAL : check_redirect(buf);
	if (err) {
		ovl_warn(fs, "invalid redirect of %s (\"%s\"): not followed", name, buf);
		return err;
	}
	if (fs->redirect_nofollow) {
		/* Following can expose what the lower layer's modes would not (the kernel's
		 * reason for the option): refused, as the kernel refuses it. */
		ovl_warn(fs, "refusing to follow the redirect of %s (redirect_dir=nofollow)", name);
		return -EPERM;
	}
	ovl_redirects_seen(fs);
	if (buf[0] != '/')
		return OVL_REDIRECT_RELATIVE;
	memmove(buf, buf + 1, (size_t)n); /* from the layer root, as every walk goes */
	return OVL_REDIRECT_ABSOLUTE;
}

int ovl_get_redirect_raw(struct ovl_fs *fs, int dirfd, const char *name, char *buf, size_t size)
{
	int n = ovl_getxattr_at(dirfd, name, ovl_redirect_xattr(fs), buf, size - 1);

	if (n == -ENODATA || n == -EOPNOTSUPP)
		return 0;
	if (n < 0)
		return n;
	buf[n] = '\0';
	return strlen(buf) == (size_t)n ? n : -EINVAL;
}

int ovl_write_redirect(struct ovl_fs *fs, int dirfd, const char *name, const char *value)
{
	int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	int err = 0;

	if (fd < 0)
		return -errno;
	if (fsetxattr(fd, ovl_redirect_xattr(fs), value, strlen(value), 0) < 0)
		err = -errno;
	close(fd);
	return err;
}

/* Whether the parent's lower layers hold the name itself, whiteouts aside: a redirected
 * directory has layers below (f->below) under another name. Preconditions: the rename
 * lock. */
static int name_in_lower_parent(struct ovl_fs *fs, struct ovl_node *parent, const char *name)
{
	struct ovl_dirlayer *dl;
	int n = ovl_node_dirlayers(parent, &dl), found = 0;

	if (n < 0)
		return n;
	for (int i = 0; i < n && !found; i++) {
		struct stat st;
		if (fs->layers[dl[i].layer].is_upper)
			continue;
		int pfd = ovl_open_in_layer(fs, parent, dl[i].layer, O_PATH | O_DIRECTORY);
		if (pfd == -ENOENT || pfd == -ENOTDIR)
			continue;
		if (pfd < 0) {
			found = pfd;
		} else if (fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
			/* an xattr whiteout (opaque="x" directory) hides the name as well */
			int xwh = dl[i].xwhiteouts ? ovl_is_xwhiteout(fs, pfd, name, &st) : 0;
			found = xwh < 0 ? xwh : ovl_is_whiteout_stat(&st) || xwh ? -ENOENT : 1;
		} else if (errno != ENOENT) {
			found = -errno;
		} else if (fs->oci_whiteouts) {
			found = ovl_has_wh_file(pfd, name) > 0 ? -ENOENT : 0;
		}
		if (pfd >= 0)
			close(pfd);
	}
	free(dl);
	return found == -ENOENT ? 0 : found;
}

int ovl_name_below(struct ovl_fs *fs, struct ovl_node *parent, const char *name,
		   const struct ovl_found *f, bool *below)
{
	/* Only what a redirect names has layers below under another name: a directory, or a
	 * metacopy file's data, whose search may have skipped the name (the kernel's
	 * ovl_lower_positive looks for the name itself). */
	bool stub = S_ISREG(f->st.st_mode) && f->data_path;
	if ((!*below && !stub) || !(S_ISDIR(f->st.st_mode) || stub) ||
	    !fs->layers[f->top].is_upper || !atomic_load(&fs->redirects_seen))
		return 0;
	int r = name_in_lower_parent(fs, parent, name);
	if (r < 0)
		return r;
	*below = r > 0;
	return 0;
}

int ovl_redirect_parents(struct ovl_fs *fs, int layer, const char *abs)
{
	char path[PATH_MAX];
	int walk = OVL_WALK_ON;

	if (strlen(abs) >= sizeof(path))
		return -ENAMETOOLONG;
	strcpy(path, abs);
	for (char *slash = strchr(path, '/'); slash; slash = strchr(slash + 1, '/')) {
		struct stat st;
		int err = 0;

		*slash = '\0';
		int fd = ovl_layer_open(fs, layer, path, O_PATH);
		*slash = '/';
		if (fd == -ENOENT)
			return walk; /* nothing in this layer; the next one is searched */
		if (fd < 0)
			return fd;
		if (fstat(fd, &st) < 0)
			err = -errno;
		else if (!S_ISDIR(st.st_mode))
			err = OVL_WALK_STOP; /* a whiteout or another non-directory */
		else if (ovl_dir_opaque(fs, fd, ".", layer < fs->nlayers - 1) == OVL_OPAQUE_YES)
			walk = OVL_WALK_LAST;
		close(fd);
		if (err)
			return err;
	}
	return walk;
}
