/* Command-line parsing: a drop-in for fuse-overlayfs's and mount.fuse3's way of calling us. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "option_table.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>

#ifndef OVLFS_VERSION
#define OVLFS_VERSION "0.1.0"
#endif

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

int parse_fail(struct parse_state *st, const char *fmt, ...)
{
	va_list ap;

	if (st->errlen) {
		va_start(ap, fmt);
		vsnprintf(st->err, st->errlen, fmt, ap);
		va_end(ap);
	}
	return OVL_ARGS_ERROR;
}

int parse_fail_nomem(struct parse_state *st)
{
	return parse_fail(st, "out of memory");
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

/* Splits a raw (still escaped) lowerdir value on unescaped ':'; "::" starts the data-only
 * layers (the kernel's lowerdir=l1:l2::d1::d2), each of which follows a "::". */
int parse_lowerdir(struct parse_state *st, const char *raw)
{
	size_t n = strlen(raw), off, seg;
	int count = 0, ndata_from = -1, i;
	bool after_double = false;
	char **dirs;

	if (n == 0)
		return parse_fail(st, "option 'lowerdir' has an empty value");

	/* Count and check the entries before allocating anything. */
	for (off = 0;; off += seg + 1) {
		seg = span_unescaped(raw + off, n - off, ':');
		if (seg == 0) {
			if (off == 0)
				return parse_fail(
				    st, "lowerdir '%s' has an empty layer (leading ':')", raw);
			/* "/a::" ends in ':' too, whatever "::" would mean elsewhere. */
			if (off + 1 >= n)
				return parse_fail(
				    st, "lowerdir '%s' has an empty layer (trailing ':')", raw);
			/* ":::" is just empty; "a::b" starts the data-only layers. */
			if (raw[off + 1] == ':' || after_double)
				return parse_fail(st, "lowerdir '%s' has an empty layer", raw);
			if (ndata_from < 0)
				ndata_from = count;
			after_double = true;
			continue;
		}
		if (ndata_from >= 0 && !after_double)
			return parse_fail(st, "lowerdir '%s': %s", raw,
					  "an ordinary layer cannot follow the data-only layers "
					  "(separate each of them with '::')");
		after_double = false;
		if (seg >= 2 && raw[off] == '/' && raw[off + 1] == '/')
			return parse_fail(
			    st, "lowerdir '%s': %s", raw,
			    "plugin layers ('//plugin/...') are not supported by ovlfs yet");
		count++;
		if (off + seg >= n)
			break;
	}
	if (count > OVL_MAX_LOWER)
		return parse_fail(st, "lowerdir has %d layers, more than the maximum of %d", count,
				  OVL_MAX_LOWER);

	dirs = calloc((size_t)count + 1, sizeof(*dirs));
	if (!dirs)
		return parse_fail_nomem(st);
	for (i = 0, off = 0; i < count; off += seg + 1) {
		seg = span_unescaped(raw + off, n - off, ':');
		if (seg == 0)
			continue; /* the second ':' of "::" */
		dirs[i] = unescape(raw + off, seg);
		if (!dirs[i]) {
			while (i--)
				free(dirs[i]);
			free(dirs);
			return parse_fail_nomem(st);
		}
		i++;
	}
	/* A later lowerdir= replaces an earlier one, as with mount(8). */
	free_lowerdirs(st->cfg);
	st->cfg->lowerdirs = dirs;
	st->cfg->nlower = count;
	st->cfg->params.ndata = ndata_from < 0 ? 0 : count - ndata_from;
	return OVL_ARGS_OK;
}

/* lowerdir+=DIR and datadir+=DIR (the kernel's 6.8+ syntax): one layer appended, below those
 * given so far; a data-only one (datadir+) only below the ordinary ones. */
int parse_layer_append(struct parse_state *st, const char *dir, bool data)
{
	struct ovl_config *cfg = st->cfg;
	char **dirs;

	if (!dir || !*dir)
		return parse_fail(st, "option '%s' has an empty value",
				  data ? "datadir+" : "lowerdir+");
	if (!data && cfg->params.ndata > 0)
		return parse_fail(st, "option 'lowerdir+' cannot follow the data-only layers");
	if (cfg->nlower >= OVL_MAX_LOWER)
		return parse_fail(st, "lowerdir has %d layers, more than the maximum of %d",
				  cfg->nlower + 1, OVL_MAX_LOWER);
	dirs = realloc(cfg->lowerdirs, sizeof(*dirs) * (size_t)(cfg->nlower + 2));
	if (!dirs)
		return parse_fail_nomem(st);
	cfg->lowerdirs = dirs;
	dirs[cfg->nlower] = strdup(dir);
	if (!dirs[cfg->nlower])
		return parse_fail_nomem(st);
	dirs[++cfg->nlower] = NULL;
	if (data)
		cfg->params.ndata++;
	return OVL_ARGS_OK;
}

/* value is already unescaped. */
static int set_path(struct parse_state *st, char **slot, const char *name, const char *value)
{
	char *v;

	if (!*value)
		return parse_fail(st, "option '%s' has an empty value", name);
	v = strdup(value);
	if (!v)
		return parse_fail_nomem(st);
	/* A later upperdir=/workdir= replaces an earlier one. */
	free(*slot);
	*slot = v;
	return OVL_ARGS_OK;
}

