#!/usr/bin/env python3
"""make_media_fixtures.py - media inputs and Hugging Face preprocessing references for tests/test_media.c.

Writes tests/fixtures/media/ (small on purpose, < 3 MB):

  images/<name>.<ext>     22 synthetic images: JPEG (RGB, grey, EXIF orientations 2,3,5,6,8), PNG (RGB,
                          RGBA, palette + tRNS, grey, grey+alpha, extreme aspect ratios), GIF (palette with
                          transparency), WebP (lossless RGBA, lossy RGB), BMP (24-bit, 8-bit palette,
                          32-bit); sizes from 2x2000 to 640x480
  audio/<name>.<ext>      WAV / FLAC / OGG Vorbis / OGG Opus / MP3 at 8000, 22050, 44100, 48000 Hz, mono
                          and stereo, 0.3-0.7 s of tones and noise
  video/clip.mp4          3 s, 12 fps (36 frames), 96x64, ffmpeg testsrc2 (mpeg4)
  ref/...                 what transformers' processors produce (see below)
  manifest.json           one entry per case: file, kind, reference file names, expected counts

References (transformers Gemma4UnifiedImageProcessor / Gemma4UnifiedVideoProcessor (torchvision backend)
and Gemma4UnifiedAudioFeatureExtractor):
  image, real geometry (patch 16, merge 3, budget B): tokens, target size, positions (npy int32 [n,2]) and
    for six images the resized image as a PNG rebuilt from pixel_values (pixel = png / 255 exactly: the
    processor's values are uint8 / 255 after the uint8 resize), for the others the per-patch, per-channel
    sums of those uint8 values (npy int32 [n,3]);
  image, tiny geometry (patch 2, merge 2, budget 70, the tiny test models'): pixel_values npy float32
    [n, 48] and positions, compared value by value;
  audio: the waveform loaded the way librosa does (soundfile float32 -> channel mean -> soxr 'HQ' to
    16 kHz) as npy float32, and the token count ceil(n / 640);
  video: frames decoded by the ffmpeg command (rgb24, the decoder g4 runs) with metadata from ffprobe,
    then the video processor (32 frames, budget 70): frame indices, timestamps, token counts; tiny geometry
    pixel values npy [frames * n, 48].
Images are opened with PIL and ImageOps.exif_transpose (transformers.image_utils.load_image does the
same) but NOT converted to RGB before the processor, so its convert_to_rgb composites alpha over white.
Usage: python3 tools/make_media_fixtures.py   (needs transformers, torch, torchvision, Pillow, soundfile, soxr, ffmpeg)
"""
import io
import json
import math
import os
import shutil
import subprocess
import sys

import numpy as np
import torch
from PIL import Image, ImageOps

FULL_PNG = {"large_640x480", "grey_64x64", "rgba_40x40", "exif6_80x40", "tall_2x2000", "palette_45x30"}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "media")


