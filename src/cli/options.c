/* Command-line parsing: a drop-in for fuse-overlayfs's and mount.fuse3's way of calling us. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef OVLFS_VERSION
#define OVLFS_VERSION "0.1.0"
#endif

static const char usage_text[] =
    "usage: ovlfs [OPTIONS] [SOURCE] MOUNTPOINT\n"
    "       ovlfs export UPPERDIR [-o FILE|-] [-z]   (an upper layer as an OCI layer tar)\n"
    "       ovlfs diff UPPERDIR [LOWERDIR...]       (its changes: A|C|D /path)\n"
    "\n"
    "SOURCE is accepted (mount.fuse3 passes one) and ignored.\n"
    "\n"
    "General options:\n"
    "  -o OPT[,OPT...]        mount options (may be repeated; '\\,' is a literal comma)\n"
    "  -f                     stay in the foreground\n"
    "  -d, -o debug           trace every request (implies -f)\n"
    "  -s                     single-threaded\n"
    "  -h, --help             print this help and exit\n"
    "  -V, --version          print the version and exit\n"
    "\n"
    "Overlay options:\n"
    "  lowerdir=DIR[:DIR...]  lower layers, top first (required; '\\:' is a literal colon)\n"
    "  upperdir=DIR           writable layer (needs workdir)\n"
    "  workdir=DIR            scratch directory on the same mount as upperdir\n"
    "  ro                     mount read-only\n"
    "  rw                     mount read-write (the default when upperdir is given)\n"
    "  fsync=0|1              fsync=0 makes fsync a no-op\n"
    "  volatile               same as fsync=0\n"
    "  kernel_cache           keep the kernel page cache across opens\n"
    "  writeback=0|1          the kernel's writeback cache (default 0; see ovlfs(1))\n"
    "  passthrough=0|1        reads and writes of open upper files go straight to the\n"
    "                         layer file (FUSE passthrough, Linux 6.9+, as root; default 1)\n"
    "  uring=0|1              requests over io_uring, a queue per CPU (Linux 6.14+, with\n"
    "                         /sys/module/fuse/parameters/enable_uring Y; default 0)\n"
    "  noacl                  ignore POSIX ACLs in permission checks (mode bits only)\n"
    "  threaded=0|1           1: libfuse's multi-threaded loop instead of one loop with\n"
    "                         workers for long requests (default 0; see ovlfs(1))\n"
    "  userxattr              overlay markers under user.overlay.* (rootless; chosen\n"
    "                         by itself when trusted.* cannot be set)\n"
    "  whiteout=auto|chardev|file  whiteouts as 0/0 devices or OCI .wh. files\n"
    "                         (default auto: chardev where mknod is permitted)\n"
    "\n"
    "Ownership as the mount shows it (see ovlfs(1)):\n"
    "  uidmapping=DISK:SHOWN:LEN[:...], gidmapping=DISK:SHOWN:LEN[:...]\n"
    "                         show on-disk IDs DISK.. as SHOWN.. (unmapped: 65534)\n"
    "  squash_to_root, squash_to_uid=N, squash_to_gid=N\n"
    "                         show every object owned by 0 or N; chown always succeeds\n"
    "  xattr_permissions=0|1|2  keep owner and mode in an xattr: 1 security.*, 2 user.*\n"
    "\n"
    "FUSE options passed to libfuse:\n"
    "  allow_other, allow_root, default_permissions, fsname=NAME, subtype=NAME,\n"
    "  suid, nosuid, dev, nodev, exec, noexec, atime, noatime, sync, async,\n"
    "  dirsync, auto_unmount, max_read=N\n"
    "\n"
    "Accepted for compatibility and ignored:\n"
    "  timeout=, fast_ino=, static_nlink,\n"
    "  redirect_dir=off, context=, sync=, fast_ino_check=, xino=off|auto|on,\n"
    "  noxattrs=0, defaults, diratime, nodiratime, relatime,\n"
    "  norelatime, strictatime, max_write=, splice_read, splice_write,\n"
    "  splice_move, no_splice_read, no_splice_write, no_splice_move, clone_fd,\n"
    "  max_idle_threads=, lazytime, nolazytime, iversion, noiversion,\n"
    "  nostrictatime, mand, nomand, comment=, x-*\n"
    "\n"
    "Recognised but not supported yet:\n"
    "  plugins=, ino32_t, noxattrs=1\n";

enum opt_kind {
	OPT_FLAG,  /* bare name only */
	OPT_VALUE, /* name=value only */
	OPT_EITHER,
};

