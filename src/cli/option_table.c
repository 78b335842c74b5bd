/* The mount options: one row each, and the parse functions of those no column can describe. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "option_table.h"

#include <string.h>

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

/* The special options: what each does is more than storing its value. */

static int opt_lowerdir(struct parse_state *st, const struct opt_spec *o, const char *value)
{
	(void)o;
	return parse_lowerdir(st, value);
}

static int opt_layer_append(struct parse_state *st, const struct opt_spec *o, const char *value)
{
	return parse_layer_append(st, value, !strcmp(o->name, "datadir+"));
}

static int opt_debug(struct parse_state *st, const struct opt_spec *o, const char *value)
{
	(void)o;
	(void)value;
	st->cfg->debug = true;
	st->cfg->foreground = true;
	return OVL_ARGS_OK;
}

/*
 * The kernel overlayfs's feature options: a value ovlfs implements is accepted, another of
 * the kernel's values is refused with what ovlfs does instead.
 */
static const struct {
	const char *name;
	const char *accepted; /* the values whose meaning ovlfs has */
	const char *instead;  /* what ovlfs does, for the refusal */
} kernel_features[] = {
    /* on: lower hard links stay one file across copy-up (engine/index.c). */
    {"index", "on|off", NULL},
    {"nfs_export", "off", "it works as nfs_export=off: no file handle of the mount can be opened"},
    /* on: metacopy files are served, and metadata changes copy up no data (metacopy.c). */
    {"metacopy", "on|off", NULL},
    /* The kernel's fs-verity checks of metacopy files (metacopy.c). The kernel takes them
     * without metacopy=on too (6.18): so does ovlfs. */
    {"verity", "off|on|require", NULL},
    /* Every value has its meaning; "off" is the kernel's off with redirect_always_follow
     * (Debian's and most distributions' default): follow. */
    {"redirect_dir", "on|off|follow|nofollow", NULL},
    /* One st_dev (FUSE's): st_ino is composed as xino's in any case (README). */
    {"xino", "off|auto|on", NULL},
    {"uuid", "on|off|null|auto", NULL},
};

static int opt_kernel_feature(struct parse_state *st, const struct opt_spec *o, const char *value)
{
	if (choice_index(o->values, value) < 0)
		return parse_fail(st, "invalid value '%s' for option '%s' (expected one of: %s)",
				  value, o->name, o->values);
	for (size_t i = 0; i < sizeof(kernel_features) / sizeof(kernel_features[0]); i++) {
		if (strcmp(kernel_features[i].name, o->name))
			continue;
		if (choice_index(kernel_features[i].accepted, value) < 0)
			return parse_fail(st, "option '%s=%s' is not supported by ovlfs yet (%s)",
					  o->name, value, kernel_features[i].instead);
	}
	/* As the kernel's uuid=off: origin records carry a null UUID and only such are read. */
	if (!strcmp(o->name, "uuid"))
		st->cfg->params.origin_uuid_off = !strcmp(value, "off");
	/* on: a merged directory is renamed with a redirect; the others copy it up whole;
	 * nofollow: a directory carrying a redirect is refused (EPERM), as the kernel does. */
	if (!strcmp(o->name, "redirect_dir")) {
		st->cfg->params.redirect_write = !strcmp(value, "on");
		st->cfg->params.redirect_nofollow = !strcmp(value, "nofollow");
	}
	if (!strcmp(o->name, "index"))
		st->cfg->params.index = !strcmp(value, "on") ? OVL_INDEX_ON : OVL_INDEX_OFF;
	/* off: a file carrying overlay.metacopy is refused (EPERM), as the kernel does. */
	if (!strcmp(o->name, "metacopy"))
		st->cfg->params.metacopy = !strcmp(value, "on");
	if (!strcmp(o->name, "verity"))
		st->cfg->params.verity = !strcmp(value, "require") ? OVL_VERITY_REQUIRE
					 : !strcmp(value, "on")	   ? OVL_VERITY_ON
								   : OVL_VERITY_OFF;
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
		return parse_fail(st, "option 'noxattrs' is not supported by ovlfs yet");
	if (strcmp(value, "0"))
		return parse_fail(st, "invalid value '%s' for option 'noxattrs' (expected 0 or 1)",
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
const struct opt_spec opt_table[] = {
    {"lowerdir", SEC_OVERLAY,
     "lower layers, top first (required; '\\:' is a literal colon; '::' starts the data-only "
     "layers)",
     CALLS(opt_lowerdir, FORM_VALUE, "DIR[:DIR...]"), .raw = true},
    {"lowerdir+", SEC_OVERLAY, "one more lower layer, below those given so far",
     CALLS(opt_layer_append, FORM_VALUE, "DIR")},
    {"datadir+", SEC_OVERLAY, "one more data-only layer, below every lower layer",
     CALLS(opt_layer_append, FORM_VALUE, "DIR")},
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
    /* The kernel overlayfs's features (kernel_features above). */
    {"index", SEC_OVERLAY,
     "on (default where the layers allow it): lower hard links stay one file across "
     "copy-up (workdir/index, as the kernel); off: a copy-up splits the name copied",
     CALLS(opt_kernel_feature, FORM_VALUE, "on|off")},
    {"nfs_export", SEC_OVERLAY, "off only: name_to_handle_at gives only fanotify FIDs (Linux 6.9+)",
     CALLS(opt_kernel_feature, FORM_VALUE, "on|off")},
    {"metacopy", SEC_OVERLAY,
     "on: a metadata change copies up no data, and such files (the kernel's too) are read "
     "from the data below; off: they are refused (EPERM)",
     CALLS(opt_kernel_feature, FORM_VALUE, "on|off")},
    {"verity", SEC_OVERLAY,
     "off (default): fs-verity digests in metacopy records are ignored; on: a metacopy file "
     "is opened only if its data file has the digest its record names (else EIO), and "
     "metacopy stubs record their data's digest; require: records without one are refused",
     CALLS(opt_kernel_feature, FORM_VALUE, "off|on|require")},
    {"redirect_dir", SEC_OVERLAY,
     "on (default): a merged or lower directory is renamed by copying up it alone and "
     "recording its old path (overlay.redirect); off, follow or nofollow: by copying it up "
     "whole; redirects are followed, except with nofollow",
     CALLS(opt_kernel_feature, FORM_VALUE, "on|follow|nofollow|off")},
    {"xino", SEC_OVERLAY,
     "accepted; st_ino is always composed as xino does (one st_dev for every layer)",
     CALLS(opt_kernel_feature, FORM_VALUE, "off|auto|on")},
    {"uuid", SEC_OVERLAY,
     "off: copy-up origin records carry a null UUID, and only such are read (others: the "
     "layer's UUID, the default)",
     CALLS(opt_kernel_feature, FORM_VALUE, "on|off|null|auto")},

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
    {"context", SEC_IGNORED, NULL, IGNORED(FORM_VALUE)},
    {"fast_ino_check", SEC_IGNORED, NULL, IGNORED(FORM_VALUE)},
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

const size_t opt_table_len = sizeof(opt_table) / sizeof(opt_table[0]);

const char *ovl_option_name(size_t i)
{
	return i < opt_table_len ? opt_table[i].name : NULL;
}
