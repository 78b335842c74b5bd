/*
 * The one hash table of ovlfs: intrusive and chained. An entry embeds a struct ovl_hlink
 * (one pointer, so a table costs its entries nothing more); the table asks the entry's hash
 * through a callback when it grows or removes, so no hash is stored per entry. Buckets are
 * a power of two and double as the table fills. No locking: each table has its owner's.
 *
 * The one hash: ovl_hash_u64 for integers and pointers, ovl_hash_str for names (FNV-1a,
 * finished with the same mix, so that the low bits the buckets use are well spread).
 */
#ifndef OVLFS_HASHTAB_H
#define OVLFS_HASHTAB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ovl_hlink {
	struct ovl_hlink *next;
};

/* The struct that embeds link as its member `member`. */
#define ovl_entry_of(link, type, member) ((type *)(void *)((char *)(link)-offsetof(type, member)))

typedef uint64_t (*ovl_hash_fn)(const struct ovl_hlink *entry);
typedef bool (*ovl_match_fn)(const struct ovl_hlink *entry, const void *key);
typedef void (*ovl_visit_fn)(struct ovl_hlink *entry, void *arg);

struct ovl_htab {
	ovl_hash_fn hash;
	struct ovl_hlink **buckets;
	size_t size; /* a power of two; 0 until the first insert (or ovl_htab_init) */
	size_t count;
};

/* A table whose buckets come with the first insert. */
#define OVL_HTAB_EMPTY(hash_fn)                                                                    \
	{                                                                                          \
		.hash = (hash_fn)                                                                  \
	}

/* Buckets for `size` entries up front (rounded up to a power of two): -ENOMEM or 0. */
int ovl_htab_init(struct ovl_htab *t, ovl_hash_fn hash, size_t size);
/* Adds entry; grows first when full (if growing fails, chains get longer, still correct).
 * -ENOMEM only when the table has no buckets at all and none can be had. */
int ovl_htab_insert(struct ovl_htab *t, struct ovl_hlink *entry);
/* Takes entry out (it must be in t, with the hash it had when inserted). */
void ovl_htab_remove(struct ovl_htab *t, struct ovl_hlink *entry);
/* The first entry with this hash that match() accepts for key, or NULL. */
struct ovl_hlink *ovl_htab_find(const struct ovl_htab *t, uint64_t hash, ovl_match_fn match,
				const void *key);
/* The next such entry after `after` (equal keys share a chain). */
struct ovl_hlink *ovl_htab_find_next(const struct ovl_hlink *after, ovl_match_fn match,
				     const void *key);
/* Calls fn on every entry; fn must not change the table. */
void ovl_htab_each(const struct ovl_htab *t, ovl_visit_fn fn, void *arg);
/* Empties the table, calling fn (if any) on each entry, which it may free; frees buckets. */
void ovl_htab_free(struct ovl_htab *t, ovl_visit_fn fn, void *arg);

uint64_t ovl_hash_u64(uint64_t x);
#define OVL_HASH_SEED 1469598103934665603ULL
/* FNV-1a of data continued from h (OVL_HASH_SEED to start), unfinished: for hashing a series. */
uint64_t ovl_hash_fnv(uint64_t h, const void *data, size_t len);
/* The hash of a name, seeded (with another hash, say): FNV-1a, then mixed. */
uint64_t ovl_hash_str(uint64_t seed, const char *s);
/* The hash of an object's identity, and of a name in a directory (node): the keys of the
 * node table, the origin maps and the hard-link records. */
static inline uint64_t ovl_hash_dev_ino(uint64_t dev, uint64_t ino)
{
	return ovl_hash_u64(ino ^ ovl_hash_u64(dev));
}
static inline uint64_t ovl_hash_child(const void *parent, const char *name)
{
	return ovl_hash_str(ovl_hash_u64((uint64_t)(uintptr_t)parent), name);
}

#endif
