/* Command-line parsing: a drop-in for fuse-overlayfs's and mount.fuse3's way of calling us. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>

#ifndef OVLFS_VERSION
#define OVLFS_VERSION "0.1.0"
#endif

/* The help before the mount options; those are listed from opt_table (print_help). */
static const char usage_head[] =
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
    "  -V, --version          print the version and exit\n";

/* How a mount option is written. */
enum opt_form {
	FORM_BARE,  /* name only */
	FORM_VALUE, /* name=value only */
	FORM_EITHER,
};

/* What a mount option does; the columns of its row say with what. */
enum opt_type {
	OPT_SET,	 /* stores .num in the bool at .field */
	OPT_BOOL01,	 /* name=0|1 into the bool at .field; with .num 1, 0 sets it (fsync=0) */
	OPT_CHOICE,	 /* name=one of .values: the value's index into the int at .field */
	OPT_PATH,	 /* a non-empty value, copied into the char * at .field */
	OPT_IGNORE,	 /* accepted; a value must be one of .values when the row has them */
	OPT_FUSE,	 /* passed on to libfuse */
	OPT_UNSUPPORTED, /* refused as not supported yet */
	OPT_CALL,	 /* .parse does what no column can say */
};

/* Where --help lists a mount option. */
enum opt_section { SEC_OVERLAY, SEC_OWNER, SEC_FUSE, SEC_IGNORED, SEC_UNSUPPORTED, SEC_COUNT };

struct parse_state;
struct opt_spec;
/* value is NULL for a bare option; unescaped unless the row asks for it .raw. */
typedef int (*opt_parse_fn)(struct parse_state *st, const struct opt_spec *o, const char *value);

struct opt_spec {
	const char *name;
	enum opt_section section;
	/*
	 * One line of --help. In the sections that list options one per line, a row without
	 * it shares the next row's line (uidmapping=, gidmapping=); in the comma-separated
	 * sections it is a note in parentheses, mostly absent.
	 */
	const char *help;
	enum opt_form form;
	enum opt_type type;
	size_t field;	    /* offset in struct ovl_config of what the option sets */
	int num;	    /* OPT_SET: the value stored; OPT_BOOL01: 1 when 0 sets the flag */
	const char *values; /* '|'-separated allowed values, or what --help shows after '=' */
	opt_parse_fn parse; /* OPT_CALL */
	bool raw;	    /* .parse gets the value with its escapes (lowerdir splits on '\:') */
};

/* The offset of config field f, which must have type T (a mistyped row fails to build). */
#define FIELD_OF(f, T)                                                                             \
	(offsetof(struct ovl_config, f) + 0 * sizeof(_Generic(((struct ovl_config *)0)->f, T : 1)))

/* The kinds of row: the columns each kind uses, so that a row names only its own. */
#define SETS(f, v) .form = FORM_BARE, .type = OPT_SET, .field = FIELD_OF(f, bool), .num = (v)
#define SETS_01(f, invert)                                                                         \
	.form = FORM_VALUE, .type = OPT_BOOL01, .field = FIELD_OF(f, bool), .num = (invert),       \
	.values = "0|1"
#define SETS_CHOICE(f, choices)                                                                    \
	.form = FORM_VALUE, .type = OPT_CHOICE, .field = FIELD_OF(f, int), .values = (choices)
#define SETS_PATH(f, shown)                                                                        \
	.form = FORM_VALUE, .type = OPT_PATH, .field = FIELD_OF(f, char *), .values = (shown)
#define IGNORED(form_) .form = (form_), .type = OPT_IGNORE
#define IGNORED_UNLESS(choices) .form = FORM_VALUE, .type = OPT_IGNORE, .values = (choices)
#define TO_LIBFUSE(form_, shown) .form = (form_), .type = OPT_FUSE, .values = (shown)
#define UNSUPPORTED(form_) .form = (form_), .type = OPT_UNSUPPORTED
#define CALLS(fn, form_, shown) .form = (form_), .type = OPT_CALL, .parse = (fn), .values = (shown)

