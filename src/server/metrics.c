/* metrics.c - Prometheus text exposition with vLLM's metric names (see metrics.h). */
#include "server/metrics.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define MAX_BUCKETS 24

typedef struct hist {
    const char *name, *help;
    int nb;
    double le[MAX_BUCKETS];
    unsigned long long count[MAX_BUCKETS + 1];   /* per bucket (non-cumulative), last = +Inf */
    double sum;
    unsigned long long n;
} hist;

enum { H_TTFT, H_E2E, H_QUEUE, H_ITL, H_PROMPT, H_GEN, N_HIST };
enum { F_STOP, F_LENGTH, F_ABORT, N_FINISH };
static const char *finish_names[N_FINISH] = {"stop", "length", "abort"};

struct srv_metrics {
    pthread_mutex_t mu;
    char *model;
    int running, waiting;
    double kv_usage;
    unsigned long long prompt_tokens, gen_tokens, prefix_q, prefix_hit;
    unsigned long long success[N_FINISH];
    unsigned long long http[6];     /* 1xx..5xx by first digit */
    hist h[N_HIST];
};

static void hist_init(hist *h, const char *name, const char *help, const double *le, int nb) {
    memset(h, 0, sizeof *h);
    h->name = name;
    h->help = help;
    h->nb = nb;
    memcpy(h->le, le, (size_t)nb * sizeof *le);
}

static void hist_add(hist *h, double v) {
    int i = 0;
    while (i < h->nb && v > h->le[i]) i++;
    h->count[i]++;
    h->sum += v;
    h->n++;
}

srv_metrics *metrics_new(const char *model_name) {
    srv_metrics *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->model = strdup(model_name ? model_name : "");
    if (!m->model) {
        free(m);
        return NULL;
    }
    for (char *p = m->model; *p; p++)   /* label values: no quotes, backslashes or newlines */
        if (*p == '"' || *p == '\\' || *p == '\n') *p = '_';
    pthread_mutex_init(&m->mu, NULL);
    static const double ttft[] = {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0,
                                  2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0};
    static const double e2e[] = {0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0,
                                 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0};
    static const double itl[] = {0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5,
                                 5.0, 7.5, 10.0, 20.0, 40.0, 80.0};
    static const double toks[] = {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000,
                                  50000, 100000, 131072};
    hist_init(&m->h[H_TTFT], "vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.",
              ttft, (int)(sizeof ttft / sizeof *ttft));
    hist_init(&m->h[H_E2E], "vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.", e2e,
              (int)(sizeof e2e / sizeof *e2e));
    hist_init(&m->h[H_QUEUE], "vllm:request_queue_time_seconds",
              "Histogram of time spent in WAITING phase for request.", e2e, (int)(sizeof e2e / sizeof *e2e));
    hist_init(&m->h[H_ITL], "vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", itl,
              (int)(sizeof itl / sizeof *itl));
    hist_init(&m->h[H_PROMPT], "vllm:request_prompt_tokens", "Number of prefill tokens processed.", toks,
              (int)(sizeof toks / sizeof *toks));
    hist_init(&m->h[H_GEN], "vllm:request_generation_tokens", "Number of generation tokens processed.", toks,
              (int)(sizeof toks / sizeof *toks));
    return m;
}

void metrics_free(srv_metrics *m) {
    if (!m) return;
    pthread_mutex_destroy(&m->mu);
    free(m->model);
    free(m);
}

void metrics_set_load(srv_metrics *m, int running, int waiting, double kv_usage) {
    pthread_mutex_lock(&m->mu);
    m->running = running;
    m->waiting = waiting;
    m->kv_usage = kv_usage;
    pthread_mutex_unlock(&m->mu);
}

void metrics_add_tokens(srv_metrics *m, size_t prompt, size_t gen) {
    pthread_mutex_lock(&m->mu);
    m->prompt_tokens += prompt;
    m->gen_tokens += gen;
    pthread_mutex_unlock(&m->mu);
}

void metrics_prefix(srv_metrics *m, size_t q, size_t hit) {
    pthread_mutex_lock(&m->mu);
    m->prefix_q += q;
    m->prefix_hit += hit;
    pthread_mutex_unlock(&m->mu);
}

void metrics_ttft(srv_metrics *m, double s) {
    pthread_mutex_lock(&m->mu);
    hist_add(&m->h[H_TTFT], s);
    pthread_mutex_unlock(&m->mu);
}

void metrics_itl(srv_metrics *m, double s) {
    pthread_mutex_lock(&m->mu);
    hist_add(&m->h[H_ITL], s);
    pthread_mutex_unlock(&m->mu);
}

