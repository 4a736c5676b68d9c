"""Stage `controlnet`: the canny ControlNet that `lamp edit` uses in the motion world.

Not part of the main job (`make run` = `dvc repro report` does not build it): `dvc repro
controlnet` trains it on the world's training frames and their OpenCV canny maps, with the
base model of stage `base` frozen (lamp_model/controlnet_training.py), and writes it to
models/world_controlnet. With real weights the edit uses SD-XL's canny ControlNet instead:
nothing is trained, and models/world_controlnet/NOT_USED.txt says so.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch

from lamp_model.config import Params
from lamp_model.controlnet_training import ControlNetSettings, save_controlnet, train_controlnet
from lamp_model.loading import load_sd_components, resolve_device
from tasks.base import _read_world_frames, _save_folder
from tasks.common import Layout, StageError, stage_main, trains_base

log = logging.getLogger("lamp")


def run(params: Params, root: Path, motion: str | None = None, run_dir: str = "") -> dict:
    layout = Layout(Path(root), run_dir)
    out = layout.world_controlnet
    if not trains_base(params, layout.root):
        def note(folder: Path) -> None:
            folder.mkdir(parents=True)
            (folder / "NOT_USED.txt").write_text(
                f"model.base = {params.model.base} (real weights): `lamp edit` uses the SD-XL canny ControlNet "
                "(model.sdxl + --controlnet); the motion world's ControlNet is not trained or used.\n")

        _save_folder(note, out)
        return {"trained": False, "outputs": [str(out / "NOT_USED.txt")]}

    base = layout.root / params.model.base
    if not (base / "model_index.json").is_file():
        raise StageError(f"{base}: no trained base model (model_index.json missing); run the base stage first "
                         "(`dvc repro base`)")
    settings = ControlNetSettings(**params.controlnet.model_dump())
    images, captions, by_motion = _read_world_frames(params, layout)
    log.info("controlnet: %d frames (%dx%d), %d distinct captions, %d steps of %d", len(images), images.shape[1],
             images.shape[2], len(set(captions)), settings.steps, settings.batch_size)
    comps = load_sd_components(str(base), resolve_device(params.model.device), torch.float32)
    t0 = time.perf_counter()
    controlnet, losses = train_controlnet(comps, images, captions, settings)
    train_s = time.perf_counter() - t0

    n = max(1, min(50, len(losses) // 4))  # mean loss of the first and the last n steps
    metrics = {"loss_first": float(np.mean(losses[:n])), "loss_last": float(np.mean(losses[-n:]))}
    # No timings in the DVC output (same params, same bytes); they go to MLflow and the log.
    summary = {"base": params.model.base, "frames": len(images), "size": list(images.shape[1:3]),
               "motions": list(by_motion), "metrics": metrics, "loss_every_10": losses[::10]}
    _save_folder(lambda folder: save_controlnet(controlnet, folder, settings, summary), out)
    log.info("controlnet: %d steps in %.0f s, loss %.4f -> %.4f; saved %s", settings.steps, train_s,
             metrics["loss_first"], metrics["loss_last"], out)
    return {"trained": True, "frames": len(images), "outputs": [str(out)], "metrics": {**metrics, "train_s": train_s},
            "artifacts": [str(out / "controlnet_train.json")], "loss": losses}


if __name__ == "__main__":
    stage_main(run, per_motion=False)
