/* test_server.c - the server's pure parts: HTTP request parsing with limits,
 * OpenAI request mapping and error bodies, the streaming detokenizer. */
#include "harness.h"
#include "server/http.h"
#include "server/openai.h"
#include "engine/gen_text.h"
#include "g4.h"

#include <stdlib.h>

static const http_limits LIM = {.max_header_bytes = 1024, .max_body = 4096};

static int parse(const char *s, http_request *r, int *status) {
    return http_parse_request(s, strlen(s), &LIM, r, status);
}

TEST(http_parse_valid_requests) {
    http_request r;
    int st;
    CHECK_EQ_INT(parse("POST /v1/completions?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n"
                       "Authorization:  Bearer k \r\n\r\n{\"prompt\":1}", &r, &st), HTTP_PARSE_OK);
    CHECK_STR(r.method, "POST");
    CHECK_STR(r.path, "/v1/completions");
    CHECK_EQ_INT(r.content_length, 12);
    CHECK(r.keep_alive);
    size_t n;
    const char *v = http_header_get(&r, "AUTHORIZATION", &n);
    REQUIRE(v);
    CHECK(n == 8 && !memcmp(v, "Bearer k", 8));
    CHECK_EQ_INT(parse("GET /health HTTP/1.0\n\n", &r, &st), HTTP_PARSE_OK);
    CHECK(!r.keep_alive);
    CHECK_EQ_INT(parse("GET /health HTTP/1.1\r\nConnection: close\r\n\r\n", &r, &st), HTTP_PARSE_OK);
    CHECK(!r.keep_alive);
    CHECK_EQ_INT(parse("GET /health HTTP/1.1\r\nHost: x\r\n", &r, &st), HTTP_PARSE_MORE);
}

TEST(http_parse_rejects_bad_requests) {
    http_request r;
    int st;
    struct { const char *req; int status; } bad[] = {
        {"GARBAGE\r\n\r\n", 400},
        {"GET / HTTP/2.0\r\n\r\n", 505},
        {"GET / HTTP/1.1\r\nContent-Length: 5000\r\n\r\n", 413},
        {"GET / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n", 400},
        {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 411},
        {"GET / HTTP/1.1\r\n folded\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nNo colon\r\n\r\n", 400},
        {"GET /a\x01 HTTP/1.1\r\n\r\n", 400},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_MSG(parse(bad[i].req, &r, &st) == HTTP_PARSE_ERROR, "case %zu accepted", i);
        CHECK_MSG(st == bad[i].status, "case %zu: status %d, expected %d", i, st, bad[i].status);
    }
    /* header block over the limit without an end: 431 */
    char big[2048];
    memset(big, 'a', sizeof big);
    memcpy(big, "GET / HTTP/1.1\r\nX: ", 19);
    CHECK_EQ_INT(http_parse_request(big, sizeof big, &LIM, &r, &st), HTTP_PARSE_ERROR);
    CHECK_EQ_INT(st, 431);
}

static g4_status oparse(oai_kind k, const char *body, oai_request *r, char *param) {
    g4_sampling d;
    g4_sampling_default(&d);
    d.temperature = 1.0f;
    g4_error err = {0};
    return oai_parse_request(k, body, strlen(body), &d, r, param, 64, &err);
}