enum opt_action {
	ACT_LOWERDIR,
	ACT_UPPERDIR,
	ACT_WORKDIR,
	ACT_RO,
	ACT_RW,
	ACT_FSYNC,
	ACT_WRITEBACK,
	ACT_PASSTHROUGH,
	ACT_URING,
	ACT_NOACL,
	ACT_THREADED,
	ACT_VOLATILE,
	ACT_DEBUG,
	ACT_KERNEL_CACHE,
	ACT_IGNORE,
	ACT_CHOICE, /* ignored, but the value must be one of choices */
	ACT_REDIRECT_DIR,
	ACT_NOXATTRS,
	ACT_OWNER, /* ownership options: idmap.c */
	ACT_UNSUPPORTED,
	ACT_FUSE,
	ACT_SYNC, /* bare: the mount flag, for libfuse; sync=N: fuse-overlayfs's, ignored */
	ACT_ALLOW_OTHER,
	ACT_ALLOW_ROOT,
	ACT_USERXATTR,
	ACT_WHITEOUT,
};

struct opt_spec {
	const char *name;
	enum opt_kind kind;
	enum opt_action act;
	const char *choices; /* '|'-separated, for ACT_CHOICE */
};

static const struct opt_spec opt_table[] = {
    {"lowerdir", OPT_VALUE, ACT_LOWERDIR, NULL},
    {"upperdir", OPT_VALUE, ACT_UPPERDIR, NULL},
    {"workdir", OPT_VALUE, ACT_WORKDIR, NULL},
    {"ro", OPT_FLAG, ACT_RO, NULL},
    {"rw", OPT_FLAG, ACT_RW, NULL},
    {"fsync", OPT_VALUE, ACT_FSYNC, NULL},
    {"volatile", OPT_FLAG, ACT_VOLATILE, NULL},
    {"debug", OPT_FLAG, ACT_DEBUG, NULL},
    /* libfuse's low-level session rejects kernel_cache; the engine applies it per open. */
    {"kernel_cache", OPT_FLAG, ACT_KERNEL_CACHE, NULL},
    /* On-disk format (rootless and image layers). */
    {"userxattr", OPT_FLAG, ACT_USERXATTR, NULL},
    {"whiteout", OPT_VALUE, ACT_WHITEOUT, "auto|chardev|file"},

    /* fuse-overlayfs tunables that ovlfs does differently. */
    {"timeout", OPT_VALUE, ACT_IGNORE, NULL},
    {"threaded", OPT_VALUE, ACT_THREADED, NULL},
    {"fast_ino", OPT_VALUE, ACT_IGNORE, NULL},
    {"writeback", OPT_VALUE, ACT_WRITEBACK, NULL},
    {"passthrough", OPT_VALUE, ACT_PASSTHROUGH, NULL},
    {"uring", OPT_VALUE, ACT_URING, NULL},
    {"noacl", OPT_FLAG, ACT_NOACL, NULL},
    {"static_nlink", OPT_FLAG, ACT_IGNORE, NULL},
    {"redirect_dir", OPT_VALUE, ACT_REDIRECT_DIR, NULL},
    {"context", OPT_VALUE, ACT_IGNORE, NULL},
    {"sync", OPT_EITHER, ACT_SYNC, NULL},
    {"fast_ino_check", OPT_VALUE, ACT_IGNORE, NULL},
    {"xino", OPT_VALUE, ACT_CHOICE, "off|auto|on"},
    {"noxattrs", OPT_EITHER, ACT_NOXATTRS, NULL},

    /* Ownership as the mount shows it (src/idmap.c, src/owner.c). */
    {"uidmapping", OPT_VALUE, ACT_OWNER, NULL},
    {"gidmapping", OPT_VALUE, ACT_OWNER, NULL},
    {"squash_to_root", OPT_FLAG, ACT_OWNER, NULL},
    {"squash_to_uid", OPT_VALUE, ACT_OWNER, NULL},
    {"squash_to_gid", OPT_VALUE, ACT_OWNER, NULL},
    {"xattr_permissions", OPT_VALUE, ACT_OWNER, NULL},

    {"plugins", OPT_VALUE, ACT_UNSUPPORTED, NULL},
    {"ino32_t", OPT_FLAG, ACT_UNSUPPORTED, NULL},

    {"allow_other", OPT_FLAG, ACT_ALLOW_OTHER, NULL},
    {"allow_root", OPT_FLAG, ACT_ALLOW_ROOT, NULL},
    {"default_permissions", OPT_FLAG, ACT_FUSE, NULL},
    {"fsname", OPT_VALUE, ACT_FUSE, NULL},
    {"subtype", OPT_VALUE, ACT_FUSE, NULL},
    {"suid", OPT_FLAG, ACT_FUSE, NULL},
    {"nosuid", OPT_FLAG, ACT_FUSE, NULL},
    {"dev", OPT_FLAG, ACT_FUSE, NULL},
    {"nodev", OPT_FLAG, ACT_FUSE, NULL},
    {"exec", OPT_FLAG, ACT_FUSE, NULL},
    {"noexec", OPT_FLAG, ACT_FUSE, NULL},
    {"atime", OPT_FLAG, ACT_FUSE, NULL},
    {"noatime", OPT_FLAG, ACT_FUSE, NULL},
    {"async", OPT_FLAG, ACT_FUSE, NULL},
    {"dirsync", OPT_FLAG, ACT_FUSE, NULL},
    {"auto_unmount", OPT_FLAG, ACT_FUSE, NULL},
    {"max_read", OPT_VALUE, ACT_FUSE, NULL},

    /*
     * Mount options libfuse 3.14 refuses ("unknown option") although users and
     * mount.fuse3 pass them (it forwards "defaults" and "relatime" from fstab).
     */
    {"defaults", OPT_FLAG, ACT_IGNORE, NULL},
    {"diratime", OPT_FLAG, ACT_IGNORE, NULL},
    {"nodiratime", OPT_FLAG, ACT_IGNORE, NULL},
    {"relatime", OPT_FLAG, ACT_IGNORE, NULL},
    {"norelatime", OPT_FLAG, ACT_IGNORE, NULL},
    {"strictatime", OPT_FLAG, ACT_IGNORE, NULL},
    {"max_write", OPT_VALUE, ACT_IGNORE, NULL},
    {"splice_read", OPT_FLAG, ACT_IGNORE, NULL},
    {"splice_write", OPT_FLAG, ACT_IGNORE, NULL},
    {"splice_move", OPT_FLAG, ACT_IGNORE, NULL},
    {"no_splice_read", OPT_FLAG, ACT_IGNORE, NULL},
    {"no_splice_write", OPT_FLAG, ACT_IGNORE, NULL},
    {"no_splice_move", OPT_FLAG, ACT_IGNORE, NULL},
    {"clone_fd", OPT_FLAG, ACT_IGNORE, NULL},
    {"max_idle_threads", OPT_VALUE, ACT_IGNORE, NULL},
    /* mount(8) and mount.fuse3 pass these on from the command line or fstab. */
    {"lazytime", OPT_FLAG, ACT_IGNORE, NULL},
    {"nolazytime", OPT_FLAG, ACT_IGNORE, NULL},
    {"iversion", OPT_FLAG, ACT_IGNORE, NULL},
    {"noiversion", OPT_FLAG, ACT_IGNORE, NULL},
    {"nostrictatime", OPT_FLAG, ACT_IGNORE, NULL},
    {"mand", OPT_FLAG, ACT_IGNORE, NULL},
    {"nomand", OPT_FLAG, ACT_IGNORE, NULL},
    {"comment", OPT_VALUE, ACT_IGNORE, NULL},
};

