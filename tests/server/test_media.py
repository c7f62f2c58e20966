"""g4 serve with media: image_url (data: URLs, local files, http(s)), input_audio and
video_url content parts through the official openai client; greedy output equals
`g4 run` with the same media on the CLI; mm_processor_kwargs.max_soft_tokens; prefix
reuse across requests whose prompts differ only in their media; and every error case
(undecodable, oversized, unsupported, missing file, path outside the allowed
directory, remote fetching disabled / failed / over the size limit) -> 400 naming
the content part. Tiny model (vision + audio), CPU."""
import base64
import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import threading
import urllib.request

import openai
import pytest

from conftest import G4, MODEL, ROOT, Server

MEDIA = os.path.join(ROOT, "tests", "fixtures", "media")
IMG_PNG = os.path.join(MEDIA, "images", "grey_64x64.png")      # 256 soft tokens at 280 (16x16 grid)
IMG_JPG = os.path.join(MEDIA, "images", "grey_50x70.jpg")       # fits at 70 / 140
IMG_PNG2 = os.path.join(MEDIA, "images", "exact_40x28.png")
AUDIO = os.path.join(MEDIA, "audio", "tone_16k_mono.wav")
VIDEO = os.path.join(MEDIA, "video", "clip.mp4")
MAX_BYTES = 200000
HAVE_FFMPEG = shutil.which("ffmpeg") is not None and shutil.which("ffprobe") is not None
TEXT = "Describe the input."


def data_url(path, mime):
    with open(path, "rb") as f:
        return f"data:{mime};base64," + base64.b64encode(f.read()).decode()


def b64(path):
    with open(path, "rb") as f:
        return base64.b64encode(f.read()).decode()


def image_part(url):
    return {"type": "image_url", "image_url": {"url": url}}


def audio_part(path, fmt="wav"):
    return {"type": "input_audio", "input_audio": {"data": b64(path), "format": fmt}}


def video_part(url):
    return {"type": "video_url", "video_url": {"url": url}}


def user(*parts, text=TEXT):
    return [{"role": "user", "content": [*parts, {"type": "text", "text": text}]}]


class Files(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a):
        pass


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("media")
    allowed = d / "allowed"
    allowed.mkdir()
    shutil.copy(VIDEO, allowed / "clip.mp4")
    shutil.copy(IMG_PNG, allowed / "img.png")
    shutil.copy(AUDIO, allowed / "tone.wav")
    (allowed / "sub").mkdir()
    shutil.copy(IMG_PNG, allowed / "sub" / "img 2.png")
    (d / "secret.png").write_bytes(open(IMG_PNG, "rb").read())
    os.symlink(d / "secret.png", allowed / "link.png")          # points outside: refused
    (allowed / "big.bin").write_bytes(os.urandom(MAX_BYTES + 1000))
    (allowed / "garbage.png").write_bytes(b"this is not an image" * 10)
    return d


@pytest.fixture(scope="module")
def web(media_dir):
    """python3 -m http.server equivalent on 127.0.0.1 serving the allowed dir."""
    handler = functools.partial(Files, directory=str(media_dir / "allowed"))
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


@pytest.fixture(scope="module")
def mserver(media_dir):
    s = Server("--served-model-name", "tiny", "--max-model-len", "4096", "--max-num-seqs", "4",
               "--allowed-local-media-path", str(media_dir / "allowed"), "--allow-remote-media",
               "--media-max-bytes", str(MAX_BYTES), "--media-timeout", "5",
               "--max-num-batched-tokens", "64")   # image blocks of 256 > the step budget
    yield s
    s.stop()


@pytest.fixture(scope="module")
def plain_server():
    """No local paths, no remote fetching."""
    s = Server("--served-model-name", "tiny", "--max-model-len", "4096", "--max-num-seqs", "2")
    yield s
    s.stop()


def client(s):
    return openai.OpenAI(base_url=s.url + "/v1", api_key="EMPTY", max_retries=0, timeout=300)


