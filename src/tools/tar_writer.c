/* POSIX tar (pax interchange format) writer: a 512-byte ustar header per entry, preceded by
 * a PAX 'x' header when a value does not fit ustar (long path or link target, size of 8 GiB
 * and more, large ids or times) or when the entry carries xattrs. */
#include "tar_writer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#define BLOCK 512
#define RECORD (20 * BLOCK) /* GNU tar's default record: the archive is padded to it */
#define BUFSZ (128 * 1024)

struct tar_writer {
	int fd;
	gzFile gz;
	int err;	/* first error, sticky */
	uint64_t total; /* bytes of archive so far */
	uint64_t entry_left, entry_size;
	size_t used;
	unsigned char buf[BUFSZ];
};

static int flush_buf(struct tar_writer *tw)
{
	size_t off = 0;

	if (tw->err)
		return tw->err;
	if (tw->gz) {
		if (tw->used && gzwrite(tw->gz, tw->buf, (unsigned)tw->used) != (int)tw->used) {
			int zerr;
			const char *msg = gzerror(tw->gz, &zerr);
			(void)msg;
			tw->err = zerr == Z_ERRNO && errno ? -errno : -EIO;
			return tw->err;
		}
		tw->used = 0;
		return 0;
	}
	while (off < tw->used) {
		ssize_t n = write(tw->fd, tw->buf + off, tw->used - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			tw->err = -errno;
			return tw->err;
		}
		if (n == 0) {
			tw->err = -EIO;
			return tw->err;
		}
		off += (size_t)n;
	}
	tw->used = 0;
	return 0;
}

static int put(struct tar_writer *tw, const void *data, size_t len)
{
	const unsigned char *p = data;

	while (len && !tw->err) {
		size_t room = BUFSZ - tw->used, n = len < room ? len : room;
		memcpy(tw->buf + tw->used, p, n);
		tw->used += n;
		tw->total += n;
		p += n;
		len -= n;
		if (tw->used == BUFSZ)
			flush_buf(tw);
	}
	return tw->err;
}

static int put_zeros(struct tar_writer *tw, size_t len)
{
	static const unsigned char zeros[BLOCK];

	while (len && !tw->err) {
		size_t n = len < BLOCK ? len : BLOCK;
		put(tw, zeros, n);
		len -= n;
	}
	return tw->err;
}

int tar_writer_new(int fd, bool gzip, struct tar_writer **out)
{
	struct tar_writer *tw = calloc(1, sizeof(*tw));

	if (!tw)
		return -ENOMEM;
	tw->fd = fd;
	if (gzip) {
		int gfd = dup(fd);
		if (gfd < 0) {
			int e = -errno;
			free(tw);
			return e;
		}
		/* zlib writes no name and a zero time in the gzip header: output is reproducible */
		tw->gz = gzdopen(gfd, "wb6");
		if (!tw->gz) {
			close(gfd);
			free(tw);
			return -ENOMEM;
		}
	}
	*out = tw;
	return 0;
}

/* Octal, NUL-terminated, in a field of width w; false when it does not fit. */
static bool put_octal(char *field, size_t w, uint64_t v)
{
	char tmp[32];

	if (w - 1 < 22 && v >> (3 * (w - 1)))
		return false;
	snprintf(tmp, sizeof(tmp), "%0*llo", (int)(w - 1), (unsigned long long)v);
	memcpy(field, tmp, w); /* includes the NUL */
	return true;
}

/* GNU base-256 for numbers too large for octal (device numbers): high bit set, big-endian. */
static void put_base256(char *field, size_t w, uint64_t v)
{
	memset(field, 0, w);
	for (size_t i = w; i-- > 1 && v; v >>= 8)
		field[i] = (char)(v & 0xff);
	field[0] = (char)0x80;
}

struct pax {
	char *data;
	size_t len, cap;
};

static size_t digits(size_t n)
{
	size_t d = 1;
	while (n >= 10) {
		n /= 10;
		d++;
	}
	return d;
}

/* One record "<len> <key>=<value>\n", len counting the whole record. */
static int pax_add(struct pax *p, const char *key, const void *val, size_t vlen)
{
	size_t body = strlen(key) + vlen + 3, n = body + digits(body);
	int hdr;

	if (digits(n) != digits(body))
		n = body + digits(n);
	if (p->len + n + 1 > p->cap) {
		size_t cap = (p->len + n + 1) * 2;
		char *d = realloc(p->data, cap);
		if (!d)
			return -ENOMEM;
		p->data = d;
		p->cap = cap;
	}
	hdr = snprintf(p->data + p->len, p->cap - p->len, "%zu %s=", n, key);
	memcpy(p->data + p->len + hdr, val, vlen);
	p->data[p->len + n - 1] = '\n';
	p->len += n;
	return 0;
}

static int pax_add_num(struct pax *p, const char *key, uint64_t v, bool negative)
{
	char s[32];
	int n = snprintf(s, sizeof(s), "%s%llu", negative ? "-" : "", (unsigned long long)v);
	return pax_add(p, key, s, (size_t)n);
}

static void checksum(char *h)
{
	unsigned sum = 0;

	memset(h + 148, ' ', 8);
	for (int i = 0; i < BLOCK; i++)
		sum += (unsigned char)h[i];
	snprintf(h + 148, 8, "%06o", sum);
	h[155] = ' ';
}

