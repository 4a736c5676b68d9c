"""What one training step costs for LAMP and its trained baselines, side by side, on the world's base.

    python -m benchmarks.baseline_budget --repeats 10 --out benchmarks/results/baseline_budget_cpu.json

The base UNet is built from params.yaml's base_train config (random weights: the cost is the same as
the trained base's), clips have params.yaml's shape (clips.frames, latent size of the world's VAE).
Times, in one process and interleaved so that load on a shared machine hits all alike:
  * LAMP: one tuning step (LampUNet, first-frame-conditioned loss, train.batch_size clips, AdamW);
  * Tune-A-Video: one step of its UNet (sparse-causal + temporal attention, loss on all frames);
  * AnimateDiff: one step of the motion adapter built for the base (UNetMotionModel, all frames),
    at baselines.animatediff.batch_size and heads.
Prints ms per step (median), each baseline's ratio to LAMP, and the steps that give a baseline
LAMP's CPU time: Tune-A-Video per motion (LAMP's train.steps), AnimateDiff for all motions
(train.steps x motions): what params.yaml's `baselines.*.steps` should be under a CPU-time budget.
"""
from __future__ import annotations

import argparse
import copy
import tempfile
import time

import torch

from lamp_model.baselines import animatediff, tune_a_video
from lamp_model.config import load_params
from lamp_model.small import build_sd
from lamp_model.training import lamp_loss
from lamp_model.unet import LampUNet

from .common import machine_info, median, write_json


def _step_fn(model, trainable, scheduler, clips, text, first_frame_conditioning: bool, seed: int):
    optimizer = torch.optim.AdamW(trainable, lr=1e-4)
    generator = torch.Generator().manual_seed(seed)

    def step() -> float:
        t0 = time.perf_counter()
        loss = lamp_loss(model, scheduler, clips, text, generator, first_frame_conditioning=first_frame_conditioning)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        return time.perf_counter() - t0

    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--repeats", type=int, default=10, help="timed steps per method (after 2 warm-up steps)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    params = load_params(args.params)
    bt, c, b = params.base_train, params.clips, params.baselines
    with tempfile.TemporaryDirectory() as tok_dir:
        comps = build_sd(tok_dir, unet_channels=tuple(bt.unet_channels), text_dim=bt.text_dim, heads=bt.heads,
                         vae_channels=tuple(bt.vae_channels), unet_norm_groups=bt.unet_norm_groups, seed=bt.seed)
    down = 2 ** (len(comps.vae.config.block_out_channels) - 1)
    shape = (comps.unet.config.in_channels, c.frames, c.height // down, c.width // down)
    scheduler = comps.train_scheduler()
    text = torch.randn(1, 77, bt.text_dim)

    def clips(batch: int) -> torch.Tensor:
        return torch.randn(batch, *shape, generator=torch.Generator().manual_seed(1))

    # AnimateDiff first: its pipeline copies the 2D weights; LAMP and TAV inflate their UNet in place (a copy each).
    ad_unet = animatediff.pipeline(comps, animatediff.build_adapter(comps.unet, b.animatediff.heads)).unet
    lamp_unet = LampUNet.from_unet2d(copy.deepcopy(comps.unet), **params.lamp.model_dump())
    tav_unet = tune_a_video.TuneAVideoUNet.from_unet2d(copy.deepcopy(comps.unet))
    ad_unet.freeze_unet2d_params()

    def trainable(m):
        return [p for p in m.parameters() if p.requires_grad]

    bs_l, bs_t, bs_a = params.train.batch_size, b.tune_a_video.batch_size, b.animatediff.batch_size
    methods = {
        "lamp": _step_fn(lamp_unet, trainable(lamp_unet), scheduler, clips(bs_l), text.expand(bs_l, -1, -1), True, 0),
        "tune_a_video": _step_fn(tav_unet, trainable(tav_unet), scheduler, clips(bs_t), text.expand(bs_t, -1, -1),
                                 False, 0),
        "animatediff": _step_fn(animatediff._TextPerFrame(ad_unet), trainable(ad_unet), scheduler, clips(bs_a),
                                text.expand(bs_a, -1, -1), False, 0),
    }
    counts = {"lamp": sum(p.numel() for p in trainable(lamp_unet)),
              "tune_a_video": sum(p.numel() for p in trainable(tav_unet)),
              "animatediff": sum(p.numel() for p in trainable(ad_unet))}
    times: dict[str, list[float]] = {m: [] for m in methods}
    for i in range(2 + args.repeats):  # interleaved: each round times every method once
        for name, step in methods.items():
            s = step()
            if i >= 2:
                times[name].append(s)
        print(f"round {i}: " + ", ".join(f"{m}={t[-1] * 1000:.0f} ms" for m, t in times.items() if t), flush=True)

    ms = {m: 1000 * median(t) for m, t in times.items()}
    lamp_total_s = ms["lamp"] / 1000 * params.train.steps * len(params.motions)
    result = {
        "what": "one training step (forward + backward + clip + AdamW), median ms, interleaved in one process",
        "machine": machine_info(torch.device("cpu")),
        "clip_shape": list(shape), "batch_size": {"lamp": bs_l, "tune_a_video": bs_t, "animatediff": bs_a},
        "trainable_parameters": counts,
        "ms_per_step": {m: round(v, 1) for m, v in ms.items()},
        "ratio_to_lamp": {m: round(v / ms["lamp"], 2) for m, v in ms.items()},
        "lamp_tuning_minutes_all_motions": round(lamp_total_s / 60, 1),
        "steps_for_lamps_cpu_time": {
            "tune_a_video_per_motion": round(params.train.steps * ms["lamp"] / ms["tune_a_video"]),
            "animatediff_all_motions": round(params.train.steps * len(params.motions) * ms["lamp"] / ms["animatediff"]),
        },
        "repeats": args.repeats,
    }
    for m in methods:
        print(f"{m:13s} {ms[m]:7.1f} ms/step  x{ms[m] / ms['lamp']:.2f} of LAMP  "
              f"({counts[m]:,} trainable parameters)")
    print(f"LAMP's tuning of {len(params.motions)} motions: {result['lamp_tuning_minutes_all_motions']} min; "
          f"the same CPU time: {result['steps_for_lamps_cpu_time']}")
    write_json(args.out, result)


if __name__ == "__main__":
    main()
