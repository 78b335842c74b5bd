/*
 * FUSE over io_uring (Linux 6.14+, with the fuse module's enable_uring=1): the kernel puts
 * each request on the queue of the CPU its caller runs on, and one daemon thread per CPU,
 * pinned there, answers it, so that a request and its reply never cross CPUs. Measured
 * (bench/README.md): 30% off create and untar on a machine loaded by other jobs, nothing on
 * a quiet one; a lookup's round trip stays the same, its floor being the switch between
 * the caller's process and the daemon's.
 *
 * The INIT reply does not carry FUSE_OVER_IO_URING: with it the kernel holds every request
 * until all queues have registered, so one queue that failed to start would hang the
 * mount. Without it the kernel uses the queues once they are all there and /dev/fuse
 * until then (Linux 6.14-6.18); a kernel that wants the flag refuses the queues, and
 * ovlfs logs that and stays on /dev/fuse.
 *
 * libfuse 3.14 predates the protocol, so this file speaks it (the kernel's uapi
 * include/uapi/linux/fuse.h, protocol 7.42): each queue registers a few entries, each a
 * header buffer and a payload buffer; a request arrives as the completion of an entry's
 * command; the reply goes back in the same buffers with a COMMIT_AND_FETCH command, which
 * also waits for the entry's next request. Requests are handed to libfuse's usual
 * dispatch, and replies come back through the /dev/fuse write hook (ovl_uring_reply).
 * FORGET, INTERRUPT and notifications keep going over /dev/fuse, as the kernel wants.
 */
#include "fuse_version.h"

#include "dev_hooks.h"
#include "uring.h"
#include "cli/log.h"

#include <fuse_lowlevel.h>

#include <errno.h>
#include <liburing.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define CMD_REGISTER 1
#define CMD_COMMIT_AND_FETCH 2
#define IN_HEADER_SIZE 40 /* fuse_in_header: len, opcode, unique, nodeid, uid, gid, pid... */
#define OUT_HEADER_SIZE 16
#define OP_IN_SIZE 128
#define ENTRIES_PER_QUEUE 8
#define MAX_QUEUES 64
#define EVENTFD_TAG 1 /* user_data of the eventfd read; entries are pointers */

struct ent_in_out {
	uint64_t flags;
	uint64_t commit_id;
	uint32_t payload_sz;
	uint32_t padding;
	uint64_t reserved;
};

struct req_header {
	char in_out[128]; /* fuse_in_header in, fuse_out_header out */
	char op_in[OP_IN_SIZE];
	struct ent_in_out ent;
};

struct cmd_req {
	uint64_t flags;
	uint64_t commit_id;
	uint16_t qid;
	uint8_t padding[6];
};

struct ovl_uring_queue;

struct entry {
	struct ovl_uring_queue *q;
	struct req_header *hdr;
	char *area;    /* room for the headers, then the payload */
	char *payload; /* registered: area + OP room */
	struct iovec iov[2];
	_Atomic uint64_t unique; /* the request in the daemon, or 0 */
	struct entry *next_done;
};

struct ovl_uring_queue {
	struct ovl_uring *u;
	int qid;
	pthread_t thread;
	bool started;
	struct io_uring ring;
	bool ring_ready;
	int efd;
	uint64_t efd_value;
	pthread_mutex_t lock; /* guards done */
	struct entry *done;   /* answered by other threads, to commit */
	struct entry ents[ENTRIES_PER_QUEUE];
	int live; /* entries the kernel still holds or we answer */
};

static __thread struct ovl_uring_queue *my_queue;
static __thread struct entry *my_entry;

#define HEAD_ROOM (IN_HEADER_SIZE + OP_IN_SIZE + 88) /* keeps the payload 256-aligned */

void ovl_uring_init(struct ovl_uring *u)
{
	*u = (struct ovl_uring){.dev_fd = -1,
				.payload_size = 1 << 20,
				.start_lock = PTHREAD_MUTEX_INITIALIZER,
				.start_cond = PTHREAD_COND_INITIALIZER};
}

bool ovl_uring_kernel_allows(void)
{
	FILE *f = fopen("/sys/module/fuse/parameters/enable_uring", "re");
	int c = f ? fgetc(f) : EOF;

	if (f)
		fclose(f);
	return c == 'Y' || c == 'y' || c == '1';
}

bool ovl_uring_wanted(struct ovl_uring *u)
{
	return atomic_load(&u->active);
}

void ovl_uring_set_max_write(struct ovl_uring *u, size_t max_write)
{
	size_t pages = (max_write + 4095) / 4096;

	/* The kernel wants room for its largest request: max(8 KiB, max_write, max_pages). */
	u->payload_size = pages * 4096 < 8192 ? 8192 : pages * 4096;
}

