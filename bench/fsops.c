/* Small timed file-system loops for the benchmark harness (bench/run.py).
 *
 *   fsops create DIR N    mkdir DIR, then create N empty files in it (open O_CREAT|O_EXCL, close)
 *   fsops stat DIR N      fstatat the N files that `create` made
 *   fsops append FILE     append one byte to FILE, close it, then sync()
 *   fsops unlink FILE     unlink FILE
 *
 * Each prints the elapsed wall time in seconds (for `append`: the total, then the part before
 * sync()), measured inside the process so that fork/exec is not counted. Exit status 1 and a
 * message on stderr on the first error.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int fail(const char *what, const char *path)
{
	fprintf(stderr, "fsops: %s %s: %s\n", what, path, strerror(errno));
	return 1;
}

static void name_of(char *buf, size_t len, long i)
{
	snprintf(buf, len, "f%06ld", i);
}

int main(int argc, char **argv)
{
	char name[32];
	double t0;

	if (argc == 4 && strcmp(argv[1], "create") == 0) {
		long n = atol(argv[3]);
		t0 = now();
		if (mkdir(argv[2], 0755) != 0)
			return fail("mkdir", argv[2]);
		int dfd = open(argv[2], O_RDONLY | O_DIRECTORY);
		if (dfd < 0)
			return fail("open", argv[2]);
		for (long i = 0; i < n; i++) {
			name_of(name, sizeof(name), i);
			int fd = openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
			if (fd < 0)
				return fail("create", name);
			close(fd);
		}
		close(dfd);
		printf("%.9f\n", now() - t0);
		return 0;
	}
	if (argc == 4 && strcmp(argv[1], "stat") == 0) {
		long n = atol(argv[3]);
		struct stat sb;
		t0 = now();
		int dfd = open(argv[2], O_RDONLY | O_DIRECTORY);
		if (dfd < 0)
			return fail("open", argv[2]);
		for (long i = 0; i < n; i++) {
			name_of(name, sizeof(name), i);
			if (fstatat(dfd, name, &sb, AT_SYMLINK_NOFOLLOW) != 0)
				return fail("stat", name);
		}
		close(dfd);
		printf("%.9f\n", now() - t0);
		return 0;
	}
	if (argc == 3 && strcmp(argv[1], "append") == 0) {
		t0 = now();
		int fd = open(argv[2], O_WRONLY | O_APPEND | O_CLOEXEC);
		if (fd < 0)
			return fail("open", argv[2]);
		if (write(fd, "x", 1) != 1)
			return fail("write", argv[2]);
		if (close(fd) != 0)
			return fail("close", argv[2]);
		double t1 = now();
		sync();
		printf("%.9f %.9f\n", now() - t0, t1 - t0);
		return 0;
	}
	if (argc == 3 && strcmp(argv[1], "unlink") == 0) {
		t0 = now();
		if (unlink(argv[2]) != 0)
			return fail("unlink", argv[2]);
		printf("%.9f\n", now() - t0);
		return 0;
	}
	fprintf(stderr, "usage: fsops create|stat DIR N | append|unlink FILE\n");
	return 2;
}
