"""hf_baseline.py - Hugging Face transformers BF16 baseline for `g4 bench`, same GPU, same run.

Loads a (synthetic) BF16 Gemma 4 unified checkpoint with transformers and times greedy decoding
the way g4 bench does, with the model's own forward and KV cache (no generate(): its per-call
set-up - and, for a new cache length, cache and kernel preparation - was measured at ~1 s per
call on an H200, which is not what a serving loop pays per request): a random prompt of N ids
(first id 2 = <bos>); after a warm-up at the same length, TTFT = the prefill forward with its
cache plus the argmax of the last position (median of 3); decode tok/s = M - 1 single-token
forwards through that cache, timed together. Prints one JSON object.
Usage: hf_baseline.py MODEL_DIR [--prompt-len N] [--gen M] [--device cuda|cpu]
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
    ap.add_argument("--device", default="cuda")
    a = ap.parse_args()
    import transformers
    cls = getattr(transformers, "Gemma4UnifiedForConditionalGeneration", None) or transformers.AutoModelForCausalLM
    dev = torch.device(a.device)
    t0 = time.time()
    model = cls.from_pretrained(a.model, dtype=torch.bfloat16)
    model.to(dev).eval()
    load_s = time.time() - t0
    vocab = model.config.get_text_config().vocab_size
    g = torch.Generator().manual_seed(1234)
    ids = torch.randint(4, vocab - 4, (1, a.prompt_len), generator=g)
    ids[0, 0] = 2
    ids = ids.to(dev)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def prefill():
        try:
            out = model(input_ids=ids, use_cache=True, logits_to_keep=1)
        except TypeError:   # a forward without logits_to_keep
            out = model(input_ids=ids, use_cache=True)
        return out.past_key_values, out.logits[:, -1:].argmax(-1)

    with torch.inference_mode():
        pkv, nxt = prefill()   # warm-up at the timed length
        _ = model(input_ids=nxt, past_key_values=pkv, use_cache=True)
        sync()
        ttfts = []
        for _ in range(3):
            sync()
            t = time.time()
            pkv, nxt = prefill()
            int(nxt[0, 0])   # the token on the host, as a server needs it
            ttfts.append(time.time() - t)
        ttft = sorted(ttfts)[1]
        sync()
        t = time.time()
        n_new = 1
        for _ in range(a.gen - 1):
            out = model(input_ids=nxt, past_key_values=pkv, use_cache=True)
            pkv = out.past_key_values
            nxt = out.logits[:, -1:].argmax(-1)
            int(nxt[0, 0])
            n_new += 1
        dec_s = time.time() - t
    dec = dec_s / max(1, n_new - 1)
    print(json.dumps({"engine": "transformers " + transformers.__version__, "dtype": "bfloat16",
                      "device": torch.cuda.get_device_name(0) if dev.type == "cuda" else "cpu",
                      "prompt_tokens": a.prompt_len, "ttft_s": round(ttft, 4), "decode_tokens": int(n_new),
                      "decode_tok_s": round(1.0 / dec, 3) if dec > 0 else 0.0,
                      "gpu_mem_gb": round(torch.cuda.max_memory_allocated() / 1e9, 3) if dev.type == "cuda" else 0.0,
                      "load_s": round(load_s, 1)}))


if __name__ == "__main__":
    main()
