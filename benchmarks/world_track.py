"""Do the generated objects move like the world's? Colour tracking, independent of optical flow.

The flow score (lamp_model/motion_score.py) reads flickering generated videos as "no motion"
(reports/world_motion.md). This check does not use flow: in each generated video of a
translating motion it tracks the object by the prompt's colour (centroid of the pixels
within COLOUR_TOLERANCE of it) and prints, beside the same content rendered by the world:
  - slope: the x position's least-squares slope over frames 1-15, in % of the width per frame;
  - jump: |x(frame 1) - x(frame 0)|, in fractions of the width (the world's is ~0.02);
  - jerk: the std of the frame-to-frame x steps over frames 1-15, in % of the width: a steady
    glide has ~0, an object that stalls and then leaps (what the flow score's oscillation
    features read as flapping, birds_fly) has a jerk as large as its slope.
It reads a run's `generate` outputs (tasks.metrics.read_generated), so it scores any run:

    python -m benchmarks.world_track                                   # the main pipeline (make run)
    python -m benchmarks.world_track --run-dir runs/ablations/no_tsm  # an ablation variant
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from lamp_model import world
from lamp_model.video import read_video
from tasks.common import Layout
from tasks.metrics import read_generated

TRANSLATING = ("helicopter", "horse_run")  # one rigid object each: its colour centroid is its position
COLOUR_TOLERANCE = 90  # sum of |RGB differences|


def track_x(frames: np.ndarray, colour: str) -> np.ndarray:
    """x of the colour's centroid per frame (fraction of the width; nan where it is not seen)."""
    rgb = np.array(world.COLOURS[colour], float)
    xs = []
    for frame in frames:
        mask = np.abs(frame.astype(float) - rgb).sum(-1) < COLOUR_TOLERANCE
        xs.append(np.nonzero(mask)[1].mean() / frame.shape[1] if mask.sum() >= 2 else np.nan)
    return np.array(xs)


def slope_jump_jerk(x: np.ndarray) -> tuple[float, float, float]:
    if not np.isfinite(x[1:]).all():
        return np.nan, abs(x[1] - x[0]), np.nan
    slope = np.polyfit(np.arange(1, len(x)), x[1:], 1)[0]
    return 100 * slope, abs(x[1] - x[0]), 100 * float(np.std(np.diff(x[1:])))


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run-dir", default="", help="a run under the project root (\"\" = the main pipeline)")
    args = p.parse_args(argv)
    layout = Layout(Path("."), args.run_dir)
    result = {}
    for motion in TRANSLATING:
        rows = read_generated(layout, motion)
        gen, ref = [], []
        for i, row in enumerate(rows):
            content = world.parse_caption(row["prompt"])
            frames, _ = read_video(layout.generated(motion) / row["mp4"])
            gen.append(slope_jump_jerk(track_x(frames, content.colour)))
            rendered = world.render_video(motion, content, frames=len(frames), height=frames.shape[1],
                                          width=frames.shape[2], seed=i)
            ref.append(slope_jump_jerk(track_x(rendered, content.colour)))
        (gs, gj, gk), (rs, rj, rk) = np.nanmean(gen, 0), np.nanmean(ref, 0)
        result[motion] = {"slope": gs, "jump": gj, "jerk": gk, "world_slope": rs, "world_jump": rj, "world_jerk": rk}
        print(f"{motion}: slope {gs:+.2f} %/frame (world {rs:+.2f}), frame-1 jump {gj:.2f} (world {rj:.2f}), "
              f"jerk {gk:.2f} %/frame (world {rk:.2f}); {len(rows)} videos")
    return result


if __name__ == "__main__":
    main()