/* Growable string for the libfuse option list. */
struct sbuf {
	char *s;
	size_t len;
	size_t cap;
};

struct parse_state {
	struct ovl_config *cfg;
	struct sbuf fuse;
	bool allow_other;
	bool allow_root;
	const char *pos[2];
	int npos;
	char *err;
	size_t errlen;
};

static int sbuf_putc(struct sbuf *b, char c)
{
	if (b->len + 2 > b->cap) {
		size_t ncap = b->cap ? b->cap * 2 : 64;
		char *n = realloc(b->s, ncap);

		if (!n)
			return -1;
		b->s = n;
		b->cap = ncap;
	}
	b->s[b->len++] = c;
	b->s[b->len] = '\0';
	return 0;
}

static int sbuf_puts(struct sbuf *b, const char *s)
{
	for (; *s; s++)
		if (sbuf_putc(b, *s) < 0)
			return -1;
	return 0;
}

__attribute__((format(printf, 2, 3))) static int fail(struct parse_state *st, const char *fmt, ...)
{
	va_list ap;

	if (st->errlen) {
		va_start(ap, fmt);
		vsnprintf(st->err, st->errlen, fmt, ap);
		va_end(ap);
	}
	return OVL_ARGS_ERROR;
}

static int fail_nomem(struct parse_state *st)
{
	return fail(st, "out of memory");
}

