#!/usr/bin/env python3
"""make_tiny_models.py - tiny random gemma4_unified checkpoints for g4's config/checkpoint tests.

Writes under tests/fixtures/models/ (CPU, a few seconds):

  tiny-a        8 layers (full: 5, 7), config.json in the real-checkpoint spelling
                (text_config.global_head_dim / num_global_key_value_heads / attention_k_eq_v = true),
                softcap 30, vision + audio sub-configs, BF16
  tiny-a-nvfp4  the same weights, compressed-tensors NVFP4A16 ("nvfp4-pack-quantized")
  tiny-a-fp8    the same weights, compressed-tensors FP8_DYNAMIC ("float-quantized")
  tiny-b        12 layers (full: 5, 11), config.json exactly as transformers 5.x save_pretrained
                writes it (per_layer_config {"05": {...}, "11": {...}}), attention_k_eq_v = false,
                no softcap, text only, BF16
  tiny-c        10 layers, explicit layer_types (full: 3, 9), per_layer_config spelling, k_eq_v = true,
                softcap 50, vision only, untied lm_head, BF16
  tiny-wc       tiny-a's text geometry, text only, BF16, well-conditioned (q_norm weights ~ 1/sqrt(head_dim),
                k_norm ~ 0.5, other norm weights 1 + 0.05 N(0,1)) for checking the BF16 tensor-core prefill
                (python3 tools/make_tiny_models.py --only tiny-wc; reference: make_reference.py --len 200)

and under tests/fixtures/configs/ the same configs in the other spelling
(tiny-a-per-layer.json, tiny-b-global.json, tiny-c-global.json); transformers is asked to load
every spelling and must resolve the same per-layer geometry.

Each model dir gets config.json, generation_config.json, model.safetensors, chat_template.jinja,
tokenizer.json (tools/make_tiny_tokenizer.py --vocab 512) and expected_info.json:
  parameters  = sum(p.numel() for p in model.parameters()) + layer_scalar buffers
                (model.parameters() already counts the tied lm_head once, i.e. not at all)
  per-layer geometry as transformers resolves it, modalities, weight format.

Weights: HF init, then every RMSNorm / LayerNorm weight = 1 + 0.3 N(0,1), LayerNorm biases and the
vision position table ~ N(0, 0.1), layer_scalar ~ U(0.6, 1.4); every parameter and buffer is rounded to
BF16 in the float32 model so the BF16 checkpoint and the float32 reference hold the same numbers. The
float32 model itself is never cast (its RoPE inv_freq buffers stay float32): checkpoints are saved from a
deep copy. `build_model(spec)` returns that float32 model so reference generators can reuse it.

Quantization (nvfp4-format.md 2.1 / 3): the observer arithmetic of llm-compressor is reproduced here
(fused global scale over q/k/v and gate/up, BF16 global scale, FP8 group scales, zero -> 0.125;
FP8: BF16 per-channel amax/448), then compressed-tensors' own ModelCompressor packs the weights and
writes quantization_config (ignore = concrete names of unquantized Linears in checkpoint spelling,
as llm-compressor on transformers v5 writes them).
"""
import copy
import json
import os
import shutil
import subprocess
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OUT = os.path.join(ROOT, "tests", "fixtures", "models")
CFG_OUT = os.path.join(ROOT, "tests", "fixtures", "configs")
VOCAB = 512
# multimodal ids of make_tiny_tokenizer.py (N-7 .. N-1)
TOK = dict(boi_token_id=VOCAB - 7, boa_token_id=VOCAB - 6, image_token_id=VOCAB - 5, audio_token_id=VOCAB - 4,
           eoi_token_id=VOCAB - 3, eoa_token_index=VOCAB - 2, video_token_id=VOCAB - 1)

BASE_TEXT = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=64, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=16, global_head_dim=32, num_global_key_value_heads=1,
                 sliding_window=8, max_position_embeddings=4096, rms_norm_eps=1e-6,
                 rope_parameters={"sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                                  "full_attention": {"rope_type": "proportional", "rope_theta": 1000000.0,
                                                     "partial_rotary_factor": 0.25}})
VISION = dict(patch_size=2, pooling_kernel_size=2, mm_embed_dim=32, mm_posemb_size=16, output_proj_dims=32)
AUDIO = dict(audio_embed_dim=16)