void ovl_uring_init_answered(struct ovl_uring *u)
{
	pthread_mutex_lock(&u->start_lock);
	u->init_answered = true;
	pthread_cond_broadcast(&u->start_cond);
	pthread_mutex_unlock(&u->start_lock);
}

/* The ring has room for one SQE per entry and the eventfd's, so it is never full; if it
 * were, submitting frees the room. */
static struct io_uring_sqe *get_sqe(struct ovl_uring_queue *q)
{
	struct io_uring_sqe *sqe;

	while (!(sqe = io_uring_get_sqe(&q->ring)))
		io_uring_submit(&q->ring);
	return sqe;
}

static void prep_cmd(struct ovl_uring_queue *q, struct entry *e, uint32_t op, uint64_t commit_id)
{
	struct io_uring_sqe *sqe = get_sqe(q);
	struct cmd_req req = {.commit_id = commit_id, .qid = (uint16_t)q->qid};

	memset((char *)sqe, 0, 128);
	sqe->opcode = IORING_OP_URING_CMD;
	sqe->fd = q->u->dev_fd;
	sqe->cmd_op = op;
	sqe->addr = (uint64_t)(uintptr_t)e->iov;
	sqe->len = 2;
	io_uring_sqe_set_data(sqe, e);
	memcpy(sqe->cmd, &req, sizeof(req));
}

static void prep_eventfd_read(struct ovl_uring_queue *q)
{
	struct io_uring_sqe *sqe = get_sqe(q);

	io_uring_prep_read(sqe, q->efd, &q->efd_value, sizeof(q->efd_value), 0);
	io_uring_sqe_set_data64(sqe, EVENTFD_TAG);
}

static uint64_t get64(const char *p)
{
	uint64_t v;
	memcpy(&v, p, sizeof(v));
	return v;
}

static uint32_t get32(const char *p)
{
	uint32_t v;
	memcpy(&v, p, sizeof(v));
	return v;
}

/* A fuse_out_header answering EIO. */
static void eio_header(char *out, uint64_t unique)
{
	uint32_t len = OUT_HEADER_SIZE;
	int32_t err = -EIO;

	memcpy(out, &len, sizeof(len));
	memcpy(out + 4, &err, sizeof(err));
	memcpy(out + 8, &unique, sizeof(unique));
}

/* A request arrived in e: lay the headers out just before the payload, so that libfuse
 * sees one contiguous request as from /dev/fuse, and dispatch it. */
static void serve(struct entry *e)
{
	struct ovl_uring *u = e->q->u;
	struct req_header *h = e->hdr;
	uint32_t len = get32(h->in_out);
	uint32_t payload = h->ent.payload_sz;
	uint64_t unique = get64(h->in_out + 8);

	atomic_store(&e->unique, unique);
	if (payload > u->payload_size || len < IN_HEADER_SIZE || len - IN_HEADER_SIZE < payload ||
	    len - IN_HEADER_SIZE - payload > OP_IN_SIZE) {
		/* Not a layout we know: answer EIO rather than guess. */
		char out[OUT_HEADER_SIZE];
		eio_header(out, unique);
		struct iovec iov = {out, sizeof(out)};
		ovl_log(LOG_WARNING, "io_uring: request of %u bytes with %u of payload", len,
			payload);
		ovl_uring_reply(u, &iov, 1);
		return;
	}
	size_t op_size = len - IN_HEADER_SIZE - payload;
	char *start = e->payload - op_size - IN_HEADER_SIZE;
	memcpy(start, h->in_out, IN_HEADER_SIZE);
	memcpy(start + IN_HEADER_SIZE, h->op_in, op_size);
	struct fuse_buf buf = {.mem = start, .size = len};
	ovl_dev_count_request(start, len);
	my_entry = e;
	if (!u->raw || !u->raw(u->raw_arg, start, len))
		fuse_session_process_buf(u->session, &buf);
	my_entry = NULL;
}

static struct entry *find_entry(struct ovl_uring *u, uint64_t unique)
{
	if (my_entry && atomic_load(&my_entry->unique) == unique)
		return my_entry;
	for (int i = 0; i < u->nqueues; i++)
		for (int j = 0; j < ENTRIES_PER_QUEUE; j++)
			if (atomic_load(&u->queues[i].ents[j].unique) == unique)
				return &u->queues[i].ents[j];
	return NULL;
}

