/* cpu_isa.c - run-time ISA selection (G4_CPU_ISA) and shared decode tables. */
#include "cpu/cpu_ops.h"
#include "cpu/cpu_kernels.h"

#include "base/status.h"
#include "model/codec.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

float cpu_e4m3_lut[256];

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static cpu_isa g_isa;

static const char *const isa_names[CPU_ISA_COUNT] = {"scalar", "avx2", "avx512"};

const char *cpu_isa_name(cpu_isa isa) {
    return (unsigned)isa < CPU_ISA_COUNT ? isa_names[isa] : "?";
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
/* CPUID.1:ECX bit 29 (clang's __builtin_cpu_supports lacks "f16c"). */
static bool has_f16c(void) {
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 29));
}
#endif

bool cpu_isa_supported(cpu_isa isa) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    switch (isa) {
    case CPU_ISA_SCALAR: return true;
    case CPU_ISA_AVX2:
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && has_f16c();
    case CPU_ISA_AVX512:
        return cpu_isa_supported(CPU_ISA_AVX2) && __builtin_cpu_supports("avx512f") &&
               __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
               __builtin_cpu_supports("avx512dq");
    }
    return false;
#else
    return isa == CPU_ISA_SCALAR;
#endif
}

static void init_once(void) {
    for (int i = 0; i < 256; i++) cpu_e4m3_lut[i] = e4m3_to_f32((uint8_t)i);
    cpu_isa best = CPU_ISA_SCALAR;
    for (int i = CPU_ISA_COUNT - 1; i > 0; i--)
        if (cpu_isa_supported((cpu_isa)i)) {
            best = (cpu_isa)i;
            break;
        }
    g_isa = best;
    const char *env = getenv("G4_CPU_ISA");
    if (env)
        for (int i = 0; i < CPU_ISA_COUNT; i++)
            if (!strcmp(env, isa_names[i]) && cpu_isa_supported((cpu_isa)i)) g_isa = (cpu_isa)i;
}

void cpu_tables_init(void) { pthread_once(&g_once, init_once); }

cpu_isa cpu_isa_active(void) {
    cpu_tables_init();
    return g_isa;
}

g4_status cpu_isa_set(cpu_isa isa, g4_error *err) {
    cpu_tables_init();
    if ((unsigned)isa >= CPU_ISA_COUNT || !cpu_isa_supported(isa))
        return G4_FAIL(err, G4_ERR_UNSUPPORTED, "cpu isa '%s' (%d): not supported by this CPU",
                       cpu_isa_name(isa), (int)isa);
    g_isa = isa;
    return G4_OK;
}

const cpu_kernels *cpu_kernels_active(void) {
    switch (cpu_isa_active()) {
#if defined(__x86_64__)
    case CPU_ISA_AVX512: return &cpu_kernels_avx512;
    case CPU_ISA_AVX2: return &cpu_kernels_avx2;
#endif
    default: return &cpu_kernels_scalar;
    }
}

float cpu_mm_post(const cpu_mm_job *j, int n, float acc) {
    if (j->type == CPU_W_NVFP4) return acc / j->gscale;
    if (j->type == CPU_W_FP8) {
        float s;
        if (j->row_scale_bf16) {
            uint16_t h;
            memcpy(&h, j->row_scale + (size_t)n * 2, 2);
            s = bf16_to_f32(h);
        } else {
            memcpy(&s, j->row_scale + (size_t)n * 4, 4);
        }
        return acc * s;
    }
    return acc;
}
