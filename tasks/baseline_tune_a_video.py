"""Stage `baseline_tune_a_video` (per motion): the Tune-A-Video baseline of the paper's Table 1.

Tunes a TuneAVideoUNet (lamp_model/baselines/tune_a_video.py) on the clips of ONE training
video of the motion (drawn with baselines.tune_a_video.template_seed, recorded in
models/baselines/tune_a_video/<motion>/train_config.json), with LAMP's budget by default,
then samples the motion's test prompts x sample.seeds from the template's DDIM inversion
into outputs/baselines/tune_a_video/<motion>/ (the layout of `generate`).
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import torch

from lamp_model.baselines import tune_a_video as tav
from lamp_model.config import Params
from lamp_model.editing import ddim_invert
from lamp_model.io import atomic_write
from lamp_model.loading import load_sd_components, resolve_device
from lamp_model.training import TrainSettings, train_motion
from tasks.common import Layout, StageError, model_source, read_eval_prompts, stage_main
from tasks.generate import GeneratedVideo, save_videos
from tasks.tune import read_latents

log = logging.getLogger("lamp")
METHOD = "tune_a_video"


def template_clips(layout: Layout, motion: str, seed: int) -> tuple[str, list[int]]:
    """The template video's file name and the indices of its clips in the motion's cached latents."""
    manifest = layout.clips(motion) / "manifest.json"
    if not manifest.is_file():
        raise StageError(f"{manifest}: not found; run the extract stage for {motion}")
    files = [c["file"] for c in json.loads(manifest.read_text())["clips"]]
    template = tav.choose_template(sorted(set(files)), seed)
    return template, [i for i, f in enumerate(files) if f == template]


def run(params: Params, root: Path, motion: str | None = None, run_dir: str = "") -> dict:
    layout = Layout(Path(root), run_dir)  # run_dir: a benchmark run (benchmarks/baseline_runs.py)
    b, s, c = params.baselines.tune_a_video, params.sample, params.clips
    prompts_file = layout.eval_prompts_file(params)
    prompts = read_eval_prompts(prompts_file, params.motions).get(motion, [])
    if not prompts:
        raise StageError(f"{prompts_file}: no prompts for motion '{motion}'; add rows '{motion},<prompt>'")
    latents, captions, _ = read_latents(layout, motion)
    template, idx = template_clips(layout, motion, b.template_seed)
    clips = latents[idx]
    caption = captions[idx[0]] if params.data.use_captions else params.motion_prompt(motion)

    device = resolve_device(params.model.device)
    comps = load_sd_components(model_source(layout.root, params.model.base), device, torch.float32)
    pipe = tav.pipeline(comps)
    settings = TrainSettings(steps=b.steps, lr=b.lr, batch_size=b.batch_size, weight_decay=params.train.weight_decay,
                             grad_clip=params.train.grad_clip, seed=params.train.seed, first_frame_conditioning=False,
                             checkpoint_every=b.steps)
    log.info("tune-a-video %s: template %s (%d clips), %d steps of %d", motion, template, len(clips), b.steps,
             b.batch_size)
    t0 = time.perf_counter()
    losses = train_motion(pipe.unet, comps.train_scheduler(), clips, pipe.encode_prompt([caption]), settings)
    train_s = time.perf_counter() - t0

    models = layout.baseline_models / METHOD / motion
    pipe.unet.save_motion(models / "motion.safetensors", {"motion": motion, "template": template})
    with atomic_write(models / "train_config.json") as tmp:
        tmp.write_text(json.dumps({"motion": motion, "template": template, "template_clips": idx,
                                   "caption": caption, "settings": b.model_dump(),
                                   "loss_first_last": [losses[0], losses[-1]]}, indent=1) + "\n")

    t0 = time.perf_counter()
    template_latents = clips[:1].to(device)  # the template's first clip: the motion TAV reproduces
    inverted = None
    if not b.start_from_noise:
        inverted = ddim_invert(pipe, template_latents, s.ddim_steps, pin_first_frame=False)
    videos = [GeneratedVideo(i, seed, prompt, tav.sample(
                  pipe, prompt, template_latents, num_frames=c.frames, height=c.height, width=c.width,
                  num_inference_steps=s.ddim_steps, guidance_scale=s.guidance_scale, seed=seed,
                  start_from_noise=b.start_from_noise, inverted=inverted))
              for i, prompt in enumerate(prompts) for seed in s.seeds]
    out = layout.generated(motion, METHOD)
    rows = save_videos(out, videos, s.fps)
    sample_s = time.perf_counter() - t0
    log.info("tune-a-video %s: %d videos in %s (tuning %.0f s, sampling %.0f s)", motion, len(rows), out, train_s,
             sample_s)
    return {"motion": motion, "method": METHOD, "template": template, "videos": len(rows), "loss": losses,
            "outputs": [str(out), str(models)],
            "metrics": {"train_s": train_s, "seconds_per_video": sample_s / len(rows)}}


if __name__ == "__main__":
    stage_main(run, per_motion=True)