SPECS = {
    "tiny-a": dict(seed=1, text=dict(num_hidden_layers=8, attention_k_eq_v=True, final_logit_softcapping=30.0),
                   vision=VISION, audio=AUDIO, tie=True, spelling="global"),
    "tiny-b": dict(seed=2, text=dict(num_hidden_layers=12, attention_k_eq_v=False, final_logit_softcapping=None),
                   vision=None, audio=None, tie=True, spelling="per_layer"),
    "tiny-c": dict(seed=3, text=dict(num_hidden_layers=10, attention_k_eq_v=True, final_logit_softcapping=50.0,
                                     layer_types=["sliding_attention"] * 3 + ["full_attention"] +
                                                 ["sliding_attention"] * 5 + ["full_attention"]),
                   vision=VISION, audio=None, tie=False, spelling="per_layer"),
    # well-conditioned: tiny-a's text geometry, q_norm weights ~ 1/sqrt(head_dim) and k_norm ~ 0.5
    # (attention scores O(1) like a trained model's, instead of scale-1.0 dot products of unit-RMS
    # vectors), every other norm weight 1 + 0.05 N(0,1). BF16-rounding every Linear input moves its
    # logits by <= ~1e-2 (median ~5e-3: about the floor of 57 independent 2^-9 roundings; tiny-a: 0.5),
    # so the BF16 tensor-core prefill can be checked against the float64 reference (test_cuda_parity.c)
    "tiny-wc": dict(seed=4, text=dict(num_hidden_layers=8, attention_k_eq_v=True, final_logit_softcapping=30.0),
                    vision=None, audio=None, tie=True, spelling="global", well_conditioned=True),
}
QUANTIZED = {"tiny-a-nvfp4": ("tiny-a", "NVFP4A16"), "tiny-a-fp8": ("tiny-a", "FP8_DYNAMIC")}


def bf16_round_(t):
    with torch.no_grad():
        t.copy_(t.to(torch.bfloat16).to(t.dtype))


def make_config(spec):
    from transformers import Gemma4UnifiedConfig
    text = dict(BASE_TEXT)
    text.update(spec["text"])
    return Gemma4UnifiedConfig(text_config=text, vision_config=spec["vision"], audio_config=spec["audio"],
                               tie_word_embeddings=spec["tie"], **TOK)


def build_model(spec):
    """float32 Gemma4UnifiedForConditionalGeneration with randomized, BF16-representable weights."""
    from transformers import Gemma4UnifiedForConditionalGeneration
    torch.manual_seed(spec["seed"])
    cfg = make_config(spec)
    if not spec["tie"]:
        cfg.text_config.tie_word_embeddings = False
    model = Gemma4UnifiedForConditionalGeneration(cfg).float().eval()
    wc = spec.get("well_conditioned", False)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if wc and name.endswith("q_norm.weight"):
                p.copy_((1.0 + 0.05 * torch.randn_like(p)) / p.numel() ** 0.5)   # numel = head_dim
            elif wc and name.endswith("k_norm.weight"):
                p.copy_(0.5 * (1.0 + 0.05 * torch.randn_like(p)))   # softer attention: 1.3e-2 -> 1.0e-2
            elif name.endswith("norm.weight") or "_ln" in name and name.endswith(".weight") or \
               name.endswith("pos_norm.weight"):
                p.copy_(1.0 + (0.05 if wc else 0.3) * torch.randn_like(p))
            elif name.endswith(".bias") and ("_ln" in name or "pos_norm" in name):
                p.copy_(0.1 * torch.randn_like(p))
            elif name.endswith("pos_embedding"):
                p.copy_(0.1 * torch.randn_like(p))
            bf16_round_(p)
        for name, b in model.named_buffers():
            if name.endswith("layer_scalar"):
                b.copy_(torch.empty_like(b).uniform_(0.6, 1.4))
                bf16_round_(b)
    return model


def hf_param_count(model):
    n = sum(p.numel() for p in model.parameters())
    n += sum(b.numel() for name, b in model.named_buffers() if name.endswith("layer_scalar"))
    return n


def layer_geometry(text_cfg):
    out = []
    for i in range(text_cfg.num_hidden_layers):
        lc = text_cfg.per_layer_config[i]
        full = text_cfg.layer_types[i] == "full_attention"
        out.append(dict(type="full" if full else "sliding", head_dim=lc.head_dim,
                        kv_heads=lc.num_key_value_heads, k_eq_v=bool(text_cfg.attention_k_eq_v and full)))
    return out


