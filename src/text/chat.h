/* chat.h - the Gemma 4 chat template, rendered in C (no Jinja engine).
 *
 * chat_render reproduces, byte for byte, what Python jinja2 produces for
 * tools/templates/gemma4_chat_template.jinja under Hugging Face's settings
 * (ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks) for JSON-decoded
 * inputs. Parity fixtures: tests/fixtures/chat/ (tools/make_chat_fixtures.py).
 *
 * Input is an OpenAI-style messages array (json_value). Roles: the first
 * message may be system/developer (rendered trimmed in the system turn),
 * "assistant" is written "model", every other role string verbatim.
 * content: string, null/absent, or an array of parts {type: text|image|audio|
 * video}; the OpenAI part types image_url, input_audio and video_url are
 * accepted as aliases of image, audio and video (the raw template would
 * silently drop them), other part types are ignored as the template does.
 * Model text has <|channel>...<channel|> reasoning stripped.
 *
 * Deliberate differences from the reference (all fail with G4_ERR_TEMPLATE
 * naming the message index and field, where jinja2 would either raise too or
 * print something useless):
 *  - content of type number/boolean/object; content parts that are not objects,
 *    lack a string "type", or text parts whose "text" is not a string;
 *  - any place where jinja2 would print a Python repr of a list/dict;
 *  - tools[i].function that is not an object; tool_responses that is not an
 *    array of objects.
 * Known approximations: Python's str.lower()/upper() (dictsort key order,
 * `upper` on schema types) come from a generated table of full case mappings
 * (chat_case.h, tools/gen_chat_casemap.py) without the context-dependent
 * Final_Sigma rule; JSON integer literals beyond int64 print as floats
 * (Python would print all digits).
 *
 * Everything the caller passes is only read; the output is one malloc'd
 * NUL-terminated UTF-8 string. Recursion depth is bounded by the JSON
 * parser's nesting limit. */
#ifndef G4_CHAT_H
#define G4_CHAT_H

#include <stdbool.h>
#include "g4.h"
#include "base/json.h"

typedef enum chat_thinking {
    CHAT_THINKING_UNDEFINED = 0,   /* template variable not passed (behaves as false here) */
    CHAT_THINKING_OFF = 1,
    CHAT_THINKING_ON = 2
} chat_thinking;

typedef struct chat_opts {
    const char *bos_token;          /* NULL -> "<bos>" */
    bool add_generation_prompt;
    chat_thinking enable_thinking;
    const json_value *tools;        /* JSON array of tool declarations, JSON null or NULL */
} chat_opts;

/* Render messages (must be a JSON array). opt may be NULL (all defaults).
 * On success *out is a malloc'd NUL-terminated string the caller frees and
 * *out_len (may be NULL) its length (the text may hold NULs from \u0000).
 * Errors: G4_ERR_TEMPLATE (message "messages[3].content: ..."), G4_ERR_NOMEM. */
g4_status chat_render(const json_value *messages, const chat_opts *opt, char **out, size_t *out_len,
                      g4_error *err);

#endif
