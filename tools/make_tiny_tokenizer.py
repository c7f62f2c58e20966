#!/usr/bin/env python3
"""make_tiny_tokenizer.py - a small Gemma-4-format tokenizer.json for tests and tiny model fixtures.

Usage: python3 tools/make_tiny_tokenizer.py [--vocab N] [--out DIR]
       (defaults: N = 512, DIR = tests/fixtures/tiny-tokenizer). N >= 300.

Writes DIR/tokenizer.json and DIR/tokenizer_config.json in the format of the real Gemma
tokenizer (BPE, byte_fallback, fuse_unk, unk "<unk>", normalizer Replace " " -> "\u2581",
pre-tokenizer Split " " MergedWithPrevious, decoder Replace "\u2581" -> " " + ByteFallback +
Fuse, post-processor TemplateProcessing "<bos> $A"), with exactly N ids:

  0 <pad>  1 <eos>  2 <bos>  3 <unk>  4 <mask>                     (<mask>: special=false)
  Gemma 4 control tokens at their real ids (all < 300 so always present):
  46 <|tool>  47 <tool|>  48 <|tool_call>  49 <tool_call|>  50 <|tool_response>
  51 <tool_response|>  52 <|"|>  98 <|think|>  100 <|channel>  101 <channel|>
  105 <|turn>  106 <turn|>  107 "\\n" (added token, special=false, as in the real file)
  Multimodal tokens at the top, in the order of their real ids (255999, 256000, 258880..4):
  N-7 <|image>  N-6 <|audio>  N-5 <|image|>  N-4 <|audio|>  N-3 <image|>  N-2 <audio|>  N-1 <|video|>
  The remaining ids, in increasing order: first the 256 byte tokens <0x00>..<0xFF>, then
  single characters (printable ASCII and "\u2581", most frequent first), then pieces learned
  by a deterministic BPE over embedded English text (most frequent pair; ties broken by the
  pair's strings), one merge per new piece; merges are written as [a, b] pairs in rank order.

All control/multimodal tokens are added tokens with special=true, normalized=false.
The script checks with the Python `tokenizers` package that the file loads, has N ids and
round-trips sample text (including non-ASCII text through byte fallback).
"""
import argparse
import collections
import json
import os

TEXT = """The quick brown fox jumps over the lazy dog. A tokenizer splits text into pieces that a model
can read, and a detokenizer puts the pieces back together. In the beginning there was the word, and
the word was split into characters, and the characters were merged into pieces by their frequency.
Machine learning models read numbers, not letters: every piece of text becomes a list of integers.
This is a small test vocabulary for the g4 inference engine. It is not meant to be good at anything
except being small, deterministic and in exactly the same format as the real one. Hello, world!
The model answered the question, and then the user asked another question about the weather in the
city. It was sunny in the morning and raining in the evening; the children played inside the house.
What is the capital of France? Paris is the capital of France, and it is known for its art, food and
history. How many legs does a spider have? A spider has eight legs. Please write a short poem about
the sea. The sea is deep and blue, the waves are strong and true. Thank you for your help today!
Numbers such as 1, 2, 3, 10, 42, 100 and 2024 appear in text, as do symbols like (parentheses), [brackets],
{braces}, "quotes", 'apostrophes', hyphen-ated words, e-mail@example.com and https://example.org/path.
def main(): return 0  # code appears too, with = + - * / < > ; : and other operators.
"""

CONTROL = [(0, "<pad>", True), (1, "<eos>", True), (2, "<bos>", True), (3, "<unk>", True), (4, "<mask>", False),
           (46, "<|tool>", True), (47, "<tool|>", True), (48, "<|tool_call>", True), (49, "<tool_call|>", True),
           (50, "<|tool_response>", True), (51, "<tool_response|>", True), (52, '<|"|>', True), (98, "<|think|>", True),
           (100, "<|channel>", True), (101, "<channel|>", True), (105, "<|turn>", True), (106, "<turn|>", True),
           (107, "\n", False)]
MULTIMODAL = ["<|image>", "<|audio>", "<|image|>", "<|audio|>", "<image|>", "<audio|>", "<|video|>"]
SP = "\u2581"


