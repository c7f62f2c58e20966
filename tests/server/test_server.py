"""g4 serve against the official openai client and lm-evaluation-harness (tiny model, CPU).

Covers chat (plain, content parts, streaming with usage, logprobs, n, seeds, stop
strings), completions with echo + prompt logprobs in vLLM's format, tokenize /
detokenize, metrics, every error case (400, 401, 404, 405, 413, 429, malformed HTTP),
client disconnects, 32 concurrent greedy streams == the same requests one at a time,
SIGTERM with a stream in flight, and an lm-eval loglikelihood task end to end."""
import concurrent.futures as cf
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import openai
import pytest

from conftest import ROOT, Server

MSG = [{"role": "user", "content": "Hello there, how are you?"}]


def client(server, key="EMPTY"):
    return openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0, timeout=120)


def post(url, body, headers=None, raw=None):
    data = raw if raw is not None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def check_error(status, body, want):
    assert status == want, body
    assert set(body["error"]) >= {"message", "type", "param", "code"}, body
    assert body["error"]["code"] == want


def test_health_models(server):
    assert get(server.url + "/health")[0] == 200
    models = client(server).models.list()
    assert [m.id for m in models.data] == ["tiny"]


def test_chat_basic(server):
    r = client(server).chat.completions.create(model="tiny", messages=MSG, max_tokens=8, temperature=0)
    c = r.choices[0]
    assert r.object == "chat.completion" and c.message.role == "assistant"
    assert isinstance(c.message.content, str)
    assert c.finish_reason in ("stop", "length")
    assert r.usage.prompt_tokens > 0 and r.usage.completion_tokens <= 8
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_chat_content_parts_equal_string(server):
    cl = client(server)
    a = cl.chat.completions.create(model="tiny", messages=MSG, max_tokens=6, temperature=0)
    parts = [{"role": "user", "content": [{"type": "text", "text": "Hello there, how are you?"}]}]
    b = cl.chat.completions.create(model="tiny", messages=parts, max_tokens=6, temperature=0)
    assert a.choices[0].message.content == b.choices[0].message.content
    assert a.usage.prompt_tokens == b.usage.prompt_tokens


