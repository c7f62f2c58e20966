#!/usr/bin/env python3
"""make_tokenizer_corpus.py - deterministic tokenizer parity corpus for tests/test_tokenizer.c.

Writes (into --out, default tests/fixtures/tokenizer/):
  corpus.jsonl    one JSON string per line (>= 1,000 lines: many scripts, emoji/ZWJ,
                  combining marks, code, whitespace runs, special-token strings, one 100 KB line)
  expected.jsonl  ids from the Python `tokenizers` package (Tokenizer.from_file(tokenizer.json),
                  encode(text, add_special_tokens=False)), one JSON array per line
  decoded.jsonl   {"ids": [...], "text": decode(ids, skip_special_tokens=False),
                   "text_skip": decode(ids, skip_special_tokens=True)} for a few hundred id
                  sequences: corpus encodings, random slices (cut byte-fallback runs), random
                  ids, random byte-token runs (valid and invalid UTF-8), special tokens.
  tiny_expected.jsonl  ids of every corpus line under 50,000 bytes (all but the 100 KB one) under the tiny tokenizer
                  (tests/fixtures/tiny-tokenizer, from tools/make_tiny_tokenizer.py): runs
                  without ../shared
  features.jsonl  one line per variant of the tiny tokenizer exercising the generic parts of
                  the loader (Metaspace, Prepend, Split behaviors, Strip, no decoder, "a b"
                  merges, unk without byte fallback, fuse_unk off, ignore_merges,
                  continuing_subword_prefix, lstrip/rstrip/single_word/normalized added tokens,
                  encode_special_tokens): {"name", "special_as_text", "tokenizer": "<the JSON as a string>",
                  "cases": [{"text", "ids", "decoded"}]}
Usage: python3 tools/make_tokenizer_corpus.py [--tokenizer PATH] [--tiny PATH] [--out DIR]
Everything is seeded; re-running gives identical files for a given tokenizers version.
"""
import argparse
import json
import os
import random

from tokenizers import Tokenizer

EN_WORDS = ("the of and to in is that it was for on are as with his they at be this from have or by "
            "one had not but what all were when we there can an your which their said if do will each "
            "about how up out them then she many some so these would other into has more her two like "
            "him see time could no make than first been its who now people my made over did down only "
            "way find use may water long little very after words called just where most know get through "
            "back much before go good new write our used me man too any day same right look think also "
            "around another came come work three word must because does part even place well such here "
            "take why things help put years different away again off went old number great tell men say "
            "small every found still between name should home big give air line set own under read last "
            "never us left end along while might next sound below saw something thought both few those "
            "always looked show large often together asked house don't world going want school important "
            "until form food keep children feet land side without boy once animals life enough took "
            "sometimes four head above kind began almost live page got earth need far hand high year "
            "mother light parts country father let night following picture being study second eyes soon "
            "times story boys since white days ever paper hard near sentence better best across during "
            "today others however sure means knew it's try told young miles sun ways thing whole hear "
            "example heard several change answer room sea against top turned learn point city play toward "
            "five using himself usually tokenizer transformer attention gradient inference quantization "
            "Kubernetes PostgreSQL JavaScript McDonald's naïve café résumé coöperate façade jalapeño").split()

ZH_HANT = ["我們今天去台北看電影，然後在夜市吃小籠包。", "資訊科技的發展日新月異，軟體工程師需要不斷學習。",
           "這個問題很難回答，因為牽涉到許多歷史與文化的因素。", "請問圖書館幾點開門？我想借幾本關於經濟學的書。",
           "颱風即將登陸，氣象局發布海上及陸上警報。", "他說：「學而時習之，不亦說乎？」"]
ZH_HANS = ["我们今天去北京看电影，然后在胡同里吃炸酱面。", "人工智能正在改变世界，大语言模型的推理速度越来越快。",
           "这个问题很难回答，因为涉及许多历史和文化因素。", "请问图书馆几点开门？我想借几本关于经济学的书。",
           "长江是中国最长的河流，全长约六千三百公里。", "数据显示，二〇二四年第三季度的增长率为百分之四点六。"]