def smooth_rgb(w, h, seed, alpha=False, noise=3):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    ch = []
    for c in range(4 if alpha else 3):
        fx, fy, ph = rng.uniform(0.5, 3.0), rng.uniform(0.5, 3.0), rng.uniform(0, 6.28)
        v = 127.5 + 110 * np.sin(2 * np.pi * (fx * x / max(w, 1) + fy * y / max(h, 1)) + ph)
        v += rng.normal(0, noise, size=v.shape)
        ch.append(np.clip(v, 0, 255))
    a = np.stack(ch, -1).round().astype(np.uint8)
    if alpha:   # a few fully transparent and opaque regions too
        a[: h // 4, :, 3] = 0
        a[-h // 5:, :, 3] = 255
    return a


def exif_bytes(orientation):
    ex = Image.Exif()
    ex[0x0112] = orientation
    return ex.tobytes()


def make_images(d):
    os.makedirs(d, exist_ok=True)
    items = []

    def save(name, im, fmt, budget=70, **kw):
        p = os.path.join(d, name)
        im.save(p, fmt, **kw)
        items.append((name, budget))

    save("rgb_64x48.jpg", Image.fromarray(smooth_rgb(64, 48, 1)), "JPEG", quality=90)
    save("rgb_200x100.jpg", Image.fromarray(smooth_rgb(200, 100, 2, noise=12)), "JPEG", quality=85, budget=70)
    save("wide_400x60.jpg", Image.fromarray(smooth_rgb(400, 60, 3, noise=12)), "JPEG", quality=80, budget=140)
    save("grey_50x70.jpg", Image.fromarray(smooth_rgb(50, 70, 4)[..., 0]), "JPEG", quality=90)
    for o, (w, h) in zip([2, 3, 5, 6, 8], [(40, 30), (33, 21), (48, 20), (80, 40), (30, 64)]):
        save(f"exif{o}_{w}x{h}.jpg", Image.fromarray(smooth_rgb(w, h, 10 + o)), "JPEG", quality=90, exif=exif_bytes(o))
    save("rgb_33x17.png", Image.fromarray(smooth_rgb(33, 17, 5)), "PNG", budget=70)
    save("rgba_40x40.png", Image.fromarray(smooth_rgb(40, 40, 6, alpha=True), "RGBA"), "PNG")
    pal = Image.fromarray(smooth_rgb(30, 50, 7)).quantize(colors=16)
    save("palette_trns_30x50.png", pal, "PNG", transparency=3)
    save("grey_64x64.png", Image.fromarray(smooth_rgb(64, 64, 8, noise=0)[..., 1]), "PNG", budget=280)
    la = Image.fromarray(smooth_rgb(20, 30, 9, alpha=True)[..., 2:4], "LA")
    save("grey_alpha_20x30.png", la, "PNG")
    save("tall_2x2000.png", Image.fromarray(smooth_rgb(2, 2000, 10, noise=0)), "PNG", budget=70)
    save("tiny_5x5.png", Image.fromarray(smooth_rgb(5, 5, 11)), "PNG", budget=140)
    save("large_640x480.jpg", Image.fromarray(smooth_rgb(640, 480, 12, noise=10)), "JPEG", quality=70, budget=70)
    save("mid_300x500.png", Image.fromarray(smooth_rgb(300, 500, 20, noise=0)), "PNG", budget=560)
    save("exact_40x28.png", Image.fromarray(smooth_rgb(40, 28, 13)), "PNG", budget=70)
    gif = Image.fromarray(smooth_rgb(45, 30, 14)).quantize(colors=32)
    save("palette_45x30.gif", gif, "GIF", transparency=5)
    save("lossless_60x40.webp", Image.fromarray(smooth_rgb(60, 40, 15, alpha=True), "RGBA"), "WEBP", lossless=True)
    save("lossy_50x50.webp", Image.fromarray(smooth_rgb(50, 50, 16)), "WEBP", quality=80)
    save("rgb24_37x23.bmp", Image.fromarray(smooth_rgb(37, 23, 17)), "BMP")
    save("pal8_24x24.bmp", Image.fromarray(smooth_rgb(24, 24, 18)).quantize(colors=64), "BMP")
    save("rgbx32_31x19.bmp", Image.fromarray(smooth_rgb(31, 19, 19, alpha=True), "RGBA"), "BMP")
    return items


def image_processor(patch, k, budget):
    from transformers.models.gemma4_unified.image_processing_gemma4_unified import Gemma4UnifiedImageProcessor
    return Gemma4UnifiedImageProcessor(patch_size=patch, pooling_kernel_size=k, max_soft_tokens=budget)


def rebuild_png(pv, pos, m):
    """pixel_values [n, m*m*3] + positions -> uint8 image (exact: values are u8/255 in float32)."""
    gx = int(pos[:, 0].max()) + 1
    gy = int(pos[:, 1].max()) + 1
    img = np.zeros((gy * m, gx * m, 3), np.uint8)
    u8 = np.rint(pv.astype(np.float64) * 255.0)
    assert np.abs(u8 / 255.0 - pv.astype(np.float64)).max() < 1e-6
    for i in range(pv.shape[0]):
        x, y = int(pos[i, 0]), int(pos[i, 1])
        img[y * m:(y + 1) * m, x * m:(x + 1) * m] = u8[i].reshape(m, m, 3).astype(np.uint8)
    return img


def ref_images(items, d, rd):
    cases = []
    for name, budget in items:
        im = Image.open(os.path.join(d, name))
        im.load()
        im = ImageOps.exif_transpose(im)
        w, h = im.size
        case = {"file": "images/" + name, "kind": "image", "width": w, "height": h}
        base = os.path.splitext(name)[0]
        # real geometry
        out = image_processor(16, 3, budget)(images=[im], return_tensors="pt")
        n = int(out["num_soft_tokens_per_image"][0])
        pv = out["pixel_values"][0, :n].numpy()
        pos = out["image_position_ids"][0, :n].numpy().astype(np.int32)
        png = rebuild_png(pv, pos, 48)
        np.save(os.path.join(rd, base + "_real_pos.npy"), pos)
        case["real"] = {"budget": budget, "tokens": n, "th": png.shape[0], "tw": png.shape[1],
                        "pos": "ref/" + base + "_real_pos.npy"}
        if base in FULL_PNG:    # the whole resized image
            Image.fromarray(png).save(os.path.join(rd, base + "_real.png"), optimize=True)
            case["real"]["png"] = "ref/" + base + "_real.png"
        else:                   # per patch and channel: sum of the uint8 values (exact integers)
            u8 = np.rint(pv.astype(np.float64) * 255.0).reshape(n, 48 * 48, 3)
            np.save(os.path.join(rd, base + "_real_sums.npy"), u8.sum(1).astype(np.int32))
            case["real"]["sums"] = "ref/" + base + "_real_sums.npy"
        # tiny geometry
        out = image_processor(2, 2, 70)(images=[im], return_tensors="pt")
        n = int(out["num_soft_tokens_per_image"][0])
        np.save(os.path.join(rd, base + "_tiny_pix.npy"), out["pixel_values"][0, :n].numpy().astype(np.float32))
        np.save(os.path.join(rd, base + "_tiny_pos.npy"), out["image_position_ids"][0, :n].numpy().astype(np.int32))
        case["tiny"] = {"budget": 70, "tokens": n, "pix": "ref/" + base + "_tiny_pix.npy",
                        "pos": "ref/" + base + "_tiny_pos.npy"}
        cases.append(case)
    return cases


def load_audio_like_librosa(path):
    import soundfile as sf
    import soxr
    x, sr = sf.read(path, dtype="float32", always_2d=True)
    x = np.mean(x, axis=1) if x.shape[1] > 1 else x[:, 0]
    if sr != 16000:
        x = soxr.resample(x, sr, 16000, quality="HQ")
    return x.astype(np.float32), sr


def make_audio(d, rd):
    import soundfile as sf
    os.makedirs(d, exist_ok=True)
    cases = []
    specs = [  # name, rate, channels, format, subtype, seconds
        ("tone_8k_mono.wav", 8000, 1, "WAV", "PCM_16", 0.5),
        ("tone_8k_stereo.flac", 8000, 2, "FLAC", "PCM_16", 0.4),
        ("tone_22k_mono.flac", 22050, 1, "FLAC", "PCM_24", 0.5),
        ("tone_22k_stereo.wav", 22050, 2, "WAV", "FLOAT", 0.3),
        ("tone_44k_mono.ogg", 44100, 1, "OGG", "VORBIS", 0.5),
        ("tone_44k_stereo.wav", 44100, 2, "WAV", "PCM_16", 0.4),
        ("tone_48k_mono.wav", 48000, 1, "WAV", "PCM_24", 0.3),
        ("tone_48k_stereo.ogg", 48000, 2, "OGG", "VORBIS", 0.5),
        ("tone_44k_stereo.mp3", 44100, 2, "MP3", "MPEG_LAYER_III", 0.6),
        ("tone_48k_mono.opus", 48000, 1, "OGG", "OPUS", 0.5),
        ("tone_16k_mono.wav", 16000, 1, "WAV", "PCM_16", 0.7),
    ]
    rng = np.random.default_rng(7)
    for name, sr, chn, fmt, sub, secs in specs:
        t = np.arange(int(sr * secs)) / sr
        sig = []
        for c in range(chn):
            f0 = 220.0 * (c + 1) + 37 * len(name)
            s = 0.4 * np.sin(2 * np.pi * f0 * t) + 0.2 * np.sin(2 * np.pi * 3.1 * f0 * t) + 0.05 * rng.normal(size=t.size)
            s *= np.minimum(1, 10 * t)            # short fade-in
            sig.append(s)
        x = np.stack(sig, -1).astype(np.float32)
        sf.write(os.path.join(d, name), x, sr, format=fmt, subtype=sub)
        y, sr2 = load_audio_like_librosa(os.path.join(d, name))
        base = os.path.splitext(name)[0] + "_" + os.path.splitext(name)[1][1:]
        np.save(os.path.join(rd, base + "_16k.npy"), y)
        cases.append({"file": "audio/" + name, "kind": "audio", "rate": sr, "channels": chn,
                      "samples16k": int(y.size), "tokens": int(math.ceil(y.size / 640)),
                      "wave": "ref/" + base + "_16k.npy"})
    return cases


def ffmpeg_frames(path):
    pr = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                         "stream=width,height,avg_frame_rate,nb_frames", "-of", "json", path],
                        check=True, capture_output=True, text=True)
    st = json.loads(pr.stdout)["streams"][0]
    w, h = int(st["width"]), int(st["height"])
    a, b = st["avg_frame_rate"].split("/")
    fps = float(a) / float(b)
    raw = subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-noautorotate", "-i", path, "-map", "0:v:0",
                          "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"],
                         check=True, capture_output=True).stdout
    frames = np.frombuffer(raw, np.uint8).reshape(-1, h, w, 3)
    assert frames.shape[0] == int(st["nb_frames"]), (frames.shape, st)
    return frames, fps


