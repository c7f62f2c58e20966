#!/usr/bin/env python3
"""make_bench_model.py - a mid-size random-weight Gemma 4 (unified) checkpoint for `g4 bench`.

    python3 tools/make_bench_model.py OUT_DIR [--format bf16|nvfp4|fp8] [--hidden 2048]
        [--layers 24] [--intermediate 8192] [--vocab 262144] [--seed 1]

Writes OUT_DIR/config.json, generation_config.json and one model.safetensors (1-4 GB at the
defaults: keep it out of the repository, e.g. under /tmp). The structure is copied from the
committed fixture tests/fixtures/models/tiny-a{,-nvfp4,-fp8}: same config keys, layer-type
pattern (5 sliding + 1 full, repeated), k_eq_v full-attention layers, quantization_config,
and the fixture's small vision/audio tensors (only the two embedding projections, which
depend on the text hidden size, are regenerated). Text sizes are scaled up:
heads 8 x head_dim 256 (sliding, 4 KV heads), global_head_dim 512 (1 KV head).

Weights are random but sane (no NaN/Inf): BF16 magnitudes ~0.01, FP8 E4M3 codes (no NaN
codes) with BF16 per-row scales 1e-4, NVFP4 random nibbles with E4M3 group scales in
[0.5, 1) and weight_global_scale 2688. Only numpy is needed. Not a fixture generator
(nothing is committed); this is for speed measurements only.
"""
import argparse
import copy
import json
import os
import struct
import sys

import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
FIX = os.path.join(ROOT, "tests", "fixtures", "models")