/* Copies s[0..n) dropping one level of backslash escaping; a trailing lone '\' is kept. */
static char *unescape(const char *s, size_t n)
{
	char *out = malloc(n + 1);
	size_t i, j = 0;

	if (!out)
		return NULL;
	for (i = 0; i < n; i++) {
		if (s[i] == '\\' && i + 1 < n)
			i++;
		out[j++] = s[i];
	}
	out[j] = '\0';
	return out;
}

/* The same, in place: unescaping never lengthens a string. */
static void unescape_in_place(char *s)
{
	char *d = s;

	for (; *s; s++) {
		if (s[0] == '\\' && s[1])
			s++;
		*d++ = *s;
	}
	*d = '\0';
}

/* Length of the prefix of s[0..n) before the first unescaped sep (n if none). */
static size_t span_unescaped(const char *s, size_t n, char sep)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (s[i] == '\\' && i + 1 < n)
			i++;
		else if (s[i] == sep)
			return i;
	}
	return n;
}

static void free_lowerdirs(struct ovl_config *cfg)
{
	int i;

	if (!cfg->lowerdirs)
		return;
	for (i = 0; i < cfg->nlower; i++)
		free(cfg->lowerdirs[i]);
	free(cfg->lowerdirs);
	cfg->lowerdirs = NULL;
	cfg->nlower = 0;
}

/* Splits a raw (still escaped) lowerdir value on unescaped ':'. */
static int parse_lowerdir(struct parse_state *st, const char *raw)
{
	size_t n = strlen(raw), off, seg;
	int count = 0, i;
	char **dirs;

	if (n == 0)
		return fail(st, "option 'lowerdir' has an empty value");

	/* Count and check the entries before allocating anything. */
	for (off = 0;; off += seg + 1) {
		seg = span_unescaped(raw + off, n - off, ':');
		if (seg == 0) {
			if (off == 0)
				return fail(st, "lowerdir '%s' has an empty layer (leading ':')",
					    raw);
			/* "/a::" ends in ':' too, whatever "::" would mean elsewhere. */
			if (off + 1 >= n)
				return fail(st, "lowerdir '%s' has an empty layer (trailing ':')",
					    raw);
			/* "a::b" is the kernel's data-only syntax; ":::" is just empty. */
			if (raw[off + 1] != ':')
				return fail(
				    st, "lowerdir '%s': %s", raw,
				    "data-only lower layers ('::') are not supported by ovlfs");
			return fail(st, "lowerdir '%s' has an empty layer", raw);
		}
		if (seg >= 2 && raw[off] == '/' && raw[off + 1] == '/')
			return fail(
			    st, "lowerdir '%s': %s", raw,
			    "plugin layers ('//plugin/...') are not supported by ovlfs yet");
		count++;
		if (off + seg >= n)
			break;
	}
	if (count > OVL_MAX_LOWER)
		return fail(st, "lowerdir has %d layers, more than the maximum of %d", count,
			    OVL_MAX_LOWER);

	dirs = calloc((size_t)count + 1, sizeof(*dirs));
	if (!dirs)
		return fail_nomem(st);
	for (i = 0, off = 0; i < count; i++, off += seg + 1) {
		seg = span_unescaped(raw + off, n - off, ':');
		dirs[i] = unescape(raw + off, seg);
		if (!dirs[i]) {
			while (i--)
				free(dirs[i]);
			free(dirs);
			return fail_nomem(st);
		}
	}
	/* A later lowerdir= replaces an earlier one, as with mount(8). */
	free_lowerdirs(st->cfg);
	st->cfg->lowerdirs = dirs;
	st->cfg->nlower = count;
	return OVL_ARGS_OK;
}

