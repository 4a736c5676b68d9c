"""Stage `baseline_animatediff`: the AnimateDiff baseline of the paper's Table 1.

With baselines.animatediff.adapter empty (the motion world), a motion adapter shaped for the
base UNet is trained on every motion's cached training clips with their captions (the
analogue of AnimateDiff's large-scale video pre-training; LAMP's total budget by default) and
saved to models/baselines/animatediff/; with real weights the adapter is loaded instead (the
paper's mm_sd_v14.ckpt, or a diffusers adapter id/folder; the source is recorded in
models/baselines/animatediff/adapter.json). Then every motion's test prompts x
sample.seeds from the prompt alone (no first frame, as in the paper) into
outputs/baselines/animatediff/<motion>/ (the layout of `generate`).
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import torch

from lamp_model.baselines import animatediff
from lamp_model.config import Params
from lamp_model.io import atomic_write
from lamp_model.loading import load_sd_components, resolve_device
from tasks.common import Layout, model_source, stage_main
from tasks.generate import every_motion_prompts, generate_every_motion
from tasks.tune import read_latents

log = logging.getLogger("lamp")
METHOD = "animatediff"


def train(params: Params, layout: Layout, comps, folder: Path) -> dict:
    """Train a motion adapter for the base UNet on every motion's cached clips and captions; save it to `folder`."""
    a = params.baselines.animatediff
    clips, texts = [], []
    for motion in params.motions:
        latents, captions, _ = read_latents(layout, motion)
        clips.append(latents)
        texts += captions if params.data.use_captions else [params.motion_prompt(motion)] * len(latents)
    clips = torch.cat(clips)
    # The pipeline builds the video UNet (2D weights copied + the adapter; comps.unet is not changed):
    # its own text encoding gives one embedding per clip, and its UNet is the one trained.
    pipe = animatediff.pipeline(comps, animatediff.build_adapter(comps.unet, a.heads, seed=a.seed))
    with torch.no_grad():
        embs = pipe.encode_prompt(texts, comps.unet.device, 1, False)[0].float()
    unet = pipe.unet.to(comps.unet.device)
    unet.freeze_unet2d_params()
    log.info("animatediff: training a motion adapter on %d clips of %d motions, %d steps of %d", len(clips),
             len(params.motions), a.steps, a.batch_size)
    t0 = time.perf_counter()
    losses = animatediff.train_adapter(unet, comps.train_scheduler(), clips, embs, a.steps, lr=a.lr,
                                       batch_size=a.batch_size, seed=a.seed, grad_clip=params.train.grad_clip,
                                       weight_decay=params.train.weight_decay)
    train_s = time.perf_counter() - t0
    animatediff.save_adapter(unet, folder)
    with atomic_write(folder / "train_config.json") as tmp:
        tmp.write_text(json.dumps({"settings": a.model_dump(), "clips": len(clips), "motions": params.motions,
                                   "loss_first_last": [losses[0], losses[-1]]}, indent=1) + "\n")
    return {"loss": losses, "metrics": {"train_s": train_s}}


def run(params: Params, root: Path, run_dir: str = "") -> dict:
    layout = Layout(Path(root), run_dir)  # run_dir: a benchmark run (benchmarks/baseline_runs.py)
    a, s, c = params.baselines.animatediff, params.sample, params.clips
    every_motion_prompts(params, layout)  # bad prompts stop here, not after training
    device = resolve_device(params.model.device)
    comps = load_sd_components(model_source(layout.root, params.model.base), device, torch.float32)
    folder = layout.baseline_models / METHOD
    result: dict = {"method": METHOD, "metrics": {}}

    if a.adapter:
        adapter = animatediff.load_adapter(model_source(layout.root, a.adapter), device)
        result["adapter"] = a.adapter
        with atomic_write(folder / "adapter.json") as tmp:  # the stage's record: loaded, not trained here
            tmp.write_text(json.dumps({"adapter": a.adapter, "trained_here": False}, indent=1) + "\n")
    else:
        result.update(train(params, layout, comps, folder))
        adapter = animatediff.load_adapter(str(folder), device)  # what was saved is what samples

    pipe = animatediff.pipeline(comps, adapter)
    pipe.set_progress_bar_config(disable=True)
    done = generate_every_motion(params, layout, METHOD, lambda prompt, seed: animatediff.generate(
        pipe, prompt, num_frames=c.frames, height=c.height, width=c.width, num_inference_steps=s.ddim_steps,
        guidance_scale=s.guidance_scale, seed=seed))
    result["metrics"]["seconds_per_video"] = done["seconds_per_video"]
    result.update(videos=done["videos"], outputs=done["outputs"] + [str(folder)])
    return result


if __name__ == "__main__":
    stage_main(run, per_motion=False)
