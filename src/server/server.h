/* server.h - g4 serve: the HTTP front end (one thread per connection), routes,
 * the engine loader and graceful shutdown, over the scheduler in sched.h. */
#ifndef G4_SERVER_SERVER_H
#define G4_SERVER_SERVER_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include "g4.h"

typedef struct srv_opts {
    const char *model;          /* model directory */
    const char *host;           /* default 127.0.0.1 */
    int port;                   /* default 8000; 0: any free port (printed) */
    int max_model_len;          /* <= 0: the engine's default context */
    int max_num_seqs;           /* default 16 */
    int max_queue;              /* waiting sequences before 429 (default 256) */
    int token_budget;           /* prefill tokens per step (default 256) */
    int prefill_wait_ms;        /* --prefill-wait-ms: new prompts wait up to this to start together (0: off) */
    const char *api_key;        /* NULL: no auth */
    const char *served_name;    /* NULL: the model path */
    g4_device device;
    g4_kv_dtype kv_cache_dtype;
    bool prefill_bf16;          /* --prefill-weights bf16: engine option prefill_bf16 */
    int threads;
    size_t max_body;            /* request body cap (default 32 MiB) */
    int max_conns;              /* concurrent connections (default 1024) */
    double shutdown_timeout;    /* seconds to let in-flight requests finish (default 600) */
    const char *allowed_media_dir;  /* local media files only under this directory; NULL: none */
    bool allow_remote_media;    /* fetch http(s) media URLs */
    size_t media_max_bytes;     /* encoded bytes per media input (default 20 MB) */
    double media_timeout;       /* seconds per remote fetch (default 10) */
} srv_opts;

/* Run until *stop becomes non-zero (set from a signal handler, which also writes a
 * byte to wake_fd). Returns 0 after a clean shutdown, 1 when the model failed to
 * load or the socket could not be opened. Logs go to stderr. */
int srv_run(const srv_opts *o, volatile sig_atomic_t *stop, int wake_fd);

#endif
