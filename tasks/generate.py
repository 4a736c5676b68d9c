"""Stage `generate` (per motion): videos for this motion's eval prompts with the tuned UNet.

For each prompt and seed: a first frame (model.first_frame: the world's renderer,
the base model, SD-XL, or a user image), then LampPipeline (shared noise, DDIM
with frame 0 pinned, AdaIN + histogram matching). A model tuned without
first-frame conditioning (train.first_frame_conditioning: false, the ablation) is
sampled without a first frame too: every frame from noise and the prompt, and
index.csv's first_frame column is empty (no first-frame fidelity). Writes
outputs/videos/<motion>/<prompt_index:02d>_s<seed>.{mp4,gif,png}, index.csv
(GENERATED_COLUMNS) and contact_sheet.png. `untuned=True` skips the tuned
weights: the inflated base UNet as is, the baseline the motion scores compare to.
"""
from __future__ import annotations

import csv
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from diffusers import DDIMScheduler
from PIL import Image
from tqdm.auto import tqdm

from lamp_model import first_frame as ff
from lamp_model import world
from lamp_model.config import Params
from lamp_model.io import atomic_write
from lamp_model.loading import load_sd_components, load_sdxl, resolve_device, resolve_dtype
from lamp_model.pipeline import LampPipeline
from lamp_model.unet import LampUNet, MotionCheckpointError
from lamp_model.video import make_contact_sheet, write_gif, write_mp4
from tasks.common import GENERATED_COLUMNS, Layout, StageError, model_source, read_eval_prompts, stage_main

log = logging.getLogger("lamp")


def first_frames(params: Params, root: Path, comps, prompts: list[str], device,
                 image: str | Path | None = None) -> dict[tuple[int, int], np.ndarray]:
    """(prompt index, seed) -> uint8 first frame [h, w, 3], from the source params.model.first_frame names.

    Must run before the base UNet is inflated (the "base" source uses the plain 2D UNet).
    """
    m, h, w, seeds = params.model, params.clips.height, params.clips.width, params.sample.seeds
    if m.first_frame == "world":
        return {(i, s): world.render_first_frame(p, height=h, width=w, seed=s)
                for i, p in enumerate(prompts) for s in seeds}
    if m.first_frame == "image":
        if image is None:
            raise StageError("params.yaml: model.first_frame = image needs a user image; pass one "
                             "(generate.run(..., image=PATH)) or pick world, base or sdxl")
        try:
            frame = ff.from_image(image, h, w)
        except (FileNotFoundError, ValueError) as e:
            raise StageError(str(e)) from None
        return {(i, s): frame for i in range(len(prompts)) for s in seeds}
    if m.first_frame == "base":
        pipe = comps.pipeline()
    else:  # sdxl
        pipe = load_sdxl(model_source(root, m.sdxl), device, resolve_dtype(m.dtype) if device.type == "cuda"
                         else torch.float32)
    pipe.set_progress_bar_config(disable=True)
    render = ff.from_base_model if m.first_frame == "base" else ff.from_sdxl
    out = {}
    for s in seeds:
        images = render(pipe, prompts, h, w, seed=s, steps=m.first_frame_steps, guidance=m.first_frame_guidance)
        out.update({(i, s): img for i, img in enumerate(images)})
    return out


@dataclass
class GeneratedVideo:
    """One generated video of a prompt and seed; first_frame: the image it started from, if any."""

    prompt_index: int
    seed: int
    prompt: str
    frames: np.ndarray
    first_frame: np.ndarray | None = None


def save_videos(out: Path, videos: list[GeneratedVideo], fps: int) -> list[dict]:
    """The generated-videos layout every scorer reads: <prompt_index:02d>_s<seed>.{mp4,gif[,png]},
    index.csv (GENERATED_COLUMNS) and contact_sheet.png in `out`; returns the index rows."""
    rows = []
    for v in videos:
        stem = f"{v.prompt_index:02d}_s{v.seed}"
        write_mp4(v.frames, out / f"{stem}.mp4", fps=fps)
        write_gif(v.frames, out / f"{stem}.gif", fps=fps)
        if v.first_frame is not None:
            with atomic_write(out / f"{stem}.png") as tmp:
                Image.fromarray(v.first_frame).save(tmp)
        rows.append({"prompt_index": v.prompt_index, "seed": v.seed, "prompt": v.prompt, "mp4": f"{stem}.mp4",
                     "gif": f"{stem}.gif", "first_frame": f"{stem}.png" if v.first_frame is not None else ""})
    with atomic_write(out / "index.csv") as tmp:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=GENERATED_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
    labels = [f"{v.prompt_index:02d} s{v.seed}: {v.prompt}" for v in videos]
    with atomic_write(out / "contact_sheet.png") as tmp:
        Image.fromarray(make_contact_sheet([v.frames for v in videos], labels)).save(tmp)
    return rows