bool ovl_uring_reply(struct ovl_uring *u, const struct iovec *iov, int count)
{
	if (!atomic_load(&u->active) || count < 1 || iov[0].iov_len < OUT_HEADER_SIZE)
		return false;
	uint64_t unique = get64((const char *)iov[0].iov_base + 8);
	struct entry *e = unique ? find_entry(u, unique) : NULL;
	if (!e)
		return false;

	size_t off = 0;
	bool fits = true;
	memcpy(e->hdr->in_out, iov[0].iov_base, OUT_HEADER_SIZE);
	for (int i = 0; i < count && fits; i++) {
		const char *p = iov[i].iov_base;
		size_t n = iov[i].iov_len;
		if (i == 0) {
			p += OUT_HEADER_SIZE;
			n -= OUT_HEADER_SIZE;
		}
		if (off + n > u->payload_size)
			fits = false;
		else if (p != e->payload + off) /* else built in place (ovl_uring_reply_space) */
			memcpy(e->payload + off, p, n);
		off += n;
	}
	if (!fits) {
		eio_header(e->hdr->in_out, unique);
		off = 0;
	}
	e->hdr->ent.payload_sz = (uint32_t)off;
	e->hdr->ent.commit_id = unique;
	atomic_store(&e->unique, 0);
	atomic_fetch_add(&u->served, 1);
	if (my_queue == e->q) {
		prep_cmd(e->q, e, CMD_COMMIT_AND_FETCH, unique);
	} else {
		/* Answered on a worker: the queue's own thread submits, it alone uses its ring. */
		uint64_t one = 1;
		pthread_mutex_lock(&e->q->lock);
		e->next_done = e->q->done;
		e->q->done = e;
		pthread_mutex_unlock(&e->q->lock);
		if (write(e->q->efd, &one, sizeof(one)) < 0)
			ovl_log(LOG_ERR, "io_uring: waking queue %d: %s", e->q->qid,
				strerror(errno));
	}
	return true;
}

void *ovl_uring_reply_space(struct ovl_uring *u, size_t size)
{
	return my_entry && size <= u->payload_size ? my_entry->payload : NULL;
}

static void commit_done(struct ovl_uring_queue *q)
{
	pthread_mutex_lock(&q->lock);
	struct entry *e = q->done;
	q->done = NULL;
	pthread_mutex_unlock(&q->lock);
	while (e) {
		struct entry *next = e->next_done;
		prep_cmd(q, e, CMD_COMMIT_AND_FETCH, e->hdr->ent.commit_id);
		e = next;
	}
}

static bool wait_for_init(struct ovl_uring *u)
{
	pthread_mutex_lock(&u->start_lock);
	while (!u->init_answered && !atomic_load(&u->stopping))
		pthread_cond_wait(&u->start_cond, &u->start_lock);
	pthread_mutex_unlock(&u->start_lock);
	return !atomic_load(&u->stopping);
}

/* Once INIT is answered: the payload buffers are sized by the max_write it carried. */
static int alloc_entries(struct ovl_uring_queue *q)
{
	size_t payload_size = q->u->payload_size;

	for (int i = 0; i < ENTRIES_PER_QUEUE; i++) {
		struct entry *e = &q->ents[i];
		e->q = q;
		e->hdr = calloc(1, sizeof(*e->hdr));
		e->area = malloc(HEAD_ROOM + payload_size);
		if (!e->hdr || !e->area)
			return -ENOMEM;
		e->payload = e->area + HEAD_ROOM;
		e->iov[0] = (struct iovec){e->hdr, sizeof(*e->hdr)};
		e->iov[1] = (struct iovec){e->payload, payload_size};
	}
	return 0;
}

static void *run_queue(void *arg)
{
	struct ovl_uring_queue *q = arg;
	cpu_set_t cpus;

	my_queue = q;
	/* Signals are for the session loop's thread (libfuse's exit handler, SIGUSR1). */
	sigset_t all;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	CPU_ZERO(&cpus);
	CPU_SET(q->qid, &cpus);
	/* Not allowed there (a cpuset): the queue still works, only without the locality. */
	(void)pthread_setaffinity_np(pthread_self(), sizeof(cpus), &cpus);
	if (!wait_for_init(q->u))
		return NULL;
	/* Made here: with IORING_SETUP_SINGLE_ISSUER, the ring's creator is its submitter. */
	struct io_uring_params p = {.flags = IORING_SETUP_SQE128 | IORING_SETUP_SINGLE_ISSUER |
					     IORING_SETUP_COOP_TASKRUN};
	int err = alloc_entries(q);
	if (!err)
		err = io_uring_queue_init_params(2 * ENTRIES_PER_QUEUE + 4, &q->ring, &p);
	if (err < 0) {
		ovl_log(LOG_WARNING, "io_uring: queue %d: %s", q->qid, strerror(-err));
		return NULL;
	}
	q->ring_ready = true;
	for (int i = 0; i < ENTRIES_PER_QUEUE; i++)
		prep_cmd(q, &q->ents[i], CMD_REGISTER, 0);
	prep_eventfd_read(q);
	q->live = ENTRIES_PER_QUEUE;
	while (q->live > 0 && !atomic_load(&q->u->stopping)) {
		struct io_uring_cqe *cqe;
		int ret = io_uring_submit_and_wait(&q->ring, 1);
		if (ret < 0 && ret != -EINTR) {
			ovl_log(LOG_ERR, "io_uring: queue %d: %s", q->qid, strerror(-ret));
			break;
		}
		unsigned head, seen = 0;
		io_uring_for_each_cqe(&q->ring, head, cqe)
		{
			seen++;
			uint64_t tag = io_uring_cqe_get_data64(cqe);
			int res = cqe->res;
			if (tag == EVENTFD_TAG) {
				commit_done(q);
				if (!atomic_load(&q->u->stopping))
					prep_eventfd_read(q);
				continue;
			}
			struct entry *e = (struct entry *)(uintptr_t)tag;
			if (res < 0) {
				/* The connection is gone (unmount) or the kernel refused the queue.
				 */
				if (res != -ENOTCONN && res != -ECONNABORTED)
					ovl_log(LOG_WARNING, "io_uring: queue %d: %s", q->qid,
						strerror(-res));
				q->live--;
				continue;
			}
			serve(e);
		}
		io_uring_cq_advance(&q->ring, seen);
	}
	/* Replies made ready since the last submit still go to their callers. */
	commit_done(q);
	(void)io_uring_submit(&q->ring);
	return NULL;
}

