#!/usr/bin/env python3
"""hf_baseline.py - Hugging Face transformers BF16 baseline for `g4 bench`, same GPU, same run.

Loads a (synthetic) BF16 Gemma 4 unified checkpoint with transformers on the GPU and times
greedy decoding the way g4 bench does: a random prompt of N ids (first id 2 = <bos>), TTFT =
generate() of one token, decode tok/s = (M - 1) / (time of generate(M) - TTFT), eos ignored.
Prints one JSON object. Usage: hf_baseline.py MODEL_DIR [--prompt-len N] [--gen M]
"""
import argparse
import json
import time

import torch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--prompt-len", type=int, default=128)
    ap.add_argument("--gen", type=int, default=64)
    a = ap.parse_args()
    import transformers
    cls = getattr(transformers, "Gemma4UnifiedForConditionalGeneration", None) or transformers.AutoModelForCausalLM
    t0 = time.time()
    model = cls.from_pretrained(a.model, dtype=torch.bfloat16, device_map="cuda")
    model.eval()
    load_s = time.time() - t0
    vocab = model.config.get_text_config().vocab_size
    g = torch.Generator().manual_seed(1234)
    ids = torch.randint(4, vocab - 4, (1, a.prompt_len), generator=g)
    ids[0, 0] = 2
    ids = ids.cuda()
    with torch.inference_mode():
        model.generate(ids[:, :16], max_new_tokens=4, do_sample=False)   # warm-up
        torch.cuda.synchronize()
        # TTFT = generate() of one token (prefill + the last position's logits, as g4 bench): a bare
        # model(ids) computes logits for every position (1024 x 262,144 here), which inflated the
        # TTFT by ~1.5 s and so the decode rate derived from it (stop 11)
        t = time.time()
        model.generate(ids, max_new_tokens=1, min_new_tokens=1, do_sample=False)
        torch.cuda.synchronize()
        ttft = time.time() - t
        t = time.time()
        out = model.generate(ids, max_new_tokens=a.gen, min_new_tokens=a.gen, do_sample=False)
        torch.cuda.synchronize()
        total = time.time() - t
    n_new = out.shape[1] - ids.shape[1]
    dec = (total - ttft) / max(1, n_new - 1)
    print(json.dumps({"engine": "transformers " + transformers.__version__, "dtype": "bfloat16",
                      "device": torch.cuda.get_device_name(0), "prompt_tokens": a.prompt_len,
                      "ttft_s": round(ttft, 4), "decode_tokens": int(n_new), "decode_tok_s": round(1.0 / dec, 3),
                      "gpu_mem_gb": round(torch.cuda.max_memory_allocated() / 1e9, 3), "load_s": round(load_s, 1)}))


if __name__ == "__main__":
    main()
