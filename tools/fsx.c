/*
 * fsx: a data-integrity exerciser for one file through a mount (written for ovlfs, in the
 * spirit of the classic fsx). Random reads, writes, truncates, fallocates and mmap reads and
 * writes; every read is checked against an in-memory model of the file's content and size.
 *
 * Meant to start from a file of a lower layer: the first -r operations only read (through an
 * O_RDONLY fd opened at start, and a shared mapping of it), and the first write opens the
 * file O_RDWR, which copies it up in the middle of the run. The read-only fd and the mapping
 * opened before the copy-up stay in use afterwards and must show the new data (-K: not the
 * mapping, the kernel overlayfs keeps mapping the lower file). With -u UPPER (the path the
 * file gets in the upper layer) the copy-up is checked to happen exactly then.
 *
 * -2 runs two processes in lock step: this one writes (and reads), a second one opened its
 * own O_RDONLY fd (and mapping) before the copy-up and, after every operation, reads a
 * random range and the size through them and checks them against the model (kept in shared
 * memory).
 *
 * Exit status: 0 when every check passed, 1 on a mismatch or an unexpected error (the last
 * operations are printed), 2 on bad usage.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/falloc.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

enum op_kind {
	OP_READ,
	OP_WRITE,
	OP_TRUNCATE,
	OP_FALLOCATE,
	OP_MAPREAD,
	OP_MAPWRITE,
	OP_LONGMAP,
	OP_REOPEN,
	OP_NKINDS
};

static const char *op_names[OP_NKINDS] = {"read",     "write",   "truncate", "fallocate",
					  "mapread",  "mapwrite", "longmap",  "reopen"};
static const unsigned op_weights[OP_NKINDS] = {30, 25, 6, 6, 10, 8, 6, 2};

struct shared {
	off_t size;		/* model: file size */
	uint64_t opnum;		/* the writer's current operation */
	int failed;		/* set by whoever finds a mismatch */
	unsigned char data[];	/* model: content, zero beyond size */
};

struct logent {
	uint64_t n;
	int kind;
	int fd; /* 0: read-only fd opened before copy-up, 1: read-write fd */
	off_t off, len, size_after;
	int mode;
};

#define LOGN 64
static struct logent oplog[LOGN];

static const char *path, *upper_path, *ref_path;
static uint64_t numops = 10000, seed = 1, progress;
static off_t maxlen = 256 * 1024, maxop = 64 * 1024;
static uint64_t readonly_prefix = 20;
static bool use_mmap = true, use_falloc = true, two_procs, kernel_compat, verbose;
static struct shared *sh;
static long pagesize;
static int rofd = -1, rwfd = -1;
static unsigned char *longmap; /* MAP_SHARED of rofd, maxlen long, made before copy-up */
static unsigned char *buf;
static uint64_t copied_up_at;
static bool falloc_mode_ok[4] = {true, true, true, true};
static uint64_t counts[OP_NKINDS];

/* ------------------------------------------------------------------ randomness */

static uint64_t rng_state;

static uint64_t rnd(void)
{
	/* splitmix64 */
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static off_t rnd_below(off_t n)
{
	return n <= 0 ? 0 : (off_t)(rnd() % (uint64_t)n);
}

/* ------------------------------------------------------------------ reporting */

static void dump_log(void)
{
	fprintf(stderr, "fsx: last operations (n kind fd off len size-after):\n");
	for (uint64_t i = sh->opnum > LOGN ? sh->opnum - LOGN : 0; i < sh->opnum; i++) {
		struct logent *e = &oplog[i % LOGN];
		if (e->kind < 0 || e->kind >= OP_NKINDS)
			continue;
		fprintf(stderr, "  %6" PRIu64 " %-9s %s off=%jd len=%jd size=%jd", e->n,
			op_names[e->kind], e->fd ? "rw" : "ro", (intmax_t)e->off,
			(intmax_t)e->len, (intmax_t)e->size_after);
		if (e->kind == OP_FALLOCATE)
			fprintf(stderr, " mode=%#x", e->mode);
		fputc('\n', stderr);
	}
}

static void fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "fsx: FAILED at op %" PRIu64 " (seed %" PRIu64 ", %s): ", sh->opnum, seed,
		path);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	sh->failed = 1;
	dump_log();
	exit(1);
}

