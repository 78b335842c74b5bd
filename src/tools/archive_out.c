/* Where `ovlfs export` writes its archive (archive_out.h). */
#include "archive_out.h"
#include "cli/log.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int ovl_archive_open(const char *name, struct ovl_archive_out *o)
{
	struct stat st;
	char *copy, *dir, *base;
	mode_t mask;

	o->tmp = NULL;
	o->fd = -1;
	if (!name || !strcmp(name, "-")) {
		if (isatty(STDOUT_FILENO)) {
			ovl_log(LOG_ERR, "export: refusing to write a tar archive to a terminal "
					 "(use -o FILE or a pipe)");
			return -1;
		}
		o->fd = STDOUT_FILENO;
		return 0;
	}
	if (stat(name, &st) == 0 && S_ISDIR(st.st_mode)) {
		ovl_log(LOG_ERR, "export: cannot write the archive to '%s': %s", name,
			strerror(EISDIR));
		return -1;
	}
	if (stat(name, &st) == 0 && !S_ISREG(st.st_mode)) {
		o->fd = open(name, O_WRONLY | O_TRUNC | O_CLOEXEC);
		if (o->fd < 0) {
			ovl_log(LOG_ERR, "export: cannot open '%s': %s", name, strerror(errno));
			return -1;
		}
		return 0;
	}
	if (!(copy = strdup(name)) || !(dir = strdup(name))) {
		free(copy);
		ovl_log(LOG_ERR, "export: out of memory");
		return -1;
	}
	base = basename(copy);
	if (asprintf(&o->tmp, "%s/.%s.XXXXXX", dirname(dir), base) < 0)
		o->tmp = NULL;
	free(copy);
	free(dir);
	if (!o->tmp) {
		ovl_log(LOG_ERR, "export: out of memory");
		return -1;
	}
	o->fd = mkostemp(o->tmp, O_CLOEXEC);
	if (o->fd < 0) {
		ovl_log(LOG_ERR, "export: cannot create '%s': %s", name, strerror(errno));
		free(o->tmp);
		o->tmp = NULL;
		return -1;
	}
	/* mkstemp makes it 0600; an archive gets the usual 0666 less the umask */
	mask = umask(0);
	umask(mask);
	if (fchmod(o->fd, 0666 & ~mask) < 0) {
		ovl_log(LOG_ERR, "export: cannot set the mode of '%s': %s", o->tmp,
			strerror(errno));
		return -1;
	}
	return 0;
}

/* Success: the temporary file becomes FILE. Failure: it is removed. 0 or -1. */
int ovl_archive_close(const char *name, struct ovl_archive_out *o, bool ok)
{
	int r = 0;

	if (o->tmp && ok && fsync(o->fd) < 0) {
		ovl_log(LOG_ERR, "export: cannot write the archive to '%s': %s", name,
			strerror(errno));
		ok = false;
	}
	if (o->fd >= 0 && o->fd != STDOUT_FILENO && close(o->fd) < 0 && ok) {
		ovl_log(LOG_ERR, "export: cannot write the archive to '%s': %s", name,
			strerror(errno));
		ok = false;
	}
	if (o->tmp && ok && rename(o->tmp, name) < 0) {
		ovl_log(LOG_ERR, "export: cannot rename '%s' to '%s': %s", o->tmp, name,
			strerror(errno));
		ok = false;
	}
	if (o->tmp && !ok && unlink(o->tmp) < 0)
		ovl_log(LOG_ERR, "export: cannot remove '%s': %s", o->tmp, strerror(errno));
	free(o->tmp);
	o->tmp = NULL;
	if (!ok)
		r = -1;
	return r;
}