/* value is already unescaped. */
static int set_path(struct parse_state *st, char **slot, const char *name, const char *value)
{
	char *v;

	if (!*value)
		return fail(st, "option '%s' has an empty value", name);
	v = strdup(value);
	if (!v)
		return fail_nomem(st);
	/* A later upperdir=/workdir= replaces an earlier one. */
	free(*slot);
	*slot = v;
	return OVL_ARGS_OK;
}

/* Appends name[=value] to the libfuse list, re-escaping what libfuse will unescape. */
static int add_fuse_opt(struct parse_state *st, const char *name, const char *value)
{
	struct sbuf *b = &st->fuse;
	const char *p;

	if ((b->len && sbuf_putc(b, ',') < 0) || sbuf_puts(b, name) < 0)
		return fail_nomem(st);
	if (!value)
		return OVL_ARGS_OK;
	if (sbuf_putc(b, '=') < 0)
		return fail_nomem(st);
	for (p = value; *p; p++) {
		if ((*p == ',' || *p == '\\') && sbuf_putc(b, '\\') < 0)
			return fail_nomem(st);
		if (sbuf_putc(b, *p) < 0)
			return fail_nomem(st);
	}
	return OVL_ARGS_OK;
}

static bool in_choices(const char *choices, const char *v)
{
	size_t vl = strlen(v);
	const char *p = choices;

	while (*p) {
		size_t l = strcspn(p, "|");

		if (l == vl && strncmp(p, v, l) == 0)
			return true;
		p += l;
		if (*p == '|')
			p++;
	}
	return false;
}

static const struct opt_spec *find_opt(const char *name, size_t len)
{
	size_t i;

	for (i = 0; i < sizeof(opt_table) / sizeof(opt_table[0]); i++)
		if (strlen(opt_table[i].name) == len && strncmp(opt_table[i].name, name, len) == 0)
			return &opt_table[i];
	return NULL;
}

/* Applies one option; tok is the raw token (escapes intact), len bytes long. */

/* A name=0|1 option; with invert, 0 sets the flag (fsync=0 means no fsync). */
static int set_flag01(struct parse_state *st, const char *name, const char *val, bool *flag,
		      bool invert)
{
	if (strcmp(val, "0") && strcmp(val, "1"))
		return fail(st, "invalid value '%s' for option '%s' (expected 0 or 1)", val, name);
	*flag = (val[0] == '1') != invert;
	return 0;
}

