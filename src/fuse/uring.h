/* FUSE over io_uring: requests on per-CPU queues (see uring.c). */
#ifndef OVLFS_URING_H
#define OVLFS_URING_H

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>
#include <stdbool.h>
#include <sys/uio.h>

/* Whether the kernel lets this daemon serve requests through io_uring (the fuse module's
 * enable_uring parameter). */
bool ovl_uring_kernel_allows(void);
/* Starts one queue thread per CPU; they register with the kernel once INIT is answered
 * (ovl_uring_init_answered). dev_fd: the session's /dev/fuse fd. 0 or -errno. */
int ovl_uring_start(struct fuse_session *se, int dev_fd);
/* From op_init: the largest write the kernel will send, which sizes the buffers. */
void ovl_uring_set_max_write(size_t max_write);
/* From the /dev/fuse write hook, once the INIT reply has gone out. */
void ovl_uring_init_answered(void);
/* From the /dev/fuse write hook: takes a reply to a request that came through a queue,
 * and answers it there. False: not such a reply, write it to /dev/fuse. */
bool ovl_uring_reply(const struct iovec *iov, int count);
/* Where the reply to the request this thread serves will be copied, if it came through a
 * queue and size bytes fit: a reply whose payload is built there is not copied again. */
void *ovl_uring_reply_space(size_t size);
/* Whether replies go through queues (so they must be in memory, not spliced). */
bool ovl_uring_wanted(void);
/* Stops, joins and frees the queue threads (after the session loop ended and the worker
 * pool drained: no worker may answer a request that came through a queue any more). */
void ovl_uring_stop(void);

#endif