JA = ["今日はとても良い天気ですね。散歩に行きましょう！", "東京タワーの高さは333メートルです。",
      "カタカナとひらがな、そして漢字を組み合わせて書きます。", "吾輩は猫である。名前はまだ無い。",
      "ｶﾀｶﾅの半角文字も時々使われます。", "機械学習モデルの推論を高速化するために、量子化を行った。"]
KO = ["안녕하세요, 만나서 반갑습니다.", "서울은 대한민국의 수도이며 인구가 약 천만 명입니다.",
      "한글은 세종대왕이 창제한 문자입니다.", "오늘 저녁에 뭐 먹을까요? 김치찌개 어때요?",
      "인공지능 기술의 발전 속도가 매우 빠릅니다."]
AR = ["مرحبا بكم في عالم الذكاء الاصطناعي.", "اللغة العربية من أكثر اللغات انتشارا في العالم.",
      "ذهبتُ إلى السوقِ واشتريتُ خبزاً وحليباً.", "كَتَبَ الطَّالِبُ الدَّرْسَ بِعِنَايَةٍ.", "العدد ١٢٣٤٥٦٧٨٩٠ مكتوب بالأرقام العربية."]
HI = ["नमस्ते, आप कैसे हैं?", "भारत एक विशाल और विविधतापूर्ण देश है।", "मुझे हिंदी में किताबें पढ़ना पसंद है।",
      "कृत्रिम बुद्धिमत्ता का भविष्य उज्ज्वल है।", "संख्याएँ: १२३४५६७८९०"]
