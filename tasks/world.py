"""Stage `world`: render the motion world's training videos and its held-out prompts.

With data.source = world, the 8 motions' training videos (+ captions.csv) go to
data/world/videos/<motion>/, the 48 test prompts (reported) to
data/prompts/world_eval.csv and the 48 validation prompts (for choosing settings)
to data/prompts/world_validation.csv (lamp_model/world.py, "splits"). With
data.source = folder the videos are the user's, so only the prompt csvs and a
placeholder folder are written (DVC needs every declared output to exist).
"""
from __future__ import annotations

import csv
import logging
from pathlib import Path

from lamp_model import world
from lamp_model.config import Params
from lamp_model.io import atomic_write
from lamp_model.video import write_mp4
from tasks.common import Layout, StageError, stage_main

log = logging.getLogger("lamp")

PLACEHOLDER = "README.txt"


def run(params: Params, root: Path) -> dict:
    layout = Layout(Path(root))
    out_dir = layout.world_videos
    outputs = [str(out_dir), str(layout.world_eval_prompts), str(layout.world_validation_prompts)]
    result: dict = {"source": params.data.source}

    if params.data.source == "world":
        unknown = [m for m in params.motions if m not in world.MOTIONS]
        if unknown:
            raise StageError(f"params.yaml: motions {unknown} are not in the motion world (it has "
                             f"{list(world.MOTIONS)}); for your own videos set data.source: folder")
        if (Path(root) / params.data.videos_dir).resolve() != out_dir.resolve():
            log.warning("data.source is world but data.videos_dir = %s: the extract stage will not read "
                        "the rendered videos in %s", params.data.videos_dir, out_dir)
        w = params.world
        log.info("rendering %d motions x %d videos (%d frames, %dx%d) to %s", len(world.MOTIONS),
                 w.videos_per_motion, w.frames, w.height, w.width, out_dir)
        rows = world.make_dataset(out_dir, videos_per_motion=w.videos_per_motion, frames=w.frames,
                                  height=w.height, width=w.width, seed=w.seed,
                                  write_video=lambda f, p: write_mp4(f, p, fps=8))
        _remove_stale(out_dir, {r["file"] for r in rows})
        result["videos"] = len(rows)
        result["metrics"] = {"videos": float(len(rows))}
    else:
        out_dir.mkdir(parents=True, exist_ok=True)
        with atomic_write(out_dir / PLACEHOLDER) as tmp:
            tmp.write_text("data.source is 'folder' in params.yaml: the motion world's videos are not used.\n"
                           f"Training videos are read from {params.data.videos_dir}/<motion>/.\n")
        log.info("data.source = folder: motion world not rendered (placeholder %s)", out_dir / PLACEHOLDER)
        result["videos"] = 0

    for split, path in (("test", layout.world_eval_prompts), ("validation", layout.world_validation_prompts)):
        prompts = world.eval_prompts(params.world.seed, split=split)
        with atomic_write(path) as tmp, open(tmp, "w", newline="") as f:
            csv.writer(f).writerows([("motion", "prompt"), *prompts])
        log.info("wrote %d %s prompts to %s", len(prompts), split, path)
        if split == "test":
            result["eval_prompts"] = len(prompts)
    result["outputs"] = outputs
    return result


def _remove_stale(out_dir: Path, keep: set[str]) -> None:
    """Videos from an earlier run with more videos per motion (and the folder-mode placeholder)."""
    (out_dir / PLACEHOLDER).unlink(missing_ok=True)
    for motion in world.MOTIONS:
        for path in (out_dir / motion).glob("*.mp4"):
            if f"{motion}/{path.name}" not in keep:
                log.info("removing stale %s", path)
                path.unlink()


if __name__ == "__main__":
    stage_main(run, per_motion=False)
