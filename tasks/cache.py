"""Stage `cache` (per motion): VAE-encode every clip frame once.

Tuning then never touches the VAE: it reads data/latents/<motion>/latents.safetensors
("latents": float32 [n, 4, f, h/8, w/8]) and captions.json (one caption per clip).
The encoding is the pipeline's own `encode_frames` (distribution mean x scaling
factor), so cached latents match what the pipeline computes for a first frame.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from safetensors.numpy import load_file
from safetensors.torch import save_file
from tqdm.auto import tqdm

from lamp_model.config import Params
from lamp_model.io import atomic_write
from lamp_model.loading import load_vae, resolve_device, resolve_dtype
from lamp_model.pipeline import encode_frames
from tasks.common import Layout, StageError, model_source, stage_main

log = logging.getLogger("lamp")


def run(params: Params, root: Path, motion: str | None = None) -> dict:
    layout = Layout(Path(root))
    src, out = layout.clips(motion), layout.latents(motion)
    clips_file, manifest_file = src / "clips.safetensors", src / "manifest.json"
    if not clips_file.is_file() or not manifest_file.is_file():
        raise StageError(f"{src}: no clips of '{motion}' (clips.safetensors + manifest.json); run the extract "
                         f"stage first: `dvc repro extract@{motion}` or `python -m tasks.extract --motion {motion}`")
    frames = load_file(str(clips_file))["frames"]
    captions = [c["caption"] for c in json.loads(manifest_file.read_text())["clips"]]
    if len(captions) != len(frames):
        raise StageError(f"{manifest_file}: {len(captions)} clips listed, {clips_file.name} holds {len(frames)}; "
                         "rerun the extract stage")

    device, dtype = resolve_device(params.model.device), resolve_dtype(params.model.dtype)
    source = model_source(layout.root, params.model.base)
    vae = load_vae(source, device, dtype)
    log.info("encoding %d clips %s with the VAE of %s on %s (%s)", len(frames), list(frames.shape[1:]), source,
             device, params.model.dtype)
    latents = torch.stack([encode_frames(vae, clip).float().cpu()
                           for clip in tqdm(frames, desc=f"cache {motion}", unit="clip")])
    latents = latents.permute(0, 2, 1, 3, 4).contiguous()  # [n, f, c, h, w] -> [n, c, f, h, w]

    with atomic_write(out / "latents.safetensors") as tmp:
        save_file({"latents": latents}, str(tmp))
    with atomic_write(out / "captions.json") as tmp:
        tmp.write_text(json.dumps(captions, indent=1) + "\n")
    log.info("wrote latents %s and %d captions to %s", list(latents.shape), len(captions), out)
    return {"motion": motion, "clips": len(latents), "shape": list(latents.shape), "model": source,
            "outputs": [str(out / "latents.safetensors"), str(out / "captions.json")],
            "metrics": {"clips": float(len(latents)), "latent_std": float(latents.std())}}


if __name__ == "__main__":
    stage_main(run, per_motion=True)