static int setup_queue(struct ovl_uring *u, struct ovl_uring_queue *q, int qid)
{
	q->u = u;
	q->qid = qid;
	pthread_mutex_init(&q->lock, NULL);
	q->efd = eventfd(0, EFD_CLOEXEC);
	if (q->efd < 0)
		return -errno;
	return 0;
}

static void free_queue(struct ovl_uring_queue *q)
{
	for (int i = 0; i < ENTRIES_PER_QUEUE; i++) {
		free(q->ents[i].hdr);
		free(q->ents[i].area);
	}
	if (q->ring_ready)
		io_uring_queue_exit(&q->ring);
	if (q->efd >= 0)
		close(q->efd);
	pthread_mutex_destroy(&q->lock);
}

/* The kernel has a queue per possible CPU (hotpluggable ones included, which sysconf does
 * not count) and waits for every one to be served. */
static long possible_cpus(void)
{
	FILE *f = fopen("/sys/devices/system/cpu/possible", "re");
	long first = 0, last = -1;

	if (f) {
		/* "0-63", or "0": the ids are contiguous from 0. */
		if (fscanf(f, "%ld-%ld", &first, &last) == 1)
			last = first;
		fclose(f);
	}
	return last >= 0 ? last + 1 : sysconf(_SC_NPROCESSORS_CONF);
}

int ovl_uring_start(struct ovl_uring *u, struct fuse_session *se, int fd)
{
	long cpus = possible_cpus();
	int err = 0;

	if (cpus < 1 || cpus > MAX_QUEUES) {
		ovl_log(LOG_WARNING, "io_uring: %ld possible CPUs, one queue each is more than %d",
			cpus, MAX_QUEUES);
		return -EOPNOTSUPP;
	}
	u->session = se;
	u->dev_fd = fd;
	u->nqueues = (int)cpus;
	u->queues = calloc((size_t)u->nqueues, sizeof(*u->queues));
	if (!u->queues)
		return -ENOMEM;
	for (int i = 0; i < u->nqueues; i++)
		u->queues[i].efd = -1;
	atomic_store(&u->active, true); /* op_init (INIT comes later) must see it: no splicing */
	for (int i = 0; i < u->nqueues && !err; i++)
		err = setup_queue(u, &u->queues[i], i);
	for (int i = 0; i < u->nqueues && !err; i++) {
		err = -pthread_create(&u->queues[i].thread, NULL, run_queue, &u->queues[i]);
		u->queues[i].started = !err;
	}
	if (err) {
		ovl_uring_stop(u);
		return err;
	}
	return 0;
}

void ovl_uring_stop(struct ovl_uring *u)
{
	if (!u->queues)
		return;
	atomic_store(&u->stopping, true);
	pthread_mutex_lock(&u->start_lock);
	pthread_cond_broadcast(&u->start_cond);
	pthread_mutex_unlock(&u->start_lock);
	for (int i = 0; i < u->nqueues; i++) {
		uint64_t one = 1;
		if (u->queues[i].efd >= 0 && write(u->queues[i].efd, &one, sizeof(one)) < 0)
			ovl_log(LOG_ERR, "io_uring: stopping queue %d: %s", i, strerror(errno));
	}
	for (int i = 0; i < u->nqueues; i++)
		if (u->queues[i].started)
			pthread_join(u->queues[i].thread, NULL);
	atomic_store(&u->active, false);
	ovl_log(LOG_NOTICE, "io_uring: %lu requests answered through %d queues",
		atomic_load(&u->served), u->nqueues);
	for (int i = 0; i < u->nqueues; i++)
		free_queue(&u->queues[i]);
	free(u->queues);
	u->queues = NULL;
}