void metrics_request_done(srv_metrics *m, const char *finish, size_t prompt_tokens, size_t gen_tokens, double e2e_s,
                          double queue_s) {
    pthread_mutex_lock(&m->mu);
    for (int i = 0; i < N_FINISH; i++)
        if (!strcmp(finish, finish_names[i])) m->success[i]++;
    hist_add(&m->h[H_E2E], e2e_s);
    hist_add(&m->h[H_QUEUE], queue_s);
    hist_add(&m->h[H_PROMPT], (double)prompt_tokens);
    hist_add(&m->h[H_GEN], (double)gen_tokens);
    pthread_mutex_unlock(&m->mu);
}

void metrics_http(srv_metrics *m, int status) {
    int k = status / 100;
    if (k < 1 || k > 5) return;
    pthread_mutex_lock(&m->mu);
    m->http[k]++;
    pthread_mutex_unlock(&m->mu);
}

void metrics_render(srv_metrics *m, strbuf *b) {
    pthread_mutex_lock(&m->mu);
    const char *mn = m->model;
    sb_printf(b, "# HELP vllm:num_requests_running Number of requests in model execution batches.\n"
                 "# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{model_name=\"%s\"} %d\n", mn,
              m->running);
    sb_printf(b, "# HELP vllm:num_requests_waiting Number of requests waiting to be processed.\n"
                 "# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting{model_name=\"%s\"} %d\n", mn,
              m->waiting);
    sb_printf(b, "# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.\n"
                 "# TYPE vllm:kv_cache_usage_perc gauge\nvllm:kv_cache_usage_perc{model_name=\"%s\"} %.6g\n", mn,
              m->kv_usage);
    sb_printf(b, "# HELP vllm:prompt_tokens_total Number of prefill tokens processed.\n"
                 "# TYPE vllm:prompt_tokens_total counter\nvllm:prompt_tokens_total{model_name=\"%s\"} %llu\n", mn,
              m->prompt_tokens);
    sb_printf(b, "# HELP vllm:generation_tokens_total Number of generation tokens processed.\n"
                 "# TYPE vllm:generation_tokens_total counter\nvllm:generation_tokens_total{model_name=\"%s\"} %llu\n",
              mn, m->gen_tokens);
    sb_printf(b, "# HELP vllm:prefix_cache_queries_total Prefix cache queries, in terms of number of queried tokens.\n"
                 "# TYPE vllm:prefix_cache_queries_total counter\n"
                 "vllm:prefix_cache_queries_total{model_name=\"%s\"} %llu\n", mn, m->prefix_q);
    sb_printf(b, "# HELP vllm:prefix_cache_hits_total Prefix cache hits, in terms of number of cached tokens.\n"
                 "# TYPE vllm:prefix_cache_hits_total counter\nvllm:prefix_cache_hits_total{model_name=\"%s\"} %llu\n",
              mn, m->prefix_hit);
    sb_puts(b, "# HELP vllm:request_success_total Count of successfully processed requests.\n"
               "# TYPE vllm:request_success_total counter\n");
    for (int i = 0; i < N_FINISH; i++)
        sb_printf(b, "vllm:request_success_total{finished_reason=\"%s\",model_name=\"%s\"} %llu\n", finish_names[i], mn,
                  m->success[i]);
    for (int k = 0; k < N_HIST; k++) {
        const hist *h = &m->h[k];
        sb_printf(b, "# HELP %s %s\n# TYPE %s histogram\n", h->name, h->help, h->name);
        unsigned long long cum = 0;
        for (int i = 0; i < h->nb; i++) {
            cum += h->count[i];
            sb_printf(b, "%s_bucket{le=\"%g\",model_name=\"%s\"} %llu\n", h->name, h->le[i], mn, cum);
        }
        cum += h->count[h->nb];
        sb_printf(b, "%s_bucket{le=\"+Inf\",model_name=\"%s\"} %llu\n", h->name, mn, cum);
        sb_printf(b, "%s_sum{model_name=\"%s\"} %.9g\n%s_count{model_name=\"%s\"} %llu\n", h->name, mn, h->sum,
                  h->name, mn, h->n);
    }
    sb_puts(b, "# HELP http_requests_total Count of HTTP responses by status class.\n"
               "# TYPE http_requests_total counter\n");
    for (int k = 1; k <= 5; k++) sb_printf(b, "http_requests_total{status=\"%dxx\"} %llu\n", k, m->http[k]);
    pthread_mutex_unlock(&m->mu);
}