def make_video(d, rd):
    from transformers.models.gemma4_unified.processing_gemma4_unified import Gemma4UnifiedProcessor
    from transformers.models.gemma4_unified.video_processing_gemma4_unified import Gemma4UnifiedVideoProcessor
    from transformers.video_utils import VideoMetadata
    os.makedirs(d, exist_ok=True)
    p = os.path.join(d, "clip.mp4")
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=96x64:rate=12:duration=3",
                    "-c:v", "mpeg4", "-q:v", "6", "-pix_fmt", "yuv420p", p], check=True)
    frames, fps = ffmpeg_frames(p)
    cases = []
    for geo, (patch, k) in (("real", (16, 3)), ("tiny", (2, 2))):
        vp = Gemma4UnifiedVideoProcessor(patch_size=patch, pooling_kernel_size=k, max_soft_tokens=70, num_frames=32)
        md = VideoMetadata(total_num_frames=frames.shape[0], fps=fps, duration=frames.shape[0] / fps,
                           height=frames.shape[1], width=frames.shape[2])
        out = vp(videos=[frames], video_metadata=[md], return_metadata=True, return_tensors="pt")
        meta = out["video_metadata"][0]
        pv = out["pixel_values_videos"]            # [frames, max_patches, dim]
        pos = out["video_position_ids"]
        nf = int(out["num_frames_per_video"][0])
        n = int((pos[0] != -1).all(-1).sum())
        # the processor's own placeholder text (boi/eoi/video tokens as in the real tokenizer)
        dummy = type("P", (), {"boi_token": "<|image>", "eoi_token": "<image|>", "video_token": "<|video|>"})()
        text = Gemma4UnifiedProcessor.replace_video_token(
            dummy, {"num_soft_tokens_per_video": [n], "video_metadata": [meta]}, 0)
        case = {"file": "video/clip.mp4", "kind": "video", "geometry": geo, "patch": patch, "k": k, "budget": 70,
                "fps": fps, "total_frames": int(frames.shape[0]), "frames": nf, "tokens_per_frame": n,
                "indices": [int(i) for i in meta.frames_indices], "text": text}
        if geo == "tiny":
            np.save(os.path.join(rd, "clip_tiny_pix.npy"), pv[:, :n].reshape(nf * n, -1).numpy().astype(np.float32))
            np.save(os.path.join(rd, "clip_tiny_pos.npy"), pos[0, :n].numpy().astype(np.int32))
            case["pix"], case["pos"] = "ref/clip_tiny_pix.npy", "ref/clip_tiny_pos.npy"
        else:
            # first and last sampled frames as resized PNGs (the rest are checked through the tiny geometry)
            for j in (0, nf - 1):
                png = rebuild_png(pv[j, :n].numpy(), pos[j, :n].numpy(), patch * k)
                Image.fromarray(png).save(os.path.join(rd, f"clip_real_f{j}.png"), optimize=True)
            case["png_first"], case["png_last"] = "ref/clip_real_f0.png", f"ref/clip_real_f{nf - 1}.png"
        cases.append(case)
    return cases


def main():
    shutil.rmtree(OUT, ignore_errors=True)
    rd = os.path.join(OUT, "ref")
    os.makedirs(rd)
    cases = ref_images(make_images(os.path.join(OUT, "images")), os.path.join(OUT, "images"), rd)
    cases += make_audio(os.path.join(OUT, "audio"), rd)
    cases += make_video(os.path.join(OUT, "video"), rd)
    import soxr
    import torchvision
    import transformers
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump({"transformers": transformers.__version__, "torch": torch.__version__,
                   "torchvision": torchvision.__version__, "soxr": soxr.__version__, "cases": cases}, f, indent=1)
    total = sum(os.path.getsize(os.path.join(dp, fn)) for dp, _, fns in os.walk(OUT) for fn in fns)
    print(f"{len(cases)} cases, {total / 1e6:.2f} MB in {OUT}")


if __name__ == "__main__":
    sys.exit(main())
