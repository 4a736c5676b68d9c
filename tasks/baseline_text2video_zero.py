"""Stage `baseline_text2video_zero`: the training-free Text2Video-Zero baseline of the paper's Table 1.

Every motion's test prompts x sample.seeds, from the prompt alone, with diffusers'
TextToVideoZeroPipeline on the base SD components (lamp_model/baselines/text2video_zero.py),
into outputs/baselines/text2video_zero/<motion>/ (the layout of `generate`).
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from lamp_model.baselines import text2video_zero as t2vz
from lamp_model.config import Params
from lamp_model.loading import load_sd_components, resolve_device
from tasks.common import Layout, model_source, stage_main
from tasks.generate import generate_every_motion

log = logging.getLogger("lamp")
METHOD = "text2video_zero"


def run(params: Params, root: Path, run_dir: str = "") -> dict:
    layout = Layout(Path(root), run_dir)  # run_dir: a benchmark run (benchmarks/baseline_runs.py)
    s, c = params.sample, params.clips
    device = resolve_device(params.model.device)
    comps = load_sd_components(model_source(layout.root, params.model.base), device, torch.float32)
    pipe = t2vz.pipeline(comps)
    pipe.set_progress_bar_config(disable=True)
    motion_px = params.baselines.text2video_zero.motion_px
    done = generate_every_motion(params, layout, METHOD, lambda prompt, seed: t2vz.generate(
        pipe, prompt, num_frames=c.frames, height=c.height, width=c.width, num_inference_steps=s.ddim_steps,
        guidance_scale=s.guidance_scale, seed=seed, motion_px=tuple(motion_px) if motion_px else None))
    return {"method": METHOD, "videos": done["videos"], "outputs": done["outputs"],
            "metrics": {"seconds_per_video": done["seconds_per_video"]}}


if __name__ == "__main__":
    stage_main(run, per_motion=False)
