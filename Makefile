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
LDLIBS  := -lm -lpthread
BUILD   ?= build
# sm_90a for wgmma/setmaxnreg on H100/H200 plus PTX for anything newer.
CUDA_ARCH ?= -gencode=arch=compute_90a,code=sm_90a -gencode=arch=compute_90,code=compute_90
NVFLAGS := -std=c++17 -O3 -lineinfo $(CUDA_ARCH) -Iinclude -Isrc -Xcompiler -Wall,-Wextra

LIB_SRC := $(wildcard src/base/*.c src/model/*.c src/text/*.c src/engine/*.c src/cpu/*.c)
CLI_SRC := $(wildcard src/cli/*.c)
TEST_SRC := $(wildcard tests/*.c)
CU_SRC  := $(wildcard src/cuda/*.cu)

LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_OBJ := $(CLI_SRC:%.c=$(BUILD)/%.o)
TEST_OBJ := $(TEST_SRC:%.c=$(BUILD)/%.o)
CU_OBJ  := $(CU_SRC:%.cu=$(BUILD)/%.o)

ALL := $(BUILD)/g4 $(BUILD)/g4-tests
ifneq ($(NVCC),)
ALL += cuda
endif

.PHONY: all test bench cuda fuzz asan ubsan clean
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
$(BUILD)/%.o: %.cu
	@mkdir -p $(@D)
	$(NVCC) $(NVFLAGS) -c $< -o $@

# Micro-benchmarks (tools, not tests): make bench; $(BUILD)/bench_cpu_ops prints JSON.
bench: $(BUILD)/bench_cpu_ops
$(BUILD)/bench_cpu_ops: bench/bench_cpu_ops.c $(BUILD)/libg4.a
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
	clang -std=c11 -D_GNU_SOURCE -Iinclude -Isrc -g -O1 -fsanitize=fuzzer,address,undefined -o $@ $< $(LIB_SRC) -lm -lpthread

clean:
	rm -rf build build-asan build-ubsan build-fuzz

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(TEST_OBJ:.o=.d)
