#!/usr/bin/env python3
"""make_mm_reference.py - Hugging Face references for g4's multimodal parity tests (tests/test_mm_parity.c).

For each model directory (tiny-a: BF16, tiny-a-nvfp4: NVFP4A16; both have vision + audio embedders)
this builds transformers' Gemma4UnifiedForConditionalGeneration in float64 exactly as
tools/make_reference.py does (same weights loader and dequantization), and runs four prompts with media
from tests/fixtures/media/:

  mm_0  one image (images/rgb_64x48.jpg)
  mm_1  one audio clip (audio/tone_44k_stereo.wav, first 0.1 s at 16 kHz)
  mm_2  one video (video/clip.mp4, 8 frames)
  mm_3  a mixture: image, audio, video and a second image (images/exif6_80x40.jpg) with text between

Preprocessing uses transformers' own processors with the tiny models' geometry (patch 2, merge 2, budget 70
per image and per video frame; audio frames of audio_embed_dim = 16 samples): images through PIL +
ImageOps.exif_transpose, video frames decoded by the ffmpeg command (rgb24) with ffprobe's metadata,
audio through soundfile -> channel mean -> soxr 'HQ' (librosa's loader). The prompt text holds one
placeholder per media (as the chat template writes them); the expansion is the processor's
replace_image_token / replace_audio_token / replace_video_token, tokenized with the model's tokenizer.json.

Writes <dir>/reference/:
  mm_K.json        {"text": prompt with single placeholders, "media": [[kind, fixture path]], options}
  mm_K_ids.npy     int32 [T]         expanded prompt ids
  mm_K_soft.npy    float32 [n_mm, d] soft tokens (rows of inputs_embeds at placeholder positions)
  mm_K_pos.npy     int32 [P]         text positions (not placeholders) whose logits are stored
  mm_K_logits.npy  float32 [P, V]    logits at those positions (float64 run)
  mm_K_greedy.npy  int32 [G]         greedy continuation (full recompute with the media each step)
Usage: python3 tools/make_mm_reference.py DIR [DIR ...] [--greedy 12]
"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np
import torch
from PIL import Image, ImageOps

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from make_reference import build_model  # noqa: E402
from make_media_fixtures import ffmpeg_frames, load_audio_like_librosa  # noqa: E402

MEDIA = os.path.join(os.path.dirname(HERE), "tests", "fixtures", "media")
OPTS = {"image_tokens": 70, "video_tokens": 70, "video_frames": 8, "audio_max_seconds": 0.1}
PROMPTS = [
    ("<bos><|turn>user\n\n\n<|image|>\n\nDescribe this image.<turn|>\n<|turn>model\n",
     [("image", "images/rgb_64x48.jpg")]),
    ("<bos><|turn>user\n\n\n<|audio|>\n\nWhat is this sound?<turn|>\n<|turn>model\n",
     [("audio", "audio/tone_44k_stereo.wav")]),
    ("<bos><|turn>user\n\n\n<|video|>\n\nWhat happens in the video?<turn|>\n<|turn>model\n",
     [("video", "video/clip.mp4")]),
    ("<bos><|turn>user\nFirst this:\n\n<|image|>\n\nthen listen\n\n<|audio|>\n\nand watch\n\n<|video|>\n\n"
     "and compare with\n\n<|image|>\n\nWhich is the odd one?<turn|>\n<|turn>model\n",
     [("image", "images/rgb_64x48.jpg"), ("audio", "audio/tone_44k_stereo.wav"), ("video", "video/clip.mp4"),
      ("image", "images/exif6_80x40.jpg")]),
]


class Toks:   # what the processor's replace_* methods read from self
    boi_token, eoi_token, image_token = "<|image>", "<image|>", "<|image|>"
    video_token, boa_token, eoa_token, audio_token = "<|video|>", "<|audio>", "<audio|>", "<|audio|>"


def preprocess(media, cfg):
    from transformers.models.gemma4_unified.feature_extraction_gemma4_unified import Gemma4UnifiedAudioFeatureExtractor
    from transformers.models.gemma4_unified.image_processing_gemma4_unified import Gemma4UnifiedImageProcessor
    from transformers.models.gemma4_unified.processing_gemma4_unified import Gemma4UnifiedProcessor
    from transformers.models.gemma4_unified.video_processing_gemma4_unified import Gemma4UnifiedVideoProcessor
    from transformers.video_utils import VideoMetadata
    vc = cfg.vision_config
    ip = Gemma4UnifiedImageProcessor(patch_size=vc.patch_size, pooling_kernel_size=vc.pooling_kernel_size,
                                     max_soft_tokens=OPTS["image_tokens"])
    vp = Gemma4UnifiedVideoProcessor(patch_size=vc.patch_size, pooling_kernel_size=vc.pooling_kernel_size,
                                     max_soft_tokens=OPTS["video_tokens"], num_frames=OPTS["video_frames"])
    F = cfg.audio_config.audio_embed_dim
    fe = Gemma4UnifiedAudioFeatureExtractor(feature_size=F, audio_samples_per_token=F)
    images, videos, metas, audios = [], [], [], []
    for kind, path in media:
        p = os.path.join(MEDIA, path)
        if kind == "image":
            im = Image.open(p)
            im.load()
            images.append(ImageOps.exif_transpose(im))
        elif kind == "video":
            fr, fps = ffmpeg_frames(p)
            videos.append(fr)
            metas.append(VideoMetadata(total_num_frames=fr.shape[0], fps=fps, duration=fr.shape[0] / fps,
                                       height=fr.shape[1], width=fr.shape[2]))
        else:
            y, _ = load_audio_like_librosa(p)
            audios.append(y[: int(np.ceil(OPTS["audio_max_seconds"] * 16000))])
    out, repl = {}, {"image": [], "video": [], "audio": []}
    if images:
        r = ip(images=images, return_tensors="pt")
        out["pixel_values"], out["image_position_ids"] = r["pixel_values"], r["image_position_ids"]
        repl["image"] = [Gemma4UnifiedProcessor.replace_image_token(Toks(), r, i) for i in range(len(images))]
    if videos:
        r = vp(videos=videos, video_metadata=metas, return_metadata=True, return_tensors="pt")
        out["pixel_values_videos"], out["video_position_ids"] = r["pixel_values_videos"], r["video_position_ids"]
        out["num_frames_per_video"] = torch.tensor(r["num_frames_per_video"])
        n_per = [int((r["video_position_ids"][sum(r["num_frames_per_video"][:i])] != -1).all(-1).sum())
                 for i in range(len(videos))]
        repl["video"] = [Gemma4UnifiedProcessor.replace_video_token(
            Toks(), {"num_soft_tokens_per_video": n_per, "video_metadata": r["video_metadata"]}, i)
            for i in range(len(videos))]
    if audios:
        r = fe(audios, return_tensors="pt")
        out["input_features"], out["input_features_mask"] = r["input_features"], r["input_features_mask"]
        repl["audio"] = [Gemma4UnifiedProcessor.replace_audio_token(Toks(), r, i) for i in range(len(audios))]
    return out, repl


def expand(text, media, repl):
    it = {k: iter(v) for k, v in repl.items()}
    ph = {"image": "<|image|>", "audio": "<|audio|>", "video": "<|video|>"}
    res, pos = "", 0
    for kind, _ in media:
        j = text.index(ph[kind], pos)
        res += text[pos:j] + next(it[kind])
        pos = j + len(ph[kind])
    return res + text[pos:]


@torch.no_grad()
def run(model, ids, inputs, cfg, capture=None):
    t = torch.tensor([ids], dtype=torch.long)
    tt = torch.zeros_like(t)
    tt[t == cfg.image_token_id] = 1
    tt[t == cfg.video_token_id] = 2
    tt[t == cfg.audio_token_id] = 3
    kw = {k: (v.double() if torch.is_floating_point(v) else v) for k, v in inputs.items()}
    return model(input_ids=t, mm_token_type_ids=tt, use_cache=False, **kw).logits[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dirs", nargs="+")
    ap.add_argument("--greedy", type=int, default=12)
    a = ap.parse_args()
    from tokenizers import Tokenizer
    for d in a.dirs:
        model, cfg = build_model(d)
        tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
        rdir = os.path.join(d, "reference")
        os.makedirs(rdir, exist_ok=True)
        captured = {}
        h = model.model.language_model.register_forward_pre_hook(
            lambda m, args, kw: captured.__setitem__("emb", kw["inputs_embeds"].detach().clone()), with_kwargs=True)
        for k, (text, media) in enumerate(PROMPTS):
            inputs, repl = preprocess(media, cfg)
            full = expand(text, media, repl)
            ids = tok.encode(full, add_special_tokens=False).ids
            logits = run(model, ids, inputs, cfg)
            ids_t = torch.tensor(ids)
            is_mm = (ids_t == cfg.image_token_id) | (ids_t == cfg.video_token_id) | (ids_t == cfg.audio_token_id)
            soft = captured["emb"][0][is_mm].float().numpy()
            tpos = torch.nonzero(~is_mm).flatten()
            np.save(os.path.join(rdir, f"mm_{k}_ids.npy"), np.array(ids, np.int32))
            np.save(os.path.join(rdir, f"mm_{k}_soft.npy"), soft.astype(np.float32))
            np.save(os.path.join(rdir, f"mm_{k}_pos.npy"), tpos.numpy().astype(np.int32))
            np.save(os.path.join(rdir, f"mm_{k}_logits.npy"), logits[tpos].float().numpy())
            seq, gen = list(ids), []
            for _ in range(a.greedy):
                nxt = int(torch.argmax(run(model, seq, inputs, cfg)[-1]))
                gen.append(nxt)
                seq.append(nxt)
            np.save(os.path.join(rdir, f"mm_{k}_greedy.npy"), np.array(gen, np.int32))
            json.dump({"text": text, "media": media, "options": OPTS, "n_ids": len(ids), "n_soft": int(soft.shape[0])},
                      open(os.path.join(rdir, f"mm_{k}.json"), "w"), indent=1)
            print(f"{d}: mm_{k}: {len(ids)} ids, {soft.shape[0]} soft tokens, greedy {gen}")
        h.remove()


if __name__ == "__main__":
    main()
