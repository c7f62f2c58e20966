/* test_chat.c - Gemma 4 chat template renderer: byte parity with jinja2
 * (fixtures from tools/make_chat_fixtures.py), error paths, CLI. */
#include "harness.h"
#include "base/json.h"
#include "base/mapfile.h"
#include "base/strbuf.h"
#include "text/chat.h"

#include <stdlib.h>

/* Split a buffer into lines in place; returns the count (at most max). */
static size_t split_lines(char *buf, size_t len, char **lines, size_t *lens, size_t max) {
    size_t n = 0, start = 0;
    for (size_t i = 0; i <= len && n < max; i++) {
        if (i == len || buf[i] == '\n') {
            if (i > start) { lines[n] = buf + start; lens[n] = i - start; n++; }
            start = i + 1;
        }
    }
    return n;
}

static g4_status render_case(const json_value *c, char **out, size_t *out_len, g4_error *e) {
    chat_opts o = {0};
    o.bos_token = "<bos>";
    o.add_generation_prompt = json_is(json_get(c, "add_generation_prompt"), JSON_TRUE);
    const json_value *th = json_get(c, "enable_thinking");
    o.enable_thinking = !th ? CHAT_THINKING_UNDEFINED
                        : json_is(th, JSON_TRUE) ? CHAT_THINKING_ON : CHAT_THINKING_OFF;
    o.tools = json_get(c, "tools");
    return chat_render(json_get(c, "messages"), &o, out, out_len, e);
}

TEST(chat_parity_jinja) {
    char path[512], *cbuf = NULL, *ebuf = NULL;
    size_t clen = 0, elen = 0;
    g4_error e = {0};
    snprintf(path, sizeof path, "%s/chat/cases.jsonl", t_fixtures());
    REQUIRE(read_file_all(path, 1 << 24, &cbuf, &clen, &e) == G4_OK);
    snprintf(path, sizeof path, "%s/chat/expected.jsonl", t_fixtures());
    if (read_file_all(path, 1 << 24, &ebuf, &elen, &e) != G4_OK) { free(cbuf); REQUIRE(0); }
    enum { MAXL = 512 };
    static char *cl[MAXL], *el[MAXL];
    static size_t cll[MAXL], ell[MAXL];
    size_t nc = split_lines(cbuf, clen, cl, cll, MAXL), ne = split_lines(ebuf, elen, el, ell, MAXL);
    CHECK_EQ_INT(nc, ne);
    CHECK(nc >= 30);
    size_t same = 0;
    for (size_t i = 0; i < nc && i < ne; i++) {
        json_doc *cd = NULL, *ed = NULL;
        if (json_parse(cl[i], cll[i], "cases.jsonl", NULL, &cd, &e) != G4_OK ||
            json_parse(el[i], ell[i], "expected.jsonl", NULL, &ed, &e) != G4_OK) {
            CHECK_MSG(0, "case %zu: %s", i + 1, e.msg);
            json_doc_free(cd);
            continue;
        }
        const json_value *want = json_root(ed);
        char *got = NULL;
        size_t got_len = 0;
        g4_status st = render_case(json_root(cd), &got, &got_len, &e);
        if (st != G4_OK) {
            CHECK_MSG(0, "case %zu: %s: %s", i + 1, g4_status_name(st), e.msg);
        } else if (got_len != want->len || memcmp(got, want->u.str, got_len)) {
            size_t k = 0;
            while (k < got_len && k < want->len && got[k] == want->u.str[k]) k++;
            size_t from = k > 40 ? k - 40 : 0;
            strbuf a, b;
            sb_init(&a);
            sb_init(&b);
            sb_json_str(&a, got + from, (got_len - from) < 80 ? got_len - from : 80);
            sb_json_str(&b, want->u.str + from, (want->len - from) < 80 ? want->len - from : 80);
            CHECK_MSG(0, "case %zu differs at byte %zu:\n      got  %s\n      want %s", i + 1, k, a.data, b.data);
            sb_free(&a);
            sb_free(&b);
        } else {
            same++;
        }
        free(got);
        json_doc_free(cd);
        json_doc_free(ed);
    }
    printf("    chat parity: %zu/%zu identical\n", same, nc);
    free(cbuf);
    free(ebuf);
}

