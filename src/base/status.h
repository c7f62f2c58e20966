/* status.h - named status codes and the error record every fallible call fills.
 *
 * Library code never exits: a fallible function returns a g4_status and, on
 * failure, writes a one-line message naming the file, tensor or field at fault
 * into the caller's g4_error. G4_FAIL records the source line as well, and
 * g4_fail() is the one place to put a breakpoint (SQLite's *_BKPT idea). */
#ifndef G4_STATUS_H
#define G4_STATUS_H

#include "g4.h"

/* Fill *e (may be NULL) and return code. printf-style message. */
g4_status g4_fail_at(g4_error *e, g4_status code, const char *src_file, int src_line,
                     const char *fmt, ...) __attribute__((format(printf, 5, 6)));
#define G4_FAIL(e, code, ...) g4_fail_at((e), (code), __FILE__, __LINE__, __VA_ARGS__)

/* Prepend context to an existing message: "ctx: old message". */
void g4_error_prefix(g4_error *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
