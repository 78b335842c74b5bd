/* SIGUSR1: the daemon logs its node count (see stats.c). */
#ifndef OVLFS_STATS_H
#define OVLFS_STATS_H

#include "engine/engine.h"

/* Call before any other thread is started. */
int ovl_stats_start(struct ovl_fs *fs);
void ovl_stats_stop(void);

#endif
