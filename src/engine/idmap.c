/*
 * ID mapping: the ownership options as fuse-overlayfs spells them, and the two directions of
 * a mapping. No engine state here, so that the command line's parser uses it too.
 *
 * uidmapping=DISK:SHOWN:LEN[:DISK:SHOWN:LEN...] (fuse-overlayfs's "host:to:len"; in
 * uid_map(5) terms, a layer stored with the container's IDs is shown with the host's): an
 * on-disk ID in [DISK, DISK+LEN) shows as SHOWN + (ID - DISK), and an ID given through the
 * mount (a caller, a chown) in [SHOWN, SHOWN+LEN) is stored as DISK + (ID - SHOWN).
 */
#include "engine.h"
#include "errmsg.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ID_MAX 4294967294u /* (uid_t)-1 means "no change" to chown: never an ID */

/* A decimal ID (or length) up to max: digits only, no sign, no spaces. */
static bool parse_u32(const char *s, size_t n, uint32_t max, uint32_t *out)
{
	uint64_t v = 0;

	if (n == 0 || n > 10)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	if (v > max)
		return false;
	*out = (uint32_t)v;
	return true;
}

static bool overlaps(uint32_t a, uint32_t alen, uint32_t b, uint32_t blen)
{
	return (uint64_t)a < (uint64_t)b + blen && (uint64_t)b < (uint64_t)a + alen;
}

/* Triples separated by ':' (fuse-overlayfs's form) or ','; each range must fit below
 * 2^32-1 and overlap no other range on either side, so that the mapping is one-to-one. */
static int parse_map(const char *name, const char *s, struct ovl_idmap *m, char *err, size_t errlen)
{
	uint32_t f[3];
	int nf = 0;

	memset(m, 0, sizeof(*m));
	for (const char *p = s;; p++) {
		size_t n = strcspn(p, ":,");
		if (!parse_u32(p, n, UINT32_MAX, &f[nf]))
			return ovl_errmsg(err, errlen,
					  "invalid value '%s' for option '%s' (expected "
					  "DISK:SHOWN:LEN[:DISK:SHOWN:LEN...] with decimal IDs)",
					  s, name);
		if (++nf == 3) {
			struct ovl_idrange r = {.disk = f[0], .shown = f[1], .len = f[2]};
			if (r.len == 0)
				return ovl_errmsg(err, errlen,
						  "option '%s': range %u:%u:0 is empty", name,
						  r.disk, r.shown);
			if ((uint64_t)r.disk + r.len - 1 > ID_MAX ||
			    (uint64_t)r.shown + r.len - 1 > ID_MAX)
				return ovl_errmsg(
				    err, errlen,
				    "option '%s': range %u:%u:%u goes past the largest ID %u", name,
				    r.disk, r.shown, r.len, ID_MAX);
			if (m->n == OVL_IDMAP_MAX)
				return ovl_errmsg(err, errlen,
						  "option '%s' has more than %d ranges", name,
						  OVL_IDMAP_MAX);
			for (int i = 0; i < m->n; i++)
				if (overlaps(m->r[i].disk, m->r[i].len, r.disk, r.len) ||
				    overlaps(m->r[i].shown, m->r[i].len, r.shown, r.len))
					return ovl_errmsg(
					    err, errlen,
					    "option '%s': range %u:%u:%u overlaps %u:%u:%u", name,
					    r.disk, r.shown, r.len, m->r[i].disk, m->r[i].shown,
					    m->r[i].len);
			m->r[m->n++] = r;
			nf = 0;
		}
		p += n;
		if (!*p)
			break;
	}
	if (nf != 0)
		return ovl_errmsg(err, errlen,
				  "invalid value '%s' for option '%s' (expected "
				  "DISK:SHOWN:LEN[:DISK:SHOWN:LEN...] with decimal IDs)",
				  s, name);
	return 0;
}

int ovl_owner_opt(struct ovl_owner_opts *o, const char *name, const char *val, char *err,
		  size_t errlen)
{
	struct ovl_idmap *m;
	uint32_t v;
	int r;

	if (!strcmp(name, "uidmapping") || !strcmp(name, "gidmapping")) {
		/* Parsed aside: a bad value leaves an earlier one as it was. */
		m = malloc(sizeof(*m));
		if (!m)
			return ovl_errmsg(err, errlen, "out of memory");
		r = parse_map(name, val, m, err, errlen);
		if (r == 0)
			*(name[0] == 'u' ? &o->uids : &o->gids) = *m;
		free(m);
		return r;
	}
	if (!strcmp(name, "squash_to_root")) {
		o->squash_root = true;
		return 0;
	}
	if (!strcmp(name, "squash_to_uid") || !strcmp(name, "squash_to_gid")) {
		if (!parse_u32(val, strlen(val), ID_MAX, &v))
			return ovl_errmsg(
			    err, errlen,
			    "invalid value '%s' for option '%s' (expected a decimal ID)", val,
			    name);
		if (!strcmp(name, "squash_to_uid")) {
			o->has_squash_uid = true;
			o->squash_uid = v;
		} else {
			o->has_squash_gid = true;
			o->squash_gid = v;
		}
		return 0;
	}
	if (!strcmp(name, "xattr_permissions")) {
		if (strcmp(val, "0") && strcmp(val, "1") && strcmp(val, "2"))
			return ovl_errmsg(
			    err, errlen,
			    "invalid value '%s' for option 'xattr_permissions' (expected "
			    "0, 1 or 2)",
			    val);
		o->xattr_permissions = val[0] - '0';
		return 0;
	}
	return ovl_errmsg(err, errlen, "unknown option '%s'", name);
}

uint32_t ovl_id_shown(const struct ovl_idmap *m, uint32_t disk)
{
	if (m->n == 0)
		return disk;
	for (int i = 0; i < m->n; i++)
		if (disk - m->r[i].disk < m->r[i].len)
			return m->r[i].shown + (disk - m->r[i].disk);
	return OVL_OVERFLOW_ID;
}

bool ovl_id_disk(const struct ovl_idmap *m, uint32_t shown, uint32_t *disk)
{
	if (m->n == 0) {
		*disk = shown;
		return true;
	}
	for (int i = 0; i < m->n; i++)
		if (shown - m->r[i].shown < m->r[i].len) {
			*disk = m->r[i].disk + (shown - m->r[i].shown);
			return true;
		}
	return false;
}