static void logop(int kind, int fd, off_t off, off_t len, int mode)
{
	struct logent *e = &oplog[sh->opnum % LOGN];
	*e = (struct logent){sh->opnum, kind, fd, off, len, sh->size, mode};
	counts[kind]++;
	if (verbose)
		fprintf(stderr, "%" PRIu64 " %s %s off=%jd len=%jd size=%jd mode=%#x\n", sh->opnum,
			op_names[kind], fd ? "rw" : "ro", (intmax_t)off, (intmax_t)len,
			(intmax_t)sh->size, mode);
}

/* First differing byte between got and the model at off. */
static void check_bytes(const char *what, const unsigned char *got, off_t off, off_t len)
{
	for (off_t i = 0; i < len; i++) {
		if (got[i] != sh->data[off + i]) {
			off_t j = i;
			while (j < len && got[j] != sh->data[off + j])
				j++;
			fail("%s: byte %jd (offset %jd in the range %jd+%jd) is 0x%02x, expected 0x%02x "
			     "(%jd bad bytes from there); file size %jd",
			     what, (intmax_t)(off + i), (intmax_t)i, (intmax_t)off, (intmax_t)len,
			     got[i], sh->data[off + i], (intmax_t)(j - i), (intmax_t)sh->size);
		}
	}
}

/* ------------------------------------------------------------------ the file */

static void check_size(int fd, const char *what)
{
	struct stat st;
	if (fstat(fd, &st) < 0)
		fail("fstat(%s): %s", what, strerror(errno));
	if (st.st_size != sh->size)
		fail("fstat(%s): size %jd, expected %jd", what, (intmax_t)st.st_size,
		     (intmax_t)sh->size);
}

static bool exists(const char *p)
{
	struct stat st;
	return lstat(p, &st) == 0;
}

/* The first write-side operation opens the file O_RDWR: the copy-up. */
static void ensure_rw(void)
{
	if (rwfd >= 0)
		return;
	if (upper_path && exists(upper_path))
		fail("%s exists before the first write (no copy-up expected yet)", upper_path);
	rwfd = open(path, O_RDWR);
	if (rwfd < 0)
		fail("open(O_RDWR): %s", strerror(errno));
	if (upper_path && !exists(upper_path))
		fail("%s is missing after the O_RDWR open (no copy-up?)", upper_path);
	copied_up_at = sh->opnum;
	if (verbose || progress)
		fprintf(stderr, "fsx: opened O_RDWR (copy-up) at op %" PRIu64 "\n", sh->opnum);
}

static int pick_read_fd(bool for_mmap)
{
	if (rwfd < 0)
		return rofd;
	if (for_mmap && kernel_compat)
		return rwfd;
	return rnd() & 1 ? rwfd : rofd;
}

static void model_resize(off_t newsize)
{
	if (newsize < sh->size)
		memset(sh->data + newsize, 0, (size_t)(sh->size - newsize));
	sh->size = newsize; /* growing: the model is already zero beyond the old size */
}

static void fill(unsigned char *p, off_t len)
{
	for (off_t i = 0; i < len; i++)
		p[i] = (unsigned char)(((sh->opnum * 7 + (uint64_t)i * 13 + seed) % 251) + 1);
}

static void do_read(void)
{
	int fd = pick_read_fd(false);
	off_t off = rnd_below(sh->size + maxop / 4 + 1), len = rnd_below(maxop) + 1;
	off_t want = off >= sh->size ? 0 : (off + len > sh->size ? sh->size - off : len);
	logop(OP_READ, fd == rwfd, off, len, 0);
	ssize_t n = pread(fd, buf, (size_t)len, off);
	if (n < 0)
		fail("pread(%jd, %jd): %s", (intmax_t)off, (intmax_t)len, strerror(errno));
	if (n != want)
		fail("pread(%jd, %jd) on the %s fd returned %zd bytes, expected %jd (size %jd)",
		     (intmax_t)off, (intmax_t)len, fd == rwfd ? "rw" : "ro", n, (intmax_t)want,
		     (intmax_t)sh->size);
	check_bytes(fd == rwfd ? "pread(rw fd)" : "pread(ro fd opened before copy-up)", buf, off,
		    n);
}

