/* threadpool.c - persistent pthread pool (see threadpool.h).
 *
 * One job at a time: tp_run publishes (fn, ctx, n_tasks) under the mutex, bumps
 * `generation` and broadcasts; every worker that sees a new generation grabs task
 * indices from the atomic `next` until they run out, then reports done. tp_run
 * itself also grabs tasks, then waits until all n-1 workers reported for this
 * generation, so no worker can still touch the job after tp_run returns. */
#include "cpu/threadpool.h"

#include "base/status.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

struct tp_pool {
    int n;                      /* total threads incl. the caller */
    pthread_t *threads;         /* [n-1] */
    int started;                /* workers actually started */
    pthread_mutex_t mu;
    pthread_cond_t work_cv, done_cv;
    pthread_mutex_t run_mu;     /* serializes tp_run callers */
    unsigned long generation;
    int n_done;                 /* workers finished with the current generation */
    int quit;
    tp_fn fn;
    void *ctx;
    int n_tasks;
    atomic_int next;
};

typedef struct {
    tp_pool *pool;
    int id;
} tp_worker_arg;

static void run_tasks(tp_pool *p, int thread) {
    for (;;) {
        int t = atomic_fetch_add_explicit(&p->next, 1, memory_order_relaxed);
        if (t >= p->n_tasks) break;
        p->fn(p->ctx, t, thread);
    }
}

static void *worker_main(void *arg) {
    tp_pool *p = ((tp_worker_arg *)arg)->pool;
    int id = ((tp_worker_arg *)arg)->id;
    free(arg);
    unsigned long seen = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->quit && p->generation == seen) pthread_cond_wait(&p->work_cv, &p->mu);
        if (p->quit) break;
        seen = p->generation;
        pthread_mutex_unlock(&p->mu);
        run_tasks(p, id);
        pthread_mutex_lock(&p->mu);
        if (++p->n_done == p->n - 1) pthread_cond_signal(&p->done_cv);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

g4_status tp_create(int n_threads, tp_pool **out, g4_error *err) {
    *out = NULL;
    if (n_threads < 1 || n_threads > 1024)
        return G4_FAIL(err, G4_ERR_INVALID_ARG, "thread pool: n_threads %d, expected 1..1024", n_threads);
    tp_pool *p = calloc(1, sizeof *p);
    if (!p) return G4_FAIL(err, G4_ERR_NOMEM, "thread pool: out of memory");
    p->n = n_threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_mutex_init(&p->run_mu, NULL);
    pthread_cond_init(&p->work_cv, NULL);
    pthread_cond_init(&p->done_cv, NULL);
    atomic_init(&p->next, 0);
    if (n_threads > 1) {
        p->threads = calloc((size_t)n_threads - 1, sizeof *p->threads);
        if (!p->threads) {
            tp_free(p);
            return G4_FAIL(err, G4_ERR_NOMEM, "thread pool: out of memory");
        }
        for (int i = 0; i < n_threads - 1; i++) {
            tp_worker_arg *a = malloc(sizeof *a);
            if (!a || pthread_create(&p->threads[i], NULL, worker_main, (a->pool = p, a->id = i + 1, a))) {
                free(a);
                p->n = p->started + 1; /* so tp_free joins only what started */
                tp_free(p);
                return G4_FAIL(err, G4_ERR_INTERNAL, "thread pool: cannot start thread %d of %d", i + 1,
                               n_threads);
            }
            p->started++;
        }
    }
    *out = p;
    return G4_OK;
}

void tp_free(tp_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->quit = 1;
    pthread_cond_broadcast(&p->work_cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->started; i++) pthread_join(p->threads[i], NULL);
    pthread_cond_destroy(&p->work_cv);
    pthread_cond_destroy(&p->done_cv);
    pthread_mutex_destroy(&p->mu);
    pthread_mutex_destroy(&p->run_mu);
    free(p->threads);
    free(p);
}

int tp_threads(const tp_pool *p) { return p ? p->n : 1; }

void tp_run(tp_pool *p, int n_tasks, tp_fn fn, void *ctx) {
    if (n_tasks <= 0) return;
    if (!p || p->n == 1 || n_tasks == 1) {
        for (int t = 0; t < n_tasks; t++) fn(ctx, t, 0);
        return;
    }
    pthread_mutex_lock(&p->run_mu);
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->ctx = ctx;
    p->n_tasks = n_tasks;
    atomic_store_explicit(&p->next, 0, memory_order_relaxed);
    p->n_done = 0;
    p->generation++;
    pthread_cond_broadcast(&p->work_cv);
    pthread_mutex_unlock(&p->mu);
    run_tasks(p, 0);
    pthread_mutex_lock(&p->mu);
    while (p->n_done < p->n - 1) pthread_cond_wait(&p->done_cv, &p->mu);
    pthread_mutex_unlock(&p->mu);
    pthread_mutex_unlock(&p->run_mu);
}
