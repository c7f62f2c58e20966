/* metrics.h - Prometheus metrics of g4 serve with vLLM's names (text format
 * 0.0.4): gauges vllm:num_requests_running / _waiting / kv_cache_usage_perc,
 * counters vllm:prompt_tokens_total, vllm:generation_tokens_total,
 * vllm:request_success_total{finished_reason}, vllm:prefix_cache_queries_total /
 * _hits_total, histograms vllm:time_to_first_token_seconds,
 * vllm:e2e_request_latency_seconds, vllm:request_queue_time_seconds,
 * vllm:inter_token_latency_seconds, vllm:request_prompt_tokens,
 * vllm:request_generation_tokens; plus http_requests_total{status}.
 * Every series carries model_name. Thread-safe (one mutex). */
#ifndef G4_SERVER_METRICS_H
#define G4_SERVER_METRICS_H

#include <stddef.h>
#include "base/strbuf.h"

typedef struct srv_metrics srv_metrics;

srv_metrics *metrics_new(const char *model_name);
void metrics_free(srv_metrics *m);
void metrics_set_load(srv_metrics *m, int running, int waiting, double kv_usage);
void metrics_add_tokens(srv_metrics *m, size_t prompt, size_t generation);
void metrics_prefix(srv_metrics *m, size_t queried, size_t hit);
void metrics_ttft(srv_metrics *m, double s);
void metrics_itl(srv_metrics *m, double s);
/* one finished request; finish: "stop", "length", "abort" */
void metrics_request_done(srv_metrics *m, const char *finish, size_t prompt_tokens, size_t gen_tokens, double e2e_s,
                          double queue_s);
void metrics_http(srv_metrics *m, int status);
void metrics_render(srv_metrics *m, strbuf *b);

#endif
