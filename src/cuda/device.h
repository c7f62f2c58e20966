/* device.h - C interface to the CUDA side (implemented in the .cu files of src/cuda). */
#ifndef G4_CUDA_DEVICE_H
#define G4_CUDA_DEVICE_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct g4_cuda_info {
    char name[256];
    int cc_major, cc_minor, sm_count;
    int l2_bytes;
    size_t mem_bytes;
} g4_cuda_info;

/* 0 on success; on failure -1 and a message in err. */
int g4_cuda_device_info(g4_cuda_info *info, char *err, size_t errlen);
int g4_cuda_selftest(char *err, size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