static void do_write(void)
{
	ensure_rw();
	off_t len = rnd_below(maxop) + 1;
	off_t off = rnd_below(maxlen - len + 1);
	if (rnd() % 4 == 0 && sh->size < maxlen) /* often at or near the end */
		off = sh->size - rnd_below(sh->size < len ? sh->size + 1 : len);
	if (off + len > maxlen)
		len = maxlen - off;
	if (len <= 0)
		return;
	fill(buf, len);
	logop(OP_WRITE, 1, off, len, 0);
	ssize_t n = pwrite(rwfd, buf, (size_t)len, off);
	if (n != len)
		fail("pwrite(%jd, %jd) = %zd: %s", (intmax_t)off, (intmax_t)len, n,
		     n < 0 ? strerror(errno) : "short write");
	memcpy(sh->data + off, buf, (size_t)len);
	if (off + len > sh->size)
		sh->size = off + len;
	oplog[sh->opnum % LOGN].size_after = sh->size;
}

static void do_truncate(void)
{
	ensure_rw();
	off_t newsize = rnd() % 3 == 0 ? rnd_below(sh->size + 1) : rnd_below(maxlen + 1);
	bool by_path = rnd() % 4 == 0;
	logop(OP_TRUNCATE, 1, newsize, 0, by_path);
	if ((by_path ? truncate(path, newsize) : ftruncate(rwfd, newsize)) < 0)
		fail("%struncate(%jd): %s", by_path ? "" : "f", (intmax_t)newsize, strerror(errno));
	model_resize(newsize);
	oplog[sh->opnum % LOGN].size_after = sh->size;
}

static void do_fallocate(void)
{
	static const int modes[4] = {0, FALLOC_FL_KEEP_SIZE,
				     FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				     FALLOC_FL_ZERO_RANGE};
	int m = (int)(rnd() % 4);
	if (!falloc_mode_ok[m])
		return;
	ensure_rw();
	int mode = modes[m];
	if (m == 3 && rnd() & 1)
		mode |= FALLOC_FL_KEEP_SIZE;
	off_t len = rnd_below(maxop) + 1;
	off_t off = rnd_below(maxlen - len + 1);
	logop(OP_FALLOCATE, 1, off, len, mode);
	if (fallocate(rwfd, mode, off, len) < 0) {
		if (errno == EOPNOTSUPP) {
			fprintf(stderr, "fsx: fallocate mode %#x not supported here: not used\n",
				mode);
			falloc_mode_ok[m] = false;
			return;
		}
		fail("fallocate(mode %#x, %jd, %jd): %s", mode, (intmax_t)off, (intmax_t)len,
		     strerror(errno));
	}
	off_t end = off + len;
	if (mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE)) {
		off_t zend = end < sh->size ? end : sh->size;
		if (zend > off)
			memset(sh->data + off, 0, (size_t)(zend - off));
	}
	if (!(mode & FALLOC_FL_KEEP_SIZE) && end > sh->size)
		sh->size = end;
	oplog[sh->opnum % LOGN].size_after = sh->size;
}

static void do_mapread(void)
{
	if (!use_mmap || sh->size == 0)
		return;
	int fd = pick_read_fd(true);
	off_t off = rnd_below(sh->size), len = rnd_below(maxop) + 1;
	if (off + len > sh->size)
		len = sh->size - off;
	off_t pg = off & ~(off_t)(pagesize - 1);
	size_t maplen = (size_t)(len + (off - pg));
	logop(OP_MAPREAD, fd == rwfd, off, len, 0);
	unsigned char *p = mmap(NULL, maplen, PROT_READ, MAP_SHARED, fd, pg);
	if (p == MAP_FAILED)
		fail("mmap(PROT_READ, %jd+%zu): %s", (intmax_t)pg, maplen, strerror(errno));
	check_bytes(fd == rwfd ? "mmap read (rw fd)" : "mmap read (ro fd opened before copy-up)",
		    p + (off - pg), off, len);
	munmap(p, maplen);
}

