/* st_write.h - safetensors writer: one file or shards + model.safetensors.index.json,
 * laid out byte-for-byte like the Python `safetensors` package (Rust core) writes them.
 *
 * Usage: stw_create -> stw_add every tensor (name, dtype, shape) -> stw_begin (assigns
 * shards, writes every header, sizes the files) -> stw_write data, in any order and from any
 * number of threads (pwrite at precomputed offsets) -> stw_finish (index file, close).
 *
 * Layout of one file (what safetensors.torch.save_file(..., metadata={"format": "pt"})
 * produces): u64 LE header length N, then N bytes of compact JSON
 *   {"__metadata__":{"format":"pt"},"<name>":{"dtype":"F32","shape":[1],"data_offsets":[b,e]},...}
 * padded with spaces so that 8 + N is a multiple of 8, then the data. Tensors are ordered
 * (header and data alike) by dtype, larger dtype first in the Rust Dtype enum order
 * (U64 I64 F64 F32 U32 I32 BF16 F16 U16 I16 F8_E4M3 F8_E5M2 I8 U8 BOOL), then by name
 * (byte order); data is packed without gaps.
 * Shards: tensors go to shards in stw_add order; a new shard starts when the next tensor (or
 * group, see join_prev) would push the current one past max_shard_bytes (transformers'
 * rule). One shard -> "model.safetensors" and no index; n > 1 -> "model-0000i-of-0000n.safetensors"
 * and model.safetensors.index.json {"metadata": {"total_parameters", "total_size"},
 * "weight_map": {name: file} (sorted)} written like json.dumps(indent=2, sort_keys=True). */
#ifndef G4_MODEL_ST_WRITE_H
#define G4_MODEL_ST_WRITE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "g4.h"
#include "model/safetensors.h"

typedef struct stw_writer stw_writer;

/* dir must exist. max_shard_bytes 0 = unlimited (one file). */
g4_status stw_create(const char *dir, uint64_t max_shard_bytes, stw_writer **out, g4_error *err);
/* Declare a tensor; returns its index (>= 0) or -1 on error (duplicate name, bad shape, OOM).
 * join_prev: keep it in the same shard as the previously added tensor (one module's tensors).
 * counted: count its elements in the index's total_parameters (false for buffers such as
 * layer_scalar, which transformers does not count). */
int stw_add(stw_writer *w, const char *name, st_dtype dtype, int ndim, const int64_t *shape, bool join_prev,
            bool counted, g4_error *err);
/* Assign shards, create the files, write the headers, size the files. */
g4_status stw_begin(stw_writer *w, g4_error *err);
/* Write bytes [off, off + n) of tensor idx's data. Thread-safe for disjoint ranges. */
g4_status stw_write(stw_writer *w, int idx, uint64_t off, const void *data, size_t n, g4_error *err);
/* Bytes of tensor idx's data; number of shards (after stw_begin); path of shard i. */
uint64_t stw_nbytes(const stw_writer *w, int idx);
int stw_nshards(const stw_writer *w);
const char *stw_shard_path(const stw_writer *w, int i);
uint64_t stw_total_bytes(const stw_writer *w);
/* Write the index (when sharded), flush and close the files. */
g4_status stw_finish(stw_writer *w, g4_error *err);
void stw_free(stw_writer *w);

/* Rank of a dtype in the Python safetensors layout order (larger first). */
int stw_dtype_rank(st_dtype t);

#endif