TEST(openai_parse_chat_and_completions) {
    oai_request r;
    char param[64];
    REQUIRE(oparse(OAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"hi\"}]}],"
                   "\"max_completion_tokens\":7,\"temperature\":0,\"top_k\":-1,\"seed\":5,\"stop\":\"x\",\"n\":2,"
                   "\"logprobs\":true,\"top_logprobs\":3,\"stream\":true,\"stream_options\":{\"include_usage\":true},"
                   "\"chat_template_kwargs\":{\"enable_thinking\":true},\"unknown_field\":[1,2]}", &r, param) == G4_OK);
    CHECK_STR(r.model, "m");
    CHECK_EQ_INT(r.max_tokens, 7);
    CHECK(r.sampling.temperature == 0 && r.sampling.top_k == 0 && r.seeded && r.sampling.seed == 5);
    CHECK_EQ_INT(r.n_stop, 1);
    CHECK_EQ_INT(r.n, 2);
    CHECK(r.logprobs && r.top_logprobs == 3 && r.stream && r.include_usage);
    CHECK_EQ_INT(r.thinking, G4_THINKING_ON);
    CHECK(r.messages_json && strstr(r.messages_json, "\"text\":\"hi\""));
    oai_request_free(&r);
    REQUIRE(oparse(OAI_COMPLETION, "{\"prompt\":[[2,3],[4]],\"echo\":true,\"logprobs\":1,\"max_tokens\":0}", &r,
                   param) == G4_OK);
    CHECK_EQ_INT(r.n_prompts, 2);
    CHECK(r.prompts[0].n_ids == 2 && r.prompts[1].ids[0] == 4);
    CHECK(r.echo && r.logprobs && r.top_logprobs == 1 && r.max_tokens == 0);
    CHECK(r.sampling.temperature == 1.0f);   /* the default applies */
    oai_request_free(&r);
    REQUIRE(oparse(OAI_COMPLETION, "{\"prompt\":[\"a\",\"b\"],\"stop\":null,\"temperature\":null}", &r, param) == G4_OK);
    CHECK(r.n_prompts == 2 && r.prompts[1].text && !strcmp(r.prompts[1].text, "b"));
    oai_request_free(&r);
}

TEST(openai_parse_errors_name_the_param) {
    oai_request r;
    char param[64];
    struct { oai_kind k; const char *body, *param; } bad[] = {
        {OAI_CHAT, "{\"messages\":[]}", "messages"},
        {OAI_CHAT, "{}", "messages"},
        {OAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}]}", "messages[0].content[0].image_url"},
        {OAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_audio\",\"input_audio\":{\"data\":\"AAAA\",\"format\":\"xyz\"}}]}]}", "messages[0].content[0].input_audio"},
        {OAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_image\"}]}]}", "messages[0].content[0]"},
        {OAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"mm_processor_kwargs\":{\"max_soft_tokens\":100}}", "mm_processor_kwargs"},
        {OAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"temperature\":-1}", "temperature"},
        {OAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"top_logprobs\":2}", "top_logprobs"},
        {OAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":0}", "max_tokens"},
        {OAI_COMPLETION, "{\"prompt\":[]}", "prompt"},
        {OAI_COMPLETION, "{\"prompt\":[1,-2]}", "prompt"},
        {OAI_COMPLETION, "{\"prompt\":\"x\",\"logprobs\":21}", "logprobs"},
        {OAI_COMPLETION, "{\"prompt\":\"x\",\"n\":100}", "n"},
        {OAI_COMPLETION, "{\"prompt\":\"x\",\"stop\":[1]}", "stop"},
        {OAI_COMPLETION, "[1,2]", ""},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        g4_status st = oparse(bad[i].k, bad[i].body, &r, param);
        CHECK_MSG(st == G4_ERR_INVALID_ARG, "case %zu: %s", i, g4_status_name(st));
        CHECK_MSG(!strcmp(param, bad[i].param), "case %zu: param '%s', expected '%s'", i, param, bad[i].param);
    }
    CHECK(oparse(OAI_CHAT, "{not json", &r, param) == G4_ERR_INVALID_ARG);
    strbuf b;
    sb_init(&b);
    oai_error_json(&b, "bad \"x\"", "BadRequestError", "n", 400);
    CHECK_STR(b.data, "{\"error\":{\"message\":\"bad \\\"x\\\"\",\"type\":\"BadRequestError\",\"param\":\"n\",\"code\":400}}");
    sb_free(&b);
}

