"""Does LAMP tuning learn a motion? A reduced motion-world run that fits in CI.

One motion whose flow has an unmistakable sign (horse_run: the only motion that moves
left), a base model trained for a few hundred steps on its frames, LAMP tuned for 150
steps. The untuned inflated model has zero-initialised temporal layers, so its frames
barely move; after tuning, videos for held-out content must move left like the training
videos. The full claim (8 motions, 48 prompts, 3 seeds) is the slow test at the end and
`benchmarks/world_motion.py`.
"""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from lamp_model import world
from lamp_model.base_training import train_text_to_image, train_vae
from lamp_model.motion_score import FEATURES, motion_descriptor
from lamp_model.pipeline import LampPipeline
from lamp_model.small import build_sd
from lamp_model.training import TrainSettings, train_motion
from lamp_model.unet import LampUNet

MOTION, H, W, F = "horse_run", 64, 96, 16
MEAN_DX = FEATURES.index("mean_dx")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.manual_seed(0)
    contents = world.training_contents(MOTION, 8)
    videos = [world.render_video(MOTION, c, frames=F, height=H, width=W, seed=i) for i, c in enumerate(contents)]
    captions = [c.caption(MOTION) for c in contents]
    comps = build_sd(tmp_path_factory.mktemp("tok"), seed=0)
    frames = np.concatenate(videos)
    train_vae(comps, frames, steps=250, batch_size=8, lr=1e-3, seed=0)
    train_text_to_image(comps, frames, [c for c in captions for _ in range(F)], steps=300, batch_size=8,
                        lr=1e-3, seed=0)
    untuned = LampUNet.from_unet2d(copy.deepcopy(comps.unet))
    tuned = LampUNet.from_unet2d(copy.deepcopy(comps.unet))
    pipe = LampPipeline(comps.vae, comps.text_encoder, comps.tokenizer, tuned, comps.scheduler)
    latents = torch.stack([pipe.encode_frames(v).permute(1, 0, 2, 3) for v in videos]).float()
    losses = train_motion(tuned, comps.train_scheduler(), latents, pipe.encode_prompt(captions).float(),
                          TrainSettings(steps=150, lr=1e-3, seed=0))
    return comps, untuned, tuned, videos, losses


def _generate(comps, unet, prompts) -> list[np.ndarray]:
    pipe = LampPipeline(comps.vae, comps.text_encoder, comps.tokenizer, unet, comps.scheduler)
    out = []
    for i, prompt in enumerate(prompts):
        first = world.render_first_frame(prompt, height=H, width=W, seed=100 + i)
        out.append(pipe(prompt, first, num_frames=F, height=H, width=W, num_inference_steps=15,
                        generator=torch.Generator().manual_seed(i), progress=False).frames[0])
    return out


def test_tuning_learns_leftward_motion_on_held_out_content(trained):
    comps, untuned, tuned, videos, losses = trained
    assert np.mean(losses[-30:]) < np.mean(losses[:30])  # the LAMP loss goes down
    train_dx = np.mean([motion_descriptor(v)[MEAN_DX] for v in videos])
    assert train_dx < -1.0  # the training videos move left (% of width per frame)

    prompts = [c.caption(MOTION) for c in world.eval_contents(MOTION, 3)]  # never seen with this motion
    dx_tuned = [motion_descriptor(v)[MEAN_DX] for v in _generate(comps, tuned, prompts)]
    dx_untuned = [motion_descriptor(v)[MEAN_DX] for v in _generate(comps, untuned, prompts)]
    # Tuned videos move left, clearly more than the untuned model's (which barely moves).
    # Measured (CPU, torch 2.14.1, re-measured 2026-12-04): tuned mean dx -0.59 (-0.44 / -0.18 /
    # -1.14, all three < 0), untuned -0.05, training videos -1.90: with this reduced budget the
    # direction is learned, the speed only in part.
    assert np.mean(dx_tuned) < -0.15, (dx_tuned, dx_untuned, train_dx)
    assert np.mean(dx_tuned) < np.mean(dx_untuned) - 0.15, (dx_tuned, dx_untuned)


@pytest.mark.slow
def test_full_world_tuned_models_beat_untuned_and_chance_over_three_seeds(tmp_path):
    """The issue's claim at default settings: 8 motions, base trained here, LAMP tuned with 3 seeds,
    48 held-out prompts. `make test-slow` (2-core CPU ~36 min, passed 2026-12-04: trains its own base,
    as benchmarks/world_motion.py)."""
    from benchmarks import world_motion

    result = world_motion.main(["--seeds", "0,1,2", "--out", str(tmp_path / "world_motion.json")])
    chance = 1 / len(world.MOTIONS)
    tuned = [r["motion_accuracy"] for r in result["tuned"]]
    assert result["vae"]["round_trip_motion_accuracy"] > 0.5  # the frozen VAE keeps the motions
    assert result["untuned"]["motion_accuracy"] < 2 * chance  # zero-initialised temporal layers: ~static
    # Every seed clearly above chance and the untuned model; the target (0.75) is not met.
    # Measured 2026-12-02 with 300 x 4 tuning and the flicker-robust score, on the DVC base
    # (world_motion --base models/world/base): tuned 0.542 / 0.396 / 0.438, untuned 0.125, VAE
    # ceiling 0.917. This test trains its own base (same settings) and was not re-run that day.
    assert min(tuned) > chance + 0.15, tuned
    assert min(tuned) > result["untuned"]["motion_accuracy"] + 0.15, (tuned, result["untuned"])