def to_global_spelling(cfg_json, spec):
    """config.json dict (per_layer_config spelling) -> the real-checkpoint spelling."""
    d = copy.deepcopy(cfg_json)
    tc = d["text_config"]
    tc.pop("per_layer_config", None)
    tc["global_head_dim"] = BASE_TEXT["global_head_dim"]
    tc["num_global_key_value_heads"] = BASE_TEXT["num_global_key_value_heads"]
    d["text_config"] = dict(sorted(tc.items()))
    return d


def check_spelling(path, want):
    from transformers import Gemma4UnifiedConfig
    got = layer_geometry(Gemma4UnifiedConfig.from_pretrained(path).text_config)
    assert got == want, (path, got, want)


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")


def add_side_files(d):
    write_json(os.path.join(d, "generation_config.json"),
               {"bos_token_id": 2, "do_sample": True, "eos_token_id": [1, 106, 50], "pad_token_id": 0,
                "suppress_tokens": [TOK["eoa_token_index"], TOK["eoi_token_id"]], "temperature": 1.0,
                "top_k": 64, "top_p": 0.95, "transformers_version": "5.24.0"})
    shutil.copy(os.path.join(HERE, "templates", "gemma4_chat_template.jinja"), os.path.join(d, "chat_template.jinja"))
    tt = os.path.join(HERE, "make_tiny_tokenizer.py")
    if os.path.exists(tt):
        subprocess.run([sys.executable, tt, "--vocab", str(VOCAB), "--out", d], check=True,
                       stdout=subprocess.DEVNULL)
    else:
        print("warning: tools/make_tiny_tokenizer.py missing; no tokenizer.json in", d, file=sys.stderr)


def save_bf16(model, d):
    m = copy.deepcopy(model).to(torch.bfloat16)
    m.save_pretrained(d)
    return m


def expected_info(model, spec_name, fmt, dst):
    tc = model.config.text_config
    write_json(os.path.join(dst, "expected_info.json"), {
        "name": spec_name, "format": fmt, "parameters": hf_param_count(model),
        "layers": layer_geometry(tc), "vision": model.config.vision_config is not None,
        "audio": model.config.audio_config is not None,
        "final_logit_softcapping": tc.final_logit_softcapping,
        "tie_word_embeddings": bool(model.config.tie_word_embeddings),
    })


# ---- quantization (llm-compressor observer arithmetic, nvfp4-format.md 2.1 and 3) ----

FUSED = [("self_attn", ("q_proj", "k_proj", "v_proj")), ("mlp", ("gate_proj", "up_proj"))]


def nvfp4_global_scales(model, names):
    """name -> BF16-valued global scale (divisor), fused over siblings of one parent."""
    mods = dict(model.named_modules())
    amax = {n: mods[n].weight.abs().max() for n in names}     # BF16, exact
    for n in list(names):
        parent, _, leaf = n.rpartition(".")
        for _, sibs in FUSED:
            if leaf in sibs:
                group = [f"{parent}.{s}" for s in sibs if f"{parent}.{s}" in amax]
                a = torch.stack([amax[g] for g in group]).max()
                amax[n] = a
    out = {}
    for n in names:
        a = amax[n].clamp(min=torch.finfo(torch.bfloat16).tiny)
        g = (2688.0 / a)                          # bf16 tensor / python float -> bf16
        out[n] = g.float().reshape(1)
    return out


