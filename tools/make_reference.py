#!/usr/bin/env python3
"""make_reference.py - Hugging Face reference outputs for g4's text parity tests.

For each model directory given (Hugging Face layout: config.json + safetensors, BF16,
compressed-tensors NVFP4A16 / FP8-dynamic), this builds transformers'
Gemma4UnifiedForConditionalGeneration on the CPU and runs it in float64 (weights are the
checkpoint's values exactly; float64 because these tiny random models are ill-conditioned —
scale-1.0 attention over normed q/k gives sharp softmaxes — and transformers' own float32
run is up to 1.2e-4 (relative L2 per position) away from its float64 run, more than g4's
float32 engine is), loads the checkpoint's
weights (quantized ones dequantized here in PyTorch with the compressed-tensors formula:
w = e2m1(code) * float(fp8 scale) / global_scale, and w = fp8 * per-channel scale), and writes
<dir>/reference/:

  prompt_K.npy   int32 [T]        deterministic random prompt ids (no multimodal ids)
  logits_K.npy   float32 [T, V]   logits of every prompt position (after final softcap), computed in float64
  greedy_K.npy   int32 [G]        greedy continuation, full recompute each step (no cache)
  meta.json      what was run (torch/transformers versions, tolerances are the tests')

The RoPE inv_freq buffers are never rounded to BF16 (the model is built in float32, then
converted to float64).
Usage: python3 tools/make_reference.py DIR [DIR ...] [--prompts 2] [--len 80] [--greedy 32]
"""
import argparse
import json
import os
import sys

import numpy as np
import torch
from safetensors import safe_open

E2M1 = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0]


def load_tensors(d):
    files = []
    idx = os.path.join(d, "model.safetensors.index.json")
    if os.path.exists(idx):
        files = sorted(set(json.load(open(idx))["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    out = {}
    for f in files:
        with safe_open(os.path.join(d, f), framework="pt") as sf:
            for k in sf.keys():
                out[k] = sf.get_tensor(k)
    return out


def dequant_nvfp4(packed, scale, gscale):
    n, kh = packed.shape
    lut = torch.tensor(E2M1, dtype=torch.float32)
    p = packed.to(torch.int64)
    codes = torch.stack([p & 0xF, p >> 4], dim=-1).reshape(n, kh * 2)   # low nibble = even k
    vals = lut[codes]
    s = (scale.to(torch.float32) / gscale.to(torch.float32)).to(torch.float32)  # [n, k/16]
    return vals * s.repeat_interleave(16, dim=1)


def hf_name(k):
    """Checkpoint tensor name -> HF module name (transformers renames these at load time)."""
    if k.startswith("model.embed_vision.embedding_projection"):
        return k.replace("model.embed_vision.", "model.embed_vision.multimodal_embedder.", 1)
    if k.startswith("model.vision_embedder."):
        return k.replace("model.vision_embedder.", "model.embed_vision.", 1)
    return k


def state_dict_from_checkpoint(t):
    sd = {}
    for k, v in t.items():
        k0 = k
        k = hf_name(k)
        if k.endswith(".weight_packed"):
            base = k0[: -len(".weight_packed")]
            sd[hf_name(base) + ".weight"] = dequant_nvfp4(v, t[base + ".weight_scale"], t[base + ".weight_global_scale"])
        elif k.endswith(".weight_scale") or k.endswith(".weight_global_scale"):
            continue
        elif v.dtype == torch.float8_e4m3fn:
            base = k0[: -len(".weight")]
            sc = t[base + ".weight_scale"].to(torch.float32)
            sd[k] = v.to(torch.float32) * sc.reshape(-1, 1)
        else:
            sd[k] = v.to(torch.float32)
    return sd


def build_model(d):
    from transformers import Gemma4UnifiedConfig, Gemma4UnifiedForConditionalGeneration
    cfg = json.load(open(os.path.join(d, "config.json")))
    cfg.pop("quantization_config", None)
    config = Gemma4UnifiedConfig.from_dict(cfg)
    torch.manual_seed(0)
    model = Gemma4UnifiedForConditionalGeneration(config).float().eval()
    sd = state_dict_from_checkpoint(load_tensors(d))
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [m for m in missing if not m.endswith("lm_head.weight")]
    if missing or unexpected:
        sys.exit(f"{d}: state dict mismatch: missing={missing[:5]} unexpected={unexpected[:5]}")
    # buffers that are checkpoint data (layer_scalar) were loaded above
    return model.double(), config


def forbidden_ids(config):
    ids = set()
    for k in ("image_token_id", "video_token_id", "audio_token_id", "boi_token_id", "eoi_token_id",
              "boa_token_id", "eoa_token_index", "eoa_token_id"):
        v = getattr(config, k, None)
        if isinstance(v, int):
            ids.add(v)
    return ids


@torch.no_grad()
def logits_of(model, ids):
    out = model(input_ids=torch.tensor([ids], dtype=torch.long), use_cache=False)
    return out.logits[0].to(torch.float32).numpy()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dirs", nargs="+")
    ap.add_argument("--prompts", type=int, default=2)
    ap.add_argument("--len", type=int, default=80)
    ap.add_argument("--greedy", type=int, default=32)
    a = ap.parse_args()
    import transformers
    for d in a.dirs:
        model, config = build_model(d)
        vocab = config.text_config.vocab_size
        bad = forbidden_ids(config)
        rdir = os.path.join(d, "reference")
        os.makedirs(rdir, exist_ok=True)
        rng = np.random.default_rng(1234)
        for k in range(a.prompts):
            T = a.len + 7 * k   # odd lengths on purpose
            ids = [2] + [int(x) for x in rng.integers(4, vocab, size=T - 1)]
            ids = [i if i not in bad else 5 for i in ids]
            lg = logits_of(model, ids)
            np.save(os.path.join(rdir, f"prompt_{k}.npy"), np.array(ids, dtype=np.int32))
            np.save(os.path.join(rdir, f"logits_{k}.npy"), lg.astype(np.float32))
            seq = list(ids)
            gen = []
            for _ in range(a.greedy):
                nxt = int(np.argmax(logits_of(model, seq)[-1]))
                gen.append(nxt)
                seq.append(nxt)
            np.save(os.path.join(rdir, f"greedy_{k}.npy"), np.array(gen, dtype=np.int32))
        json.dump({"torch": torch.__version__, "transformers": transformers.__version__,
                   "prompts": a.prompts, "len": a.len, "greedy": a.greedy, "dtype": "float64"},
                  open(os.path.join(rdir, "meta.json"), "w"), indent=1)
        print(f"{d}: reference written ({a.prompts} prompts)")


if __name__ == "__main__":
    main()
