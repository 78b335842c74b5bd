/* --help, generated from the option table so that it lists every option the parser knows. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "option_table.h"

#include <stdio.h>
#include <string.h>

/* The help before the mount options; those are listed from opt_table (print_help). */
static const char usage_head[] =
    "usage: ovlfs [OPTIONS] [SOURCE] MOUNTPOINT\n"
    "       ovlfs export UPPERDIR [LOWERDIR...] [-o FILE|-] [-z]  (an OCI layer tar)\n"
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
	for (i = 0; i < opt_table_len; i++) {
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
int print_help(FILE *out)
{
	int sec;

	fputs(usage_head, out);
	for (sec = 0; sec < SEC_COUNT; sec++)
		print_section(out, (enum opt_section)sec);
	if (ferror(out) || fflush(out) == EOF)
		return -1;
	return 0;
}
