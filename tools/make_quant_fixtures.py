#!/usr/bin/env python3
"""make_quant_fixtures.py - reference outputs of llm-compressor for `g4 quantize` (tests/test_quantize.c).

Writes tests/fixtures/quant/:
  bf16/          a tiny random Gemma4UnifiedForConditionalGeneration (text + vision + audio sub-configs,
                 6 layers, full attention with K=V on layer 5, hidden 64, MLP 128, vocab 512), saved in BF16 as
                 two safetensors shards + model.safetensors.index.json, with config.json,
                 generation_config.json, chat_template.jinja and a tiny tokenizer (make_tiny_tokenizer.py)
  nvfp4a16/      llm-compressor `oneshot(model, recipe=QuantizationModifier(targets="Linear",
                 scheme="NVFP4A16", ignore=["lm_head", "re:.*embedding_projection.*"]))` then
                 `save_pretrained(save_compressed=True)`: config.json, model.safetensors, recipe.yaml
  fp8-dynamic/   the same with scheme="FP8_DYNAMIC"

Weights: make_tiny_models.build_model (HF init; norms 1 + 0.3 N(0,1), LayerNorm biases / position table
N(0, 0.1), layer_scalar U(0.6, 1.4), everything BF16-representable). On top of that
layers.0.mlp.down_proj rows 0-3 are hand-made so the E2M1 rounding ties (q = 0.25, 0.75, 1.25, 1.75, 2.5,
3.5, 5), -0 results, an all-zero group and FP8 scale underflow all occur: the tensor absmax is 0.65625, which
makes the global scale exactly 4096, and a group with absmax 0.375 gets the exact scale 256/4096.

Environment: llmcompressor 0.14.0.1 pins torch <= 2.14 and transformers <= 5.17, so it is run from a
separate virtual environment that sees the system torch and keeps its own transformers / compressed-tensors
(nothing of the system site-packages is changed):
    python3 -m venv --system-site-packages /tmp/lcvenv
    /tmp/lcvenv/bin/pip install --no-deps llmcompressor==0.14.0.1 compressed-tensors==0.19.0 \
        transformers==5.17.0 accelerate
    /tmp/lcvenv/bin/pip install httpx datasets "huggingface-hub>=1.5,<2"
    /tmp/lcvenv/bin/python tools/make_quant_fixtures.py

Check mode (verifies that compressed-tensors can load and decompress a g4 output, and that its
decompressed weights equal those of the llm-compressor output):
    /tmp/lcvenv/bin/python tools/make_quant_fixtures.py --check OUT_DIR nvfp4a16|fp8-dynamic
"""
import argparse
import copy
import json
import os
import shutil
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OUT = os.path.join(ROOT, "tests", "fixtures", "quant")
sys.path.insert(0, HERE)
import make_tiny_models as mt  # noqa: E402

SPEC = dict(seed=11, text=dict(num_hidden_layers=6, attention_k_eq_v=True, final_logit_softcapping=30.0,
                               hidden_size=64, intermediate_size=128),
            vision=mt.VISION, audio=dict(audio_embed_dim=32), tie=True, spelling="global")
IGNORE = ["lm_head", "re:.*embedding_projection.*"]
SCHEMES = {"nvfp4a16": "NVFP4A16", "fp8-dynamic": "FP8_DYNAMIC"}


def craft_ties(model):
    """Hand-made rows in layers.0.mlp.down_proj (K = 128 = 8 groups of 16)."""
    w = model.model.language_model.layers[0].mlp.down_proj.weight
    with torch.no_grad():
        w.clamp_(-0.5, 0.5)
        e = 0.0625                                    # exact effective scale 256 / 4096 for group absmax 0.375
        ties = [0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 6.0]
        g0 = [t * e for t in ties] + [-t * e for t in ties]          # every tie, both signs
        g1 = [0.0, -0.0, -0.125 * e, 0.125 * e, -0.25 * e, 0.26 * e, -0.74 * e, 1.26 * e,
              -1.74 * e, 2.49 * e, -3.49 * e, 4.99 * e, -5.01 * e, 6.0 * e, -6.0 * e, 0.5 * e]
        row0 = g0 + g1 + [0.0] * 16 + [1e-30] * 16                   # zero group, underflowing group
        row0 += [0.65625] + [0.01 * i for i in range(15)]            # the tensor absmax
        row0 += [(-1) ** i * 2.0 ** -(i + 2) for i in range(16)]     # powers of two
        row0 += [3e-5 * (i - 8) for i in range(16)]                  # tiny group (FP8 scale subnormal)
        row0 += [-0.3 + 0.04 * i for i in range(16)]
        w[0] = torch.tensor(row0)
        w[1] = -w[0]
        w[2] = 0
        w[3, :16] = torch.tensor(g0[::-1])
        mt.bf16_round_(w)