def test_chat_stream_matches_nonstream(server):
    cl = client(server)
    full = cl.chat.completions.create(model="tiny", messages=MSG, max_tokens=12, temperature=0)
    chunks = list(cl.chat.completions.create(model="tiny", messages=MSG, max_tokens=12, temperature=0, stream=True,
                                             stream_options={"include_usage": True}))
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == full.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    finals = [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason]
    assert finals == [full.choices[0].finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == full.usage.completion_tokens


def test_sse_wire_format(server):
    req = urllib.request.Request(server.url + "/v1/chat/completions", data=json.dumps(
        {"model": "tiny", "messages": MSG, "max_tokens": 3, "stream": True}).encode(),
        headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        assert r.headers["Content-Type"].startswith("text/event-stream")
        body = r.read().decode()
    events = [e for e in body.split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    for e in events[:-1]:
        assert json.loads(e[6:])["object"] == "chat.completion.chunk"


def test_chat_logprobs(server):
    r = client(server).chat.completions.create(model="tiny", messages=MSG, max_tokens=5, temperature=0,
                                               logprobs=True, top_logprobs=3)
    lp = r.choices[0].logprobs.content
    assert len(lp) == r.usage.completion_tokens
    for e in lp:
        assert e.logprob <= 0 and len(e.top_logprobs) == 3
        # greedy: the chosen token is the most likely one
        assert abs(e.logprob - e.top_logprobs[0].logprob) < 1e-5
        assert e.top_logprobs[0].logprob >= e.top_logprobs[1].logprob >= e.top_logprobs[2].logprob


def test_sampling_seed_n_and_penalties(server):
    cl = client(server)
    kw = dict(model="tiny", messages=MSG, max_tokens=10, temperature=0.9, top_p=0.9, seed=42,
              presence_penalty=0.5, frequency_penalty=0.3,
              extra_body={"top_k": 50, "min_p": 0.01, "repetition_penalty": 1.1})
    a = cl.chat.completions.create(n=3, **kw)
    b = cl.chat.completions.create(n=3, **kw)
    assert [c.message.content for c in a.choices] == [c.message.content for c in b.choices]
    assert [c.index for c in a.choices] == [0, 1, 2]
    assert len({c.message.content for c in a.choices}) > 1   # the choices are distinct samples


def test_stop_string(server):
    cl = client(server)
    full = cl.completions.create(model="tiny", prompt="The quick brown fox", max_tokens=16, temperature=0)
    text = full.choices[0].text
    assert len(text) >= 4
    stop = text[2:4]
    cut = cl.completions.create(model="tiny", prompt="The quick brown fox", max_tokens=16, temperature=0, stop=[stop])
    assert cut.choices[0].finish_reason == "stop"
    assert cut.choices[0].text == text[:text.index(stop)]
    assert cut.choices[0].model_extra.get("stop_reason") == stop


def test_completions_echo_logprobs_vllm_format(server):
    cl = client(server)
    prompt = [2, 10, 20, 30, 40, 50]
    g = cl.completions.create(model="tiny", prompt=prompt, max_tokens=1, temperature=0, logprobs=1)
    tok_lp = g.choices[0].logprobs.token_logprobs[0]
    r = cl.completions.create(model="tiny", prompt=[prompt, prompt[:3]], max_tokens=1, temperature=0, logprobs=1,
                              echo=True, seed=1234)
    assert [c.index for c in r.choices] == [0, 1]
    lp = r.choices[0].logprobs
    assert len(lp.token_logprobs) == len(prompt) + 1 == len(lp.tokens) == len(lp.top_logprobs) == len(lp.text_offset)
    assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
    assert lp.tokens[0] == "<bos>"
    for t, top in zip(lp.token_logprobs[1:], lp.top_logprobs[1:]):
        assert t <= 0 and max(top.values()) >= t - 1e-6
    assert abs(lp.token_logprobs[-1] - tok_lp) < 1e-4    # the generated token, same as without echo
    # consistency: the prompt logprob of position i is what generation from prompt[:i] reports
    h = cl.completions.create(model="tiny", prompt=prompt[:3], max_tokens=1, temperature=0, logprobs=5)
    top3 = h.choices[0].logprobs.top_logprobs[0]
    assert len(top3) >= 5
    assert len(r.choices[1].logprobs.token_logprobs) == 4
    assert r.usage.prompt_tokens == len(prompt) + 3


def test_greedy_logprobs_without_top_equal_with_top(server):
    # logprobs=0 on a greedy request takes the argmax + log-sum-exp path (on the device under CUDA),
    # logprobs=1 the host log-softmax with a top-1 list: same tokens, same chosen-token logprobs
    cl = client(server)
    prompt = [2, 10, 20, 30, 40, 50]
    a = cl.completions.create(model="tiny", prompt=prompt, max_tokens=8, temperature=0, logprobs=0,
                              extra_body={"ignore_eos": True}).choices[0].logprobs
    b = cl.completions.create(model="tiny", prompt=prompt, max_tokens=8, temperature=0, logprobs=1,
                              extra_body={"ignore_eos": True}).choices[0].logprobs
    assert a.tokens == b.tokens and len(a.token_logprobs) == 8
    for x, y in zip(a.token_logprobs, b.token_logprobs):
        assert x <= 0 and abs(x - y) < 1e-5


def test_completions_string_prompt_gets_bos(server):
    st, tk = post(server.url + "/tokenize", {"prompt": "Hello"})
    assert st == 200 and tk["tokens"][0] == 2 and tk["count"] == len(tk["tokens"])
    st, tk2 = post(server.url + "/tokenize", {"prompt": "Hello", "add_special_tokens": False, "return_token_strs": True})
    assert tk2["tokens"] == tk["tokens"][1:] and len(tk2["token_strs"]) == len(tk2["tokens"])
    st, dt = post(server.url + "/detokenize", {"tokens": tk2["tokens"]})
    assert st == 200 and dt["prompt"] == "Hello"
    r = client(server).completions.create(model="tiny", prompt="Hello", max_tokens=1, echo=True, logprobs=0)
    assert r.choices[0].logprobs.tokens[0] == "<bos>" and r.usage.prompt_tokens == len(tk["tokens"])
    st, info = get(server.url + "/tokenizer_info")
    assert st == 200 and json.loads(info)["eos_token"]


def test_metrics(server):
    client(server).chat.completions.create(model="tiny", messages=MSG, max_tokens=2)
    st, text = get(server.url + "/metrics")
    assert st == 200
    for name in ["vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:prompt_tokens_total",
                 "vllm:generation_tokens_total", "vllm:time_to_first_token_seconds_bucket",
                 "vllm:e2e_request_latency_seconds_count", "vllm:request_success_total"]:
        assert name in text, name
    assert 'model_name="tiny"' in text


def test_errors(server):
    cl = client(server)
    with pytest.raises(openai.BadRequestError):   # prompt + max_tokens over --max-model-len 512
        cl.chat.completions.create(model="tiny", messages=MSG, max_tokens=600)
    with pytest.raises(openai.BadRequestError):
        cl.completions.create(model="tiny", prompt=list(range(3, 515)), max_tokens=1)
    with pytest.raises(openai.NotFoundError):
        cl.chat.completions.create(model="no-such-model", messages=MSG, max_tokens=2)
    u = server.url
    check_error(*post(u + "/v1/chat/completions", None, raw=b"{not json"), 400)
    check_error(*post(u + "/v1/chat/completions", {"messages": []}), 400)
    check_error(*post(u + "/v1/chat/completions", {"messages": MSG, "temperature": "hot"}), 400)
    check_error(*post(u + "/v1/chat/completions", {"messages": MSG, "n": 0}), 400)
    check_error(*post(u + "/v1/chat/completions", {"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]}), 400)
    check_error(*post(u + "/v1/completions", {"prompt": [1, 999999]}), 400)
    check_error(*post(u + "/v1/completions", {"prompt": "x", "max_tokens": -1}), 400)
    check_error(*post(u + "/v1/completions", {"prompt": "x", "logprobs": 99}), 400)
    check_error(*post(u + "/detokenize", {"tokens": ["a"]}), 400)
    st, body = get(u + "/v1/nothing")
    assert st == 404 and "error" in json.loads(body)
    st, body = get(u + "/v1/chat/completions")
    assert st == 405
    # body over the cap (32 MiB default): refused from the Content-Length alone
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 413")


@pytest.mark.parametrize("junk", [b"GARBAGE\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n", b"\x00\xff\x10\r\n\r\n",
                                  b"POST /v1/completions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
                                  b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\n\r\n",
                                  b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 2000 + b"\r\n"])
def test_malformed_http_never_crashes(server, junk):
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(junk)
        s.settimeout(10)
        resp = s.recv(200)
    assert resp.startswith(b"HTTP/1.1 4") or resp.startswith(b"HTTP/1.1 5"), resp
    assert server.proc.poll() is None
    assert get(server.url + "/health")[0] == 200


def test_client_disconnect_cancels(server):
    def aborts():
        t = get(server.url + "/metrics")[1]
        line = [l for l in t.splitlines() if l.startswith('vllm:request_success_total{finished_reason="abort"')][0]
        return float(line.split()[-1])
    before = aborts()
    body = json.dumps({"model": "tiny", "messages": MSG, "max_tokens": 400, "stream": True, "ignore_eos": True})
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  f"Content-Length: {len(body)}\r\n\r\n{body}".encode())
        s.recv(100)
    deadline = time.time() + 20
    while aborts() <= before and time.time() < deadline:
        time.sleep(0.05)
    assert aborts() == before + 1


def test_32_concurrent_greedy_streams_equal_sequential(server):
    cl = client(server)
    prompts = [[{"role": "user", "content": f"Request number {i}: tell me about {'cats' if i % 2 else 'dogs'}."}]
               for i in range(32)]

    def run(m):
        chunks = cl.chat.completions.create(model="tiny", messages=m, max_tokens=24, temperature=0, stream=True)
        return "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)

    seq = [run(m) for m in prompts]
    with cf.ThreadPoolExecutor(32) as ex:
        par = list(ex.map(run, prompts))
    assert par == seq
    assert len(set(seq)) > 1


def test_16_concurrent_seeded_sampled_streams_equal_sequential(server):
    """Sampled rows of a step draw on the host in parallel, each from its own seeded generator: the
    same tokens as the requests one at a time (temperature, top-p, a repetition penalty, and one
    with top logprobs)."""
    cl = client(server)
    reqs = [dict(messages=[{"role": "user", "content": f"Story {i}"}], temperature=0.7 + 0.05 * i, top_p=0.95,
                 seed=100 + i, repetition_penalty=1.1 if i % 3 == 0 else 1.0) for i in range(16)]
    reqs[5].update(logprobs=True, top_logprobs=3)

    def run(kw):
        r = cl.chat.completions.create(model="tiny", max_tokens=20, extra_body={"repetition_penalty":
                                       kw.get("repetition_penalty", 1.0)},
                                       **{k: v for k, v in kw.items() if k != "repetition_penalty"})
        return r.choices[0].message.content

    seq = [run(kw) for kw in reqs]
    with cf.ThreadPoolExecutor(16) as ex:
        par = list(ex.map(run, reqs))
    assert par == seq
    assert len(set(seq)) > 1


def test_api_key_and_queue_full():
    s = Server("--api-key", "sekret", "--max-num-seqs", "1", "--max-queue", "1", "--max-model-len", "2048")
    try:
        with pytest.raises(openai.AuthenticationError):
            client(s, "wrong").models.list()
        st, body = post(s.url + "/v1/chat/completions", {"messages": MSG}, headers={"Authorization": "Bearer "})
        check_error(st, body, 401)
        st, body = post(s.url + "/v1/completions", {"prompt": "hi"})
        check_error(st, body, 401)
        assert get(s.url + "/health")[0] == 200     # health stays public
        ok = client(s, "sekret")
        assert ok.models.list().data
        # one sequence runs, one waits, the rest of a burst is refused with 429 (OpenAI error JSON)
        body = {"prompt": "x", "max_tokens": 1000, "temperature": 0, "ignore_eos": True}
        hdr = {"Authorization": "Bearer sekret"}
        with cf.ThreadPoolExecutor(16) as ex:
            res = list(ex.map(lambda _: post(s.url + "/v1/completions", body, headers=hdr), range(16)))
        codes = sorted(st for st, _ in res)
        assert 200 in codes and 429 in codes and set(codes) <= {200, 429}, codes
        check_error(*[r for r in res if r[0] == 429][0], 429)
        with pytest.raises(openai.RateLimitError):   # what the openai client raises for it
            with cf.ThreadPoolExecutor(16) as ex:
                futs = [ex.submit(ok.completions.create, model=ok.models.list().data[0].id, prompt="x", max_tokens=1000,
                                  extra_body={"ignore_eos": True}) for _ in range(16)]
                for f in futs:
                    f.result()
    finally:
        s.stop()


def test_sigterm_finishes_inflight_stream():
    s = Server("--max-model-len", "1024")
    cl = client(s)
    stream = cl.chat.completions.create(model=cl.models.list().data[0].id, messages=MSG, max_tokens=300,
                                        temperature=0, stream=True, extra_body={"ignore_eos": True})
    it = iter(stream)
    next(it)
    s.proc.send_signal(signal.SIGTERM)
    rest = list(it)
    finals = [c.choices[0].finish_reason for c in rest if c.choices and c.choices[0].finish_reason]
    assert finals == ["length"]
    assert s.proc.wait(60) == 0
    s.log.close()


def test_sched_trace_reports_step_phases():
    """G4_SCHED_TRACE=1: the scheduler's per-step host timings, printed at shutdown, count the
    steps that ran (two 8-token requests at once: one prefill step, then 7 decode-only steps of 2)."""
    s = Server("--max-model-len", "512", env={"G4_SCHED_TRACE": "1"})
    try:
        cl = client(s)
        mid = cl.models.list().data[0].id
        with cf.ThreadPoolExecutor(2) as ex:
            futs = [ex.submit(cl.completions.create, model=mid, prompt=p, max_tokens=8, temperature=0,
                              extra_body={"ignore_eos": True}) for p in ("one two three", "four five six")]
            outs = [f.result() for f in futs]
        assert all(o.usage.completion_tokens == 8 for o in outs)
    finally:
        s.proc.send_signal(signal.SIGTERM)
        assert s.proc.wait(60) == 0
    log = s.logtext()
    s.log.close()
    dec = re.search(r"step trace \(decode only\): (\d+) steps, ([0-9.]+) items per step; ms per step: "
                    r"before the forward ([0-9.]+), forward ([0-9.]+), picks ([0-9.]+), after ([0-9.]+)", log)
    pre = re.search(r"step trace \(with prefill chunks\): (\d+) steps", log)
    assert dec and pre, log[-2000:]
    # each request's first token comes from a step with its prompt chunk, its other 7 from steps
    # after it: 7 decode-only steps (both requests in them) up to 14 (one after the other)
    n_dec, items = int(dec.group(1)), float(dec.group(2))
    assert 7 <= n_dec <= 14 and 1.0 <= items <= 2.0 and int(pre.group(1)) >= 1, dec.group(0)
    assert float(dec.group(4)) > 0


def test_lm_eval_local_completions_loglikelihood(server, tmp_path):
    lm_eval = os.path.join(os.path.dirname(sys.executable), "lm_eval")
    out = tmp_path / "out"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [lm_eval, "--model", "local-completions", "--tasks", "g4_tiny_ll",
           "--include_path", os.path.join(ROOT, "tests", "server", "lm_eval_task"),
           "--model_args", f"model=tiny,base_url={server.url}/v1/completions,tokenizer_backend=remote,"
                           "num_concurrent=2,max_retries=1,max_length=512",
           "--batch_size", "2", "--output_path", str(out)]
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    results = list(out.rglob("results*.json"))
    assert results, p.stdout[-2000:]
    acc = json.loads(results[0].read_text())["results"]["g4_tiny_ll"]["acc,none"]
    assert 0.0 <= acc <= 1.0


def test_kv_cache_dtype_flag():
    """--kv-cache-dtype: a bad name is a usage error; float16 on the CPU backend is refused at start,
    with a message, not a crash; float32 serves; fp8 (the CPU: float storage of E4M3 values) serves
    and says so."""
    from conftest import G4, MODEL, Server
    p = subprocess.run([G4, "serve", MODEL, "--kv-cache-dtype", "fp8_e5m2"], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 2 and "--kv-cache-dtype" in p.stderr
    p = subprocess.run([G4, "serve", MODEL, "--device", "cpu", "--kv-cache-dtype", "float16", "--port", "0"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode != 0 and "float32 KV cache" in (p.stdout + p.stderr)
    s = Server("--device", "cpu", "--kv-cache-dtype", "float32")
    try:
        with urllib.request.urlopen(s.url + "/health", timeout=5) as r:
            assert r.status == 200
    finally:
        s.stop()
    s = Server("--device", "cpu", "--kv-cache-dtype", "fp8")
    try:
        code, body = post(s.url + "/v1/completions", {"prompt": [2, 5, 9, 11], "max_tokens": 4, "temperature": 0})
        assert code == 200 and body["usage"]["completion_tokens"] == 4
        assert "kv cache fp8_e4m3" in s.logtext()
    finally:
        s.stop()


def test_prefill_wait_coalesces_new_prompts():
    """--prefill-wait-ms: while a sequence decodes, new prompts wait (up to the limit) to start
    together in one prefill step; with nothing decoding they start at once; outputs unchanged."""
    s = Server("--max-model-len", "4096", "--max-num-seqs", "6", "--prefill-wait-ms", "300")
    url = s.url + "/v1/completions"

    def stream(body, marks, out=None):
        req = urllib.request.Request(url, data=json.dumps(dict(body, stream=True)).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=120) as f:
            for line in f:
                if line.startswith(b"data: ") and line.strip() != b"data: [DONE]":
                    marks.append(time.time())
                    if out is not None:
                        out.append(json.loads(line[6:])["choices"][0]["text"])

    prompts = [f"prompt number {i} about {'cats' if i % 2 else 'dogs'}" for i in range(4)]
    try:
        a = []
        th = cf.ThreadPoolExecutor(1)
        fa = th.submit(stream, {"prompt": "hello", "max_tokens": 4000, "ignore_eos": True, "temperature": 0}, a)
        deadline = time.time() + 30
        while not a and time.time() < deadline:
            time.sleep(0.005)
        assert a, "the long stream never started"
        t0 = time.time()
        marks = [[] for _ in prompts]
        texts = [[] for _ in prompts]
        with cf.ThreadPoolExecutor(len(prompts)) as ex:
            list(ex.map(lambda i: stream({"prompt": prompts[i], "max_tokens": 8, "temperature": 0}, marks[i], texts[i]),
                        range(len(prompts))))
        fa.result(timeout=120)
        th.shutdown()
        first = [m[0] - t0 for m in marks]
        if a[-1] - t0 > 0.5:   # the long stream still decoded when the wait ran out
            assert min(first) >= 0.25, first
            assert max(first) < a[-1] - t0, (first, a[-1] - t0)
        for i, p in enumerate(prompts):   # alone (nothing decoding): at once, same text
            m, o = [], []
            t1 = time.time()
            stream({"prompt": p, "max_tokens": 8, "temperature": 0}, m, o)
            assert m[0] - t1 < 0.25, m[0] - t1
            assert "".join(o) == "".join(texts[i])
    finally:
        s.stop()