/* Render messages_json with opts; expect status and (if non-NULL) a message substring. */
static void expect_err(const char *messages, const char *tools, g4_status want, const char *substr) {
    g4_chat_options o = {0};
    o.tools_json = tools;
    o.tools_len = tools ? strlen(tools) : 0;
    o.add_generation_prompt = true;
    char *out = (char *)"sentinel";
    g4_error e = {0};
    g4_status st = g4_chat_render(messages, strlen(messages), &o, &out, &e);
    CHECK_MSG(st == want, "%s: got %s (%s), want %s", messages, g4_status_name(st), e.msg, g4_status_name(want));
    CHECK_MSG(out == NULL, "%s: out not NULL on failure", messages);
    if (substr) CHECK_MSG(strstr(e.msg, substr) != NULL, "%s: message '%s' lacks '%s'", messages, e.msg, substr);
    if (st == G4_OK) free(out);
}

TEST(chat_errors) {
    expect_err("{\"role\":\"user\"}", NULL, G4_ERR_TEMPLATE, "messages: expected an array");
    expect_err("[]", NULL, G4_ERR_TEMPLATE, "messages: empty array");
    expect_err("[1]", NULL, G4_ERR_TEMPLATE, "messages[0]: expected an object");
    expect_err("[{\"role\":\"user\",\"content\":\"a\"},\"x\"]", NULL, G4_ERR_TEMPLATE, "messages[1]: expected an object");
    expect_err("[{\"content\":\"a\"}]", NULL, G4_ERR_TEMPLATE, "messages[0].role: expected a string, found missing");
    expect_err("[{\"role\":null}]", NULL, G4_ERR_TEMPLATE, "messages[0].role");
    expect_err("[{\"role\":\"user\",\"content\":5}]", NULL, G4_ERR_TEMPLATE, "messages[0].content: expected a string");
    expect_err("[{\"role\":\"user\",\"content\":{\"type\":\"text\"}}]", NULL, G4_ERR_TEMPLATE, "messages[0].content");
    expect_err("[{\"role\":\"user\",\"content\":true}]", NULL, G4_ERR_TEMPLATE, "messages[0].content");
    expect_err("[{\"role\":\"user\",\"content\":[\"hi\"]}]", NULL, G4_ERR_TEMPLATE, "messages[0].content[0]: expected an object");
    expect_err("[{\"role\":\"user\",\"content\":[{\"text\":\"hi\"}]}]", NULL, G4_ERR_TEMPLATE, "messages[0].content[0].type");
    expect_err("[{\"role\":\"user\",\"content\":[{\"type\":\"text\"}]}]", NULL, G4_ERR_TEMPLATE, "messages[0].content[0].text");
    expect_err("[{\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":3}]}]", NULL, G4_ERR_TEMPLATE, "content[0].text");
    expect_err("[{\"role\":\"system\",\"content\":[{\"type\":\"text\",\"text\":\"s\"}]}]", NULL, G4_ERR_TEMPLATE, "messages[0].content");
    expect_err("[{\"role\":\"user\"},{\"role\":\"assistant\",\"tool_calls\":[{\"x\":1}]}]", NULL, G4_ERR_TEMPLATE,
               "messages[1].tool_calls[0].function");
    expect_err("[{\"role\":\"assistant\",\"tool_calls\":[{\"function\":{\"arguments\":{}}}]}]", NULL, G4_ERR_TEMPLATE,
               "messages[0].tool_calls[0].function.name");
    expect_err("[{\"role\":\"assistant\",\"tool_calls\":\"abc\"}]", NULL, G4_ERR_TEMPLATE, "tool_calls");
    expect_err("[{\"role\":\"tool\",\"tool_responses\":[{\"name\":null,\"response\":1}]}]", NULL, G4_ERR_TEMPLATE,
               "messages[0].tool_responses[0].name");
    expect_err("[{\"role\":\"tool\",\"tool_responses\":[7]}]", NULL, G4_ERR_TEMPLATE, "tool_responses[0]");
    expect_err("[{\"role\":\"tool\",\"tool_responses\":{\"a\":1}}]", NULL, G4_ERR_TEMPLATE, "tool_responses");
    expect_err("[{\"role\":\"user\",\"content\":\"a\\u0000b\"}]", NULL, G4_ERR_TEMPLATE, "NUL");
    /* tools */
    expect_err("[{\"role\":\"user\"}]", "{\"a\":1}", G4_ERR_TEMPLATE, "tools: expected an array");
    expect_err("[{\"role\":\"user\"}]", "[{\"type\":\"function\"}]", G4_ERR_TEMPLATE, "tools[0].function: expected an object");
    expect_err("[{\"role\":\"user\"}]", "[3]", G4_ERR_TEMPLATE, "tools[0]");
    expect_err("[{\"role\":\"user\"}]",
               "[{\"function\":{\"name\":\"f\",\"parameters\":{\"properties\":{\"a\":{\"description\":\"no type\"}}}}}]",
               G4_ERR_TEMPLATE, "tools[0].function.parameters.properties.a: parameter schema has no 'type'");
    expect_err("[{\"role\":\"user\"}]",
               "[{\"function\":{\"name\":\"f\",\"parameters\":{\"properties\":{\"o\":{\"type\":\"object\",\"additionalProperties\":false}}}}}]",
               G4_ERR_TEMPLATE, "properties.o.additionalProperties");
    expect_err("[{\"role\":\"user\"}]", "[{\"function\":{\"name\":[1]}}]", G4_ERR_TEMPLATE, "tools[0].function.name");
    expect_err("[{\"role\":\"user\"}]", "[{\"function\":{\"name\":\"f\",\"parameters\":{\"properties\":[1]}}}]",
               G4_ERR_TEMPLATE, "tools[0].function.parameters.properties");
    /* JSON errors pass through */
    expect_err("[{\"role\":", NULL, G4_ERR_JSON, "messages");
    expect_err("[{\"role\":\"user\"}]", "[", G4_ERR_JSON, "tools");
}