def every_motion_prompts(params: Params, layout: Layout) -> dict[str, list[str]]:
    """The test prompts of every motion of params.yaml; one clear line when a motion has none."""
    prompts_file = layout.eval_prompts_file(params)
    prompts = read_eval_prompts(prompts_file, params.motions)
    missing = [m for m in params.motions if not prompts.get(m)]
    if missing:
        raise StageError(f"{prompts_file}: no prompts for motions {missing}; add rows '<motion>,<prompt>'")
    return prompts


def generate_every_motion(params: Params, layout: Layout, method: str,
                          make_video: Callable[[str, int], np.ndarray]) -> dict:
    """A text-only method's videos: every motion's test prompts x sample.seeds through
    make_video(prompt, seed) -> uint8 frames, saved in `generate`'s layout under the method's folder.
    Returns the stage result's videos / outputs / seconds_per_video."""
    prompts = every_motion_prompts(params, layout)
    t0, outputs, n = time.perf_counter(), [], 0
    for motion in params.motions:
        videos = [GeneratedVideo(i, seed, prompt, make_video(prompt, seed))
                  for i, prompt in enumerate(prompts[motion]) for seed in params.sample.seeds]
        out = layout.generated(motion, method)
        n += len(save_videos(out, videos, params.sample.fps))
        outputs.append(str(out))
        log.info("%s %s: %d videos in %s", method, motion, len(videos), out)
    return {"videos": n, "outputs": outputs, "seconds_per_video": (time.perf_counter() - t0) / n}


def run(params: Params, root: Path, motion: str | None = None, run_dir: str = "", untuned: bool = False,
        image: str | Path | None = None) -> dict:
    layout = Layout(Path(root), run_dir)
    prompts_file = layout.eval_prompts_file(params)
    prompts = read_eval_prompts(prompts_file, params.motions).get(motion, [])
    if not prompts:
        raise StageError(f"{prompts_file}: no prompts for motion '{motion}'; add rows '{motion},<prompt>'")
    device = resolve_device(params.model.device)
    dtype = resolve_dtype(params.model.dtype) if device.type == "cuda" else torch.float32  # no fp16 on CPU
    source = model_source(layout.root, params.model.base)
    comps = load_sd_components(source, device, dtype)
    conditioned = params.train.first_frame_conditioning
    firsts = first_frames(params, layout.root, comps, prompts, device, image) if conditioned else None

    unet = LampUNet.from_unet2d(comps.unet, **params.lamp.model_dump())
    weights = layout.motion_model(motion) / "motion.safetensors"
    if not untuned:
        if not weights.is_file():
            raise StageError(f"{weights}: no tuned motion; run the tune stage first: `dvc repro tune@{motion}` "
                             f"or `python -m tasks.tune --motion {motion}`")
        try:
            unet.load_motion(weights)
        except MotionCheckpointError as e:
            raise StageError(f"{e}; rerun the tune stage with the current params") from None
    pipe = LampPipeline(comps.vae, comps.text_encoder, comps.tokenizer, unet,
                        DDIMScheduler.from_config(comps.scheduler.config))
    s, c = params.sample, params.clips
    out = layout.generated(motion)
    t0 = time.perf_counter()
    jobs = [(i, p, seed) for i, p in enumerate(prompts) for seed in s.seeds]
    log.info("generate %s%s: %d videos (%d frames, %dx%d, %d DDIM steps) on %s", motion,
             " (untuned)" if untuned else "", len(jobs), c.frames, c.height, c.width, s.ddim_steps, device)
    batches = [jobs[k:k + s.batch_size] for k in range(0, len(jobs), s.batch_size)]
    results = []
    for batch in tqdm(batches, desc=f"generate {motion}", unit="batch"):
        # One generator per video: a video is the same whether generated alone or in a batch.
        frames_batch = pipe([p for _, p, _ in batch],
                            [firsts[(i, seed)] for i, _, seed in batch] if conditioned else None,
                            num_frames=c.frames, height=c.height, width=c.width,
                            num_inference_steps=s.ddim_steps, guidance_scale=s.guidance_scale, alpha=s.alpha,
                            adain=s.adain, histogram_matching=s.histogram_matching,
                            generator=[torch.Generator().manual_seed(seed) for _, _, seed in batch],
                            progress=False).frames
        for (i, prompt, seed), frames in zip(batch, frames_batch):
            results.append(GeneratedVideo(i, seed, prompt, frames, firsts[(i, seed)] if conditioned else None))
    seconds = time.perf_counter() - t0
    rows = save_videos(out, results, s.fps)
    log.info("generate %s: wrote %d videos to %s (%.1f s per video)", motion, len(rows), out, seconds / len(rows))
    return {"motion": motion, "untuned": untuned, "videos": len(rows),
            "first_frame": params.model.first_frame if conditioned else "none (ablation)",
            "outputs": [str(out / r["mp4"]) for r in rows] + [str(out / "index.csv"), str(out / "contact_sheet.png")],
            "metrics": {"seconds_per_video": seconds / len(rows)},
            "artifacts": [str(out / "contact_sheet.png")] + [str(out / r["gif"]) for r in rows[:2]]}


if __name__ == "__main__":
    stage_main(run, per_motion=True)
