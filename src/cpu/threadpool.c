/* threadpool.c - persistent pthread pool (see threadpool.h).
 *
 * One job at a time: tp_run publishes (fn, ctx, n_tasks) under the mutex, bumps
 * `generation` (atomic, release) and broadcasts; every worker that sees a new
 * generation grabs task indices from the atomic `next` until they run out, then
 * reports done (atomic n_done; the last one signals done_cv under the mutex).
 * tp_run itself also grabs tasks, then waits until all n-1 workers reported for
 * this generation, so no worker can still touch the job after tp_run returns.
 * Short jobs (a decode step is ~200 matvecs of 0.1-5 ms): a worker that finished
 * a job polls `generation` for up to TP_SPIN_NS before sleeping on the condvar,
 * and tp_run polls n_done as long before sleeping, so back-to-back jobs skip the
 * futex wake-up latency; the spin is bounded so an idle pool does not burn CPU. */
#include "cpu/threadpool.h"

#include "base/status.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#define TP_SPIN_NS 100000 /* 0.1 ms */

struct tp_pool {
    int n;                      /* total threads incl. the caller */
    pthread_t *threads;         /* [n-1] */
    int started;                /* workers actually started */
    pthread_mutex_t mu;
    pthread_cond_t work_cv, done_cv;
    pthread_mutex_t run_mu;     /* serializes tp_run callers */
    atomic_ulong generation;
    atomic_int n_done;          /* workers finished with the current generation */
    atomic_int quit;
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

static inline void cpu_relax(void) {
#if defined(__x86_64__)
    _mm_pause();
#endif
}

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Poll until done(p, arg) or TP_SPIN_NS elapsed; returns done(). */
static bool spin_until(tp_pool *p, bool (*done)(tp_pool *, unsigned long), unsigned long arg) {
    long long t_end = 0;
    for (int i = 0;; i++) {
        if (done(p, arg)) return true;
        if ((i & 63) == 0) {
            long long t = now_ns();
            if (!t_end) t_end = t + TP_SPIN_NS;
            else if (t > t_end) return false;
        }
        cpu_relax();
    }
}

static bool new_job(tp_pool *p, unsigned long seen) {
    return atomic_load_explicit(&p->quit, memory_order_relaxed) ||
           atomic_load_explicit(&p->generation, memory_order_acquire) != seen;
}

static bool all_done(tp_pool *p, unsigned long unused) {
    (void)unused;
    return atomic_load_explicit(&p->n_done, memory_order_acquire) >= p->n - 1;
}

static void *worker_main(void *arg) {
    tp_pool *p = ((tp_worker_arg *)arg)->pool;
    int id = ((tp_worker_arg *)arg)->id;
    free(arg);
    unsigned long seen = 0;
    for (;;) {
        if (!spin_until(p, new_job, seen)) {
            pthread_mutex_lock(&p->mu);
            while (!new_job(p, seen)) pthread_cond_wait(&p->work_cv, &p->mu);
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load(&p->quit)) break;
        seen = atomic_load_explicit(&p->generation, memory_order_acquire);
        run_tasks(p, id);
        if (atomic_fetch_add_explicit(&p->n_done, 1, memory_order_acq_rel) + 1 == p->n - 1) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done_cv);
            pthread_mutex_unlock(&p->mu);
        }
    }
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
    atomic_init(&p->generation, 0);
    atomic_init(&p->n_done, 0);
    atomic_init(&p->quit, 0);
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
    atomic_store(&p->quit, 1);
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

int tp_cores(int cap) {
    long nc = sysconf(_SC_NPROCESSORS_ONLN);
    if (nc < 1) nc = 1;
    return nc < cap ? (int)nc : cap;
}

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
    atomic_store_explicit(&p->n_done, 0, memory_order_relaxed);
    atomic_fetch_add_explicit(&p->generation, 1, memory_order_release);
    pthread_cond_broadcast(&p->work_cv);
    pthread_mutex_unlock(&p->mu);
    run_tasks(p, 0);
    if (!spin_until(p, all_done, 0)) {
        pthread_mutex_lock(&p->mu);
        while (!all_done(p, 0)) pthread_cond_wait(&p->done_cv, &p->mu);
        pthread_mutex_unlock(&p->mu);
    }
    pthread_mutex_unlock(&p->run_mu);
}
