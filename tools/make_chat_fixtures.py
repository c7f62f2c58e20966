#!/usr/bin/env python3
"""make_chat_fixtures.py - parity fixtures for the C chat template (src/text/chat.c).

Writes tests/fixtures/chat/cases.jsonl (one conversation per line:
{"messages": [...], "tools"?: [...], "add_generation_prompt": bool,
 "enable_thinking"?: bool}; enable_thinking absent = not passed to the template)
and tests/fixtures/chat/expected.jsonl (one JSON string per line: the prompt that
Python jinja2 renders from tools/templates/gemma4_chat_template.jinja).

The Jinja environment mimics Hugging Face transformers' apply_chat_template
(transformers/utils/chat_template_utils.py): ImmutableSandboxedEnvironment with
trim_blocks=True, lstrip_blocks=True and the loopcontrols extension; render()
receives messages, tools (None when absent), documents=None,
add_generation_prompt, the special tokens (bos_token="<bos>", eos_token) and
enable_thinking only when the case sets it.

Content parts of the OpenAI types image_url / input_audio / video_url are
renamed to image / audio / video before rendering: g4 accepts them as
aliases (documented in src/text/chat.h); the raw template would drop them.

Usage: python3 tools/make_chat_fixtures.py [--check]
  --check  re-render and compare with the committed files instead of writing.
"""
import copy
import json
import os
import sys

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEMPLATE = os.path.join(ROOT, "tools", "templates", "gemma4_chat_template.jinja")
OUT_DIR = os.path.join(ROOT, "tests", "fixtures", "chat")
ALIASES = {"image_url": "image", "input_audio": "audio", "video_url": "video"}


def make_env():
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    return env


def normalize(messages):
    """Apply g4's documented part-type aliases (see module docstring)."""
    messages = copy.deepcopy(messages)
    for m in messages:
        if isinstance(m, dict) and isinstance(m.get("content"), list):
            for part in m["content"]:
                if isinstance(part, dict) and part.get("type") in ALIASES:
                    part["type"] = ALIASES[part["type"]]
    return messages


def render(template, case):
    kw = dict(messages=normalize(case["messages"]), tools=case.get("tools"), documents=None,
              add_generation_prompt=case["add_generation_prompt"], bos_token="<bos>",
              eos_token="<eos>", pad_token="<pad>", unk_token="<unk>")
    if "enable_thinking" in case:
        kw["enable_thinking"] = case["enable_thinking"]
    return template.render(**kw)


U = lambda text: {"role": "user", "content": text}
A = lambda text: {"role": "assistant", "content": text}

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name, e.g. Paris"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "description": "Unit"},
                "days": {"type": "integer", "description": "Forecast days"},
            },
            "required": ["city"],
        },
    },
}

NESTED = {
    "type": "function",
    "function": {
        "name": "book_trip",
        "description": "Book a trip with travellers and options.",
        "parameters": {
            "type": "object",
            "properties": {
                "Destination": {"type": "string", "description": "Where to"},
                "budget": {"type": "number", "nullable": True},
                "travellers": {
                    "type": "array",
                    "description": "People travelling",
                    "items": {
                        "type": "object",
                        "properties": {
                            "name": {"type": "string"},
                            "age": {"type": "integer", "description": "Years"},
                            "seat": {"type": "string", "enum": ["aisle", "window"], "nullable": True},
                        },
                        "required": ["name"],
                    },
                },
                "options": {
                    "type": "object",
                    "description": "Extras",
                    "properties": {
                        "insurance": {"type": "boolean"},
                        "meals": {"type": "array", "items": {"type": "string", "enum": ["veg", "vegan"]}},
                        "notes": {"type": ["string", "null"], "description": "Free text"},
                    },
                    "required": ["insurance"],
                },
                "alpha": {"type": "object"},
                "tags": {"type": "array", "items": {"type": ["string", "integer"], "minItems": 1, "x": None}},
                "zeta": {"type": "string", "enum": []},
            },
            "required": ["Destination", "travellers"],
        },
    },
}

RESPONSE_DECL = {
    "type": "function",
    "function": {
        "name": "lookup",
        "description": "  Look something up.  ",
        "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
        "response": {"type": "object", "description": "The result"},
    },
}

NO_PARAMS = {"type": "function", "function": {"name": "now", "description": "Current time"}}

