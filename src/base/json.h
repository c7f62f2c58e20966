/* json.h - bounded JSON (RFC 8259) DOM parser for untrusted input.
 *
 * One call parses a whole buffer into a tree whose nodes and decoded strings
 * live in one arena owned by the json_doc; free it with json_doc_free.
 * Limits: nesting depth (default 128), input size up to SIZE_MAX/2. Rejects
 * trailing garbage, invalid UTF-8 inside strings, lone surrogates in \u
 * escapes, leading zeros, NaN/Infinity, control characters in strings.
 * Duplicate object keys are kept (callers that care check with json_obj_dupkey).
 *
 * Objects keep member order. json_get does a linear scan: fine for configs
 * and headers; large maps (a tokenizer vocab) should be iterated once. */
#ifndef G4_JSON_H
#define G4_JSON_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include "g4.h"

typedef enum json_type {
    JSON_NULL, JSON_FALSE, JSON_TRUE, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT
} json_type;

typedef struct json_value json_value;
typedef struct json_member { const char *key; size_t key_len; json_value *val; } json_member;

struct json_value {
    json_type type;
    size_t len;                 /* string bytes, array items or object members */
    union {
        struct { double d; int64_t i; bool is_int; } num;  /* is_int: integral literal fitting int64 */
        const char *str;        /* decoded UTF-8, NUL-terminated (may contain \0 via \u0000) */
        json_value **items;     /* array */
        json_member *members;   /* object */
    } u;
};

typedef struct json_doc json_doc;

typedef struct json_limits { int max_depth; } json_limits;

/* Parse text[0..len). On failure returns G4_ERR_JSON (or G4_ERR_NOMEM) with a
 * message "<what>: JSON error at line L column C: <reason>", what = name. */
g4_status json_parse(const char *text, size_t len, const char *name, const json_limits *lim,
                     json_doc **out, g4_error *err);
const json_value *json_root(const json_doc *d);
void json_doc_free(json_doc *d);

/* Lookup helpers; all accept NULL and return NULL / false on mismatch. */
const json_value *json_get(const json_value *obj, const char *key);       /* first match */
const json_value *json_at(const json_value *arr, size_t i);
bool json_is(const json_value *v, json_type t);
/* Returns the first duplicated key of obj, or NULL. O(n log n). */
const char *json_obj_dupkey(const json_value *obj);

/* Typed getters: return true and store on success (type and range checked). */
bool json_get_i64(const json_value *v, int64_t *out);
bool json_get_double(const json_value *v, double *out);
bool json_get_bool(const json_value *v, bool *out);
const char *json_get_str(const json_value *v);   /* NULL unless a string */
/* "null", "boolean", "number", "string", "array", "object"; "missing" for NULL. */
const char *json_type_name(const json_value *v);

#endif
