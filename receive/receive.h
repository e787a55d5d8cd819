/*
 * receive.h -- ragsafe-receive's work (receive.c): WAL streamed over the replication
 * protocol into a local spool, completed segments stored as ragsafe-archive stores
 * them, the segment in progress stored as a .partial object.
 *
 * Spool (--spool DIR, on the backup host):
 *     DIR/<segment>.partial   the segment being received: full segment size, bytes
 *                             past what was received zero; fdatasync'd before its
 *                             flush position is reported to the server
 *     DIR/<segment>           a completed segment (renamed, directory fsync'd) not yet
 *                             stored in the repository; removed once it is
 *     DIR/<TTTTTTTT>.history  a timeline history file on its way into the repository
 *
 * Repository (contract with ragsafe-restore and ragsafe-pitr):
 *     wal/...                                   completed segments and history files
 *                                               (walstore_put, as ragsafe-archive)
 *     stream/<TTTTTTTT>/<segment>.partial       the segment in progress, full size,
 *                                               zero past the flushed position; replaced
 *                                               in place; removed once the segment (or
 *                                               a later one) of that timeline is in wal/
 *     stream/status.json                        the receiver's state (storage_put, plain
 *                                               JSON; sealed in an encrypted repository)
 *
 *     receiver_opts o = {...};
 *     status = receiver_run(&o);      an exit status: 0 after SIGTERM/SIGINT
 */
#ifndef RAGSAFE_RECEIVE_H
#define RAGSAFE_RECEIVE_H

#include "object.h"

#define RECEIVE_DEFAULT_APPNAME "ragsafe_receive"
#define RECEIVE_STATUS_KEY "stream/status.json"
#define RECEIVE_STATUS_INTERVAL_US 10000000LL /* standby status at least this often */
#define RECEIVE_BACKOFF_MAX_MS 5000

typedef struct receiver_opts {
    const char *loc;          /* repository location */
    const char *conninfo;     /* libpq string; NULL: PG* environment */
    const char *slot;         /* NULL: no slot */
    int create_slot;
    const char *appname;
    const char *spool;        /* absolute directory */
    double partial_interval;  /* seconds */
    object_opts oo;
} receiver_opts;

/* Run until SIGTERM / SIGINT (0) or a failure that retrying cannot fix: another
 * cluster (EXIT_INTEGRITY), a spool that disagrees with the server (EXIT_INTEGRITY),
 * an unusable spool or repository (EXIT_FAIL). Connection losses and server restarts
 * are retried with backoff. */
int receiver_run(const receiver_opts *o);

#endif
