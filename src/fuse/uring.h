/* FUSE over io_uring: requests on per-CPU queues (see uring.c). */
#ifndef OVLFS_URING_H
#define OVLFS_URING_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/uio.h>

struct fuse_session;
struct ovl_uring_queue;

/* The queues of one session (a member of struct ovl_frontend). */
struct ovl_uring {
	/* Set by ovl_uring_start before the queue threads exist; read-only after. */
	struct fuse_session *session;
	int dev_fd;
	struct ovl_uring_queue *queues;
	int nqueues;
	/* Set by op_init (ovl_uring_set_max_write) before INIT is answered; the queue threads
	 * read it only after (start_lock orders them). */
	size_t payload_size;
	atomic_bool active;   /* from ovl_uring_start to ovl_uring_stop: no splicing */
	atomic_bool stopping; /* ovl_uring_stop asked the queue threads to end */
	atomic_ulong served;
	pthread_mutex_t start_lock; /* guards init_answered */
	pthread_cond_t start_cond;
	bool init_answered;
	/* Set with the /dev/fuse hooks, before ovl_uring_start: answers a request libfuse does
	 * not know (true) before libfuse's dispatch gets it. NULL: none. */
	bool (*raw)(void *arg, const char *req, size_t len);
	void *raw_arg;
};

/* Before anything else of this file uses u. */
void ovl_uring_init(struct ovl_uring *u);
/* Whether the kernel lets this daemon serve requests through io_uring (the fuse module's
 * enable_uring parameter). */
bool ovl_uring_kernel_allows(void);
/* Starts one queue thread per CPU; they register with the kernel once INIT is answered
 * (ovl_uring_init_answered). dev_fd: the session's /dev/fuse fd. 0 or -errno. */
int ovl_uring_start(struct ovl_uring *u, struct fuse_session *se, int dev_fd);
/* From op_init: the largest write the kernel will send, which sizes the buffers. */
void ovl_uring_set_max_write(struct ovl_uring *u, size_t max_write);
/* From the /dev/fuse write hook, once the INIT reply has gone out. */
void ovl_uring_init_answered(struct ovl_uring *u);
/* From the /dev/fuse write hook: takes a reply to a request that came through a queue,
 * and answers it there. False: not such a reply, write it to /dev/fuse. */
bool ovl_uring_reply(struct ovl_uring *u, const struct iovec *iov, int count);
/* Where the reply to the request this thread serves will be copied, if it came through a
 * queue and size bytes fit: a reply whose payload is built there is not copied again. */
void *ovl_uring_reply_space(struct ovl_uring *u, size_t size);
/* Whether replies go through queues (so they must be in memory, not spliced). */
bool ovl_uring_wanted(struct ovl_uring *u);
/* Stops, joins and frees the queue threads (after the session loop ended and the worker
 * pool drained: no worker may answer a request that came through a queue any more). */
void ovl_uring_stop(struct ovl_uring *u);

#endif