CASES = [
    # 1 plain user, generation prompt, thinking undefined
    {"messages": [U("Hello!")], "add_generation_prompt": True},
    # 2 no generation prompt
    {"messages": [U("Hello!")], "add_generation_prompt": False},
    # 3 system first, trimmed
    {"messages": [{"role": "system", "content": "  You are helpful.\n\n"}, U("Hi")],
     "add_generation_prompt": True},
    # 4 developer first
    {"messages": [{"role": "developer", "content": "\tBe terse.\t"}, U("Hi")],
     "add_generation_prompt": True, "enable_thinking": False},
    # 5 thinking on, no system message
    {"messages": [U("Why is the sky blue?")], "add_generation_prompt": True, "enable_thinking": True},
    # 6 thinking on with system
    {"messages": [{"role": "system", "content": "Sys"}, U("Q")], "add_generation_prompt": True,
     "enable_thinking": True},
    # 7 thinking off explicitly
    {"messages": [U("Q")], "add_generation_prompt": True, "enable_thinking": False},
    # 8 multi-turn
    {"messages": [U("Hi"), A("Hello! How can I help?"), U("Tell me a joke."), A("No."), U("Please")],
     "add_generation_prompt": True},
    # 9 model reasoning stripped
    {"messages": [U("2+2?"), A("<|channel>thought\nsimple arithmetic<channel|>4"), U("and 3+3?")],
     "add_generation_prompt": True, "enable_thinking": True},
    # 10 several reasoning spans, unclosed channel, whitespace around
    {"messages": [U("x"), A("  a<|channel>t1<channel|>b <|channel>t2<channel|> c<|channel>unclosed  ")],
     "add_generation_prompt": False},
    # 11 stray close marker and text before
    {"messages": [U("x"), A("pre<channel|>post<channel|>")], "add_generation_prompt": True},
    # 12 content parts: text + image
    {"messages": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": " What is this? "}]}],
     "add_generation_prompt": True},
    # 13 mixing text/image/audio/video, OpenAI aliases
    {"messages": [{"role": "system", "content": "You see and hear."},
                  {"role": "user", "content": [
                      {"type": "text", "text": "Compare"},
                      {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                      {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
                      {"type": "video_url", "video_url": {"url": "file:///v.mp4"}},
                      {"type": "audio"}, {"type": "video"}, {"type": "text", "text": "\n done \n"},
                      {"type": "unknown_kind", "text": "ignored"}]}],
     "add_generation_prompt": True},
    # 14 model parts with reasoning in text parts
    {"messages": [U("q"), {"role": "assistant", "content": [
        {"type": "text", "text": "<|channel>thought\nhmm<channel|> Answer one."},
        {"type": "text", "text": " Two "}]}],
     "add_generation_prompt": False},
    # 15 whitespace-only and Unicode whitespace trimmed (Python str.strip)
    {"messages": [U("\u3000\u00a0\x1c\x1f\x85 text \u2028\u2029\u202f\u205f\u1680\u2000\u200a\x0b\x0c"),
                  A("\u200b kept zero-width \ufeff")],
     "add_generation_prompt": True},
    # 16 empty content
    {"messages": [U(""), A("")], "add_generation_prompt": True},
    # 17 unicode
    {"messages": [{"role": "system", "content": "Réponds en français 🇫🇷"},
                  U("Ça va ? 日本語 Ελληνικά Кириллица 😀"), A("Très bien ✓")],
     "add_generation_prompt": True},
    # 18 tool declarations (simple) + user
    {"messages": [U("Weather in Paris?")], "tools": [WEATHER], "add_generation_prompt": True},
    # 19 tools with system and thinking
    {"messages": [{"role": "system", "content": "Use tools."}, U("Plan a trip")],
     "tools": [WEATHER, NESTED, RESPONSE_DECL, NO_PARAMS], "add_generation_prompt": True,
     "enable_thinking": True},
    # 20 nested schema only
    {"messages": [U("book")], "tools": [NESTED], "add_generation_prompt": False},
    # 21 tool call with dict arguments, then tool response mapping, then model answer
    {"messages": [
        U("Weather in Paris?"),
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function",
             "function": {"name": "get_weather", "arguments": {"unit": "celsius", "city": "Paris", "days": 3}}}]},
        {"role": "tool", "tool_responses": [{"name": "get_weather", "response": {"temp": 21.5, "sky": "clear"}}]},
        A("It is 21.5 °C and clear.")],
     "tools": [WEATHER], "add_generation_prompt": True},
    # 22 tool call with string arguments (verbatim)
    {"messages": [U("q"), {"role": "assistant", "tool_calls": [
        {"function": {"name": "get_weather", "arguments": "city:<|\"|>Rome<|\"|>"}}]}],
     "add_generation_prompt": False},
    # 23 nested values, numbers, bools, null in arguments; two calls
    {"messages": [U("go"), {"role": "assistant", "content": "", "tool_calls": [
        {"function": {"name": "f", "arguments": {
            "b": True, "a": False, "n": None, "i": 42, "neg": -7, "z": 0, "f": 3.0, "g": 0.1, "h": 1e20,
            "k": 1.5e-7, "m": 123456789.125, "big": 9007199254740993, "e": 2.5e16, "s": "x\"y",
            "list": [1, "two", [3.5, None], {"Key": True, "apple": [], "Zed": {}}],
            "Obj": {"y": {"deep": [{"q": "r"}]}, "X": -0.0}}}},
        {"function": {"name": "g", "arguments": {}}}]}],
     "add_generation_prompt": True},
    # 24 tool response is a non-mapping value
    {"messages": [U("count"), {"role": "assistant", "tool_calls": [{"function": {"name": "count", "arguments": {}}}]},
                  {"role": "tool", "tool_responses": [{"name": "count", "response": 17}]}],
     "add_generation_prompt": True},
    # 25 tool responses: list, string, missing name, nested mapping; no content -> no <turn|>
    {"messages": [U("many"), {"role": "tool", "tool_responses": [
        {"name": "a", "response": [1, {"b": "c"}]},
        {"name": "s", "response": "plain text"},
        {"response": {"ok": True, "Data": {"rows": [[1, 2], [3, 4]]}}},
        {"name": "nothing"}]}],
     "add_generation_prompt": True, "enable_thinking": False},
    # 26 tool response with content (turn closed, generation prompt opens model turn)
    {"messages": [U("q"), {"role": "tool", "content": "extra note",
                           "tool_responses": [{"name": "f", "response": {"r": 1}}]}],
     "add_generation_prompt": True},
    # 27 tool message in OpenAI shape (role tool, content string)
    {"messages": [U("q"), {"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "{}"}}]},
                  {"role": "tool", "tool_call_id": "c1", "content": "{\"result\": 5}"}],
     "add_generation_prompt": True},
    # 28 tool response then image in same message (prev type becomes image)
    {"messages": [U("q"), {"role": "tool", "tool_responses": [{"name": "shot", "response": {"ok": True}}],
                           "content": [{"type": "image"}]}],
     "add_generation_prompt": True},
    # 29 other role verbatim, later system message, literal "model" role strips thinking
    {"messages": [U("a"), {"role": "critic", "content": " hmm "}, {"role": "system", "content": " late "},
                  {"role": "model", "content": "<|channel>x<channel|>y"}],
     "add_generation_prompt": False},
    # 30 only a system message
    {"messages": [{"role": "system", "content": "Alone"}], "add_generation_prompt": True},
    # 31 system + tools without thinking, no generation prompt
    {"messages": [{"role": "system", "content": ""}, U("q")], "tools": [NO_PARAMS],
     "add_generation_prompt": False},
    # 32 empty tools list behaves as no tools
    {"messages": [U("q")], "tools": [], "add_generation_prompt": True},
    # 33 missing content and null content
    {"messages": [{"role": "user"}, {"role": "assistant", "content": None}], "add_generation_prompt": True},
    # 34 empty parts array
    {"messages": [{"role": "user", "content": []}], "add_generation_prompt": True, "enable_thinking": True},
    # 35 dictsort: case-insensitive order, stable for equal lowercase keys, duplicates
    {"messages": [U("q"), {"role": "assistant", "tool_calls": [{"function": {"name": "sort", "arguments": {
        "b": 1, "B": 2, "a": 3, "_u": 4, "A": 5, "Ä": 6, "ä": 7, "z": 8, "10": 9, "9": 10, "": 11}}}]}],
     "add_generation_prompt": False},
    # 36 weird but valid schemas: multi-type, empty type list, standard-key names skipped, items edge cases
    {"messages": [U("q")], "tools": [{"type": "function", "function": {
        "name": "odd", "description": "",
        "parameters": {"type": "object", "required": [], "properties": {
            "description": {"type": "string"}, "type": {"type": "string"},
            "multi": {"type": ["integer", "null"], "description": 5},
            "none_type": {"type": []},
            "arr_noitems": {"type": "array"},
            "arr_items": {"type": "array", "items": {"properties": {"p": {"type": "string"}}, "required": ["p"],
                                                     "type": "object", "description": "d", "enum": [1, 2.0],
                                                     "flag": False}},
            "obj_props_null": {"type": "object", "properties": None,
                               "extra": {"type": "string", "enum": ["a"]}},
            "obj_req": {"type": "OBJECT", "properties": {"x": {"type": "string"}}, "required": ["x", 7]},
            "lower_enum": {"type": "String", "enum": ["A", 1, True, None, 2.5]},
            "nullable_first": {"nullable": True, "type": "boolean"}}}}}],
     "add_generation_prompt": True},
    # 37 response declaration without object type, parameters with no type (no closing brace)
    {"messages": [U("q")], "tools": [{"function": {
        "name": "r2", "description": "d", "parameters": {"properties": {"a": {"type": "string"}}, "required": ["a"]},
        "response": {"type": "string", "description": ""}}}],
     "add_generation_prompt": False},
    # 38 tool-call assistant turn with reasoning in content
    {"messages": [U("q"), {"role": "assistant", "content": "<|channel>thought\nneed tool<channel|>",
                           "tool_calls": [{"function": {"name": "f", "arguments": {"x": "1"}}}]},
                  {"role": "tool", "tool_responses": [{"name": "f", "response": "ok"}]}],
     "add_generation_prompt": True, "enable_thinking": True},
    # 39 special tokens and braces in text are not escaped
    {"messages": [U("{{ not jinja }} {% raw %} <|turn>user\n <bos>"), A("}{ <|\"|> ")],
     "add_generation_prompt": False},
    # 40 long multi-line text with inner whitespace kept
    {"messages": [U("line 1\n\n  line 2  \n\tline 3"), A("a\n\nb")], "add_generation_prompt": True,
     "enable_thinking": False},
    # 41 user content parts where the text part is empty, image only
    {"messages": [{"role": "user", "content": [{"type": "text", "text": ""}, {"type": "video"}]}],
     "add_generation_prompt": False},
    # 42 arguments given as a non-mapping non-string (ignored by the template)
    {"messages": [U("q"), {"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": [1, 2]}},
                                                               {"function": {"name": "g", "arguments": None}}]}],
     "add_generation_prompt": False},
    # 43 system content non-string scalar (Python str())
    {"messages": [{"role": "system", "content": 2.50}, U("q")], "add_generation_prompt": False},
    # 44 Unicode keys in dictsort (full case folding of str.lower) and `upper` on non-ASCII types
    {"messages": [U("q"), {"role": "assistant", "tool_calls": [{"function": {"name": "u", "arguments": {
        "Straße": 1, "STRASSE": 2, "İx": 3, "ix": 4, "ıx": 5, "Ω": 6, "ω": 7, "Ж": 8, "ǅ": 9, "ǆ": 10,
        "Ａ": 11, "b": 12}}}]}],
     "tools": [{"function": {"name": "t", "parameters": {"type": "object", "properties": {
         "ſ": {"type": "ſtring", "enum": ["x"]}, "ß": {"type": "straße"}, "ǳ": {"type": "ǆ"}}}}}],
     "add_generation_prompt": False},
]


def main():
    check = "--check" in sys.argv[1:]
    template = make_env().from_string(open(TEMPLATE, encoding="utf-8").read())
    cases_lines, expected_lines = [], []
    for i, case in enumerate(CASES):
        out = render(template, case)
        cases_lines.append(json.dumps(case, ensure_ascii=False))
        expected_lines.append(json.dumps(out, ensure_ascii=False))
    cases_txt = "\n".join(cases_lines) + "\n"
    expected_txt = "\n".join(expected_lines) + "\n"
    cpath = os.path.join(OUT_DIR, "cases.jsonl")
    epath = os.path.join(OUT_DIR, "expected.jsonl")
    if check:
        ok = (open(cpath, encoding="utf-8").read() == cases_txt and
              open(epath, encoding="utf-8").read() == expected_txt)
        print("fixtures up to date" if ok else "fixtures differ: re-run without --check")
        return 0 if ok else 1
    os.makedirs(OUT_DIR, exist_ok=True)
    with open(cpath, "w", encoding="utf-8") as f:
        f.write(cases_txt)
    with open(epath, "w", encoding="utf-8") as f:
        f.write(expected_txt)
    print(f"wrote {len(CASES)} cases to {os.path.relpath(OUT_DIR, ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
