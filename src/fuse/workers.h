/* A small pool of worker threads for requests that may block for long (copy-up, fsync),
 * so that the request loop itself never waits on them. */
#ifndef OVLFS_WORKERS_H
#define OVLFS_WORKERS_H

struct ovl_pool;

struct ovl_pool *ovl_pool_start(int nthreads);
/* Runs fn(arg) on a worker; returns -errno if it cannot (the caller then runs it itself). */
int ovl_pool_submit(struct ovl_pool *pool, void (*fn)(void *), void *arg);
/* Runs what is queued and joins the workers; later submits are refused (their callers run
 * them), so threads that still submit are safe. The pool stays allocated. */
void ovl_pool_drain(struct ovl_pool *pool);
/* Drains (if not yet done) and frees the pool. */
void ovl_pool_stop(struct ovl_pool *pool);

#endif
