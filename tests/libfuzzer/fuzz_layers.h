/* Shared by the layer fuzzer's files: the byte reader, the layer builder and the checks. */
#ifndef OVLFS_FUZZ_LAYERS_H
#define OVLFS_FUZZ_LAYERS_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define FZ_MAX_LOWER 3
#define FZ_NNAMES 4

struct fz_reader {
	const uint8_t *p;
	size_t n;
};

/* The current input's layers, under a per-process tmpfs directory. */
struct fz_state {
	char base[PATH_MAX]; /* per process */
	char it[PATH_MAX];   /* per input: base/it */
	char lower[FZ_MAX_LOWER][PATH_MAX];
	char upper[PATH_MAX], work[PATH_MAX], decoy[PATH_MAX];
	int nlower;
	bool has_upper;
	bool redirect_write; /* -o redirect_dir=on (half the inputs) or off */
	bool metacopy;	     /* -o metacopy=on */
	int ndata;	     /* the last lower layers that are data-only */
	bool verbose;
};
extern struct fz_state g;
extern const char *const fz_names[FZ_NNAMES];

/* The next byte, 0 once the input is used up. */
static inline unsigned fz_take(struct fz_reader *r)
{
	if (!r->n)
		return 0;
	r->n--;
	return *r->p++;
}

void fz_path(unsigned byte, char *buf, size_t size);
void fz_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void fz_base_init(void);
void fz_build(struct fz_reader *rd);
bool fz_work_empty(void);
bool fz_decoy_intact(void);
bool fz_lowers_intact(void);
void fz_teardown(void);

#define REQUIRE(cond)                                                                              \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "fuzz_layers: invariant failed: %s (%s:%d)\n", #cond,      \
				__FILE__, __LINE__);                                               \
			abort();                                                                   \
		}                                                                                  \
	} while (0)
/* 0 or a negative errno. */
#define REQUIRE_ERR(r) REQUIRE((r) == 0 || ((r) < 0 && (r) >= -4095))
/* A size up to max, or a negative errno. */
#define REQUIRE_SIZE(r, max)                                                                       \
	REQUIRE(((r) >= 0 && (size_t)(r) <= (max)) || ((r) < 0 && (r) >= -4095))

#endif
