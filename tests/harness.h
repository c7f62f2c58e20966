/* harness.h - the tiny test framework of g4-tests.
 *
 *   TEST(name) { CHECK(x == 1); CHECK_EQ_INT(a, b); ... }
 *
 * Tests register themselves at load time (constructor attribute), run in file
 * order, and the runner prints one line per test and a final
 * "N passed, N failed, N skipped" line. SKIP("why") ends a test as skipped
 * (e.g. when ../shared is absent on a user's machine). */
#ifndef G4_TEST_HARNESS_H
#define G4_TEST_HARNESS_H

#include <stdio.h>
#include <string.h>
#include <stdint.h>
#include <stdbool.h>

void t_register(const char *name, void (*fn)(void), const char *file);
void t_fail(const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void t_skip(const char *why);
bool t_failed(void);
/* Paths: fixture dir (tests/fixtures), shared dir (../shared or $G4_SHARED; NULL if absent),
 * the g4 binary ($G4_BIN or build/g4), a fresh temp dir for this test. */
const char *t_fixtures(void);
const char *t_shared(void);
const char *t_g4_bin(void);
const char *t_tmpdir(void);

/* ||a - b|| / ||b|| over n floats (double sums); +inf when a NaN appears. */
double t_rel_l2(const float *a, const float *b, size_t n);
/* The worst t_rel_l2 over the T rows of V values of got against ref; *pos = that row. */
double t_worst_rows(const float *got, const float *ref, int T, size_t V, int *pos);
/* Reference case k of the fixture model in dir: reference/{prompt,logits,greedy}_k.npy (HF
 * transformers, tools/make_reference.py). false (with a test failure) when one is missing. */
struct npy_array;
bool t_ref_case(const char *dir, int k, struct npy_array *prompt, struct npy_array *logits, struct npy_array *greedy);
/* Run a shell command, capture up to cap-1 bytes of its stdout; returns its exit code (-1 on failure). */
int t_run(const char *cmd, char *out, size_t cap);

#define TEST(name)                                                          \
    static void name(void);                                                 \
    __attribute__((constructor)) static void name##_reg(void) {             \
        t_register(#name, name, __FILE__);                                  \
    }                                                                       \
    static void name(void)

#define CHECK(c) do { if (!(c)) t_fail(__FILE__, __LINE__, "CHECK(%s)", #c); } while (0)
#define CHECK_MSG(c, ...) do { if (!(c)) t_fail(__FILE__, __LINE__, __VA_ARGS__); } while (0)
#define CHECK_EQ_INT(a, b) do { long long _a = (long long)(a), _b = (long long)(b); \
    if (_a != _b) t_fail(__FILE__, __LINE__, "%s == %s: %lld != %lld", #a, #b, _a, _b); } while (0)
#define CHECK_STR(a, b) do { const char *_a = (a), *_b = (b); \
    if (!_a || !_b || strcmp(_a, _b)) t_fail(__FILE__, __LINE__, "%s == %s: \"%s\" != \"%s\"", #a, #b, _a ? _a : "(null)", _b ? _b : "(null)"); } while (0)
#define CHECK_NEAR(a, b, tol) do { double _a = (a), _b = (b); \
    if (!(_a - _b <= (tol) && _b - _a <= (tol))) t_fail(__FILE__, __LINE__, "%s ~ %s: %.9g vs %.9g (tol %g)", #a, #b, _a, _b, (double)(tol)); } while (0)
#define SKIP(why) do { t_skip(why); return; } while (0)
/* Stop the current test if something already failed (avoid cascades). */
#define REQUIRE(c) do { if (!(c)) { t_fail(__FILE__, __LINE__, "REQUIRE(%s)", #c); return; } } while (0)

#endif