static void do_mapwrite(void)
{
	if (!use_mmap)
		return;
	ensure_rw();
	off_t len = rnd_below(maxop) + 1;
	off_t off = rnd_below(maxlen - len + 1);
	logop(OP_MAPWRITE, 1, off, len, 0);
	if (off + len > sh->size) {
		if (ftruncate(rwfd, off + len) < 0)
			fail("ftruncate(%jd) before a mapped write: %s", (intmax_t)(off + len),
			     strerror(errno));
		sh->size = off + len;
	}
	off_t pg = off & ~(off_t)(pagesize - 1);
	size_t maplen = (size_t)(len + (off - pg));
	unsigned char *p = mmap(NULL, maplen, PROT_READ | PROT_WRITE, MAP_SHARED, rwfd, pg);
	if (p == MAP_FAILED)
		fail("mmap(PROT_WRITE, %jd+%zu): %s", (intmax_t)pg, maplen, strerror(errno));
	fill(buf, len);
	memcpy(p + (off - pg), buf, (size_t)len);
	if (msync(p, maplen, MS_SYNC) < 0)
		fail("msync: %s", strerror(errno));
	munmap(p, maplen);
	memcpy(sh->data + off, buf, (size_t)len);
	oplog[sh->opnum % LOGN].size_after = sh->size;
}

/* Reads through the mapping made before the copy-up (ovlfs: it shows the new data). */
static void check_longmap(unsigned char *map, const char *who)
{
	if (!map || sh->size == 0)
		return;
	off_t off = rnd_below(sh->size), len = rnd_below(maxop) + 1;
	if (off + len > sh->size)
		len = sh->size - off;
	logop(OP_LONGMAP, 0, off, len, 0);
	char what[96];
	snprintf(what, sizeof(what), "%s: mapping made before copy-up", who);
	check_bytes(what, map + off, off, len);
}

static void do_reopen(void)
{
	if (rwfd < 0)
		return;
	logop(OP_REOPEN, 1, 0, 0, 0);
	close(rwfd);
	rwfd = open(path, O_RDWR);
	if (rwfd < 0)
		fail("reopen O_RDWR: %s", strerror(errno));
}

static void full_check(int fd, const char *what)
{
	check_size(fd, what);
	for (off_t off = 0; off < sh->size;) {
		off_t len = sh->size - off < maxop ? sh->size - off : maxop;
		ssize_t n = pread(fd, buf, (size_t)len, off);
		if (n != len)
			fail("full check via %s: pread(%jd, %jd) = %zd", what, (intmax_t)off,
			     (intmax_t)len, n);
		check_bytes(what, buf, off, len);
		off += len;
	}
}

/* A mapping read past the end of what the mapping can show (the kernel overlayfs: the
 * lower file, shorter than the copy-up) faults with SIGBUS: report it as a failure. */
static void on_sigbus(int sig)
{
	(void)sig;
	fprintf(stderr, "fsx: FAILED at op %" PRIu64 " (seed %" PRIu64 ", %s): SIGBUS reading a "
		"mapping (a mapping that does not show the file as it is now)\n", sh->opnum, seed,
		path);
	dump_log();
	_exit(1);
}

/* ------------------------------------------------------------------ two processes */

static int to_reader[2], to_writer[2];

static void reader_loop(void)
{
	/* Own fd and mapping, opened before the writer makes its first change. */
	int fd = open(path, O_RDONLY);
	unsigned char *map = NULL;
	char c = 'r';
	if (fd < 0)
		fail("reader: open(O_RDONLY): %s", strerror(errno));
	if (use_mmap && !kernel_compat) {
		map = mmap(NULL, (size_t)maxlen, PROT_READ, MAP_SHARED, fd, 0);
		if (map == MAP_FAILED)
			fail("reader: mmap: %s", strerror(errno));
	}
	rng_state = seed ^ 0x5eed5eed5eedULL;
	if (write(to_writer[1], &c, 1) != 1)
		exit(1);
	for (;;) {
		ssize_t r = read(to_reader[0], &c, 1);
		if (r != 1 || c == 'q')
			break;
		check_size(fd, "reader's ro fd opened before copy-up");
		off_t off = rnd_below(sh->size + 1), len = rnd_below(maxop) + 1;
		off_t want = off >= sh->size ? 0 : (off + len > sh->size ? sh->size - off : len);
		ssize_t n = pread(fd, buf, (size_t)len, off);
		if (n != want)
			fail("reader: pread(%jd, %jd) = %zd, expected %jd (size %jd)", (intmax_t)off,
			     (intmax_t)len, n, (intmax_t)want, (intmax_t)sh->size);
		check_bytes("reader: pread on the fd opened before copy-up", buf, off, n);
		if (map && (rnd() & 3) == 0)
			check_longmap(map, "reader");
		c = 'k';
		if (write(to_writer[1], &c, 1) != 1)
			exit(1);
	}
	exit(0);
}