/* Growable string for the libfuse option list. */
struct sbuf {
	char *s;
	size_t len;
	size_t cap;
};

struct parse_state {
	struct ovl_config *cfg;
	bool remount; /* -o remount is among the options: see remount_opt */
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

/* The index of v among the '|'-separated choices, or -1. */
static int choice_index(const char *choices, const char *v)
{
	size_t vl = strlen(v);
	const char *p = choices;
	int i;

	for (i = 0; *p; i++) {
		size_t l = strcspn(p, "|");

		if (l == vl && strncmp(p, v, l) == 0)
			return i;
		p += l;
		if (*p == '|')
			p++;
	}
	return -1;
}

/* The special options: what each does is more than storing its value. */

static int opt_lowerdir(struct parse_state *st, const struct opt_spec *o, const char *value)
{
	(void)o;
	return parse_lowerdir(st, value);
}

static int opt_debug(struct parse_state *st, const struct opt_spec *o, const char *value)
{
	(void)o;
	(void)value;
	st->cfg->debug = true;
	st->cfg->foreground = true;
	return OVL_ARGS_OK;
}

static int opt_redirect_dir(struct parse_state *st, const struct opt_spec *o, const char *value)
{
	(void)o;
	/* ovlfs renames directories without redirects, which is what "off" asks. */
	if (strcmp(value, "off"))
		return fail(st,
			    "option 'redirect_dir=%s' is not supported by ovlfs (only "
			    "redirect_dir=off)",
			    value);
	return OVL_ARGS_OK;
}

static int opt_noxattrs(struct parse_state *st, const struct opt_spec *o, const char *value)
{
	(void)o;
	/*
	 * fuse-overlayfs silently ignores a bare "noxattrs" (its issue #479);
	 * whoever writes it wants xattrs off, which we cannot do yet.
	 */
	if (!value || !strcmp(value, "1"))
		return fail(st, "option 'noxattrs' is not supported by ovlfs yet");
	if (strcmp(value, "0"))
		return fail(st, "invalid value '%s' for option 'noxattrs' (expected 0 or 1)",
			    value);
	return OVL_ARGS_OK;
}

/* Ownership options: the engine's parser (idmap.c) fills cfg->owner. */
static int opt_owner(struct parse_state *st, const struct opt_spec *o, const char *value)
{
	if (ovl_owner_opt(&st->cfg->owner, o->name, value ? value : "", st->err, st->errlen) < 0)
		return OVL_ARGS_ERROR;
	return OVL_ARGS_OK;
}

/* Reached only where the scan for remount (asks_remount) missed it. */
static int opt_remount(struct parse_state *st, const struct opt_spec *o, const char *value)
{
	(void)o;
	(void)value;
	st->cfg->remount = true;
	return OVL_ARGS_OK;
}

/* allow_other and allow_root go to libfuse; finish() refuses both at once. */
static int opt_allow_other(struct parse_state *st, const struct opt_spec *o, const char *value)
{
	(void)value;
	st->allow_other = true;
	return add_fuse_opt(st, o->name, NULL);
}

static int opt_allow_root(struct parse_state *st, const struct opt_spec *o, const char *value)
{
	(void)value;
	st->allow_root = true;
	return add_fuse_opt(st, o->name, NULL);
}

/* The atime mode as mount(8) spells it. FUSE inodes never have their atime changed by the
 * kernel (S_NOATIME), so the mode is ours to apply (layer.c); libfuse knows only atime and
 * noatime, which it also sets as the mount's flag. relatime is our rule otherwise. */
static int opt_atime(struct parse_state *st, const struct opt_spec *o, const char *value)
{
	(void)value;
	if (!strcmp(o->name, "nodiratime") || !strcmp(o->name, "diratime")) {
		st->cfg->params.nodiratime = o->name[0] == 'n';
		return OVL_ARGS_OK;
	}
	if (!strcmp(o->name, "noatime"))
		st->cfg->params.noatime = true;
	else if (!strcmp(o->name, "atime") || !strcmp(o->name, "strictatime"))
		st->cfg->params.noatime = false;
	if (!strcmp(o->name, "atime") || !strcmp(o->name, "noatime"))
		return add_fuse_opt(st, o->name, NULL);
	return OVL_ARGS_OK;
}

/* Bare: the mount flag, for libfuse; sync=N: fuse-overlayfs's, ignored. */
static int opt_sync(struct parse_state *st, const struct opt_spec *o, const char *value)
{
	if (!value)
		return add_fuse_opt(st, o->name, NULL);
	return OVL_ARGS_OK;
}

/* whiteout= stores the index of its value among "auto|chardev|file". */
_Static_assert(OVL_WHITEOUT_AUTO == 0 && OVL_WHITEOUT_CHARDEV == 1 && OVL_WHITEOUT_FILE == 2,
	       "whiteout= choices in the order of OVL_WHITEOUT_*");

/*
 * Every mount option, in the order --help lists them. Adding one that sets a field takes a
 * row here, the field (struct ovl_config, or the engine's struct ovl_fs_params inside it)
 * and the code that reads it.
 */
static const struct opt_spec opt_table[] = {
    {"lowerdir", SEC_OVERLAY, "lower layers, top first (required; '\\:' is a literal colon)",
     CALLS(opt_lowerdir, FORM_VALUE, "DIR[:DIR...]"), .raw = true},
    {"upperdir", SEC_OVERLAY, "writable layer (needs workdir)", SETS_PATH(upperdir, "DIR")},
    {"workdir", SEC_OVERLAY, "scratch directory on the same mount as upperdir",
     SETS_PATH(workdir, "DIR")},
    {"ro", SEC_OVERLAY, "mount read-only", SETS(params.readonly, true)},
    /* Last one wins, as with mount(8); without upperdir the mount stays read-only. */
    {"rw", SEC_OVERLAY, "mount read-write (the default when upperdir is given)",
     SETS(params.readonly, false)},
    {"remount", SEC_OVERLAY,
     "change the flags (ro, rw, nosuid, nodev, noexec, atime ones, sync) of the mount at "
     "MOUNTPOINT, as mount -o remount does; its other options cannot change and are ignored",
     CALLS(opt_remount, FORM_BARE, NULL)},
    {"fsync", SEC_OVERLAY, "fsync=0 makes fsync a no-op", SETS_01(params.no_fsync, true)},
    {"volatile", SEC_OVERLAY, "same as fsync=0", SETS(params.no_fsync, true)},
    {"debug", SEC_OVERLAY, "same as -d: trace every request (implies -f)",
     CALLS(opt_debug, FORM_BARE, NULL)},
    /* libfuse's low-level session rejects kernel_cache. */
    {"kernel_cache", SEC_OVERLAY, "keep the kernel page cache across opens",
     SETS(kernel_cache, true)},
    {"writeback", SEC_OVERLAY, "the kernel's writeback cache (default 0; see ovlfs(1))",
     SETS_01(writeback, false)},
    {"passthrough", SEC_OVERLAY,
     "reads and writes of open upper files go straight to the layer file (FUSE "
     "passthrough, Linux 6.9+, as root; default 1)",
     SETS_01(passthrough, false)},
    {"uring", SEC_OVERLAY,
     "requests over io_uring, a queue per CPU (Linux 6.14+, with "
     "/sys/module/fuse/parameters/enable_uring Y; default 0)",
     SETS_01(uring, false)},
    {"noacl", SEC_OVERLAY, "ignore POSIX ACLs in permission checks (mode bits only)",
     SETS(noacl, true)},
    {"threaded", SEC_OVERLAY,
     "1: libfuse's multi-threaded loop instead of one loop with workers for long requests "
     "(default 0; see ovlfs(1))",
     SETS_01(threaded, false)},
    /* On-disk format (rootless and image layers). */
    {"userxattr", SEC_OVERLAY,
     "overlay markers under user.overlay.* (rootless; chosen by itself when trusted.* "
     "cannot be set)",
     SETS(params.userxattr, true)},
    {"whiteout", SEC_OVERLAY,
     "whiteouts as 0/0 devices or OCI .wh. files (default auto: chardev where mknod is "
     "permitted)",
     SETS_CHOICE(params.whiteout, "auto|chardev|file")},
    {"oci_whiteouts", SEC_OVERLAY,
     "0: '.wh.*' names are plain names, as on the kernel overlayfs (to build image layers "
     "inside the mount); 1 (default): OCI whiteouts, hidden and honoured",
     SETS_01(params.no_oci_whiteouts, true)},

    /* Ownership as the mount shows it (src/engine/idmap.c, owner.c). */
    {"uidmapping", SEC_OWNER, NULL, CALLS(opt_owner, FORM_VALUE, "DISK:SHOWN:LEN[:...]")},
    {"gidmapping", SEC_OWNER, "show on-disk IDs DISK.. as SHOWN.. (unmapped: 65534)",
     CALLS(opt_owner, FORM_VALUE, "DISK:SHOWN:LEN[:...]")},
    {"squash_to_root", SEC_OWNER, NULL, CALLS(opt_owner, FORM_BARE, NULL)},
    {"squash_to_uid", SEC_OWNER, NULL, CALLS(opt_owner, FORM_VALUE, "N")},
    {"squash_to_gid", SEC_OWNER, "show every object owned by 0 or N; chown always succeeds",
     CALLS(opt_owner, FORM_VALUE, "N")},
    {"xattr_permissions", SEC_OWNER, "keep owner and mode in an xattr: 1 security.*, 2 user.*",
     CALLS(opt_owner, FORM_VALUE, "0|1|2")},

    {"allow_other", SEC_FUSE, NULL, CALLS(opt_allow_other, FORM_BARE, NULL)},
    {"allow_root", SEC_FUSE, NULL, CALLS(opt_allow_root, FORM_BARE, NULL)},
    {"default_permissions", SEC_FUSE, NULL, TO_LIBFUSE(FORM_BARE, NULL)},
    {"fsname", SEC_FUSE, NULL, TO_LIBFUSE(FORM_VALUE, "NAME")},
    {"subtype", SEC_FUSE, NULL, TO_LIBFUSE(FORM_VALUE, "NAME")},
    {"suid", SEC_FUSE, NULL, TO_LIBFUSE(FORM_BARE, NULL)},
    {"nosuid", SEC_FUSE, NULL, TO_LIBFUSE(FORM_BARE, NULL)},
    {"dev", SEC_FUSE, NULL, TO_LIBFUSE(FORM_BARE, NULL)},
    {"nodev", SEC_FUSE, NULL, TO_LIBFUSE(FORM_BARE, NULL)},
    {"exec", SEC_FUSE, NULL, TO_LIBFUSE(FORM_BARE, NULL)},
    {"noexec", SEC_FUSE, NULL, TO_LIBFUSE(FORM_BARE, NULL)},
    {"atime", SEC_FUSE, NULL, CALLS(opt_atime, FORM_BARE, NULL)},
    {"noatime", SEC_FUSE, NULL, CALLS(opt_atime, FORM_BARE, NULL)},
    {"relatime", SEC_FUSE, NULL, CALLS(opt_atime, FORM_BARE, NULL)},
    {"norelatime", SEC_FUSE, NULL, CALLS(opt_atime, FORM_BARE, NULL)},
    {"strictatime", SEC_FUSE, NULL, CALLS(opt_atime, FORM_BARE, NULL)},
    {"nostrictatime", SEC_FUSE, NULL, CALLS(opt_atime, FORM_BARE, NULL)},
    {"diratime", SEC_FUSE, NULL, CALLS(opt_atime, FORM_BARE, NULL)},
    {"nodiratime", SEC_FUSE,
     "the atime rule for upper objects (default relatime); lower objects' atime never "
     "changes",
     CALLS(opt_atime, FORM_BARE, NULL)},
    {"sync", SEC_FUSE, "sync=N: ignored", CALLS(opt_sync, FORM_EITHER, NULL)},
    {"async", SEC_FUSE, NULL, TO_LIBFUSE(FORM_BARE, NULL)},
    {"dirsync", SEC_FUSE, NULL, TO_LIBFUSE(FORM_BARE, NULL)},
    {"auto_unmount", SEC_FUSE, NULL, TO_LIBFUSE(FORM_BARE, NULL)},
    {"max_read", SEC_FUSE, NULL, TO_LIBFUSE(FORM_VALUE, "N")},

    /* fuse-overlayfs tunables that ovlfs does differently. */
    {"timeout", SEC_IGNORED, NULL, IGNORED(FORM_VALUE)},
    {"fast_ino", SEC_IGNORED, NULL, IGNORED(FORM_VALUE)},
    {"static_nlink", SEC_IGNORED, NULL, IGNORED(FORM_BARE)},
    {"redirect_dir", SEC_IGNORED, NULL, CALLS(opt_redirect_dir, FORM_VALUE, "off")},
    {"context", SEC_IGNORED, NULL, IGNORED(FORM_VALUE)},
    {"fast_ino_check", SEC_IGNORED, NULL, IGNORED(FORM_VALUE)},
    {"xino", SEC_IGNORED, NULL, IGNORED_UNLESS("off|auto|on")},
    {"noxattrs", SEC_IGNORED, "noxattrs=1: not supported yet",
     CALLS(opt_noxattrs, FORM_EITHER, "0")},
    /*
     * Mount options libfuse 3.14 refuses ("unknown option") although users and
     * mount.fuse3 pass them (it forwards "defaults" from fstab).
     */
    {"defaults", SEC_IGNORED, NULL, IGNORED(FORM_BARE)},
    {"max_write", SEC_IGNORED, NULL, IGNORED(FORM_VALUE)},
    {"splice_read", SEC_IGNORED, NULL, IGNORED(FORM_BARE)},
    {"splice_write", SEC_IGNORED, NULL, IGNORED(FORM_BARE)},
    {"splice_move", SEC_IGNORED, NULL, IGNORED(FORM_BARE)},
    {"no_splice_read", SEC_IGNORED, NULL, IGNORED(FORM_BARE)},
    {"no_splice_write", SEC_IGNORED, NULL, IGNORED(FORM_BARE)},
    {"no_splice_move", SEC_IGNORED, NULL, IGNORED(FORM_BARE)},
    {"clone_fd", SEC_IGNORED, NULL, IGNORED(FORM_BARE)},
    {"max_idle_threads", SEC_IGNORED, NULL, IGNORED(FORM_VALUE)},
    /* mount(8) and mount.fuse3 pass these on from the command line or fstab. */
    {"lazytime", SEC_IGNORED, NULL, IGNORED(FORM_BARE)},
    {"nolazytime", SEC_IGNORED, NULL, IGNORED(FORM_BARE)},
    {"iversion", SEC_IGNORED, NULL, IGNORED(FORM_BARE)},
    {"noiversion", SEC_IGNORED, NULL, IGNORED(FORM_BARE)},
    {"mand", SEC_IGNORED, NULL, IGNORED(FORM_BARE)},
    {"nomand", SEC_IGNORED, NULL, IGNORED(FORM_BARE)},
    {"comment", SEC_IGNORED, NULL, IGNORED(FORM_VALUE)},

    {"plugins", SEC_UNSUPPORTED, NULL, UNSUPPORTED(FORM_VALUE)},
    {"ino32_t", SEC_UNSUPPORTED, NULL, UNSUPPORTED(FORM_BARE)},
};

#define NOPTS (sizeof(opt_table) / sizeof(opt_table[0]))

const char *ovl_option_name(size_t i)
{
	return i < NOPTS ? opt_table[i].name : NULL;
}

static const struct {
	const char *title;
	bool as_list;	  /* comma-separated, rather than one line per option */
	const char *more; /* what the list accepts besides table rows */
} help_sections[SEC_COUNT] = {
    [SEC_OVERLAY] = {"Overlay options:", false, NULL},
    [SEC_OWNER] = {"Ownership as the mount shows it (see ovlfs(1)):", false, NULL},
    [SEC_FUSE] = {"FUSE options passed to libfuse:", true, NULL},
    /* fstab's userspace options (x-systemd.*, ...): apply_opt accepts them by prefix. */
    [SEC_IGNORED] = {"Accepted for compatibility and ignored:", true, "x-*"},
    [SEC_UNSUPPORTED] = {"Recognised but not supported yet:", true, NULL},
};

/* As wide as the general options above. */
enum { HELP_INDENT = 25, HELP_WIDTH = 86 };

/* "name", "name=VALUES" or "name=": the option as --help shows it. */
static void help_label(const struct opt_spec *o, char *buf, size_t len)
{
	if (o->form == FORM_BARE || (o->form == FORM_EITHER && !o->values))
		snprintf(buf, len, "%s", o->name);
	else
		snprintf(buf, len, "%s=%s", o->name, o->values ? o->values : "");
}

/* Prints text from column col on, wrapped at spaces to HELP_WIDTH, then a newline. */
static void print_wrapped(FILE *out, const char *text, size_t col)
{
	while (strlen(text) > HELP_WIDTH - col) {
		size_t cut = HELP_WIDTH - col;

		while (cut > 0 && text[cut] != ' ')
			cut--;
		if (cut == 0) /* one word longer than the line: let it overflow */
			cut = strcspn(text, " ");
		if (!text[cut])
			break;
		fprintf(out, "%.*s\n%*s", (int)cut, text, HELP_INDENT, "");
		text += cut + 1;
		col = HELP_INDENT;
	}
	fprintf(out, "%s\n", text);
}

/* One line per option: its names, then its help from column HELP_INDENT (or, after a long
 * single name, from two spaces after it). */
static void print_entry(FILE *out, const char *names, const char *help)
{
	size_t width = 2 + strlen(names);

	if (width + 2 <= HELP_INDENT) {
		fprintf(out, "  %-*s", HELP_INDENT - 2, names);
		print_wrapped(out, help, HELP_INDENT);
	} else if (!strchr(names, ',') && width + 2 + strcspn(help, " ") <= HELP_WIDTH) {
		fprintf(out, "  %s  ", names);
		print_wrapped(out, help, width + 2);
	} else {
		fprintf(out, "  %s\n%*s", names, HELP_INDENT, "");
		print_wrapped(out, help, HELP_INDENT);
	}
}

/* Appends item to a comma-separated list wrapped at HELP_WIDTH; *col is the line's length. */
static void print_list_item(FILE *out, const char *item, size_t *col)
{
	size_t len = strlen(item);

	if (*col == 0) {
		fprintf(out, "  %s", item);
		*col = 2 + len;
	} else if (*col + 2 + len + 1 > HELP_WIDTH) {
		fprintf(out, ",\n  %s", item);
		*col = 2 + len;
	} else {
		fprintf(out, ", %s", item);
		*col += 2 + len;
	}
}

static void print_section(FILE *out, enum opt_section sec)
{
	char names[256] = "", item[128];
	size_t i, col = 0;

	fprintf(out, "\n%s\n", help_sections[sec].title);
	for (i = 0; i < NOPTS; i++) {
		const struct opt_spec *o = &opt_table[i];
		size_t used = strlen(names);

		if (o->section != sec)
			continue;
		help_label(o, item, sizeof(item));
		if (help_sections[sec].as_list) {
			if (o->help)
				snprintf(item + strlen(item), sizeof(item) - strlen(item), " (%s)",
					 o->help);
			print_list_item(out, item, &col);
			continue;
		}
		snprintf(names + used, sizeof(names) - used, "%s%s", used ? ", " : "", item);
		if (o->help) { /* else the next row's line names this one too */
			print_entry(out, names, o->help);
			names[0] = '\0';
		}
	}
	if (help_sections[sec].more)
		print_list_item(out, help_sections[sec].more, &col);
	if (col)
		fputc('\n', out);
}

/* --help: the general options, then every mount option of the table by section. */
static int print_help(FILE *out)
{
	int sec;

	fputs(usage_head, out);
	for (sec = 0; sec < SEC_COUNT; sec++)
		print_section(out, (enum opt_section)sec);
	if (ferror(out) || fflush(out) == EOF)
		return -1;
	return 0;
}

static const struct opt_spec *find_opt(const char *name, size_t len)
{
	size_t i;

	for (i = 0; i < NOPTS; i++)
		if (strlen(opt_table[i].name) == len && strncmp(opt_table[i].name, name, len) == 0)
			return &opt_table[i];
	return NULL;
}

/* Does what row o says with value (NULL for a bare option). */
static int apply_spec(struct parse_state *st, const struct opt_spec *o, const char *value)
{
	char *at = (char *)st->cfg + o->field;
	const char *val = value ? value : "";
	int choice;

	switch (o->type) {
	case OPT_SET:
		*(bool *)at = o->num;
		return OVL_ARGS_OK;
	case OPT_BOOL01:
		if (strcmp(val, "0") && strcmp(val, "1"))
			return fail(st, "invalid value '%s' for option '%s' (expected 0 or 1)", val,
				    o->name);
		*(bool *)at = (val[0] == '1') != (o->num != 0);
		return OVL_ARGS_OK;
	case OPT_CHOICE:
	case OPT_IGNORE:
		choice = o->values && value ? choice_index(o->values, value) : 0;
		if (choice < 0)
			return fail(st, "invalid value '%s' for option '%s' (expected one of: %s)",
				    val, o->name, o->values);
		if (o->type == OPT_CHOICE)
			*(int *)at = choice;
		return OVL_ARGS_OK;
	case OPT_PATH:
		return set_path(st, (char **)at, o->name, val);
	case OPT_FUSE:
		return add_fuse_opt(st, o->name, value);
	case OPT_UNSUPPORTED:
		return fail(st, "option '%s' is not supported by ovlfs yet", o->name);
	case OPT_CALL:
		return o->parse(st, o, value);
	}
	return OVL_ARGS_OK;
}

/*
 * The mount flags that `mount -o remount` may change: each name sets and clears MS_* bits
 * (the last one wins), as mount(8) turns them into mount(2) flags.
 */
static const struct {
	const char *name;
	unsigned long set, clear;
} vfs_flags[] = {
    {"nosuid", MS_NOSUID, 0},
    {"suid", 0, MS_NOSUID},
    {"nodev", MS_NODEV, 0},
    {"dev", 0, MS_NODEV},
    {"noexec", MS_NOEXEC, 0},
    {"exec", 0, MS_NOEXEC},
    {"sync", MS_SYNCHRONOUS, 0},
    {"async", 0, MS_SYNCHRONOUS},
    {"dirsync", MS_DIRSYNC, 0},
    {"noatime", MS_NOATIME, MS_RELATIME | MS_STRICTATIME},
    {"atime", 0, MS_NOATIME},
    {"relatime", MS_RELATIME, MS_NOATIME | MS_STRICTATIME},
    {"norelatime", 0, MS_RELATIME},
    {"strictatime", MS_STRICTATIME, MS_NOATIME | MS_RELATIME},
    {"nostrictatime", 0, MS_STRICTATIME},
    {"nodiratime", MS_NODIRATIME, 0},
    {"diratime", 0, MS_NODIRATIME},
    {"lazytime", MS_LAZYTIME, 0},
    {"nolazytime", 0, MS_LAZYTIME},
};

/*
 * One option of a remount. mount(8) runs `ovlfs SOURCE MNT -o OPTS,remount` with every
 * option the mount shows (user_id=, group_id=, ...) and, from fstab, the layers: only the
 * mount flags can change, and the kernel's FUSE client ignores the rest of an old-API
 * remount (fs/fuse/inode.c, fuse_parse_param), so ovlfs ignores it too.
 */
static int remount_opt(struct parse_state *st, const char *name, const char *value)
{
	if (value)
		return OVL_ARGS_OK;
	if (!strcmp(name, "ro") || !strcmp(name, "rw")) {
		st->cfg->params.readonly = name[1] == 'o';
		return OVL_ARGS_OK;
	}
	for (size_t i = 0; i < sizeof(vfs_flags) / sizeof(vfs_flags[0]); i++) {
		if (!strcmp(name, vfs_flags[i].name)) {
			st->cfg->remount_flags &= ~vfs_flags[i].clear;
			st->cfg->remount_flags |= vfs_flags[i].set;
		}
	}
	return OVL_ARGS_OK;
}

/* Whether the -o list opts holds "remount". */
static bool opts_have_remount(const char *opts)
{
	size_t n = strlen(opts), off = 0;

	while (off <= n) {
		size_t len = span_unescaped(opts + off, n - off, ',');

		if (len == strlen("remount") && !strncmp(opts + off, "remount", len))
			return true;
		off += len + 1;
	}
	return false;
}

/* Whether any -o of argv asks for a remount; the other options are then read otherwise
 * (remount_opt), so this is known before the first is applied. Mirrors parse_argv. */
static bool asks_remount(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (!strcmp(a, "--"))
			return false;
		if (a[0] != '-' || a[1] == '-' || a[1] == '\0')
			continue;
		for (const char *p = a + 1; *p && strchr("fds", *p) != NULL; p++)
			if (p[1] == 'o') {
				a = p;
				break;
			}
		if (a[1] != 'o')
			continue;
		if (a[2] ? opts_have_remount(a + 2) : i + 1 < argc && opts_have_remount(argv[++i]))
			return true;
	}
	return false;
}

