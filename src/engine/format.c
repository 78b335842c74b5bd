/* The on-disk overlay format's names and pure checks (format.h); no I/O here. */
#include "format.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

static bool has_prefix(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

bool ovl_is_whiteout_stat(const struct stat *st)
{
	return S_ISCHR(st->st_mode) && st->st_rdev == OVL_WHITEOUT_DEV;
}

bool ovl_may_be_xwhiteout(const struct stat *st)
{
	return S_ISREG(st->st_mode) && st->st_size == 0;
}

bool ovl_is_wh_name(const char *name)
{
	return has_prefix(name, OVL_WH_PREFIX);
}

bool ovl_is_wh_meta_name(const char *name)
{
	return has_prefix(name, OVL_WH_META_PREFIX);
}

enum ovl_wh_kind ovl_wh_kind(const char *name, const char **hidden)
{
	const char *rest = name + strlen(OVL_WH_PREFIX);

	if (!ovl_is_wh_name(name) || !*rest)
		return OVL_WH_NONE;
	if (strcmp(name, OVL_WH_OPAQUE) == 0)
		return OVL_WH_OPAQUE_DIR;
	if (ovl_is_wh_meta_name(name))
		return OVL_WH_META;
	if (hidden)
		*hidden = rest;
	return OVL_WH_HIDES;
}

int ovl_wh_name(const char *name, char *buf, size_t size)
{
	int n = snprintf(buf, size, OVL_WH_PREFIX "%s", name);
	return n < 0 || (size_t)n >= size || (size_t)n > NAME_MAX ? -ENAMETOOLONG : 0;
}

int ovl_opaque_value(const char *value, long size)
{
	if (size == 1 && (value[0] == OVL_OPAQUE_YES || value[0] == OVL_OPAQUE_XWHITEOUTS))
		return value[0];
	return 0;
}

const char *ovl_xattr_own_prefix(const char *name, bool userxattr)
{
	if (has_prefix(name, OVL_XATTR_PREFIX))
		return OVL_XATTR_PREFIX;
	if (userxattr && has_prefix(name, OVL_UXATTR_PREFIX))
		return OVL_UXATTR_PREFIX;
	return NULL;
}

bool ovl_xattr_is_escaped(const char *name, bool userxattr)
{
	const char *prefix = ovl_xattr_own_prefix(name, userxattr);

	return prefix && has_prefix(name + strlen(prefix), OVL_X_ESCAPE);
}

bool ovl_is_private_xattr(const char *name, bool userxattr)
{
	if (has_prefix(name, OVL_FXATTR_PREFIX))
		return true;
	return ovl_xattr_own_prefix(name, userxattr) && !ovl_xattr_is_escaped(name, userxattr);
}

bool ovl_xattr_in_overlay_ns(const char *name)
{
	return has_prefix(name, OVL_XATTR_PREFIX) || has_prefix(name, OVL_UXATTR_PREFIX) ||
	       has_prefix(name, OVL_FXATTR_PREFIX);
}

int ovl_xattr_escape(const char *name, bool userxattr, char *buf, size_t size)
{
	const char *prefix = ovl_xattr_own_prefix(name, userxattr);
	int n;

	if (has_prefix(name, OVL_FXATTR_PREFIX))
		return -EOPNOTSUPP;
	if (!prefix)
		n = snprintf(buf, size, "%s", name);
	else
		n = snprintf(buf, size, "%s" OVL_X_ESCAPE "%s", prefix, name + strlen(prefix));
	return n < 0 || (size_t)n >= size ? -ERANGE : 0;
}

size_t ovl_xattr_unescape(const char *name, bool userxattr, char *out)
{
	size_t len = strlen(name) + 1;

	if (!ovl_xattr_is_escaped(name, userxattr)) {
		memmove(out, name, len);
		return len;
	}
	/* The prefix goes over bytes of name's own prefix and escape at most (out <= name),
	 * which are not read again. */
	const char *prefix = ovl_xattr_own_prefix(name, userxattr);
	size_t plen = strlen(prefix), skip = plen + strlen(OVL_X_ESCAPE);
	memmove(out, prefix, plen);
	memmove(out + plen, name + skip, len - skip);
	return len - (skip - plen);
}

int ovl_origin_check(const unsigned char *buf, size_t len)
{
	if (len == 0)
		return -ENODATA; /* copied up, origin unknown */
	if (len < OVL_FH_HEADER || buf[1] != OVL_FH_MAGIC || buf[2] > len || buf[2] < OVL_FH_HEADER)
		return -EINVAL;
	/* A newer version, unknown flags or the other byte order: origin unknown. */
	if (buf[0] > OVL_FH_VERSION || (buf[3] & ~OVL_FH_FLAGS_KNOWN))
		return -ENODATA;
	if (!(buf[3] & OVL_FH_FLAG_ANY_ENDIAN) &&
	    (buf[3] & OVL_FH_FLAG_BIG_ENDIAN) != OVL_FH_FLAG_CPU_ENDIAN)
		return -ENODATA;
	return 0;
}
