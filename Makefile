# g4 - explicit Makefile.
#   make            CPU library, CLI and tests (CUDA objects too when nvcc is found)
#   make test       build and run the test suite (ends with "N passed, N failed")
#   make fuzz       libFuzzer targets (clang)      make asan / ubsan: tests under sanitizers
#   make cuda       CUDA objects only (needs nvcc); CUDA_ARCH selects the targets
CC      ?= cc
NVCC    ?= $(shell command -v nvcc 2>/dev/null)
OPT     ?= -O2
CFLAGS  ?= $(OPT) -g
G4FLAGS := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wshadow -Wno-unused-parameter -Iinclude -Isrc -MMD -MP
# media decoders (Debian: libjpeg62-turbo-dev libpng-dev libwebp-dev libgif-dev libsndfile1-dev libsoxr-dev
# libvorbis-dev; libogg / libvorbis also check Ogg Vorbis headers before libsndfile: audio.c)
MEDIA_LIBS := $(shell pkg-config --libs libjpeg libpng libwebpdemux libwebp sndfile soxr vorbis ogg 2>/dev/null || echo -ljpeg -lpng16 -lwebpdemux -lwebp -lsndfile -lsoxr -lvorbis -logg) -lgif
# server media fetch (Debian: libcurl4-openssl-dev)
# G4_NO_CURL=1 builds without it (remote media then answer 400: not compiled in)
ifeq ($(G4_NO_CURL),1)
CURL_LIBS :=
G4FLAGS += -DG4_NO_CURL
else
CURL_LIBS := $(shell pkg-config --libs libcurl 2>/dev/null || echo -lcurl)
endif
LDLIBS  := $(MEDIA_LIBS) $(CURL_LIBS) -lm -lpthread
BUILD   ?= build
# sm_90a for wgmma/setmaxnreg on H100/H200 plus PTX for anything newer.
CUDA_ARCH ?= -gencode=arch=compute_90a,code=sm_90a -gencode=arch=compute_90,code=compute_90
NVFLAGS := -std=c++17 -O3 -lineinfo $(CUDA_ARCH) -Iinclude -Isrc -Xcompiler -Wall,-Wextra

LIB_SRC := $(wildcard src/base/*.c src/model/*.c src/text/*.c src/engine/*.c src/cpu/*.c src/media/*.c src/server/*.c)
CLI_SRC := $(wildcard src/cli/*.c)
TEST_SRC := $(wildcard tests/*.c)
CU_SRC  := $(wildcard src/cuda/*.cu)

LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_OBJ := $(CLI_SRC:%.c=$(BUILD)/%.o)
TEST_OBJ := $(TEST_SRC:%.c=$(BUILD)/%.o)
CU_OBJ  := $(CU_SRC:%.cu=$(BUILD)/%.o)

ALL := $(BUILD)/g4 $(BUILD)/g4-tests
# With nvcc: the CUDA kernels join libg4.a, the C code gets -DG4_HAVE_CUDA and links
# cudart + cublas (rpath to the toolkit's lib dir). Without: a CPU-only build (the CUDA
# backend answers G4_ERR_UNSUPPORTED). G4_NO_CUDA=1 forces the CPU-only build.
ifeq ($(G4_NO_CUDA),1)
NVCC :=
endif
ifneq ($(NVCC),)
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC))
CUDA_LIBDIR ?= $(firstword $(wildcard $(CUDA_HOME)/lib64 $(CUDA_HOME)/targets/x86_64-linux/lib $(CUDA_HOME)/lib))
G4FLAGS += -DG4_HAVE_CUDA
LIB_OBJ += $(CU_OBJ)
LDLIBS += -L$(CUDA_LIBDIR) -Wl,-rpath,$(CUDA_LIBDIR) -lcublas -lcudart -lstdc++ -ldl -lrt
endif

.PHONY: all test bench bench-cuda bench-synth cuda fuzz asan ubsan clean
all: $(ALL)

$(BUILD)/libg4.a: $(LIB_OBJ)
	@mkdir -p $(@D)
	ar rcs $@ $^

$(BUILD)/g4: $(CLI_OBJ) $(BUILD)/libg4.a
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/g4-tests: $(TEST_OBJ) $(BUILD)/libg4.a
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(G4FLAGS) $(CFLAGS) -c $< -o $@

cuda: $(CU_OBJ)
$(CU_OBJ): $(wildcard src/cuda/*.h src/cuda/*.cuh)
$(BUILD)/%.o: %.cu
	@mkdir -p $(@D)
	$(NVCC) $(NVFLAGS) -c $< -o $@

# Micro-benchmarks (tools, not tests): make bench; $(BUILD)/bench_cpu_ops prints JSON.
bench: $(BUILD)/bench_cpu_ops $(BUILD)/bench_batch
# Time `g4 synth` of the full 12B NVFP4A16 preset (writes ~8 GB to /tmp, then deletes it).
bench-synth: $(BUILD)/g4
	sh scripts/bench_synth.sh $(BUILD)/g4 nvfp4a16
# CUDA GEMV micro-benchmark (needs nvcc and a GPU to run): $(BUILD)/bench_cuda_gemv prints JSON.
bench-cuda: $(BUILD)/bench_cuda_gemv $(BUILD)/bench_cuda_gemm
$(BUILD)/bench_cuda_gemv: bench/bench_cuda_gemv.c $(BUILD)/libg4.a
	$(CC) $(G4FLAGS) $(CFLAGS) -o $@ $^ $(LDLIBS)
$(BUILD)/bench_cuda_gemm: bench/bench_cuda_gemm.c $(BUILD)/libg4.a
	$(CC) $(G4FLAGS) $(CFLAGS) -o $@ $^ $(LDLIBS)
$(BUILD)/bench_cpu_ops: bench/bench_cpu_ops.c $(BUILD)/libg4.a
	$(CC) $(G4FLAGS) $(CFLAGS) -o $@ $^ $(LDLIBS)
# Continuous-batching step cost against the batch size (any device): $(BUILD)/bench_batch MODEL
$(BUILD)/bench_batch: bench/bench_batch.c $(BUILD)/libg4.a
	$(CC) $(G4FLAGS) $(CFLAGS) -o $@ $^ $(LDLIBS)

test: $(BUILD)/g4 $(BUILD)/g4-tests
	G4_BIN=$(BUILD)/g4 $(BUILD)/g4-tests

# Sanitizer builds of the test suite, in their own build folders.
asan:
	$(MAKE) BUILD=build-asan CFLAGS="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer" test
ubsan:
	$(MAKE) BUILD=build-ubsan CFLAGS="-O1 -g -fsanitize=undefined -fno-sanitize-recover=undefined" test

# libFuzzer targets: fuzz/fuzz_<name>.c -> build-fuzz/fuzz_<name>
FUZZ_SRC := $(wildcard fuzz/fuzz_*.c)
FUZZ_BIN := $(FUZZ_SRC:fuzz/%.c=build-fuzz/%)
fuzz: $(FUZZ_BIN)
build-fuzz/fuzz_%: fuzz/fuzz_%.c $(LIB_SRC)
	@mkdir -p $(@D)
	clang -std=c11 -D_GNU_SOURCE -Iinclude -Isrc -g -O1 -fsanitize=fuzzer,address,undefined -o $@ $< $(LIB_SRC) $(LDLIBS)

clean:
	rm -rf build build-asan build-ubsan build-fuzz

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(TEST_OBJ:.o=.d)
