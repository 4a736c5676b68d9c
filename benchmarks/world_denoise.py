"""Does a tuned LampUNet use frame 0? Its LAMP loss per timestep beside two references.

For the cached training clips of one motion (the `cache` stage's latents), prints the
first-frame-conditioned epsilon MSE on frames >= 1 at fixed timesteps for
  - the untuned inflated model (new layers at zero: every frame denoised on its own),
  - the tuned model (a `tune` stage checkpoint),
  - "copy frame 0": the analytic predictor that takes every frame's clean latent to be
    frame 0's (eps = (x_t - sqrt(abar) z0) / sqrt(1 - abar)); no network.
At high noise, copying frame 0 is close to exact for the world's slow motions, so a
tuned model far above it there has not learnt to carry frame 0 into later frames: the
content (and with it the motion) of its videos is then decided without frame 0.

`--base-error` first checks the base itself, as a 2D model on single frames: its epsilon
MSE beside the trivial predictor that ignores the image (eps = (x_t - sqrt(abar) mean) /
sqrt(1 - abar), mean = the latents' per-channel mean). A base worse than that at high t
has an error floor no tuning of the LAMP layers removes.

    python -m benchmarks.world_denoise --motion helicopter --base-error   # after `make run`
"""
from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from lamp_model.loading import load_sd_components
from lamp_model.pipeline import LampPipeline
from lamp_model.unet import LampUNet

TIMESTEPS = (50, 200, 400, 600, 800, 950)


def implied_eps(noisy: torch.Tensor, clean: torch.Tensor, abar: torch.Tensor) -> torch.Tensor:
    """The noise that `noisy` holds if its clean latent is `clean` (the two analytic predictors)."""
    return (noisy - abar.sqrt() * clean) / (1 - abar).sqrt()


@torch.no_grad()
def base_error(comps, latents: torch.Tensor, text: torch.Tensor) -> dict:
    """The 2D base's epsilon MSE on the clips' frames as single images vs the trivial predictor."""
    frames = latents.permute(0, 2, 1, 3, 4)  # [n,f,c,h,w]
    n, f = frames.shape[:2]
    z = frames.reshape(n * f, *frames.shape[2:])
    text = text.repeat_interleave(f, dim=0)
    mean = z.mean((0, 2, 3), keepdim=True)
    scheduler = comps.train_scheduler()
    g = torch.Generator().manual_seed(1)
    rows = {}
    for t in TIMESTEPS:
        noise = torch.randn(z.shape, generator=g)
        tt = torch.full((len(z),), t)
        noisy = scheduler.add_noise(z, noise, tt)
        abar = scheduler.alphas_cumprod[t]
        pred = torch.cat([comps.unet(x, tc, encoder_hidden_states=e).sample
                          for x, tc, e in zip(noisy.split(64), tt.split(64), text.split(64))])
        trivial = implied_eps(noisy, mean, abar)
        rows[t] = {"base_2d": float((pred - noise).pow(2).mean()), "trivial": float((trivial - noise).pow(2).mean())}
    print(f"base as a 2D model on {len(z)} single frames: epsilon MSE")
    print(f"{'t':>4} | {'base':>7} | {'trivial':>7}")
    for t, r in rows.items():
        print(f"{t:>4} | {r['base_2d']:7.4f} | {r['trivial']:7.4f}")
    return rows


def frame_losses(pred: torch.Tensor, noise: torch.Tensor) -> tuple[float, float]:
    """MSE on frames 1-3 (next to frame 0) and on frames 8+ (far from it)."""
    err = (pred - noise).pow(2)
    return float(err[:, :, 1:4].mean()), float(err[:, :, 8:].mean())


@torch.no_grad()
def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--motion", default="helicopter")
    p.add_argument("--base", default="models/world/base")
    p.add_argument("--latents", default="data/latents", help="the cache stage's folder")
    p.add_argument("--checkpoint", default=None, help="default: models/motions/<motion>/motion.safetensors")
    p.add_argument("--clips", type=int, default=8)
    p.add_argument("--base-error", action="store_true", help="first print the 2D base's error vs trivial")
    args = p.parse_args(argv)

    folder = Path(args.latents) / args.motion
    latents = load_file(str(folder / "latents.safetensors"))["latents"][:args.clips].float()
    captions = json.loads((folder / "captions.json").read_text())[:args.clips]
    comps = load_sd_components(args.base)
    scheduler = comps.train_scheduler()
    untuned = LampUNet.from_unet2d(copy.deepcopy(comps.unet)).eval()
    tuned = LampUNet.from_unet2d(copy.deepcopy(comps.unet)).eval()
    tuned.load_motion(args.checkpoint or f"models/motions/{args.motion}/motion.safetensors")
    text = LampPipeline(comps.vae, comps.text_encoder, comps.tokenizer, tuned, comps.scheduler
                        ).encode_prompt(captions).float()
    base_rows = base_error(comps, latents, text) if args.base_error else None

    g = torch.Generator().manual_seed(0)
    rows = {}
    for t in TIMESTEPS:
        noise = torch.randn(latents.shape, generator=g)
        tt = torch.full((len(latents),), t)
        noisy = torch.cat([latents[:, :, :1], scheduler.add_noise(latents, noise, tt)[:, :, 1:]], dim=2)
        abar = scheduler.alphas_cumprod[t]
        copy_frame0 = implied_eps(noisy, latents[:, :, :1], abar)
        rows[t] = {"untuned": frame_losses(untuned(noisy, tt, text).sample, noise),
                   "tuned": frame_losses(tuned(noisy, tt, text).sample, noise),
                   "copy_frame0": frame_losses(copy_frame0, noise)}
    print(f"{args.motion}: LAMP loss (eps MSE) on frames 1-3 / frames 8-15, {len(latents)} training clips")
    print(f"{'t':>4} | {'untuned':>15} | {'tuned':>15} | {'copy frame 0':>15}")
    for t, r in rows.items():
        print(f"{t:>4} | " + " | ".join(f"{a:7.4f} {b:7.4f}" for a, b in r.values()))
    return {"base_error": base_rows, "video": rows}


if __name__ == "__main__":
    main()