def chat(s, messages, max_tokens=8, **kw):
    return client(s).chat.completions.create(model="tiny", messages=messages, max_tokens=max_tokens, temperature=0,
                                             logprobs=True, **kw)


def cli(*media, max_tokens=8, text=TEXT, extra=()):
    """g4 run --ids with media flags in the given order: ("--image", path), ...
    Returns (generated ids, prompt token count)."""
    args = [G4, "run", MODEL, "--prompt", text, "--max-tokens", str(max_tokens), "--threads", "1", "--ids", *extra]
    for flag, path in media:
        args += [flag, path]
    p = subprocess.run(args, capture_output=True, timeout=300)
    err = p.stderr.decode(errors="replace")
    assert p.returncode == 0, err
    n_prompt = int(re.search(r"prompt (\d+) tokens", err).group(1))
    return json.loads(p.stdout), n_prompt


@functools.lru_cache(None)
def pieces():
    with open(os.path.join(MODEL, "tokenizer.json"), encoding="utf-8") as f:
        t = json.load(f)
    m = {i: p for p, i in t["model"]["vocab"].items()}
    m.update({a["id"]: a["content"] for a in t["added_tokens"]})
    return m


def token_bytes(i):
    """The bytes of one token alone (what the server reports in logprobs[].bytes)."""
    p = pieces()[i]
    if re.fullmatch(r"<0x[0-9A-Fa-f]{2}>", p):
        b = int(p[3:5], 16)
        return [b] if b < 0x80 else list("\ufffd".encode())   # a lone non-ASCII byte decodes to U+FFFD
    return list(p.replace("\u2581", " ").encode())


def same_as_cli(s, r, media, **kw):
    """The server's greedy answer r (requested with logprobs) == `g4 run --ids` with the
    same media: same prompt length and the same generated tokens (by their bytes)."""
    ids, n_prompt = cli(*media, **kw)
    assert r.usage.prompt_tokens == n_prompt
    got = [e.bytes for e in r.choices[0].logprobs.content]
    assert got == [token_bytes(i) for i in ids]


def bad(s, messages, needle, where="messages[0].content[0]", status=400, **kw):
    with pytest.raises(openai.BadRequestError) as ei:
        chat(s, messages, max_tokens=2, **kw)
    e = ei.value
    assert e.status_code == status
    body = e.body if isinstance(e.body, dict) else {}
    msg = body.get("message", str(e))
    assert where in msg, msg
    assert needle in msg, msg
    return msg


# ---- successful requests == the CLI ------------------------------------------

def test_image_png_data_url(mserver):
    r = chat(mserver, user(image_part(data_url(IMG_PNG, "image/png"))))
    same_as_cli(mserver, r, [("--image", IMG_PNG)])
    assert r.usage.prompt_tokens > 256


def test_image_jpeg_data_url_with_budget(mserver):
    for budget in (70, 140):
        r = chat(mserver, user(image_part(data_url(IMG_JPG, "image/jpeg"))),
                 extra_body={"mm_processor_kwargs": {"max_soft_tokens": budget}})
        same_as_cli(mserver, r, [("--image", IMG_JPG)], extra=("--image-tokens", str(budget)))
    # HF processor spelling: images_kwargs
    r2 = chat(mserver, user(image_part(data_url(IMG_JPG, "image/jpeg"))),
              extra_body={"mm_processor_kwargs": {"images_kwargs": {"max_soft_tokens": 70}}})
    same_as_cli(mserver, r2, [("--image", IMG_JPG)], extra=("--image-tokens", "70"))


def test_audio_input_audio(mserver):
    r = chat(mserver, user(audio_part(AUDIO)))
    same_as_cli(mserver, r, [("--audio", AUDIO)])
    flac = os.path.join(MEDIA, "audio", "tone_22k_mono.flac")
    r = chat(mserver, user(audio_part(flac, "flac")))
    same_as_cli(mserver, r, [("--audio", flac)])