def train(n_slots):
    """Alphabet + BPE merges filling exactly n_slots new vocabulary entries."""
    norm = TEXT.replace("\n", " ").replace(" ", SP)
    chars = collections.Counter(norm)
    alphabet = [chr(c) for c in range(0x21, 0x7F)] + [SP]
    alphabet.sort(key=lambda c: (-chars.get(c, 0), c))
    alphabet = alphabet[:n_slots]
    pieces = list(alphabet)
    vocab = set(pieces)
    # words: "▁word" chunks (SentencePiece style), counted
    words = collections.Counter()
    for w in norm.split(SP):
        if w:
            words[tuple(SP + w)] += 1
    words = {tuple(c if c in vocab else None for c in w): n for w, n in words.items()}
    merges = []
    while len(pieces) < n_slots:
        pairs = collections.Counter()
        for w, n in words.items():
            for a, b in zip(w, w[1:]):
                if a is not None and b is not None:
                    pairs[(a, b)] += n
        if not pairs:
            break
        (a, b), _ = min(pairs.items(), key=lambda kv: (-kv[1], kv[0]))
        merges.append((a, b))
        if a + b not in vocab:
            vocab.add(a + b)
            pieces.append(a + b)
        nw = {}
        for w, n in words.items():
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and w[i] == a and w[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            nw[tuple(out)] = nw.get(tuple(out), 0) + n
        words = nw
    # if the text ran out of pairs, pad with concatenations of existing pieces (still valid merges)
    i = 0
    while len(pieces) < n_slots:
        a, b = pieces[i % len(alphabet)], pieces[(i * 7 + 3) % len(pieces)]
        i += 1
        if a + b not in vocab:
            vocab.add(a + b)
            pieces.append(a + b)
            merges.append((a, b))
    return pieces, merges


def build(n):
    if n < 300:
        raise SystemExit("make_tiny_tokenizer: --vocab must be >= 300 (got %d)" % n)
    ids = {}
    for i, tok, _ in CONTROL:
        ids[i] = tok
    for k, tok in enumerate(MULTIMODAL):
        ids[n - 7 + k] = tok
    free = [i for i in range(n) if i not in ids]
    for b in range(256):
        ids[free[b]] = "<0x%02X>" % b
    free = free[256:]
    pieces, merges = train(len(free))
    assert len(pieces) == len(free), (len(pieces), len(free))
    for i, p in zip(free, pieces):
        ids[i] = p
    assert sorted(ids) == list(range(n)) and len(set(ids.values())) == n
    special = {tok: s for _, tok, s in CONTROL}
    special.update({t: True for t in MULTIMODAL})
    added = [{"id": i, "content": ids[i], "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": special[ids[i]]} for i in sorted(ids) if ids[i] in special]
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": {"type": "Replace", "pattern": {"String": " "}, "content": SP},
        "pre_tokenizer": {"type": "Split", "pattern": {"String": " "}, "behavior": "MergedWithPrevious", "invert": False},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<bos>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "<bos>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "<bos>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<bos>": {"id": "<bos>", "ids": [2], "tokens": ["<bos>"]}},
        },
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": SP}, "content": " "}, {"type": "ByteFallback"}, {"type": "Fuse"}]},
        "model": {
            "type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
            "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True, "ignore_merges": False,
            "vocab": {ids[i]: i for i in range(n)},
            "merges": [[a, b] for a, b in merges],
        },
    }


def config():
    return {
        "add_bos_token": True, "add_eos_token": False, "bos_token": "<bos>", "eos_token": "<eos>",
        "pad_token": "<pad>", "unk_token": "<unk>", "mask_token": "<mask>", "padding_side": "left",
        "clean_up_tokenization_spaces": False, "model_max_length": 1000000000000000019884624838656,
        "spaces_between_special_tokens": False, "tokenizer_class": "GemmaTokenizer",
    }


def verify(path, n):
    from tokenizers import Tokenizer
    t = Tokenizer.from_file(path)
    assert t.get_vocab_size(with_added_tokens=True) == n, t.get_vocab_size(with_added_tokens=True)
    for i, tok, _ in CONTROL:
        assert t.token_to_id(tok) == i, tok
    for k, tok in enumerate(MULTIMODAL):
        assert t.token_to_id(tok) == n - 7 + k, tok
    samples = ["Hello, world!", "The quick brown fox jumps over the lazy dog.", "  two  spaces\tand\ttabs\n\nnewlines ",
               "<|turn>user\nWhat is the capital of France?<turn|>\n<|turn>model\n", "naïve café 你好 🙂👨‍👩‍👧 \x00",
               "<bos><|image><|image|><image|>x<|video|>", ""]
    for s in samples:
        ids = t.encode(s, add_special_tokens=False).ids
        assert all(0 <= i < n for i in ids)
        back = t.decode(ids, skip_special_tokens=False)
        assert back == s, (s, back)
    assert t.encode("hi", add_special_tokens=True).ids[0] == 2


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("--vocab", type=int, default=512)
    ap.add_argument("--out", default=os.path.join(here, "..", "tests", "fixtures", "tiny-tokenizer"))
    a = ap.parse_args()
    tj = build(a.vocab)
    os.makedirs(a.out, exist_ok=True)
    path = os.path.join(a.out, "tokenizer.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(tj, f, ensure_ascii=False, indent=1)
        f.write("\n")
    with open(os.path.join(a.out, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config(), f, indent=2)
        f.write("\n")
    verify(path, a.vocab)
    print("wrote %s (%d ids, %d merges)" % (path, a.vocab, len(tj["model"]["merges"])))


if __name__ == "__main__":
    main()