OTHER = ["Привет, как дела? Съешь же ещё этих мягких французских булок.", "Ελληνικά: Καλημέρα κόσμε!",
         "עברית: שלום עולם", "ไทย: สวัสดีครับ ยินดีที่ได้รู้จัก", "Tiếng Việt: Xin chào thế giới, tôi là người Việt Nam.",
         "Türkçe: Çok güzel bir gün, değil mi?", "Deutsch: Größenordnung, Straße, Äpfel und Öl.",
         "Español: ¿Dónde está la biblioteca? ¡Aquí!", "Français: L'œuvre d'art était magnifique, n'est-ce pas ?",
         "Polski: Zażółć gęślą jaźń.", "አማርኛ: ሰላም ልዑል", "ქართული: გამარჯობა", "Հայերեն: Բարեւ",
         "தமிழ்: வணக்கம் உலகம்", "বাংলা: হ্যালো বিশ্ব", "ᚠᛇᚻ᛫ᛒᛦᚦ runes", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝕞𝕒𝕥𝕙 𝒔𝒄𝒓𝒊𝒑𝒕 ∀x∈ℝ: x²≥0 ∑∫∂√∞≠≈"]
EMOJI = ["🙂", "😂", "🤖", "🚀", "❤️", "👍🏽", "👩🏾‍💻", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🏴‍☠️", "🇯🇵", "🇺🇸", "🇪🇺", "1️⃣", "#️⃣",
         "🧑‍🤝‍🧑", "👁️‍🗨️", "🫠", "🦀", "🐍", "✅", "⚠️", "©️", "™", "🏴󠁧󠁢󠁳󠁣󠁴󠁿", "🤷‍♀️", "🧔🏻‍♂️", "💁🏼‍♀️"]
COMBINING = ["e\u0301", "a\u0300\u0316", "n\u0303", "o\u0308\u0304", "Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u034f\u0334\u0319\u0324\u031e\u0349\u035a\u032f\u031e\u0320\u034dA\u0334\u0335\u031c\u0330\u0354L\u0328\u0357\u0346\u0352G\u0334\u031fO",
             "\u1100\u1161\u11a8", "\u0915\u094d\u0937", "q\u0307\u0323", "\u05e9\u05c1\u05b8", "A\u030a vs \u00c5 vs \u212b",
             "\ufb01 ligature", "\u2167 roman", "x\u20d7 vector", "\u0041\u0338"]
CODE = ['def f(x):\n    return x ** 2 + 1  # square\n', 'int main(void) {\n\tprintf("%d\\n", 42);\n\treturn 0;\n}\n',
        '{"key": [1, 2.5, -3e10, null, true], "nested": {"a": "b\\u00e9"}}', 'SELECT id, name FROM users WHERE age >= 18 ORDER BY name;',
        '<html><body><div class="x"><table><tr><td>cell</td></tr></table></div></body></html>',
        'for (let i = 0; i < arr.length; i++) { sum += arr[i] >>> 0; }', '#include <stdio.h>\n#define MAX(a,b) ((a)>(b)?(a):(b))',
        'fn main() { let v: Vec<u8> = vec![0xFF; 16]; println!("{:?}", v); }', '$ ls -la | grep "\\.py$" && echo done',
        '```python\nimport numpy as np\nx = np.zeros((3, 4), dtype=np.float32)\n```', 'https://example.com/path?q=a+b&x=%20%E4#frag',
        'a_b_c = lambda *args, **kw: {**kw}', '    if (x != nullptr && *x == \'\\0\') {}', '<strong>bold</strong> <em>it</em> <code>x</code> <h1>T</h1>',
        'diff --git a/x b/x\n@@ -1,3 +1,4 @@\n-old\n+new\n', '0x7fffffff 0b1010 1_000_000 3.14159e-10 -0.0 NaN']
SPECIAL = ["<bos>", "<eos>", "<pad>", "<unk>", "<mask>", "[multimodal]", "<start_of_turn>", "<end_of_turn>", "<start_of_image>",
           "<end_of_image>", "<image_soft_token>", "<unused0>", "<unused42>", "<unused6241>", "<|turn>", "<turn|>", "<|image|>",
           "<|channel>", "<|think|>", "<bos", "bos>", "<<bos>>", "< bos>", "<BOS>", "<start_of_turn", "</s>", "<s>", "<table>",
           "</td>", "<0x41>", "<0xZZ>", "▁", "▁▁", "▁▁▁▁"]
WS = [" ", "  ", "   ", "    ", "        ", "\t", "\t\t", "\n", "\n\n", "\n\n\n", "\r\n", " \n ", "\n \n", "\t \t", "\u00a0",
      "\u3000", "\u2009", "\u200b", "\ufeff", "\u2028", "\x0b", "\x0c", "\x00", "\x1b", "\x7f"]
RANGES = [(0x20, 0x7e), (0xa0, 0x24f), (0x370, 0x52f), (0x590, 0x6ff), (0x900, 0x97f), (0xe00, 0xe7f), (0x1100, 0x11ff),
          (0x2000, 0x2bff), (0x3000, 0x30ff), (0x4e00, 0x9fff), (0xac00, 0xd7a3), (0xe000, 0xf8ff), (0xfb00, 0xfffd),
          (0x10000, 0x1018f), (0x1d400, 0x1d7ff), (0x1f300, 0x1faff), (0x20000, 0x2a6df), (0xe0000, 0xe007f),
          (0xf0000, 0xf00ff), (0x10fff0, 0x10ffff)]

def english(r, n):
    words = [r.choice(EN_WORDS) for _ in range(n)]
    if words:
        words[0] = words[0].capitalize()
    s = " ".join(words)
    return s + r.choice([".", "!", "?", "", ",", ";", "..."])

def rand_unicode(r, n):
    out = []
    for _ in range(n):
        lo, hi = r.choice(RANGES)
        c = r.randint(lo, hi)
        if 0xD800 <= c <= 0xDFFF:
            c = 0x41
        out.append(chr(c))
    return "".join(out)

def mixed(r):
    parts = []
    for _ in range(r.randint(2, 8)):
        k = r.randrange(12)
        if k == 0: parts.append(english(r, r.randint(1, 12)))
        elif k == 1: parts.append(r.choice(ZH_HANT + ZH_HANS))
        elif k == 2: parts.append(r.choice(JA + KO))
        elif k == 3: parts.append(r.choice(AR + HI + OTHER))
        elif k == 4: parts.append(r.choice(EMOJI) * r.randint(1, 3))
        elif k == 5: parts.append(r.choice(COMBINING))
        elif k == 6: parts.append(r.choice(CODE))
        elif k == 7: parts.append(r.choice(SPECIAL))
        elif k == 8: parts.append(r.choice(WS) * r.randint(1, 4))
        elif k == 9: parts.append(rand_unicode(r, r.randint(1, 6)))
        elif k == 10: parts.append(str(r.randint(0, 10 ** r.randint(1, 15))))
        else: parts.append(r.choice(["", " ", "\n", "\t"]))
    return r.choice(["", " ", ""]).join(parts)

def build_corpus():
    r = random.Random(20250401)
    lines = []
    # fixed edge cases first
    lines += ["", " ", "  ", "\n", "\t", "a", "▁", "Hello world", " Hello world", "Hello  world", "Hello world ",
              "<bos>", "<bos><bos>", "x<bos>y", " <bos> ", "<start_of_turn>user\nHi!<end_of_turn>\n<start_of_turn>model\n",
              "\n" * 40, " " * 40, "\t" * 40, "▁" * 40, " ▁ ▁▁ ", "\r\n" * 5, "\x00", "\x00\x01\x02", "\ufffd", "\uffff",
              "\U0010ffff", "\U0002a6d6", "𝔘", "e\u0301\u0301\u0301", "1234567890" * 5, "3.14159265358979323846264338327950288",
              "A" * 100, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"]
    lines += SPECIAL + WS + EMOJI + COMBINING + CODE + ZH_HANT + ZH_HANS + JA + KO + AR + HI + OTHER
    for _ in range(250): lines.append(english(r, r.randint(1, 60)))
    for _ in range(60): lines.append(" ".join(r.choice(ZH_HANT) for _ in range(r.randint(1, 4))))
    for _ in range(60): lines.append("".join(r.choice(ZH_HANS) for _ in range(r.randint(1, 4))))
    for _ in range(40): lines.append("".join(r.choice(JA) for _ in range(r.randint(1, 4))))
    for _ in range(40): lines.append(" ".join(r.choice(KO) for _ in range(r.randint(1, 4))))
    for _ in range(30): lines.append(" ".join(r.choice(AR) for _ in range(r.randint(1, 3))))
    for _ in range(30): lines.append(" ".join(r.choice(HI) for _ in range(r.randint(1, 3))))
    for _ in range(40): lines.append("".join(r.choice(EMOJI) + r.choice(["", " ", "\u200d"]) for _ in range(r.randint(1, 10))))
    for _ in range(40): lines.append("".join(r.choice(CODE) for _ in range(r.randint(1, 3))))
    for _ in range(60): lines.append("".join(r.choice(WS) + r.choice(["a", "b", "▁", "", "x y"]) for _ in range(r.randint(1, 12))))
    for _ in range(60): lines.append(english(r, 4) + r.choice(SPECIAL) + english(r, 3) + r.choice(SPECIAL) + r.choice(SPECIAL))
    for _ in range(80): lines.append(rand_unicode(r, r.randint(1, 40)))
    for _ in range(300): lines.append(mixed(r))
    # one ~100 KB line
    big = []
    size = 0
    while size < 100_000:
        p = mixed(r)
        big.append(p)
        size += len(p.encode("utf-8"))
    lines.append("".join(big))
    return lines

def build_decode_cases(tok, corpus, ids_list):
    r = random.Random(77)
    V = tok.get_vocab_size()  # with added tokens
    byte_ids = [tok.token_to_id("<0x%02X>" % b) for b in range(256)]
    specials = [i for i in (0, 1, 2, 3, 4, 5, 105, 106, 107, 108, 138, 168, 255968, 255999, 256000, V - 1) if i < V]
    cases = []
    for i in range(0, 500, 5):                         # whole encodings
        if i < len(ids_list) and len(ids_list[i]) < 2000:
            cases.append(ids_list[i])
    nonempty = [x for x in ids_list if 2 <= len(x) < 5000]
    for _ in range(120):                              # random slices (may cut byte runs)
        x = r.choice(nonempty)
        a = r.randrange(len(x)); b = r.randint(a + 1, len(x))
        cases.append(x[a:b])
    for _ in range(60):                               # random ids
        cases.append([r.randrange(V) for _ in range(r.randint(1, 30))])
    for _ in range(60):                               # random byte runs mixed with text tokens
        seq = []
        for _ in range(r.randint(1, 12)):
            k = r.randrange(4)
            if k == 0: seq.append(r.choice(byte_ids))
            elif k == 1: seq += [byte_ids[b] for b in r.choice(["é", "你", "🙂", "\x00", "a"]).encode("utf-8")]
            elif k == 2: seq.append(r.randrange(V))
            else: seq.append(r.choice(specials))
        cases.append(seq)
    cases += [[], [byte_ids[0xE4], byte_ids[0xB8]], [byte_ids[0xF0]] * 2 + [byte_ids[0x41]], specials, [byte_ids[0xC3], byte_ids[0xA9], 2, byte_ids[0xE4]]]
    out = []
    for ids in cases:
        out.append({"ids": ids, "text": tok.decode(ids, skip_special_tokens=False), "text_skip": tok.decode(ids, skip_special_tokens=True)})
    return out

FEATURE_TEXTS = ["Hello world", " Hello  world ", "the.quick..brown...fox.", "a.b", ".", "...", "", " ", "▁x ▁▁y",
                 "The model answered.", "café 你好 🙂", "x\x00y", "<bos>hi<|turn>user\n<turn|>", "a <x>  b", "a  <y>  b",
                 "cat concat cat. cats", "hot dog  dog!", "a b c d", "  <x><y>  ", "tab\there", "the  the   the"]


def feature_variants(tiny):
    import copy
    meta = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": True}
    dec_std = tiny["decoder"]
    v = []
    def var(name, **kw):
        t = copy.deepcopy(tiny)
        special_as_text = kw.pop("special_as_text", False)
        for k, val in kw.items():
            if k.startswith("model_"):
                t["model"][k[6:]] = val
            else:
                t[k] = val
        v.append((name, t, special_as_text))
    var("gemma")
    var("special_as_text", special_as_text=True)
    var("metaspace_always", normalizer=None, pre_tokenizer=meta, decoder=dict(meta))
    var("metaspace_first_nosplit", normalizer=None, pre_tokenizer=dict(meta, prepend_scheme="first", split=False),
        decoder=dict(meta, prepend_scheme="first"))
    var("metaspace_never", normalizer=None, pre_tokenizer=dict(meta, prepend_scheme="never"), decoder=dict(meta, prepend_scheme="never"))
    var("prepend_strip", normalizer={"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "\u2581"},
        tiny["normalizer"]]}, pre_tokenizer=None, decoder={"type": "Sequence", "decoders": dec_std["decoders"] +
        [{"type": "Strip", "content": " ", "start": 1, "stop": 0}]})
    for beh in ["Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"]:
        var("split_" + beh, pre_tokenizer={"type": "Sequence", "pretokenizers": [tiny["pre_tokenizer"],
            {"type": "Split", "pattern": {"String": "."}, "behavior": beh, "invert": False}]})
    var("split_space_no_norm", normalizer=None, pre_tokenizer={"type": "Split", "pattern": {"String": " "},
        "behavior": "MergedWithNext", "invert": False})
    var("no_decoder", decoder=None)
    var("string_merges", model_merges=[a + " " + b for a, b in tiny["model"]["merges"] if " " not in a + b])
    var("unk_no_fallback", model_byte_fallback=False)
    var("unk_no_fuse", model_byte_fallback=False, model_fuse_unk=False)
    var("ignore_merges", model_ignore_merges=True)
    # (HF panics on merges whose right side lacks the prefix, so no merges here)
    var("subword_prefix", model_continuing_subword_prefix="##", model_merges=[])
    extra = [{"id": 600, "content": "<x>", "single_word": False, "lstrip": True, "rstrip": False, "normalized": False, "special": True},
             {"id": 601, "content": "<y>", "single_word": False, "lstrip": False, "rstrip": True, "normalized": False, "special": False},
             {"id": 602, "content": "cat", "single_word": True, "lstrip": False, "rstrip": False, "normalized": False, "special": False},
             {"id": 603, "content": "hot dog", "single_word": False, "lstrip": False, "rstrip": False, "normalized": True, "special": False},
             {"id": 604, "content": "the", "single_word": False, "lstrip": True, "rstrip": True, "normalized": False, "special": False}]
    var("added_flags", added_tokens=tiny["added_tokens"] + extra)
    var("added_flags_special_as_text", added_tokens=tiny["added_tokens"] + extra, special_as_text=True)
    return v


def build_features(tiny_path):
    with open(tiny_path, encoding="utf-8") as f:
        tiny = json.load(f)
    out = []
    for name, tj, sat in feature_variants(tiny):
        tok = Tokenizer.from_str(json.dumps(tj))
        tok.encode_special_tokens = sat
        cases = []
        for text in FEATURE_TEXTS:
            ids = tok.encode(text, add_special_tokens=False).ids
            cases.append({"text": text, "ids": ids, "decoded": tok.decode(ids, skip_special_tokens=False)})
        out.append({"name": name, "special_as_text": sat, "tokenizer": json.dumps(tj, ensure_ascii=False), "cases": cases})
    return out


def jline(obj):
    """One JSONL line: UTF-8 kept readable, but the separators Python's str.splitlines()
    also breaks on (U+0085, U+2028, U+2029) are escaped so any line reader works."""
    s = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    return s.replace("\u0085", "\\u0085").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029") + "\n"


def main():
    ap = argparse.ArgumentParser()
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--tokenizer", default=os.path.join(here, "..", "..", "shared", "data", "gemma3-tokenizer", "tokenizer.json"))
    ap.add_argument("--out", default=os.path.join(here, "..", "tests", "fixtures", "tokenizer"))
    ap.add_argument("--tiny", default=os.path.join(here, "..", "tests", "fixtures", "tiny-tokenizer", "tokenizer.json"))
    a = ap.parse_args()
    tok = Tokenizer.from_file(a.tokenizer)
    corpus = build_corpus()
    os.makedirs(a.out, exist_ok=True)
    ids_list = [tok.encode(s, add_special_tokens=False).ids for s in corpus]
    with open(os.path.join(a.out, "corpus.jsonl"), "w", encoding="utf-8") as f:
        for s in corpus:
            f.write(jline(s))
    with open(os.path.join(a.out, "expected.jsonl"), "w") as f:
        for ids in ids_list:
            f.write(json.dumps(ids, separators=(",", ":")) + "\n")
    with open(os.path.join(a.out, "decoded.jsonl"), "w", encoding="utf-8") as f:
        for c in build_decode_cases(tok, corpus, ids_list):
            f.write(jline(c))
    tiny = Tokenizer.from_file(a.tiny)
    with open(os.path.join(a.out, "tiny_expected.jsonl"), "w") as f:
        for s in corpus:
            if len(s.encode("utf-8")) < 50_000:
                f.write(json.dumps(tiny.encode(s, add_special_tokens=False).ids, separators=(",", ":")) + "\n")
    with open(os.path.join(a.out, "features.jsonl"), "w", encoding="utf-8") as f:
        for feat in build_features(a.tiny):
            f.write(jline(feat))
    print("corpus: %d lines, %d ids; decoded cases written" % (len(corpus), sum(map(len, ids_list))))

if __name__ == "__main__":
    main()