static int apply_opt(struct parse_state *st, const char *tok, size_t len)
{
	struct ovl_config *cfg = st->cfg;
	const struct opt_spec *o;
	char *raw, *name, *value = NULL;
	const char *val; /* value, or "" for a bare flag */
	size_t nlen;
	int ret = OVL_ARGS_OK;

	raw = strndup(tok, len);
	if (!raw)
		return fail_nomem(st);
	name = raw;
	nlen = strcspn(raw, "=");
	if (nlen < len) {
		raw[nlen] = '\0';
		/* Kept escaped: lowerdir must still see '\:' when it splits. */
		value = raw + nlen + 1;
	}

	o = find_opt(name, nlen);
	/* fstab's userspace options (x-systemd.*, ...): mount.fuse3 run by hand passes them. */
	if (!o && nlen > 2 && !strncmp(name, "x-", 2))
		goto out;
	if (!o) {
		if (value)
			raw[nlen] = '=';
		ret = fail(st, "unknown option '%s'", raw);
		goto out;
	}
	if (o->kind == OPT_FLAG && value) {
		ret = fail(st, "option '%s' does not take a value", name);
		goto out;
	}
	if (o->kind == OPT_VALUE && !value) {
		ret = fail(st, "option '%s' requires a value (%s=...)", name, name);
		goto out;
	}
	if (value && o->act != ACT_LOWERDIR)
		unescape_in_place(value);
	val = value ? value : "";

	switch (o->act) {
	case ACT_LOWERDIR:
		ret = parse_lowerdir(st, val);
		break;
	case ACT_UPPERDIR:
		ret = set_path(st, &cfg->upperdir, name, val);
		break;
	case ACT_WORKDIR:
		ret = set_path(st, &cfg->workdir, name, val);
		break;
	case ACT_RO:
		cfg->params.readonly = true;
		break;
	case ACT_RW:
		/* Last one wins, as with mount(8); without upperdir the mount stays read-only. */
		cfg->params.readonly = false;
		break;
	case ACT_FSYNC:
		ret = set_flag01(st, name, val, &cfg->params.no_fsync, true);
		break;
	case ACT_NOACL:
		cfg->noacl = true;
		break;
	case ACT_WRITEBACK:
		ret = set_flag01(st, name, val, &cfg->writeback, false);
		break;
	case ACT_PASSTHROUGH:
		ret = set_flag01(st, name, val, &cfg->passthrough, false);
		break;
	case ACT_URING:
		ret = set_flag01(st, name, val, &cfg->uring, false);
		break;
	case ACT_THREADED:
		ret = set_flag01(st, name, val, &cfg->threaded, false);
		break;
	case ACT_VOLATILE:
		cfg->params.no_fsync = true;
		break;
	case ACT_DEBUG:
		cfg->debug = true;
		cfg->foreground = true;
		break;
	case ACT_KERNEL_CACHE:
		cfg->kernel_cache = true;
		break;
	case ACT_USERXATTR:
		cfg->params.userxattr = true;
		break;
	case ACT_WHITEOUT:
		if (!in_choices(o->choices, val))
			ret = fail(st, "invalid value '%s' for option '%s' (expected one of: %s)",
				   val, name, o->choices);
		else
			cfg->params.whiteout = val[0] == 'a' ? 0 : val[0] == 'c' ? 1 : 2;
		break;
	case ACT_IGNORE:
		break;
	case ACT_CHOICE:
		if (!in_choices(o->choices, val))
			ret = fail(st, "invalid value '%s' for option '%s' (expected one of: %s)",
				   val, name, o->choices);
		break;
	case ACT_REDIRECT_DIR:
		/* ovlfs renames directories without redirects, which is what "off" asks. */
		if (strcmp(val, "off"))
			ret = fail(st,
				   "option 'redirect_dir=%s' is not supported by ovlfs (only "
				   "redirect_dir=off)",
				   val);
		break;
	case ACT_NOXATTRS:
		/*
		 * fuse-overlayfs silently ignores a bare "noxattrs" (its issue #479);
		 * whoever writes it wants xattrs off, which we cannot do yet.
		 */
		if (!value || !strcmp(value, "1"))
			ret = fail(st, "option 'noxattrs' is not supported by ovlfs yet");
		else if (strcmp(val, "0"))
			ret = fail(st, "invalid value '%s' for option 'noxattrs' (expected 0 or 1)",
				   val);
		break;
	case ACT_OWNER:
		if (ovl_owner_opt(&cfg->owner, name, val, st->err, st->errlen) < 0)
			ret = OVL_ARGS_ERROR;
		break;
	case ACT_UNSUPPORTED:
		ret = fail(st, "option '%s' is not supported by ovlfs yet", name);
		break;
	case ACT_ALLOW_OTHER:
		st->allow_other = true;
		ret = add_fuse_opt(st, name, NULL);
		break;
	case ACT_ALLOW_ROOT:
		st->allow_root = true;
		ret = add_fuse_opt(st, name, NULL);
		break;
	case ACT_FUSE:
		ret = add_fuse_opt(st, name, value);
		break;
	case ACT_SYNC:
		if (!value)
			ret = add_fuse_opt(st, name, NULL);
		break;
	}
out:
	free(raw);
	return ret;
}

/* Handles one -o argument: a comma-separated list with '\,' escapes. */
static int apply_opts(struct parse_state *st, const char *opts)
{
	size_t n = strlen(opts), off = 0;

	while (off <= n) {
		size_t len = span_unescaped(opts + off, n - off, ',');
		int ret;

		/* Empty items ("a,,b", a trailing comma) carry nothing; skip them. */
		if (len) {
			ret = apply_opt(st, opts + off, len);
			if (ret != OVL_ARGS_OK)
				return ret;
		}
		off += len + 1;
	}
	return OVL_ARGS_OK;
}

static int add_positional(struct parse_state *st, const char *arg)
{
	if (st->npos == 2)
		return fail(st, "unexpected extra argument '%s'", arg);
	st->pos[st->npos++] = arg;
	return OVL_ARGS_OK;
}

static int print_stdout(const char *s)
{
	if (fputs(s, stdout) == EOF || fflush(stdout) == EOF)
		return -1;
	return 0;
}

