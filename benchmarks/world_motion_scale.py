"""How far does each motion of the world move per frame, in latent cells?

LAMP's temporal layers see motion in latent cells, so this is the figure to compare
with real clips (0.6-0.8 cells per frame at SD's 40x64 latents: top-10 % Farneback
flow of real web clips at their native frame rate). For every motion: the mean over
the training videos' frame pairs of the 90th percentile of the flow magnitude, in
pixels per frame, % of the width and latent cells (pixels / the VAE's downsampling).

    python -m benchmarks.world_motion_scale --out benchmarks/results/world_motion_scale.json
"""
from __future__ import annotations

import argparse
import json

import cv2
import numpy as np

from lamp_model import world
from lamp_model.config import load_params


def top_flow(video: np.ndarray, percentile: float = 90) -> float:
    """Mean over frame pairs of the `percentile`-th flow magnitude (pixels per frame)."""
    grey = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in video]
    return float(np.mean([
        np.percentile(np.linalg.norm(cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0), axis=-1),
                      percentile)
        for a, b in zip(grey[:-1], grey[1:])]))


def main(argv=None) -> dict:
    prm = load_params()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--videos", type=int, default=6, help="training videos per motion to measure")
    p.add_argument("--downsampling", type=int, default=2 ** (len(prm.base_train.vae_channels) - 1),
                   help="the VAE's spatial downsampling (params.yaml base_train.vae_channels: 8 = 8x12 latents)")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    w = prm.world
    rows = {}
    for m in world.MOTIONS:
        px = float(np.mean([top_flow(v) for _, _, v in world.training_videos(
            m, args.videos, frames=w.frames, height=w.height, width=w.width, seed=w.seed)]))
        rows[m] = {"px_per_frame": px, "width_percent_per_frame": 100 * px / w.width,
                   "latent_cells_per_frame": px / args.downsampling}
        print(f"{m:16s} {px:5.2f} px/frame  {100 * px / w.width:5.2f} % of the width  "
              f"{px / args.downsampling:.2f} latent cells/frame")
    result = {"world": {"frames": w.frames, "height": w.height, "width": w.width},
              "downsampling": args.downsampling, "percentile": 90, "per_motion": rows}
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
        print("wrote", args.out)
    return result


if __name__ == "__main__":
    main()
