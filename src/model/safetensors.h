/* safetensors.h - zero-copy reader for safetensors checkpoints (single file or
 * sharded with model.safetensors.index.json).
 *
 * File layout: u64 little-endian header length N, N bytes of JSON header
 * {"name": {"dtype": "BF16", "shape": [..], "data_offsets": [begin, end]}, ...,
 *  "__metadata__": {str: str}}, then the data region; offsets are relative to
 * the data region start (8 + N). Everything is validated before use: header
 * length sane, JSON well formed, dtype known, shape x dtype size == span,
 * spans inside the file and not overlapping, names unique (also across shards).
 * Tensor data stays in the read-only mmap; views point into it. Views are NOT
 * necessarily aligned to the element size (the data region starts at 8 + N and
 * writers need not pad N): read elements with memcpy or copy the span out.
 * Shard order is the sorted order of the shard file names in the index. */
#ifndef G4_SAFETENSORS_H
#define G4_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>
#include "g4.h"

typedef enum st_dtype {
    ST_BF16, ST_F16, ST_F32, ST_F8_E4M3, ST_U8, ST_I8, ST_I32, ST_I64, ST_BOOL, ST_F64, ST_I16, ST_U16,
    ST_DTYPE_COUNT
} st_dtype;

#define ST_MAX_DIMS 8

typedef struct st_tensor {
    const char *name;           /* owned by the st_model */
    st_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    int64_t numel;
    const void *data;           /* into the mmap; NULL only when nbytes == 0 */
    size_t nbytes;
    int shard;                  /* index of the file it lives in */
    uint64_t file_offset;       /* byte offset of data within its shard file (8 + header + begin) */
} st_tensor;

typedef struct st_model st_model;

const char *st_dtype_name(st_dtype t);     /* "BF16", ... */
size_t st_dtype_size(st_dtype t);          /* bytes per element */
int st_dtype_parse(const char *s);         /* -1 if unknown */

/* Open a model directory (model.safetensors if present, else
 * model.safetensors.index.json), an index file (path ending in ".json"; shard
 * names in its weight_map are relative to its directory and may not be
 * absolute or contain ".."), or a single .safetensors file. Sharded: every
 * weight_map entry must be found in the shard it names and every shard tensor
 * must be listed. Errors: G4_ERR_IO (open/mmap), G4_ERR_JSON (header/index not
 * JSON), G4_ERR_FORMAT (layout), G4_ERR_UNSUPPORTED (unknown dtype),
 * G4_ERR_MISSING_TENSOR (weight_map names an absent tensor). */
g4_status st_open(const char *path, st_model **out, g4_error *err);
/* Parse one in-memory safetensors image (used by the fuzz target and tests);
 * the buffer must outlive the model. */
g4_status st_open_buffer(const void *buf, size_t len, const char *name, st_model **out, g4_error *err);
void st_close(st_model *m);

size_t st_count(const st_model *m);
const st_tensor *st_at(const st_model *m, size_t i);          /* in sorted name order */
const st_tensor *st_find(const st_model *m, const char *name); /* NULL if absent; O(log n) */
int st_nshards(const st_model *m);
const char *st_shard_path(const st_model *m, int i);
/* __metadata__ value of the first shard that has the key, or NULL. */
const char *st_metadata(const st_model *m, const char *key);

#endif