TEST(textstream_stop_strings_and_holdback) {
    char p[600];
    snprintf(p, sizeof p, "%s/models/tiny-a", t_fixtures());
    g4_tokenizer *tok = NULL;
    g4_error err = {0};
    REQUIRE(g4_tokenizer_load(p, &tok, &err) == G4_OK);
    int32_t *ids = NULL;
    size_t n = 0;
    REQUIRE(g4_tokenize(tok, "hello world, goodbye", 20, 0, &ids, &n, &err) == G4_OK);
    const char *stop[] = {"goodbye"};
    g4_textstream ts;
    g4_textstream_init(&ts, tok, stop, 1);
    char out[256] = "";
    bool stopped = false;
    size_t idx = 99;
    for (size_t i = 1; i <= n && !stopped; i++) {
        const char *d;
        size_t dl;
        REQUIRE(g4_textstream_update(&ts, ids, i, false, &d, &dl, &stopped, &idx, &err) == G4_OK);
        strncat(out, d, dl);
        /* a possible stop-string prefix is never released early */
        CHECK(strstr(out, "good") == NULL);
    }
    CHECK(stopped && idx == 0);
    CHECK_STR(out, "hello world, ");
    g4_textstream_free(&ts);
    free(ids);
    g4_tokenizer_free(tok);
}

TEST(openai_parse_media_parts) {
    oai_request r;
    char param[96];
    g4_sampling d;
    g4_sampling_default(&d);
    const char *body =
        "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"hi\"},"
        "{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:image/png;base64,AAAA\",\"detail\":\"low\"}},"
        "{\"type\":\"input_audio\",\"input_audio\":{\"data\":\"UklGRg==\",\"format\":\"wav\"}},"
        "{\"type\":\"video_url\",\"video_url\":{\"url\":\"file:///v.mp4\"}}]}],"
        "\"mm_processor_kwargs\":{\"images_kwargs\":{\"max_soft_tokens\":70}}}";
    REQUIRE(oai_parse_request(OAI_CHAT, body, strlen(body), &d, &r, param, sizeof param, NULL) == G4_OK);
    CHECK_EQ_INT(r.n_media, 3);
    CHECK(r.media[0].kind == G4_MEDIA_IMAGE && !r.media[0].raw_b64 && !strcmp(r.media[0].src, "data:image/png;base64,AAAA"));
    CHECK_STR(r.media[0].where, "messages[0].content[1].image_url");
    CHECK(r.media[1].kind == G4_MEDIA_AUDIO && r.media[1].raw_b64 && !strcmp(r.media[1].format, "wav"));
    CHECK(r.media[2].kind == G4_MEDIA_VIDEO && r.media[2].src_len == 13);
    CHECK_EQ_INT(r.image_tokens, 70);
    CHECK_STR(r.messages_json, "[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"hi\"},{\"type\":\"image\"},"
                               "{\"type\":\"audio\"},{\"type\":\"video\"}]}]");
    oai_request_free(&r);
    const char *b2 = "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"mm_processor_kwargs\":{\"max_soft_tokens\":1120}}";
    REQUIRE(oai_parse_request(OAI_CHAT, b2, strlen(b2), &d, &r, param, sizeof param, NULL) == G4_OK);
    CHECK_EQ_INT(r.image_tokens, 1120);
    CHECK_EQ_INT(r.n_media, 0);
    oai_request_free(&r);
}

/* The streamed text is brought up to date incrementally (gen_text.h): at every step it must equal
 * the decode of all ids so far. Random sequences mixing ordinary pieces, byte-fallback pieces that
 * form valid, cut and invalid UTF-8 runs, special tokens and unknown ids; the tiny fixture's
 * tokenizer and the real 262k Gemma one (skipped without ../shared). */