/* Applies one option; tok is the raw token (escapes intact), len bytes long. */
static int apply_opt(struct parse_state *st, const char *tok, size_t len)
{
	const struct opt_spec *o;
	char *raw, *name, *value = NULL;
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
	if (st->remount) {
		ret = remount_opt(st, name, value);
		goto out;
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
	if (o->form == FORM_BARE && value) {
		ret = fail(st, "option '%s' does not take a value", name);
		goto out;
	}
	if (o->form == FORM_VALUE && !value) {
		ret = fail(st, "option '%s' requires a value (%s=...)", name, name);
		goto out;
	}
	if (value && !o->raw)
		unescape_in_place(value);
	ret = apply_spec(st, o, value);
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
			if (print_help(stdout) < 0)
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
			if (print_help(stdout) < 0)
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
	if (st->remount || cfg->remount) {
		cfg->remount = true;
		return OVL_ARGS_OK; /* the layers are the mount's already */
	}
	if (!cfg->nlower)
		return fail(st, "missing required option 'lowerdir'");
	if (cfg->upperdir && !cfg->workdir)
		return fail(st, "option 'upperdir' given without 'workdir'");
	if (cfg->workdir && !cfg->upperdir)
		return fail(st, "option 'workdir' given without 'upperdir'");
	if (cfg->params.no_oci_whiteouts && cfg->params.whiteout == OVL_WHITEOUT_FILE)
		return fail(st, "option 'whiteout=file' needs OCI whiteouts (not with "
				"'oci_whiteouts=0')");
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
	st.remount = asks_remount(argc, argv);
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
