/* npy.h - NumPy .npy v1/v2 files of float32 / int32 / int64 arrays (C order,
 * little-endian): the interchange format of the reference fixtures and of
 * `g4 logits --npy`. */
#ifndef G4_NPY_H
#define G4_NPY_H

#include <stddef.h>
#include <stdint.h>
#include "g4.h"

typedef enum npy_dtype { NPY_F32, NPY_I32, NPY_I64 } npy_dtype;

typedef struct npy_array {
    npy_dtype dtype;
    int ndim;
    int64_t shape[8];
    int64_t numel;
    void *data;         /* malloc'd, numel elements */
} npy_array;

g4_status npy_read(const char *path, npy_array *out, g4_error *err);
g4_status npy_write(const char *path, npy_dtype dtype, int ndim, const int64_t *shape,
                    const void *data, g4_error *err);
void npy_free(npy_array *a);

#endif