@pytest.mark.skipif(not HAVE_FFMPEG, reason="the ffmpeg command is not installed")
def test_video_local_file(mserver, media_dir):
    path = str(media_dir / "allowed" / "clip.mp4")
    r = chat(mserver, user(video_part("file://" + path)), max_tokens=4)
    same_as_cli(mserver, r, [("--video", VIDEO)], max_tokens=4)
    r2 = chat(mserver, user(video_part(path)), max_tokens=4)      # a plain path works too
    assert r2.choices[0].message.content == r.choices[0].message.content


@pytest.mark.skipif(not HAVE_FFMPEG, reason="the ffmpeg command is not installed")
def test_mixture_in_one_prompt(mserver, media_dir):
    parts = [image_part(data_url(IMG_PNG2, "image/png")), audio_part(AUDIO),
             video_part("file://" + str(media_dir / "allowed" / "clip.mp4"))]
    r = chat(mserver, user(*parts), max_tokens=4, extra_body={"mm_processor_kwargs": {"max_soft_tokens": 70}})
    same_as_cli(mserver, r, [("--image", IMG_PNG2), ("--audio", AUDIO), ("--video", VIDEO)], max_tokens=4,
                extra=("--image-tokens", "70"))


def test_local_image_file_urls(mserver, media_dir):
    a = chat(mserver, user(image_part("file://" + str(media_dir / "allowed" / "img.png"))))
    b = chat(mserver, user(image_part("file://" + str(media_dir / "allowed" / "sub" / "img%202.png"))))
    c = chat(mserver, user(image_part("sub/img 2.png")))      # relative to the allowed directory
    want = chat(mserver, user(image_part(data_url(IMG_PNG, "image/png"))))
    for r in (a, b, c):
        assert r.choices[0].message.content == want.choices[0].message.content


def test_remote_fetch(mserver, web):
    r = chat(mserver, user(image_part(web + "/img.png")))
    same_as_cli(mserver, r, [("--image", IMG_PNG)])


def test_prefix_reuse_stops_at_media(mserver):
    """Prompts that differ only in the image share every id: the second request must
    not reuse the first one's KV past the placeholder (same output as a fresh CLI run)."""
    for img in (IMG_PNG, IMG_PNG2, IMG_PNG):
        r = chat(mserver, user(image_part(data_url(img, "image/png"))),
                 extra_body={"mm_processor_kwargs": {"max_soft_tokens": 70}})
        same_as_cli(mserver, r, [("--image", img)], extra=("--image-tokens", "70"))


def test_stream_and_n_with_media(mserver):
    msgs = user(image_part(data_url(IMG_PNG, "image/png")))
    want = chat(mserver, msgs).choices[0].message.content
    stream = client(mserver).chat.completions.create(model="tiny", messages=msgs, max_tokens=8, temperature=0,
                                                      stream=True, logprobs=True)
    got = "".join(ch.choices[0].delta.content or "" for ch in stream if ch.choices)
    assert got == want
    r = chat(mserver, msgs, n=2)
    assert [c.message.content for c in r.choices] == [want, want]


def test_concurrent_media_requests(mserver):
    import concurrent.futures as cf
    imgs = [IMG_PNG, IMG_PNG2, IMG_JPG, IMG_PNG2]
    kw = {"extra_body": {"mm_processor_kwargs": {"max_soft_tokens": 70}}}
    mime = {".png": "image/png", ".jpg": "image/jpeg"}
    seq = [chat(mserver, user(image_part(data_url(p, mime[p[-4:]]))), **kw).choices[0].message.content for p in imgs]
    with cf.ThreadPoolExecutor(4) as ex:
        par = list(ex.map(lambda p: chat(mserver, user(image_part(data_url(p, mime[p[-4:]]))), **kw)
                          .choices[0].message.content, imgs))
    assert par == seq


# ---- errors: 400 naming the part ---------------------------------------------

