/* The shared hash table and hash functions (hashtab.h). */
#include "hashtab.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define MIN_BUCKETS 64

static size_t bucket(const struct ovl_htab *t, uint64_t hash)
{
	return (size_t)hash & (t->size - 1);
}

static int resize(struct ovl_htab *t, size_t nsize)
{
	struct ovl_hlink **nb = calloc(nsize, sizeof(*nb));

	if (!nb)
		return -ENOMEM;
	for (size_t i = 0; i < t->size; i++) {
		struct ovl_hlink *e, *next;
		for (e = t->buckets[i]; e; e = next) {
			size_t b = (size_t)t->hash(e) & (nsize - 1);
			next = e->next;
			e->next = nb[b];
			nb[b] = e;
		}
	}
	free(t->buckets);
	t->buckets = nb;
	t->size = nsize;
	return 0;
}

int ovl_htab_init(struct ovl_htab *t, ovl_hash_fn hash, size_t size)
{
	size_t n = MIN_BUCKETS;

	while (n < size)
		n *= 2;
	memset(t, 0, sizeof(*t));
	t->hash = hash;
	return resize(t, n);
}

int ovl_htab_insert(struct ovl_htab *t, struct ovl_hlink *entry)
{
	if (t->count >= t->size && resize(t, t->size ? t->size * 2 : MIN_BUCKETS) < 0 && !t->size)
		return -ENOMEM;
	struct ovl_hlink **head = &t->buckets[bucket(t, t->hash(entry))];
	entry->next = *head;
	*head = entry;
	t->count++;
	return 0;
}

void ovl_htab_remove(struct ovl_htab *t, struct ovl_hlink *entry)
{
	if (!t->size)
		return;
	for (struct ovl_hlink **pp = &t->buckets[bucket(t, t->hash(entry))]; *pp;
	     pp = &(*pp)->next) {
		if (*pp == entry) {
			*pp = entry->next;
			entry->next = NULL;
			t->count--;
			return;
		}
	}
}

struct ovl_hlink *ovl_htab_find(const struct ovl_htab *t, uint64_t hash, ovl_match_fn match,
				const void *key)
{
	if (!t->size)
		return NULL;
	for (struct ovl_hlink *e = t->buckets[bucket(t, hash)]; e; e = e->next)
		if (match(e, key))
			return e;
	return NULL;
}

struct ovl_hlink *ovl_htab_find_next(const struct ovl_hlink *after, ovl_match_fn match,
				     const void *key)
{
	for (struct ovl_hlink *e = after->next; e; e = e->next)
		if (match(e, key))
			return e;
	return NULL;
}

void ovl_htab_each(const struct ovl_htab *t, ovl_visit_fn fn, void *arg)
{
	for (size_t i = 0; i < t->size; i++)
		for (struct ovl_hlink *e = t->buckets[i]; e; e = e->next)
			fn(e, arg);
}

void ovl_htab_free(struct ovl_htab *t, ovl_visit_fn fn, void *arg)
{
	for (size_t i = 0; i < t->size; i++) {
		struct ovl_hlink *e, *next;
		for (e = t->buckets[i]; e; e = next) {
			next = e->next;
			if (fn)
				fn(e, arg);
		}
	}
	free(t->buckets);
	t->buckets = NULL;
	t->size = 0;
	t->count = 0;
}

/* A 64-bit finalizer: every input bit reaches every output bit, low ones included. */
uint64_t ovl_hash_u64(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	x ^= x >> 33;
	return x;
}

uint64_t ovl_hash_fnv(uint64_t h, const void *data, size_t len)
{
	const unsigned char *p = data;

	for (size_t i = 0; i < len; i++)
		h = (h ^ p[i]) * 1099511628211ULL;
	return h;
}

uint64_t ovl_hash_str(uint64_t seed, const char *s)
{
	return ovl_hash_u64(ovl_hash_fnv(OVL_HASH_SEED ^ seed, s, strlen(s)));
}