def nvfp4_group_scales(w, gs):
    n, k = w.shape
    a = w.reshape(n, k // 16, 16).abs().amax(-1)   # BF16
    s_pre = a / 6.0                                # BF16
    t = (gs * s_pre).float().clamp(-448, 448)      # F32
    s = t.to(torch.float8_e4m3fn)
    s = torch.where(s.float() == 0, torch.tensor(0.125), s.float()).to(torch.float8_e4m3fn)
    return s.to(torch.bfloat16)


def quantize(model_bf16, scheme_name, dst):
    from compressed_tensors.compressors import ModelCompressor
    from compressed_tensors.quantization import (QuantizationConfig, QuantizationStatus, apply_quantization_config,
                                                 preset_name_to_scheme)
    ignore_modules = ["lm_head", "model.embed_vision.multimodal_embedder.embedding_projection",
                      "model.embed_audio.embedding_projection"]
    scheme = preset_name_to_scheme(scheme_name, ["Linear"])
    scheme.weights.observer = "memoryless_minmax"     # what llm-compressor records for weights
    qcfg = QuantizationConfig(config_groups={"group_0": scheme}, ignore=ignore_modules,
                              quantization_status=QuantizationStatus.FROZEN)
    apply_quantization_config(model_bf16, qcfg)
    quantized = [n for n, m in model_bf16.named_modules() if hasattr(m, "quantization_scheme")
                 and m.quantization_scheme is not None and isinstance(m, torch.nn.Linear)]
    mods = dict(model_bf16.named_modules())
    with torch.no_grad():
        if scheme_name == "NVFP4A16":
            gss = nvfp4_global_scales(model_bf16, quantized)
            for n in quantized:
                m = mods[n]
                m.weight_global_scale.data.copy_(gss[n])
                m.weight_scale.data = nvfp4_group_scales(m.weight, gss[n]).to(m.weight_scale.dtype)
        else:
            for n in quantized:
                m = mods[n]
                s = (m.weight.abs().amax(-1, keepdim=True) / 448.0)       # BF16
                s = torch.where(s == 0, torch.tensor(torch.finfo(torch.bfloat16).eps, dtype=s.dtype), s)
                m.weight_scale.data = s.to(m.weight_scale.dtype)
    fmt = "nvfp4-pack-quantized" if scheme_name == "NVFP4A16" else "float-quantized"
    comp = ModelCompressor.from_pretrained_model(model_bf16, quantization_format=fmt)
    comp.compress_model(model_bf16)
    model_bf16.save_pretrained(dst)
    comp.update_config(dst)
    # llm-compressor on transformers v5 maps the recomputed ignore list to checkpoint names
    p = os.path.join(dst, "config.json")
    with open(p) as f:
        d = json.load(f)
    ren = {"model.embed_vision.multimodal_embedder.embedding_projection": "model.embed_vision.embedding_projection"}
    qc = d["quantization_config"]
    qc["ignore"] = sorted(ren.get(x, x) for x in qc.get("ignore", []))
    write_json(p, d)


def main():
    # --only NAME [NAME ...]: (re)write just these models (their source model for a quantized one)
    only = set(sys.argv[sys.argv.index("--only") + 1:]) if "--only" in sys.argv else None
    os.makedirs(OUT, exist_ok=True)
    os.makedirs(CFG_OUT, exist_ok=True)
    models = {}
    for name, spec in SPECS.items():
        if only is not None and name not in only and not any(QUANTIZED.get(q, ("",))[0] == name for q in only):
            continue
        d = os.path.join(OUT, name)
        shutil.rmtree(d, ignore_errors=True)
        model = build_model(spec)
        models[name] = model
        save_bf16(model, d)
        with open(os.path.join(d, "config.json")) as f:
            hf_json = json.load(f)
        want = layer_geometry(model.config.text_config)
        glob = to_global_spelling(hf_json, spec)
        if spec["spelling"] == "global":
            write_json(os.path.join(d, "config.json"), glob)
            write_json(os.path.join(CFG_OUT, f"{name}-per-layer.json"), hf_json)
        else:
            write_json(os.path.join(CFG_OUT, f"{name}-global.json"), glob)
        check_spelling(d, want)
        tmp = os.path.join(CFG_OUT, "_check")
        os.makedirs(tmp, exist_ok=True)
        for fn in os.listdir(CFG_OUT):
            if fn.startswith(name + "-") and fn.endswith(".json"):
                shutil.copy(os.path.join(CFG_OUT, fn), os.path.join(tmp, "config.json"))
                check_spelling(tmp, want)
        shutil.rmtree(tmp)
        add_side_files(d)
        expected_info(model, name, "BF16", d)
        print(f"{name}: {hf_param_count(model)} params")
    for qname, (src, scheme) in QUANTIZED.items():
        if only is not None and qname not in only:
            continue
        d = os.path.join(OUT, qname)
        shutil.rmtree(d, ignore_errors=True)
        m = copy.deepcopy(models[src]).to(torch.bfloat16)
        quantize(m, scheme, d)
        # keep the text config spelling of the source model
        with open(os.path.join(d, "config.json")) as f:
            qd = json.load(f)
        with open(os.path.join(OUT, src, "config.json")) as f:
            sd = json.load(f)
        qd["text_config"] = sd["text_config"]
        write_json(os.path.join(d, "config.json"), qd)
        add_side_files(d)
        expected_info(models[src], qname, "NVFP4" if scheme == "NVFP4A16" else "FP8", d)
        print(f"{qname}: {scheme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
