/* pyjson.h - write a parsed JSON tree exactly as Python's json.dumps(obj, indent=N,
 * sort_keys=True) does (ensure_ascii, ", " / ": " separators, float repr): the format of
 * every config.json that transformers and compressed-tensors write. */
#ifndef G4_PYJSON_H
#define G4_PYJSON_H

#include "base/json.h"
#include "base/strbuf.h"

/* Python repr() of a float: shortest round-trip digits, "1e-06", "30.0", "1000000.0", "1e+16". */
void py_float_repr(double d, char out[32]);
/* v at nesting level `level` (the caller already wrote the indentation of the first line). */
void pyjson_emit(strbuf *b, const json_value *v, int indent, int level);
/* An object with one extra member key: extra (replacing a member of that name; NULL extra:
 * just drop the member). Keys sorted by code point (UTF-8 byte order). */
void pyjson_emit_obj_extra(strbuf *b, const json_value *obj, const char *key, const json_value *extra, int indent,
                           int level);

#endif
