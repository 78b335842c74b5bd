/* The worker pool: a mutex-protected FIFO of jobs and a fixed set of threads. */
#include "workers.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

struct job {
	void (*fn)(void *);
	void *arg;
	struct job *next;
};

struct ovl_pool {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct job *head, *tail;
	bool stopping;
	int nthreads;
	pthread_t *threads;
};

static void *worker(void *p)
{
	struct ovl_pool *pool = p;

	pthread_mutex_lock(&pool->lock);
	for (;;) {
		while (!pool->head && !pool->stopping)
			pthread_cond_wait(&pool->cond, &pool->lock);
		struct job *j = pool->head;
		if (!j)
			break; /* stopping, and nothing left */
		pool->head = j->next;
		if (!pool->head)
			pool->tail = NULL;
		pthread_mutex_unlock(&pool->lock);
		j->fn(j->arg);
		free(j);
		pthread_mutex_lock(&pool->lock);
	}
	pthread_mutex_unlock(&pool->lock);
	return NULL;
}

struct ovl_pool *ovl_pool_start(int nthreads)
{
	struct ovl_pool *pool = calloc(1, sizeof(*pool));

	if (!pool)
		return NULL;
	pool->threads = calloc((size_t)nthreads, sizeof(*pool->threads));
	if (!pool->threads) {
		free(pool);
		return NULL;
	}
	pthread_mutex_init(&pool->lock, NULL);
	pthread_cond_init(&pool->cond, NULL);
	for (int i = 0; i < nthreads; i++) {
		if (pthread_create(&pool->threads[i], NULL, worker, pool) != 0)
			break;
		pool->nthreads++;
	}
	if (pool->nthreads == 0) {
		ovl_pool_stop(pool);
		return NULL;
	}
	return pool;
}

int ovl_pool_submit(struct ovl_pool *pool, void (*fn)(void *), void *arg)
{
	struct job *j = malloc(sizeof(*j));

	if (!j)
		return -ENOMEM;
	j->fn = fn;
	j->arg = arg;
	j->next = NULL;
	pthread_mutex_lock(&pool->lock);
	if (pool->stopping) {
		/* Draining at shutdown: the caller runs it (see ovl_pool_drain). */
		pthread_mutex_unlock(&pool->lock);
		free(j);
		return -ESHUTDOWN;
	}
	if (pool->tail)
		pool->tail->next = j;
	else
		pool->head = j;
	pool->tail = j;
	pthread_cond_signal(&pool->cond);
	pthread_mutex_unlock(&pool->lock);
	return 0;
}

void ovl_pool_drain(struct ovl_pool *pool)
{
	if (!pool)
		return;
	pthread_mutex_lock(&pool->lock);
	bool joined = pool->stopping;
	pool->stopping = true;
	pthread_cond_broadcast(&pool->cond);
	pthread_mutex_unlock(&pool->lock);
	if (joined)
		return;
	for (int i = 0; i < pool->nthreads; i++)
		pthread_join(pool->threads[i], NULL);
}

void ovl_pool_stop(struct ovl_pool *pool)
{
	if (!pool)
		return;
	ovl_pool_drain(pool);
	pthread_mutex_destroy(&pool->lock);
	pthread_cond_destroy(&pool->cond);
	free(pool->threads);
	free(pool);
}