static int write_block_header(struct tar_writer *tw, const char *name, char type, mode_t mode,
			      uint64_t uid, uint64_t gid, int64_t mtime, uint64_t size,
			      const char *linkname, unsigned major, unsigned minor)
{
	char h[BLOCK];

	memset(h, 0, sizeof(h));
	memcpy(h, name, strnlen(name, 100));
	put_octal(h + 100, 8, mode & 07777);
	if (!put_octal(h + 108, 8, uid))
		put_octal(h + 108, 8, 0);
	if (!put_octal(h + 116, 8, gid))
		put_octal(h + 116, 8, 0);
	if (!put_octal(h + 124, 12, size))
		put_octal(h + 124, 12, 0);
	if (mtime < 0 || !put_octal(h + 136, 12, (uint64_t)mtime))
		put_octal(h + 136, 12, 0);
	h[156] = type;
	if (linkname)
		memcpy(h + 157, linkname, strnlen(linkname, 100));
	memcpy(h + 257, "ustar", 6);
	memcpy(h + 263, "00", 2);
	if (type == TAR_CHR || type == TAR_BLK) {
		if (!put_octal(h + 329, 8, major))
			put_base256(h + 329, 8, major);
		if (!put_octal(h + 337, 8, minor))
			put_base256(h + 337, 8, minor);
	} else {
		put_octal(h + 329, 8, 0);
		put_octal(h + 337, 8, 0);
	}
	checksum(h);
	return put(tw, h, sizeof(h));
}

/* The PAX records e needs beyond ustar (none for most entries). */
static int pax_records(const struct tar_entry *e, const char *path, struct pax *p)
{
	int r = 0;

	if (strlen(path) > 100)
		r = pax_add(p, "path", path, strlen(path));
	if (!r && e->linkname && strlen(e->linkname) > 100)
		r = pax_add(p, "linkpath", e->linkname, strlen(e->linkname));
	if (!r && e->size > 077777777777ULL)
		r = pax_add_num(p, "size", e->size, false);
	if (!r && e->uid > 07777777)
		r = pax_add_num(p, "uid", e->uid, false);
	if (!r && e->gid > 07777777)
		r = pax_add_num(p, "gid", e->gid, false);
	if (!r && (e->mtime < 0 || (uint64_t)e->mtime > 077777777777ULL))
		r = pax_add_num(p, "mtime", e->mtime < 0 ? -(uint64_t)e->mtime : (uint64_t)e->mtime,
				e->mtime < 0);
	for (size_t i = 0; !r && i < e->nxattrs; i++) {
		char *key;
		if (asprintf(&key, "SCHILY.xattr.%s", e->xattrs[i].name) < 0)
			return -ENOMEM;
		r = pax_add(p, key, e->xattrs[i].value, e->xattrs[i].size);
		free(key);
	}
	return r;
}

int tar_write_header(struct tar_writer *tw, const struct tar_entry *e)
{
	struct pax p = {0};
	char *path;
	int r;

	if (tw->err)
		return tw->err;
	if (tw->entry_left)
		return -EINVAL;
	if (asprintf(&path, "%s%s", e->path, e->type == TAR_DIR ? "/" : "") < 0)
		return -ENOMEM;
	r = pax_records(e, path, &p);
	if (!r && p.len) {
		/* The 'x' header's own name: informative only, readers ignore it. */
		const char *base = strrchr(e->path, '/');
		char name[101];
		snprintf(name, sizeof(name), "PaxHeaders/%s", base ? base + 1 : e->path);
		r = write_block_header(tw, name, 'x', 0644, 0, 0, e->mtime < 0 ? 0 : e->mtime,
				       p.len, NULL, 0, 0);
		if (!r)
			r = put(tw, p.data, p.len);
		if (!r)
			r = put_zeros(tw, (BLOCK - p.len % BLOCK) % BLOCK);
	}
	if (!r)
		r = write_block_header(tw, path, (char)e->type, e->mode, e->uid, e->gid, e->mtime,
				       e->type == TAR_REG ? e->size : 0, e->linkname, e->devmajor,
				       e->devminor);
	tw->entry_size = tw->entry_left = e->type == TAR_REG ? e->size : 0;
	free(p.data);
	free(path);
	return r;
}

int tar_write_data(struct tar_writer *tw, const void *buf, size_t len)
{
	if (len > tw->entry_left)
		return -EINVAL;
	tw->entry_left -= len;
	return put(tw, buf, len);
}

int tar_end_entry(struct tar_writer *tw)
{
	if (tw->entry_left)
		return -EINVAL;
	return put_zeros(tw, (BLOCK - tw->entry_size % BLOCK) % BLOCK);
}

int tar_writer_finish(struct tar_writer *tw)
{
	int r;

	put_zeros(tw, 2 * BLOCK);
	put_zeros(tw, (RECORD - tw->total % RECORD) % RECORD);
	r = flush_buf(tw);
	if (tw->gz) {
		int z = gzclose(tw->gz);
		if (!r && z != Z_OK)
			r = z == Z_ERRNO && errno ? -errno : -EIO;
	}
	free(tw);
	return r;
}

void tar_writer_abort(struct tar_writer *tw)
{
	if (!tw)
		return;
	if (tw->gz)
		gzclose(tw->gz); /* an error is expected here; the caller reports the first one */
	free(tw);
}
