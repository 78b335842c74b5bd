/* SIGUSR1 makes the daemon log how many nodes it holds (one per name the kernel knows), so
 * that tests and users can see memory follow the kernel's FORGETs, and how many requests of
 * each kind it has read (what a workload costs in round trips). A thread waits for the
 * signal: nothing is written from a signal handler. */
#include "stats.h"
#include "log.h"
#include "fuse/dev_hooks.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>

static pthread_t waiter;
static bool started;
static atomic_bool stopping;

static void *wait_usr1(void *arg)
{
	struct ovl_fs *fs = arg;
	sigset_t set;
	int sig;

	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	while (sigwait(&set, &sig) == 0 && !atomic_load(&stopping)) {
		char requests[1024];
		ovl_log(LOG_NOTICE, "nodes: %zu", ovl_node_count(fs));
		if (ovl_dev_requests_format(requests, sizeof(requests)))
			ovl_log(LOG_NOTICE, "requests:%s", requests);
	}
	return NULL;
}

int ovl_stats_start(struct ovl_fs *fs)
{
	sigset_t set;
	int err;

	/* Blocked here, before any other thread exists, so every thread inherits it and
	 * SIGUSR1 (whose default action ends the process) only ever reaches sigwait. */
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	err = pthread_sigmask(SIG_BLOCK, &set, NULL);
	if (err)
		return -err;
	err = pthread_create(&waiter, NULL, wait_usr1, fs);
	if (err)
		return -err;
	started = true;
	return 0;
}

void ovl_stats_stop(void)
{
	if (!started)
		return;
	atomic_store(&stopping, true);
	if (pthread_kill(waiter, SIGUSR1) == 0)
		pthread_join(waiter, NULL);
	started = false;
}
