/*
 * procuse.h -- is a directory in use by a live process?
 *
 * A restore must never write under a directory a running process works in: a server
 * keeps its files open and writes them by path. procuse_check scans /proc/<pid>/cwd,
 * /proc/<pid>/root and every /proc/<pid>/fd/<n> link of every process (as root: all
 * of them; otherwise the ones we may read) and reports each process that has its
 * working directory, its root or an open file at or under one of the directories.
 * The calling process and its ancestors (the shell or sudo that started it) are not
 * counted: a shell sitting in the directory writes nothing there.
 *
 * Returns the number of processes found (each reported with log_error, naming the PID,
 * its command and what it holds), 0 when none, -1 when /proc cannot be read (reported).
 */
#ifndef RAGSAFE_PROCUSE_H
#define RAGSAFE_PROCUSE_H

#include <stddef.h>

int procuse_check(const char *const *dirs, size_t ndirs);

#endif
