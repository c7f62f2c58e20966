#!/usr/bin/env python3
"""bench_serve.py - load generator for `g4 serve` (any OpenAI/vLLM-compatible server).

Standard library only (runs on machines without network access). For each
concurrency level N it keeps N streams busy (N x --rounds requests in all), each
a streamed /v1/completions request with a --prompt-len token-id prompt (random
ids, distinct per request so prefix reuse does not flatter the numbers) and
--gen output tokens (ignore_eos; greedy, or sampled with --temperature / --top-p), and reports
  agg_decode_tok_s   generated tokens / wall time of the level
  ttft_p50_s/p99_s   time to the first streamed token
  itl_mean_s         mean inter-token gap within a stream
  steady_decode_tok_s  tokens / time over the window in which every stream of the first wave is
                     decoding (after the last first token, before the first stream ends): the
                     batch's decode rate without the prompt burst's prefill steps
  ttft_later_*       with --rounds > 1: TTFT of the requests after the first wave (they arrive
                     while the other streams decode: the steady state, not the burst)
  window_*           with --stagger S: stream w sends its first request S * w / N seconds after
                     the first (a closed loop of N streams whose requests do not all arrive at
                     once); over the window from the last stream's first request to the first
                     stream's last token: generated tokens per second and the TTFT p50 / p99 of the
                     requests sent inside it (use --rounds >= 3)
as JSON, with the GPU's name (nvidia-smi) or --card.

  python3 tools/bench_serve.py --url http://127.0.0.1:8000 --concurrency 1,8,32,64 \
      --prompt-len 512 --gen 256 --out bench.json
"""
import argparse
import asyncio
import json
import random
import shutil
import statistics
import subprocess
import sys
import time
import urllib.parse
import urllib.request


def pct(xs, q):
    if not xs:
        return None
    xs = sorted(xs)
    k = (len(xs) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


async def one_request(host, port, path, body, headers):
    """POST body, read the SSE stream; returns ([token times since the request was sent], n_tokens,
    the send time on the perf_counter clock)."""
    reader, writer = await asyncio.open_connection(host, port)
    data = json.dumps(body).encode()
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\nConnection: close\r\n{headers}\r\n").encode()
    t0 = time.perf_counter()
    writer.write(head + data)
    await writer.drain()
    status = await reader.readline()
    if b" 200 " not in status:
        rest = await reader.read()
        writer.close()
        raise RuntimeError(f"HTTP error: {status!r} {rest[-300:]!r}")
    chunked = False
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        if line.lower().startswith(b"transfer-encoding:") and b"chunked" in line.lower():
            chunked = True
    buf = b""
    times = []
    n_tok = 0

    async def chunks():
        if not chunked:
            while True:
                d = await reader.read(65536)
                if not d:
                    return
                yield d
        while True:
            size = int((await reader.readline()).strip().split(b";")[0], 16)
            if size == 0:
                return
            d = await reader.readexactly(size)
            await reader.readline()
            yield d

    async for d in chunks():
        buf += d
        while b"\n\n" in buf:
            ev, buf = buf.split(b"\n\n", 1)
            if not ev.startswith(b"data: "):
                continue
            payload = ev[6:]
            if payload == b"[DONE]":
                continue
            obj = json.loads(payload)
            if "error" in obj:
                raise RuntimeError(obj["error"])
            for ch in obj.get("choices", []):
                # logprobs=0 is requested so every token shows up in logprobs.tokens
                # (text alone may be a held-back flush carrying no new token)
                lp = ch.get("logprobs")
                k = len(lp.get("tokens") or []) if lp else 0
                if k:
                    now = time.perf_counter() - t0
                    times.extend([now] * k)
                    n_tok += k
    writer.close()
    return times, n_tok, t0


async def run_level(args, n, vocab_hi, rng):
    u = urllib.parse.urlparse(args.url)
    host, port = u.hostname, u.port or 80
    path = u.path.rstrip("/") + "/v1/completions"
    headers = f"Authorization: Bearer {args.api_key}\r\n" if args.api_key else ""
    results = []

    later = []   # requests of rounds >= 1: they arrive while the other streams decode
    wave = []    # the first requests of every stream, sent at once

    sent = []    # (send time, result) of every request, for the --stagger window

    async def worker(w):
        if args.stagger > 0:
            await asyncio.sleep(args.stagger * w / n)
        for r in range(args.rounds):
            prompt = [rng.randrange(args.id_lo, vocab_hi) for _ in range(args.prompt_len)]
            body = {"model": args.model, "prompt": prompt, "max_tokens": args.gen,
                    "temperature": args.temperature, "ignore_eos": True, "stream": True, "logprobs": 0}
            if args.temperature > 0:   # sampled traffic: the host draws of the scheduler
                body.update(top_p=args.top_p, seed=args.seed * 100003 + w * 1009 + r)
            res = await one_request(host, port, path, body, headers)
            results.append(res)
            (later if r else wave).append(res)
            done_at[w] = res[2] + (res[0][-1] if res[0] else 0.0)

    done_at = [0.0] * n

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(n)))
    wall = time.perf_counter() - t0
    ttft = [t[0] for t, _, _ in results if t]
    itl = [b - a for t, _, _ in results for a, b in zip(t, t[1:])]
    gen = sum(k for _, k, _ in results)
    ttft_later = [t[0] for t, _, _ in later if t]
    # the window in which every first-wave stream decodes: after the last first token, before the
    # first stream's last token (absolute times)
    first = [(s0 + t[0], s0 + t[-1], [s0 + x for x in t]) for t, _, s0 in wave if t]
    steady = None
    if len(first) == n and n > 0:
        w0, w1 = max(a for a, _, _ in first), min(b for _, b, _ in first)
        if w1 > w0:
            k = sum(1 for _, _, ts in first for x in ts if w0 < x <= w1)
            steady = k / (w1 - w0)
    out = {"concurrency": n, "requests": len(results), "prompt_len": args.prompt_len, "gen": args.gen,
           "gen_tokens": gen, "wall_s": wall, "agg_decode_tok_s": gen / wall if wall > 0 else None,
           "ttft_p50_s": pct(ttft, 0.5), "ttft_p99_s": pct(ttft, 0.99),
           "itl_mean_s": statistics.fmean(itl) if itl else None, "steady_decode_tok_s": steady}
    if ttft_later:   # --rounds > 1: TTFT of the requests after the first (simultaneous) wave
        out.update({"ttft_later_p50_s": pct(ttft_later, 0.5), "ttft_later_p99_s": pct(ttft_later, 0.99)})
    if args.stagger > 0 and n > 0:
        # from the last stream's first request to the first stream's last token (absolute times)
        w0 = max(s0 for t, _, s0 in wave) if len(wave) == n else None
        w1 = min(done_at)
        if w0 is not None and w1 > w0:
            k = sum(1 for t, _, s0 in results for x in t if w0 < s0 + x <= w1)
            tt = [t[0] for t, _, s0 in results if t and w0 <= s0 <= w1]
            out.update({"window_s": w1 - w0, "window_tok_s": k / (w1 - w0), "window_requests": len(tt),
                        "window_ttft_p50_s": pct(tt, 0.5), "window_ttft_p99_s": pct(tt, 0.99)})
    return out