TEST(chat_api_defaults) {
    const char *m = "[{\"role\":\"user\",\"content\":\" hi \"}]";
    char *out = NULL;
    g4_error e = {0};
    REQUIRE(g4_chat_render(m, strlen(m), NULL, &out, &e) == G4_OK);
    CHECK_STR(out, "<bos><|turn>user\nhi<turn|>\n");
    free(out);
    g4_chat_options o = {.bos_token = "", .add_generation_prompt = true, .enable_thinking = G4_THINKING_ON};
    REQUIRE(g4_chat_render(m, strlen(m), &o, &out, &e) == G4_OK);
    CHECK_STR(out, "<|turn>system\n<|think|><turn|>\n<|turn>user\nhi<turn|>\n<|turn>model\n");
    free(out);
    o.enable_thinking = G4_THINKING_OFF;
    o.tools_json = "null";
    o.tools_len = 4;
    REQUIRE(g4_chat_render(m, strlen(m), &o, &out, &e) == G4_OK);
    CHECK_STR(out, "<|turn>user\nhi<turn|>\n<|turn>model\n<|channel>thought\n<channel|>");
    free(out);
    CHECK(g4_chat_render(m, strlen(m), NULL, NULL, &e) == G4_ERR_INVALID_ARG);
}

TEST(chat_numbers_python_repr) {
    /* Python str() of floats: shortest round-trip, exponent outside [1e-4, 1e16). */
    static const struct { const char *in, *want; } cases[] = {
        {"0.0001", "0.0001"}, {"0.00001", "1e-05"}, {"1e15", "1000000000000000.0"}, {"1e16", "1e+16"},
        {"123.456", "123.456"}, {"-2.5E-3", "-0.0025"}, {"0.1", "0.1"}, {"1.7976931348623157e308", "1.7976931348623157e+308"},
        {"5e-324", "5e-324"}, {"-0.0", "-0.0"}, {"-0", "0"}, {"12345678901234567", "12345678901234567"},
        {"9999999999999998.0", "9999999999999998.0"}, {"1e400", "inf"}, {"100", "100"}, {"1E2", "100.0"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char m[256], want[256];
        snprintf(m, sizeof m, "[{\"role\":\"tool\",\"tool_responses\":[{\"name\":\"n\",\"response\":%s}]}]", cases[i].in);
        snprintf(want, sizeof want, "<bos><|turn>tool\n<|tool_response>response:n{value:%s}<tool_response|>", cases[i].want);
        char *out = NULL;
        g4_error e = {0};
        g4_status st = g4_chat_render(m, strlen(m), NULL, &out, &e);
        CHECK_MSG(st == G4_OK, "%s: %s", cases[i].in, e.msg);
        if (st == G4_OK) CHECK_STR(out, want);
        free(out);
    }
}

TEST(chat_cli) {
    char mpath[600], tpath[600], cmd[2000];
    snprintf(mpath, sizeof mpath, "%s/chat_msgs.json", t_tmpdir());
    snprintf(tpath, sizeof tpath, "%s/chat_tools.json", t_tmpdir());
    FILE *f = fopen(mpath, "w");
    REQUIRE(f);
    fputs("[{\"role\":\"system\",\"content\":\" S \"},{\"role\":\"user\",\"content\":\"Q\"}]", f);
    fclose(f);
    f = fopen(tpath, "w");
    REQUIRE(f);
    fputs("[{\"function\":{\"name\":\"now\",\"description\":\"t\"}}]", f);
    fclose(f);
    static const struct { const char *args, *want; } cases[] = {
        {"", "<bos><|turn>system\nS<turn|>\n<|turn>user\nQ<turn|>\n<|turn>model\n<|channel>thought\n<channel|>"},
        {"--no-generation-prompt", "<bos><|turn>system\nS<turn|>\n<|turn>user\nQ<turn|>\n"},
        {"--thinking", "<bos><|turn>system\n<|think|>S<turn|>\n<|turn>user\nQ<turn|>\n<|turn>model\n"},
        {"--no-thinking --tools TOOLS",
         "<bos><|turn>system\nS<|tool>declaration:now{description:<|\"|>t<|\"|>}<tool|><turn|>\n<|turn>user\nQ<turn|>\n"
         "<|turn>model\n<|channel>thought\n<channel|>"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char args[700];
        const char *tk = strstr(cases[i].args, "TOOLS");
        if (tk) snprintf(args, sizeof args, "%.*s%s", (int)(tk - cases[i].args), cases[i].args, tpath);
        else snprintf(args, sizeof args, "%s", cases[i].args);
        snprintf(cmd, sizeof cmd, "%s chat-render /nonexistent/model --messages %s %s", t_g4_bin(), mpath, args);
        FILE *p = popen(cmd, "r");
        REQUIRE(p);
        char buf[4096];
        size_t n = fread(buf, 1, sizeof buf - 1, p);
        buf[n] = 0;
        int rc = pclose(p);
        CHECK_MSG(rc == 0, "%s: exit %d", cmd, rc);
        CHECK_STR(buf, cases[i].want);
    }
    snprintf(cmd, sizeof cmd, "%s chat-render --bogus 2>/dev/null", t_g4_bin());
    CHECK(system(cmd) != 0);
    f = fopen(mpath, "w");
    REQUIRE(f);
    fputs("[{\"role\":\"user\",\"content\":7}]", f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "%s chat-render --messages %s 2>&1", t_g4_bin(), mpath);
    FILE *p = popen(cmd, "r");
    REQUIRE(p);
    char buf[1024];
    size_t n = fread(buf, 1, sizeof buf - 1, p);
    buf[n] = 0;
    CHECK(pclose(p) != 0);
    CHECK_MSG(strstr(buf, "G4_ERR_TEMPLATE") && strstr(buf, "messages[0].content"), "stderr: %s", buf);
}
