"""Which VAE does the motion world need? Reconstruction quality vs training cost.

LAMP keeps the VAE frozen, so motion that the VAE loses cannot be learned or
scored. This script trains VAE variants (latent channels, crops, steps) on the
world's training frames and reports, on held-out content (the validation split
by default: choices are made there, lamp_model/world.py "splits"):
  - PSNR of the round trip (encode mean -> decode);
  - motion accuracy of the round-tripped clips (the pipeline's motion classifier,
    `none` counted wrong, fit on the raw training clips; the raw clips' own score
    is printed as the ceiling);
  - training seconds per step on the device it ran on.
It renders the world directly (no ffmpeg, no stages), so it runs anywhere torch does.

    python -m benchmarks.world_vae --latents 4,8 --crops none,32x48 --steps 600,1500 --out vae.json
"""
from __future__ import annotations

import argparse
import itertools
import json
import time
from types import SimpleNamespace

import numpy as np
import torch
from diffusers import AutoencoderKL

from benchmarks.common import machine_info
from lamp_model import world
from lamp_model.base_training import _pixels, detail_map, train_vae
from lamp_model.config import load_params
from lamp_model.motion_score import MotionClassifier
from lamp_model.small import small_vae_config
from lamp_model.video import sample_clips

DETAIL_THRESHOLD = 0.3  # detail_map above this: objects and their edges ("object PSNR")


def render(n_train: int, height: int, width: int, seed: int = 0, split: str = "validation"):
    """Training frames (every frame of the world's videos, as `make_dataset` renders them), training
    clips (cut as the extract stage cuts them) and 6 held-out clips per motion from `split`; video and
    clip lengths from params.yaml (world.frames, clips.*)."""
    prm = load_params()
    n_frames, c = prm.world.frames, prm.clips
    frames, train_clips = [], {}
    for m in world.MOTIONS:
        train_clips[m] = []
        for _, _, v in world.training_videos(m, n_train, frames=n_frames, height=height, width=width, seed=seed):
            frames.append(v)
            train_clips[m] += [v[idx] for idx in sample_clips(n_frames, c.frames, c.stride, c.clips_per_video)]
    return np.concatenate(frames), train_clips, render_held_out(height, width, seed, split)


def render_held_out(height: int, width: int, seed: int = 0, split: str = "validation") -> dict[str, list[np.ndarray]]:
    """6 held-out clips per motion from `split` (clips.frames long), without rendering the training videos."""
    frames = load_params().clips.frames
    return {m: [world.render_video(m, content, frames=frames, height=height, width=width, seed=i, split=split)
                for i, content in enumerate(world.contents(m, split, 6, seed))]
            for m in world.MOTIONS}


@torch.no_grad()
def round_trip(vae: AutoencoderKL, clip: np.ndarray) -> np.ndarray:
    x = torch.from_numpy(clip).permute(0, 3, 1, 2).float().to(vae.device) / 127.5 - 1
    y = vae.decode(vae.encode(x).latent_dist.mean).sample.clamp(-1, 1)
    return ((y.permute(0, 2, 3, 1).cpu().numpy() + 1) * 127.5).round().astype(np.uint8)


def evaluate(vae, eval_clips, classifier: MotionClassifier) -> dict:
    labelled, sq, sq_detail = [], [], []
    for m, clips in eval_clips.items():
        for clip in clips:
            r = round_trip(vae, clip)
            err = (r.astype(np.float64) - clip) ** 2
            sq.append(err.mean())
            detail = detail_map(_pixels(clip))[:, 0].numpy()
            sq_detail.append(err[detail > DETAIL_THRESHOLD].mean())
            labelled.append((classifier.classify(r), m))
    per_motion = {m: float(np.mean([seen == m for seen, mm in labelled if mm == m])) for m in eval_clips}
    return {"psnr_db": float(10 * np.log10(255 ** 2 / np.mean(sq))),
            "object_psnr_db": float(10 * np.log10(255 ** 2 / np.mean(sq_detail))),
            "round_trip_motion_accuracy": float(np.mean([seen == m for seen, m in labelled])),
            "per_motion_accuracy": per_motion}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--latents", default="4,8", help="latent channels to try")
    p.add_argument("--channels", default="32,32,64,64", help="VAE block widths (4 blocks = 8x downsampling)")
    p.add_argument("--crops", default="none,32x48", help="training crop sizes (none = full frames)")
    p.add_argument("--steps", default="600,1500", help="training steps (each a fresh run)")
    p.add_argument("--detail-weights", default="0", help="train_vae detail_weight values to try")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--height", type=int, default=64)
    p.add_argument("--width", type=int, default=96)
    p.add_argument("--videos", type=int, default=load_params().world.videos_per_motion,
                   help="training videos per motion (world.videos_per_motion)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)

    frames, train_clips, eval_clips = render(args.videos, args.height, args.width)
    classifier = MotionClassifier().fit_clips(train_clips)
    raw = classifier.accuracy([(c, m) for m, cs in eval_clips.items() for c in cs])
    print(f"{len(frames)} training frames; raw held-out clips motion accuracy {raw:.3f}")
    channels = tuple(int(c) for c in args.channels.split(","))
    results = []
    for latent, crop, steps, detail in itertools.product(args.latents.split(","), args.crops.split(","),
                                                         args.steps.split(","), args.detail_weights.split(",")):
        crop_hw = None if crop == "none" else tuple(int(v) for v in crop.split("x"))
        torch.manual_seed(0)
        vae = AutoencoderKL(**small_vae_config(channels, int(latent))).to(args.device)
        t0 = time.perf_counter()
        losses = train_vae(SimpleNamespace(vae=vae), frames, steps=int(steps), batch_size=args.batch_size,
                           lr=args.lr, seed=0, crop=crop_hw, detail_weight=float(detail))
        seconds = time.perf_counter() - t0
        row = {"latent_channels": int(latent), "crop": crop, "steps": int(steps), "detail_weight": float(detail),
               "train_s": seconds, "s_per_step": seconds / int(steps), "final_loss": float(np.mean(losses[-50:])),
               **evaluate(vae, eval_clips, classifier)}
        results.append(row)
        print(f"latent {latent:>2} crop {crop:>6} steps {steps:>5} detail {detail}: PSNR {row['psnr_db']:.1f} dB "
              f"(objects {row['object_psnr_db']:.1f} dB), "
              f"round-trip motion acc {row['round_trip_motion_accuracy']:.3f}, {row['s_per_step'] * 1e3:.1f} ms/step",
              flush=True)
    out = {"machine": machine_info(torch.device(args.device)), "settings": vars(args),
           "raw_motion_accuracy": raw, "results": results}
    if args.out:
        with open(args.out, "w") as f:
            json.dump(out, f, indent=1)
        print("wrote", args.out)


if __name__ == "__main__":
    main()