def card_name(args):
    if args.card:
        return args.card
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                                 text=True, timeout=20).stdout.strip().splitlines()
            if out:
                return out[0]
        except Exception:
            pass
    return "unknown (pass --card)"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default="http://127.0.0.1:8000")
    ap.add_argument("--model", default=None, help="model name (default: the first of /v1/models)")
    ap.add_argument("--api-key", default=None)
    ap.add_argument("--concurrency", default="1,8,32,64")
    ap.add_argument("--prompt-len", type=int, default=512)
    ap.add_argument("--gen", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=1, help="requests per stream slot")
    ap.add_argument("--stagger", type=float, default=0.0,
                    help="seconds over which the streams' first requests are spread (0: all at once)")
    ap.add_argument("--id-lo", type=int, default=1000, help="prompt ids are drawn from [id-lo, vocab)")
    ap.add_argument("--vocab", type=int, default=None, help="default: 262144 (Gemma), or 512 for tiny models")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--temperature", type=float, default=0.0, help="> 0: sampled requests (seeded, with --top-p)")
    ap.add_argument("--top-p", type=float, default=0.95)
    ap.add_argument("--card", default=None, help="GPU name for the report (default: nvidia-smi)")
    ap.add_argument("--out", default=None, help="also write the JSON here")
    args = ap.parse_args()
    req = urllib.request.Request(args.url.rstrip("/") + "/v1/models",
                                 headers={"Authorization": f"Bearer {args.api_key}"} if args.api_key else {})
    with urllib.request.urlopen(req, timeout=60) as r:
        models = json.load(r)["data"]
    if args.model is None:
        args.model = models[0]["id"]
    vocab = args.vocab or (262144 if models[0].get("max_model_len", 0) > 4096 else 512)
    if args.id_lo >= vocab:
        args.id_lo = 3
    rng = random.Random(args.seed)
    report = {"url": args.url, "model": args.model, "card": card_name(args), "temperature": args.temperature,
              "levels": []}
    for n in [int(x) for x in args.concurrency.split(",") if x]:
        lvl = asyncio.run(run_level(args, n, vocab, rng))
        report["levels"].append(lvl)
        sd = lvl["steady_decode_tok_s"]
        print(f"[bench] N={n:3d} agg {lvl['agg_decode_tok_s']:.1f} tok/s  TTFT p50 {lvl['ttft_p50_s']:.3f} s "
              f"p99 {lvl['ttft_p99_s']:.3f} s  steady decode {sd if sd is None else round(sd, 1)} tok/s",
              file=sys.stderr)
        if "window_tok_s" in lvl:
            print(f"[bench] N={n:3d} window {lvl['window_s']:.1f} s: {lvl['window_tok_s']:.1f} tok/s, "
                  f"{lvl['window_requests']} requests, TTFT p50 {lvl['window_ttft_p50_s']:.3f} s "
                  f"p99 {lvl['window_ttft_p99_s']:.3f} s", file=sys.stderr)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
