/* fuzz_chat.c - libFuzzer target: bytes -> JSON -> Gemma 4 chat template.
 *
 * Input layout: the first byte picks options (bit 0 add_generation_prompt,
 * bits 1-2 enable_thinking, bit 3 "split": the rest is "MESSAGES\x00TOOLS" with
 * a tools array parsed separately). Either JSON may fail to parse; a parsed
 * value of any shape must render or fail cleanly, never crash or leak.
 *   build-fuzz/fuzz_chat -max_total_time=30 -dict=fuzz/fuzz_chat.dict CORPUS_DIR */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/json.h"
#include "text/chat.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    uint8_t flags = data[0];
    const char *text = (const char *)data + 1;
    size_t len = size - 1, tlen = 0;
    const char *tools_text = NULL;
    if (flags & 8) {
        const char *z = memchr(text, 0, len);
        if (z) {
            tools_text = z + 1;
            tlen = len - (size_t)(z + 1 - text);
            len = (size_t)(z - text);
        }
    }
    json_doc *md = NULL, *td = NULL;
    if (json_parse(text, len, "fuzz", NULL, &md, NULL) != G4_OK) return 0;
    if (tools_text && json_parse(tools_text, tlen, "fuzz-tools", NULL, &td, NULL) != G4_OK) td = NULL;
    chat_opts o = {0};
    o.add_generation_prompt = flags & 1;
    o.enable_thinking = (chat_thinking)((flags >> 1) & 3) % 3;
    o.tools = td ? json_root(td) : NULL;
    const json_value *msgs = json_root(md);
    /* also accept {"messages": [...], "tools": [...]} so the corpus can be readable */
    if (json_is(msgs, JSON_OBJECT) && json_get(msgs, "messages")) {
        if (!o.tools) o.tools = json_get(msgs, "tools");
        msgs = json_get(msgs, "messages");
    }
    char *out = NULL;
    size_t n = 0;
    g4_error err;
    if (chat_render(msgs, &o, &out, &n, &err) == G4_OK) {
        if (!out || out[n] != 0) abort();
        free(out);
    } else if (out) {
        abort();
    }
    json_doc_free(td);
    json_doc_free(md);
    return 0;
}