/* Appends name[=value] to the libfuse list, re-escaping what libfuse will unescape. */
int add_fuse_opt(struct parse_state *st, const char *name, const char *value)
{
	struct sbuf *b = &st->fuse;
	const char *p;

	if ((b->len && sbuf_putc(b, ',') < 0) || sbuf_puts(b, name) < 0)
		return parse_fail_nomem(st);
	if (!value)
		return OVL_ARGS_OK;
	if (sbuf_putc(b, '=') < 0)
		return parse_fail_nomem(st);
	for (p = value; *p; p++) {
		if ((*p == ',' || *p == '\\') && sbuf_putc(b, '\\') < 0)
			return parse_fail_nomem(st);
		if (sbuf_putc(b, *p) < 0)
			return parse_fail_nomem(st);
	}
	return OVL_ARGS_OK;
}

/* The index of v among the '|'-separated choices, or -1. */
int choice_index(const char *choices, const char *v)
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

static const struct opt_spec *find_opt(const char *name, size_t len)
{
	size_t i;

	for (i = 0; i < opt_table_len; i++)
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
			return parse_fail(st,
					  "invalid value '%s' for option '%s' (expected 0 or 1)",
					  val, o->name);
		*(bool *)at = (val[0] == '1') != (o->num != 0);
		return OVL_ARGS_OK;
	case OPT_CHOICE:
	case OPT_IGNORE:
		choice = o->values && value ? choice_index(o->values, value) : 0;
		if (choice < 0)
			return parse_fail(
			    st, "invalid value '%s' for option '%s' (expected one of: %s)", val,
			    o->name, o->values);
		if (o->type == OPT_CHOICE)
			*(int *)at = choice;
		return OVL_ARGS_OK;
	case OPT_PATH:
		return set_path(st, (char **)at, o->name, val);
	case OPT_FUSE:
		return add_fuse_opt(st, o->name, value);
	case OPT_UNSUPPORTED:
		return parse_fail(st, "option '%s' is not supported by ovlfs yet", o->name);
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
		return parse_fail_nomem(st);
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
		ret = parse_fail(st, "unknown option '%s'", raw);
		goto out;
	}
	if (o->form == FORM_BARE && value) {
		ret = parse_fail(st, "option '%s' does not take a value", name);
		goto out;
	}
	if (o->form == FORM_VALUE && !value) {
		ret = parse_fail(st, "option '%s' requires a value (%s=...)", name, name);
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
		return parse_fail(st, "unexpected extra argument '%s'", arg);
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
				return parse_fail(st, "cannot write the help text to stdout");
			return OVL_ARGS_EXIT;
		case 'V':
			if (print_stdout("ovlfs " OVLFS_VERSION "\n") < 0)
				return parse_fail(st, "cannot write the version to stdout");
			return OVL_ARGS_EXIT;
		case 'o':
			if (p[1])
				return apply_opts(st, p + 1);
			if (*i + 1 >= argc)
				return parse_fail(st, "option '-o' requires an argument");
			return apply_opts(st, argv[++*i]);
		default:
			snprintf(buf, sizeof(buf), "-%c", *p);
			return parse_fail(st, "unknown option '%s'", buf);
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
				return parse_fail(st, "cannot write the help text to stdout");
			return OVL_ARGS_EXIT;
		} else if (!strcmp(a, "--version")) {
			if (print_stdout("ovlfs " OVLFS_VERSION "\n") < 0)
				return parse_fail(st, "cannot write the version to stdout");
			return OVL_ARGS_EXIT;
		} else if (a[1] == '-') {
			ret = parse_fail(st, "unknown option '%s'", a);
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
		return parse_fail(st, "no mount point given");
	cfg->mountpoint = strdup(st->pos[st->npos - 1]);
	if (!cfg->mountpoint)
		return parse_fail_nomem(st);
	if (st->remount || cfg->remount) {
		cfg->remount = true;
		return OVL_ARGS_OK; /* the layers are the mount's already */
	}
	if (!cfg->nlower)
		return parse_fail(st, "missing required option 'lowerdir'");
	if (cfg->params.ndata >= cfg->nlower)
		return parse_fail(st, "data-only layers need an ordinary lower layer above them");
	if (cfg->upperdir && !cfg->workdir)
		return parse_fail(st, "option 'upperdir' given without 'workdir'");
	if (cfg->workdir && !cfg->upperdir)
		return parse_fail(st, "option 'workdir' given without 'upperdir'");
	if (cfg->params.no_oci_whiteouts && cfg->params.whiteout == OVL_WHITEOUT_FILE)
		return parse_fail(st, "option 'whiteout=file' needs OCI whiteouts (not with "
				      "'oci_whiteouts=0')");
	if (st->allow_other && st->allow_root)
		return parse_fail(st,
				  "options 'allow_other' and 'allow_root' are mutually exclusive");
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
	/* passthrough where the kernel and the daemon's privileges allow; redirect_dir=on;
	 * the index where the layers allow it */
	cfg->passthrough = true;
	cfg->params.redirect_write = true;
	cfg->params.index = OVL_INDEX_AUTO;
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