def test_error_undecodable(mserver):
    bad(mserver, user(image_part("data:image/png;base64," + base64.b64encode(b"not an image at all").decode())),
        "unrecognized format", where="messages[0].content[0].image_url")
    bad(mserver, user(image_part("data:image/png;base64,@@@")), "base64", where="messages[0].content[0].image_url")
    msgs = [{"role": "user", "content": [{"type": "text", "text": "a"}, audio_part(IMG_PNG)]}]
    bad(mserver, msgs, "audio", where="messages[0].content[1].input_audio")
    trunc = open(IMG_PNG, "rb").read()[:200]
    bad(mserver, user(image_part("data:image/png;base64," + base64.b64encode(trunc).decode())), "PNG",
        where="messages[0].content[0].image_url")


def test_error_oversized(mserver, media_dir):
    big = base64.b64encode(os.urandom(MAX_BYTES + 10)).decode()
    bad(mserver, user(image_part("data:image/png;base64," + big)), "--media-max-bytes")
    bad(mserver, user({"type": "input_audio", "input_audio": {"data": big, "format": "wav"}}), "--media-max-bytes",
        where="messages[0].content[0].input_audio")
    bad(mserver, user(image_part(str(media_dir / "allowed" / "big.bin"))), "--media-max-bytes")


def test_error_unsupported(mserver):
    bad(mserver, user({"type": "input_audio", "input_audio": {"data": b64(AUDIO), "format": "xyz"}}),
        "not supported", where="messages[0].content[0].input_audio")
    bad(mserver, user({"type": "input_image", "input_image": {"url": "x"}}), "not supported")
    bad(mserver, user(image_part("ftp://127.0.0.1/x.png")), "unsupported URL scheme")
    bad(mserver, user(image_part(data_url(IMG_JPG, "image/jpeg"))), "max_soft_tokens", where="",
        extra_body={"mm_processor_kwargs": {"max_soft_tokens": 100}})
    # too elongated for the tiny model's position table at the default budget
    bad(mserver, user(image_part(data_url(IMG_PNG2, "image/png"))), "position table", where="image 1")


def test_error_missing_file(mserver, media_dir):
    bad(mserver, user(image_part("file://" + str(media_dir / "allowed" / "nope.png"))), "file not found")
    bad(mserver, user(image_part(str(media_dir / "allowed" / "garbage.png"))), "unrecognized format")


def test_error_path_not_allowed(mserver, media_dir):
    allowed = media_dir / "allowed"
    for url in ("file://" + str(media_dir / "secret.png"),            # outside
                "file://" + str(allowed) + "/../secret.png",            # .. escape
                str(allowed / "link.png"),                              # symlink escape
                "../secret.png",                                        # relative escape
                "/etc/passwd"):
        bad(mserver, user(image_part(url)), "outside --allowed-local-media-path")


def test_error_local_and_remote_disabled(plain_server, web):
    bad(plain_server, user(image_part(IMG_PNG)), "--allowed-local-media-path")
    bad(plain_server, user(image_part("file://" + IMG_PNG)), "--allowed-local-media-path")
    bad(plain_server, user(image_part(web + "/img.png")), "--allow-remote-media")
    bad(plain_server, user(video_part(web + "/clip.mp4")), "--allow-remote-media",
        where="messages[0].content[0].video_url")
    # data: URLs need no flag
    r = chat(plain_server, user(image_part(data_url(IMG_PNG, "image/png"))), max_tokens=2)
    assert r.usage.prompt_tokens > 256


def test_error_remote_failed_and_oversized(mserver, web):
    bad(mserver, user(image_part(web + "/missing.png")), "failed")
    bad(mserver, user(image_part(web + "/big.bin")), "--media-max-bytes")
    bad(mserver, user(image_part(web + "/garbage.png")), "unrecognized format")
    bad(mserver, user(image_part("http://127.0.0.1:1/x.png")), "failed")


def test_error_no_crash_and_server_alive(mserver):
    assert chat(mserver, [{"role": "user", "content": "still there?"}], max_tokens=2).choices
