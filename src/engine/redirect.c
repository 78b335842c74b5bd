/*
 * The kernel's overlay.redirect record, read: a directory renamed by a kernel mounted with
 * redirect_dir=on keeps its lower directories where they were and names them in this
 * xattr of the moved directory; an absolute path from the layers' root ("/a/b"), or a
 * name in the same parent ("b") for a rename within a directory. Lookup then continues
 * in the layers below at that path (namei.c), and walks in those layers start from it
 * (layer.c). Every path is resolved beneath the layer root like any other walk.
 */
#include "internal.h"

#include <errno.h>
#include <string.h>

static const char *redirect_xattr(const struct ovl_fs *fs)
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
	int n = ovl_getxattr_at(dirfd, name, redirect_xattr(fs), buf, size - 1);

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
	atomic_store(&fs->redirects_seen, true);
	if (buf[0] != '/')
		return OVL_REDIRECT_RELATIVE;
	memmove(buf, buf + 1, (size_t)n); /* from the layer root, as every walk goes */
	return OVL_REDIRECT_ABSOLUTE;
}
