/* threadpool.h - a small persistent pthread pool with a blocking parallel-for.
 *
 * tp_create(n) starts n-1 worker threads once; the thread calling tp_run is the
 * n-th worker. tp_run(pool, n_tasks, fn, ctx) calls fn(ctx, task, thread) for
 * every task in [0, n_tasks) exactly once, spread over the threads by an atomic
 * counter (dynamic load balancing), and returns when all tasks are done.
 * Invariants: no allocation or thread creation per tp_run; `thread` is in
 * [0, tp_threads(pool)) and unique among concurrently running calls of fn, so it
 * can index per-thread scratch. A NULL pool, or n_tasks == 1, runs the tasks on
 * the calling thread. tp_run calls are serialized by an internal lock; fn must
 * not call tp_run on the same pool (no nesting). */
#ifndef G4_CPU_THREADPOOL_H
#define G4_CPU_THREADPOOL_H

#include "g4.h"

typedef struct tp_pool tp_pool;
typedef void (*tp_fn)(void *ctx, int task, int thread);

/* n_threads >= 1 total threads (including the caller); *out is NULL on failure. */
g4_status tp_create(int n_threads, tp_pool **out, g4_error *err);
/* Stops and joins the workers. NULL is a no-op. */
void tp_free(tp_pool *pool);
/* The online cores, at least 1 and at most cap: a pool's default size. */
int tp_cores(int cap);
/* Total threads (1 for NULL). */
int tp_threads(const tp_pool *pool);
/* Parallel-for; blocks until every task has finished. n_tasks <= 0 does nothing. */
void tp_run(tp_pool *pool, int n_tasks, tp_fn fn, void *ctx);

#endif