def save_bf16(model, d):
    m = copy.deepcopy(model).to(torch.bfloat16)
    m.config.dtype = torch.bfloat16
    m.save_pretrained(d, max_shard_size="200KB")
    mt.add_side_files(d)


def quantize(src, scheme, dst):
    from llmcompressor import oneshot
    from llmcompressor.modifiers.quantization import QuantizationModifier
    from transformers import Gemma4UnifiedForConditionalGeneration
    m = Gemma4UnifiedForConditionalGeneration.from_pretrained(src, dtype=torch.bfloat16)
    oneshot(model=m, recipe=QuantizationModifier(targets="Linear", scheme=scheme, ignore=IGNORE))
    m.save_pretrained(dst, save_compressed=True)
    for f in os.listdir(dst):   # keep only what the test compares
        if f not in ("config.json", "model.safetensors", "recipe.yaml"):
            os.remove(os.path.join(dst, f))


def load_dir(d):
    from safetensors.torch import load_file
    out = {}
    for f in sorted(os.listdir(d)):
        if f.endswith(".safetensors"):
            out.update(load_file(os.path.join(d, f)))
    return out


def decompress_dir(d):
    """Load a compressed checkpoint through transformers' compressed-tensors integration with
    run_compressed=False (compressed-tensors decompresses every module) -> {name: float32 tensor}."""
    from transformers import CompressedTensorsConfig, Gemma4UnifiedForConditionalGeneration
    with open(os.path.join(d, "config.json")) as f:
        quantized = "quantization_config" in json.load(f)
    kw = dict(quantization_config=CompressedTensorsConfig(run_compressed=False)) if quantized else {}
    m = Gemma4UnifiedForConditionalGeneration.from_pretrained(d, dtype=torch.bfloat16, **kw)
    return {k: v.float() for k, v in m.state_dict().items()}


def check(out_dir, scheme_dir):
    ref_dir = os.path.join(OUT, scheme_dir)
    ours, ref = decompress_dir(out_dir), decompress_dir(ref_dir)
    src = decompress_dir(os.path.join(OUT, "bf16"))
    # compare the parameters of the BF16 model; quantization-only parameters (weight_scale, ...) of
    # modules the loader re-quantizes by mistake (the ignore list holds checkpoint names, the modules
    # have HF names) are left uninitialized by transformers in both loads
    # transformers 5.17 maps the checkpoint name model.embed_vision.embedding_projection to the module
    # model.embed_vision.multimodal_embedder.embedding_projection but matches the ignore list (which
    # llm-compressor writes in checkpoint names) against the module name, so it treats that BF16 module
    # as quantized and "decompresses" it from uninitialized scales, for llm-compressor's output too.
    skip = [k for k in src if "multimodal_embedder.embedding_projection" in k]
    for k in src:
        if k not in skip:
            assert torch.equal(ours[k], ref[k]), f"{k}: decompressed weights differ"
    if skip:
        print(f"note: skipped {skip} (transformers loader bug, see comment)")
    n_q = sum(1 for k in src if k.endswith(".weight") and k not in skip and not torch.equal(ours[k], src[k]))
    assert n_q > 0, "nothing was quantized"
    a, b = load_dir(out_dir), load_dir(ref_dir)
    assert a.keys() == b.keys(), sorted(a.keys() ^ b.keys())
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        assert torch.equal(a[k].view(torch.uint8), b[k].view(torch.uint8)), f"{k}: bytes differ"
    print(f"check {out_dir}: transformers + compressed-tensors loaded and decompressed it ({n_q} quantized weights, "
          f"state dict equal to llm-compressor's); all {len(a)} stored tensors byte-identical")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", nargs=2, metavar=("OUT_DIR", "SCHEME"))
    args = ap.parse_args()
    if args.check:
        check(args.check[0], args.check[1])
        return 0
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    model = mt.build_model(SPEC)
    craft_ties(model)
    src = os.path.join(OUT, "bf16")
    save_bf16(model, src)
    for d, scheme in SCHEMES.items():
        quantize(src, scheme, os.path.join(OUT, d))
    total = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(OUT) for f in fs)
    print(f"wrote {OUT}: {total} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