def read_st(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        hdr = json.loads(f.read(n))
        data = f.read()
    return hdr, data


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--format", choices=["bf16", "nvfp4", "fp8"], default="nvfp4")
    ap.add_argument("--hidden", type=int, default=2048)
    ap.add_argument("--layers", type=int, default=24)
    ap.add_argument("--intermediate", type=int, default=8192)
    ap.add_argument("--vocab", type=int, default=262144)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    fix = os.path.join(FIX, {"bf16": "tiny-a", "nvfp4": "tiny-a-nvfp4", "fp8": "tiny-a-fp8"}[a.format])
    cfg = json.load(open(os.path.join(fix, "config.json")))
    H, I, V, L = a.hidden, a.intermediate, a.vocab, a.layers
    nh, hd, nkv, ghd, gkv = 8, 256, 4, 512, 1
    tc = cfg["text_config"]
    pattern = ["sliding_attention"] * 5 + ["full_attention"]
    tc.update({"hidden_size": H, "intermediate_size": I, "vocab_size": V, "num_hidden_layers": L,
               "num_attention_heads": nh, "head_dim": hd, "num_key_value_heads": nkv, "global_head_dim": ghd,
               "num_global_key_value_heads": gkv, "sliding_window": 1024, "max_position_embeddings": 131072,
               "layer_types": [pattern[i % 6] for i in range(L)]})
    # keep the multimodal token ids inside the vocabulary (they already are: < 512)
    rng = np.random.default_rng(a.seed)
    hdr_fix, data_fix = read_st(os.path.join(fix, "model.safetensors"))

    tensors = []  # (name, dtype, shape, generator() -> bytes)

    def bf16_rand(shape, exp=0x78):
        def g():
            n = int(np.prod(shape))
            u = rng.integers(0, 1 << 16, n, dtype=np.uint16)
            return ((u & np.uint16(0x807F)) | np.uint16(exp << 7)).tobytes()
        return g

    def const_bf16(shape, bits):
        return lambda: np.full(int(np.prod(shape)), bits, dtype=np.uint16).tobytes()

    def add_linear(name, n, k):
        if a.format == "bf16":
            tensors.append((name + ".weight", "BF16", [n, k], bf16_rand([n, k])))
        elif a.format == "fp8":
            def gw():
                b = rng.integers(0, 256, n * k, dtype=np.uint8)
                b[(b & 0x7F) == 0x7F] = 0x38
                return b.tobytes()
            tensors.append((name + ".weight", "F8_E4M3", [n, k], gw))
            tensors.append((name + ".weight_scale", "BF16", [n, 1], const_bf16([n, 1], 0x38D1)))  # ~1e-4
        else:
            tensors.append((name + ".weight_packed", "U8", [n, k // 2],
                            lambda: rng.integers(0, 256, n * k // 2, dtype=np.uint8).tobytes()))
            tensors.append((name + ".weight_scale", "F8_E4M3", [n, k // 16],
                            lambda: rng.integers(0x30, 0x38, n * k // 16, dtype=np.uint8).tobytes()))
            tensors.append((name + ".weight_global_scale", "F32", [1],
                            lambda: np.array([2688.0], dtype=np.float32).tobytes()))

    lm = "model.language_model."
    tensors.append((lm + "embed_tokens.weight", "BF16", [V, H], bf16_rand([V, H], 0x79)))
    tensors.append((lm + "norm.weight", "BF16", [H], const_bf16([H], 0x3F80)))
    for l in range(L):
        p = f"{lm}layers.{l}."
        full = tc["layer_types"][l] == "full_attention"
        dh, kvh = (ghd, gkv) if full else (hd, nkv)
        for nm in ["input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm",
                   "post_feedforward_layernorm"]:
            tensors.append((p + nm + ".weight", "BF16", [H], const_bf16([H], 0x3F80)))
        tensors.append((p + "layer_scalar", "BF16", [1], const_bf16([1], 0x3F80)))
        tensors.append((p + "self_attn.q_norm.weight", "BF16", [dh], const_bf16([dh], 0x3F80)))
        tensors.append((p + "self_attn.k_norm.weight", "BF16", [dh], const_bf16([dh], 0x3F80)))
        add_linear(p + "self_attn.q_proj", nh * dh, H)
        add_linear(p + "self_attn.k_proj", kvh * dh, H)
        if not (full and tc.get("attention_k_eq_v")):
            add_linear(p + "self_attn.v_proj", kvh * dh, H)
        add_linear(p + "self_attn.o_proj", H, nh * dh)
        add_linear(p + "mlp.gate_proj", I, H)
        add_linear(p + "mlp.up_proj", I, H)
        add_linear(p + "mlp.down_proj", H, I)
    # multimodal parts from the fixture; the embedding projections follow the text hidden size
    for name, info in sorted(hdr_fix.items()):
        if name == "__metadata__" or name.startswith(lm):
            continue
        if name.startswith("model.embed_audio.") or name.startswith("model.embed_vision."):
            shape = [H] + info["shape"][1:]
            tensors.append((name, info["dtype"], shape, bf16_rand(shape)))
        else:
            b, e = info["data_offsets"]
            tensors.append((name, info["dtype"], info["shape"], (lambda bb=data_fix[b:e]: bb)))

    size = {"BF16": 2, "F32": 4, "U8": 1, "F8_E4M3": 1}
    hdr, off = {"__metadata__": {"format": "pt"}}, 0
    for name, dt, shape, _ in tensors:
        nb = int(np.prod(shape)) * size[dt]
        hdr[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + nb]}
        off += nb
    hj = json.dumps(hdr, separators=(",", ":")).encode()
    hj += b" " * (-len(hj) % 8)
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(hj)))
        f.write(hj)
        for name, dt, shape, gen in tensors:
            b = gen()
            assert len(b) == hdr[name]["data_offsets"][1] - hdr[name]["data_offsets"][0], name
            f.write(b)
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
    gc = os.path.join(fix, "generation_config.json")
    if os.path.exists(gc):
        with open(gc) as fi, open(os.path.join(a.out, "generation_config.json"), "w") as fo:
            fo.write(fi.read())
    print(f"{a.out}: {a.format}, {off / 1e9:.2f} GB of tensors, {len(tensors)} tensors", file=sys.stderr)


if __name__ == "__main__":
    main()