static void textstream_equivalence(g4_tokenizer *tok, const char *name) {
    const int32_t V = g4_tokenizer_vocab_size(tok);
    int32_t bytes[256];
    int nb = 0;
    for (int b = 0; b < 256; b++) {
        char piece[8];
        snprintf(piece, sizeof piece, "<0x%02X>", b);
        bytes[b] = g4_token_id(tok, piece);
        nb += bytes[b] >= 0;
    }
    const int32_t sp[] = {g4_token_id(tok, "<bos>"), g4_token_id(tok, "<eos>"), g4_token_id(tok, "<start_of_turn>")};
    uint64_t rs = 0x9E3779B97F4A7C15ull;
    int fails = 0, steps = 0;
    for (int seq = 0; seq < 40 && !fails; seq++) {
        enum { N = 160 };
        int32_t ids[N];
        for (int i = 0; i < N; i++) {
            rs ^= rs << 13, rs ^= rs >> 7, rs ^= rs << 17;
            unsigned r = (unsigned)(rs >> 33) % 100;
            const char *euro = "\xE2\x82\xAC";
            if (r < 55 || !nb) ids[i] = (int32_t)((rs >> 8) % (uint64_t)V);
            else if (r < 75 && i + 3 <= N) {   /* a whole 3-byte character, sometimes cut short */
                int m = (rs >> 20) % 4 ? 3 : 1 + (int)((rs >> 24) % 2);
                for (int j = 0; j < m; j++) ids[i + j] = bytes[(unsigned char)euro[j]];
                i += m - 1;
            } else if (r < 85) ids[i] = bytes[0x80 + (rs >> 40) % 64];   /* a stray continuation byte */
            else if (r < 90) ids[i] = bytes[(rs >> 40) % 128];           /* ASCII byte */
            else if (r < 97) ids[i] = sp[(rs >> 40) % 3];
            else ids[i] = V + 5;                                          /* unknown: skipped */
            if (ids[i] < 0) ids[i] = 1;
        }
        g4_textstream ts;
        g4_textstream_init(&ts, tok, NULL, 0);
        g4_error err = {0};
        for (size_t n = 1; n <= N && !fails; n++) {
            const char *d;
            size_t dl;
            bool stopped;
            REQUIRE(g4_textstream_update(&ts, ids, n, n == N, &d, &dl, &stopped, NULL, &err) == G4_OK);
            char *full = NULL;
            size_t fl = 0;
            REQUIRE(g4_detokenize(tok, ids, n, G4_DETOKENIZE_SKIP_SPECIAL, &full, &fl, &err) == G4_OK);
            if (fl != ts.len || memcmp(full, ts.text, fl)) {
                fails++;
                if (getenv("G4_TEST_VERBOSE")) {
                    fprintf(stderr, "step %zu ids:", n);
                    for (size_t j = n > 8 ? n - 8 : 0; j < n; j++) fprintf(stderr, " %d", ids[j]);
                    fprintf(stderr, "\nwhole [%zu]: ", fl);
                    for (size_t j = fl > 24 ? fl - 24 : 0; j < fl; j++) fprintf(stderr, "%02x", (unsigned char)full[j]);
                    fprintf(stderr, "\nincr  [%zu]: ", ts.len);
                    for (size_t j = ts.len > 24 ? ts.len - 24 : 0; j < ts.len; j++) fprintf(stderr, "%02x", (unsigned char)ts.text[j]);
                    fprintf(stderr, "\n");
                }
            }
            steps++;
            free(full);
        }
        CHECK_MSG(!fails, "%s: sequence %d: incremental text differs from the whole decode", name, seq);
        g4_textstream_free(&ts);
    }
    printf("     %s: %d steps, incremental text = whole decode\n", name, steps);
}

TEST(textstream_incremental_equals_whole_decode) {
    char p[600];
    snprintf(p, sizeof p, "%s/models/tiny-a", t_fixtures());
    g4_tokenizer *tok = NULL;
    g4_error err = {0};
    REQUIRE(g4_tokenizer_load(p, &tok, &err) == G4_OK);
    textstream_equivalence(tok, "tiny-a");
    g4_tokenizer_free(tok);
    if (!t_shared()) SKIP("../shared not present: the real tokenizer part");
    snprintf(p, sizeof p, "%s/data/gemma3-tokenizer/tokenizer.json", t_shared());
    REQUIRE(g4_tokenizer_load(p, &tok, &err) == G4_OK);
    textstream_equivalence(tok, "gemma3 262k");
    g4_tokenizer_free(tok);
}