/* A cluster of short options, e.g. "-fd" or "-oOPTS"; *i advances past a separate -o argument. */
static int parse_short(struct parse_state *st, int argc, char **argv, int *i)
{
	const char *p;
	char buf[64];

	for (p = argv[*i] + 1; *p; p++) {
		switch (*p) {
		case 'f':
			st->cfg->foreground = true;
			break;
		case 'd':
			st->cfg->debug = true;
			st->cfg->foreground = true;
			break;
		case 's':
			st->cfg->single_thread = true;
			break;
		case 'h':
			if (print_stdout(usage_text) < 0)
				return fail(st, "cannot write the help text to stdout");
			return OVL_ARGS_EXIT;
		case 'V':
			if (print_stdout("ovlfs " OVLFS_VERSION "\n") < 0)
				return fail(st, "cannot write the version to stdout");
			return OVL_ARGS_EXIT;
		case 'o':
			if (p[1])
				return apply_opts(st, p + 1);
			if (*i + 1 >= argc)
				return fail(st, "option '-o' requires an argument");
			return apply_opts(st, argv[++*i]);
		default:
			snprintf(buf, sizeof(buf), "-%c", *p);
			return fail(st, "unknown option '%s'", buf);
		}
	}
	return OVL_ARGS_OK;
}

static int parse_argv(struct parse_state *st, int argc, char **argv)
{
	bool only_positional = false;
	int i, ret;

	for (i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (only_positional || a[0] != '-' || a[1] == '\0') {
			ret = add_positional(st, a);
		} else if (!strcmp(a, "--")) {
			only_positional = true;
			ret = OVL_ARGS_OK;
		} else if (!strcmp(a, "--help")) {
			if (print_stdout(usage_text) < 0)
				return fail(st, "cannot write the help text to stdout");
			return OVL_ARGS_EXIT;
		} else if (!strcmp(a, "--version")) {
			if (print_stdout("ovlfs " OVLFS_VERSION "\n") < 0)
				return fail(st, "cannot write the version to stdout");
			return OVL_ARGS_EXIT;
		} else if (a[1] == '-') {
			ret = fail(st, "unknown option '%s'", a);
		} else {
			ret = parse_short(st, argc, argv, &i);
		}
		if (ret != OVL_ARGS_OK)
			return ret;
	}
	return OVL_ARGS_OK;
}

static int finish(struct parse_state *st)
{
	struct ovl_config *cfg = st->cfg;

	if (st->npos == 0)
		return fail(st, "no mount point given");
	cfg->mountpoint = strdup(st->pos[st->npos - 1]);
	if (!cfg->mountpoint)
		return fail_nomem(st);
	if (!cfg->nlower)
		return fail(st, "missing required option 'lowerdir'");
	if (cfg->upperdir && !cfg->workdir)
		return fail(st, "option 'upperdir' given without 'workdir'");
	if (cfg->workdir && !cfg->upperdir)
		return fail(st, "option 'workdir' given without 'upperdir'");
	if (st->allow_other && st->allow_root)
		return fail(st, "options 'allow_other' and 'allow_root' are mutually exclusive");
	if (!cfg->upperdir)
		cfg->params.readonly = true;
	cfg->fuse_opts = st->fuse.s;
	st->fuse.s = NULL;
	return OVL_ARGS_OK;
}

int ovl_parse_args(int argc, char **argv, struct ovl_config *cfg, char *err, size_t errlen)
{
	struct parse_state st = {.cfg = cfg, .err = err, .errlen = errlen};
	int ret;

	memset(cfg, 0, sizeof(*cfg));
	cfg->passthrough = true; /* where the kernel and the daemon's privileges allow */
	if (errlen)
		err[0] = '\0';
	ret = parse_argv(&st, argc, argv);
	if (ret == OVL_ARGS_OK)
		ret = finish(&st);
	free(st.fuse.s);
	/* Leave nothing half-filled behind for the caller to trip over. */
	if (ret != OVL_ARGS_OK)
		ovl_config_free(cfg);
	return ret;
}

void ovl_config_free(struct ovl_config *cfg)
{
	if (!cfg)
		return;
	free_lowerdirs(cfg);
	free(cfg->upperdir);
	free(cfg->workdir);
	free(cfg->mountpoint);
	free(cfg->fuse_opts);
	memset(cfg, 0, sizeof(*cfg));
}
