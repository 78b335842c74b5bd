/*
 * What the command-line parser (options.c), its option table (option_table.c) and the help
 * generated from the table (help.c) share. Internal to src/cli/: config.h is the public face.
 */
#ifndef OVLFS_OPTION_TABLE_H
#define OVLFS_OPTION_TABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "config.h"

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

/* Every mount option, in the order --help lists them (option_table.c). */
extern const struct opt_spec opt_table[];
extern const size_t opt_table_len;

/* options.c: what the table's parse functions build on. */
__attribute__((format(printf, 2, 3))) int parse_fail(struct parse_state *st, const char *fmt, ...);
int parse_fail_nomem(struct parse_state *st);
int parse_lowerdir(struct parse_state *st, const char *raw);
int parse_layer_append(struct parse_state *st, const char *dir, bool data);
/* The index of v among the '|'-separated choices, or -1. */
int choice_index(const char *choices, const char *v);
int add_fuse_opt(struct parse_state *st, const char *name, const char *value);

/* help.c: --help, the general options then the table's by section; -1 if out fails. */
int print_help(FILE *out);

#endif