static void sync_with_reader(void)
{
	char c = 'g';
	if (write(to_reader[1], &c, 1) != 1 || read(to_writer[0], &c, 1) != 1 || c != 'k')
		fail("the reader process stopped (it found a mismatch, see above, or died)");
}

/* ------------------------------------------------------------------ main */

static void usage(void)
{
	fprintf(stderr,
		"usage: fsx [-N ops] [-S seed] [-l maxlen] [-o maxop] [-r readonly-prefix]\n"
		"           [-p progress-every] [-u upper-path] [-R reference] [-M] [-F] [-K] [-2]"
		" [-v] FILE\n"
		"  -M no mmap, -F no fallocate, -K the kernel overlayfs's mmap semantics (mappings\n"
		"  keep the lower file), -2 a second process reads through an fd opened before the\n"
		"  copy-up, -u UPPER check that the copy-up happens at the first write, -R REF the\n"
		"  file's expected initial content (default: what it reads at start)\n");
	exit(2);
}

int main(int argc, char **argv)
{
	int opt;
	while ((opt = getopt(argc, argv, "N:S:l:o:r:p:u:R:MFK2vh")) != -1) {
		switch (opt) {
		case 'N': numops = strtoull(optarg, NULL, 0); break;
		case 'S': seed = strtoull(optarg, NULL, 0); break;
		case 'l': maxlen = strtoll(optarg, NULL, 0); break;
		case 'o': maxop = strtoll(optarg, NULL, 0); break;
		case 'r': readonly_prefix = strtoull(optarg, NULL, 0); break;
		case 'p': progress = strtoull(optarg, NULL, 0); break;
		case 'u': upper_path = optarg; break;
		case 'R': ref_path = optarg; break;
		case 'M': use_mmap = false; break;
		case 'F': use_falloc = false; break;
		case 'K': kernel_compat = true; break;
		case '2': two_procs = true; break;
		case 'v': verbose = true; break;
		default: usage();
		}
	}
	if (optind != argc - 1 || maxlen <= 0 || maxop <= 0 || maxop > maxlen)
		usage();
	path = argv[optind];
	pagesize = sysconf(_SC_PAGESIZE);
	rng_state = seed;
	signal(SIGBUS, on_sigbus);
	for (int i = 0; i < LOGN; i++)
		oplog[i].kind = -1;

	size_t shsize = sizeof(*sh) + (size_t)maxlen + (size_t)maxop;
	sh = mmap(NULL, shsize, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	buf = malloc((size_t)maxop);
	if (sh == MAP_FAILED || !buf) {
		perror("fsx: memory");
		return 1;
	}

	/* The model starts as the file's content, read through the fd kept for the whole run. */
	rofd = open(path, O_RDONLY);
	if (rofd < 0) {
		fprintf(stderr, "fsx: open %s: %s\n", path, strerror(errno));
		return 1;
	}
	struct stat st;
	if (fstat(rofd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > maxlen) {
		fprintf(stderr, "fsx: %s must be a regular file of at most %jd bytes\n", path,
			(intmax_t)maxlen);
		return 1;
	}
	sh->size = st.st_size;
	if (ref_path) {
		int rfd = open(ref_path, O_RDONLY);
		ssize_t n = rfd < 0 ? -1 : pread(rfd, sh->data, (size_t)maxlen, 0);
		if (n != st.st_size) {
			fprintf(stderr, "fsx: reference %s: %zd bytes, the file has %jd\n", ref_path, n,
				(intmax_t)st.st_size);
			return 1;
		}
		close(rfd);
		full_check(rofd, "initial content against the reference");
	} else if (pread(rofd, sh->data, (size_t)st.st_size, 0) != st.st_size) {
		fprintf(stderr, "fsx: cannot read %s\n", path);
		return 1;
	}
	if (use_mmap && !kernel_compat) {
		longmap = mmap(NULL, (size_t)maxlen, PROT_READ, MAP_SHARED, rofd, 0);
		if (longmap == MAP_FAILED) {
			fprintf(stderr, "fsx: mmap %s: %s\n", path, strerror(errno));
			return 1;
		}
	}

	pid_t reader = -1;
	if (two_procs) {
		char c;
		if (pipe(to_reader) < 0 || pipe(to_writer) < 0) {
			perror("fsx: pipe");
			return 1;
		}
		reader = fork();
		if (reader < 0) {
			perror("fsx: fork");
			return 1;
		}
		if (reader == 0)
			reader_loop();
		if (read(to_writer[0], &c, 1) != 1 || c != 'r') {
			fprintf(stderr, "fsx: the reader process did not start\n");
			return 1;
		}
	}

	unsigned total = 0;
	for (int k = 0; k < OP_NKINDS; k++)
		total += op_weights[k];
	for (sh->opnum = 0; sh->opnum < numops; sh->opnum++) {
		int kind;
		if (sh->opnum < readonly_prefix) {
			kind = (int)(rnd() % 3);
			kind = kind == 0 ? OP_READ : kind == 1 ? OP_MAPREAD : OP_LONGMAP;
		} else {
			unsigned r = (unsigned)(rnd() % total);
			for (kind = 0; r >= op_weights[kind]; kind++)
				r -= op_weights[kind];
		}
		switch (kind) {
		case OP_READ: do_read(); break;
		case OP_WRITE: do_write(); break;
		case OP_TRUNCATE: do_truncate(); break;
		case OP_FALLOCATE:
			if (use_falloc)
				do_fallocate();
			break;
		case OP_MAPREAD: do_mapread(); break;
		case OP_MAPWRITE: do_mapwrite(); break;
		case OP_LONGMAP: check_longmap(longmap, "writer"); break;
		case OP_REOPEN: do_reopen(); break;
		}
		check_size(rofd, "ro fd opened before copy-up");
		if (rwfd >= 0)
			check_size(rwfd, "rw fd");
		if (two_procs)
			sync_with_reader();
		if (sh->opnum % 1000 == 999) {
			full_check(rofd, "full check via the ro fd opened before copy-up");
			if (rwfd >= 0)
				full_check(rwfd, "full check via the rw fd");
		}
		if (progress && sh->opnum % progress == progress - 1)
			fprintf(stderr, "fsx: %" PRIu64 " ops, size %jd\n", sh->opnum + 1,
				(intmax_t)sh->size);
	}
	full_check(rofd, "final check via the ro fd opened before copy-up");
	if (rwfd >= 0) {
		full_check(rwfd, "final check via the rw fd");
		if (fsync(rwfd) < 0)
			fail("fsync: %s", strerror(errno));
		close(rwfd);
	}
	/* and through a fresh open */
	rwfd = open(path, O_RDONLY);
	if (rwfd < 0)
		fail("final open: %s", strerror(errno));
	full_check(rwfd, "final check via a fresh fd");
	close(rwfd);

	if (two_procs) {
		char c = 'q';
		int status;
		if (write(to_reader[1], &c, 1) != 1 || waitpid(reader, &status, 0) != reader ||
		    !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
			fprintf(stderr, "fsx: the reader process failed\n");
			return 1;
		}
	}
	printf("fsx: %" PRIu64 " ops OK (seed %" PRIu64 "%s), final size %jd, copy-up at op %"
	       PRIu64 "; reads %" PRIu64 ", writes %" PRIu64 ", truncates %" PRIu64
	       ", fallocates %" PRIu64 ", mapped reads %" PRIu64 ", mapped writes %" PRIu64
	       ", reads via the early mapping %" PRIu64 "\n",
	       numops, seed, two_procs ? ", two processes" : "", (intmax_t)sh->size, copied_up_at,
	       counts[OP_READ], counts[OP_WRITE], counts[OP_TRUNCATE], counts[OP_FALLOCATE],
	       counts[OP_MAPREAD], counts[OP_MAPWRITE], counts[OP_LONGMAP]);
	return 0;
}
