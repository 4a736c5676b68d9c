"""Stage `tune` (per motion): LAMP-tune the inflated base UNet on one motion's cached latents.

Reads data/latents/<motion>/{latents.safetensors, captions.json}; writes only the
tuned weights (motion.safetensors) plus the loss curve and the settings to
models/motions/<motion>/. Training state is checkpointed under
checkpoints/<motion>/<key>, where the key hashes everything that shapes the
result (settings, switches, base, latents, texts): an interrupted run resumes,
a changed setting starts fresh.
"""
from __future__ import annotations

import csv
import importlib.util
import json
import logging
from dataclasses import asdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from lamp_model.config import Params  # noqa: E402
from lamp_model.io import atomic_write  # noqa: E402
from lamp_model.loading import load_sd_components, resolve_device  # noqa: E402
from lamp_model.pipeline import LampPipeline  # noqa: E402
from lamp_model.training import TrainSettings, train_motion  # noqa: E402
from lamp_model.unet import LampUNet  # noqa: E402
from tasks.common import Layout, StageError, file_digest, fingerprint, model_source, stage_main  # noqa: E402

log = logging.getLogger("lamp")


def base_id(source: str) -> str:
    """What identifies the base weights in a checkpoint key: a hub id, or a local folder's files
    (name, size, mtime), so a retrained base never resumes a checkpoint of the old one."""
    folder = Path(source)
    if not folder.is_dir():
        return source
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return fingerprint([(str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns) for p in files])


def read_latents(layout: Layout, motion: str) -> tuple[torch.Tensor, list[str], Path]:
    folder = layout.latents(motion)
    latents_file, captions_file = folder / "latents.safetensors", folder / "captions.json"
    if not latents_file.is_file() or not captions_file.is_file():
        raise StageError(f"{folder}: no cached latents of '{motion}' (latents.safetensors + captions.json); run "
                         f"the cache stage first: `dvc repro cache@{motion}` or `python -m tasks.cache --motion {motion}`")
    latents = load_file(str(latents_file)).get("latents")
    captions = json.loads(captions_file.read_text())
    if latents is None or latents.ndim != 5:
        raise StageError(f"{latents_file}: expected a tensor 'latents' [n, 4, f, h, w]; rerun the cache stage")
    if not isinstance(captions, list) or len(captions) != len(latents):
        raise StageError(f"{captions_file}: needs a list of {len(latents)} captions (one per clip); "
                         "rerun the cache stage")
    return latents.float(), [str(c) for c in captions], latents_file


def run(params: Params, root: Path, motion: str | None = None, run_dir: str = "",
        stop_after: int | None = None) -> dict:
    """`stop_after` ends training after that many steps (tests: a simulated interruption)."""
    layout = Layout(Path(root), run_dir)
    latents, captions, latents_file = read_latents(layout, motion)
    texts = captions if params.data.use_captions else [params.motion_prompt(motion)]
    device = resolve_device(params.model.device)
    source = model_source(layout.root, params.model.base)
    comps = load_sd_components(source, device, torch.float32)  # fp32 weights (train.mixed_precision: autocast)
    switches = params.lamp.model_dump()
    unet = LampUNet.from_unet2d(comps.unet, **switches)
    if latents.shape[1] != unet.config.unet_config["in_channels"]:
        raise StageError(f"{latents_file}: latents have {latents.shape[1]} channels, the base UNet takes "
                         f"{unet.config.unet_config['in_channels']}; rerun the cache stage with this base")
    pipe = LampPipeline(comps.vae, comps.text_encoder, comps.tokenizer, unet, comps.scheduler)
    text_embs = pipe.encode_prompt(texts).float()

    settings = TrainSettings(**params.train.model_dump())
    if settings.use_8bit_adam and importlib.util.find_spec("bitsandbytes") is None:
        raise StageError("params.yaml: train.use_8bit_adam is true but bitsandbytes is not installed; "
                         "`pip install bitsandbytes` (CUDA) or set train.use_8bit_adam: false")
    key = fingerprint(asdict(settings), switches, base_id(source), file_digest(latents_file), texts)
    ckpt = layout.checkpoints(motion, key)
    log.info("tune %s: %d clips %s, %d steps on %s, checkpoints in %s", motion, len(latents),
             list(latents.shape[1:]), settings.steps, device, ckpt)
    losses = train_motion(unet, comps.train_scheduler(), latents, text_embs, settings, checkpoint_dir=ckpt,
                          stop_after=stop_after)
    result = {"motion": motion, "steps": len(losses), "clips": len(latents), "checkpoint_dir": str(ckpt),
              "key": key, "loss": losses}
    if len(losses) < settings.steps:  # interrupted on purpose: the checkpoint holds the state, no outputs yet
        log.info("tune %s: stopped after step %d of %d; rerun to resume", motion, len(losses), settings.steps)
        return {**result, "finished": False, "outputs": []}

    out = layout.motion_model(motion)
    weights = unet.save_motion(out / "motion.safetensors", {"motion": motion, "base": params.model.base,
                                                            "steps": settings.steps})
    with atomic_write(out / "loss.csv") as tmp:
        with open(tmp, "w", newline="") as f:
            csv.writer(f).writerows([("step", "loss"), *((i + 1, f"{v:.6g}") for i, v in enumerate(losses))])
    plot = _plot_loss(losses, out / "loss.png", f"LAMP tuning: {motion}")
    config = {"motion": motion, "motion_prompt": params.motion_prompt(motion), "base": params.model.base,
              "use_captions": params.data.use_captions, "train": asdict(settings), "lamp": switches,
              "clips": len(latents), "latent_shape": list(latents.shape[1:])}
    # Not the checkpoint key: it fingerprints the base folder's mtimes, so it differs in every fresh
    # clone and would change this DVC output's hash (and rerun generate) for the same weights.
    with atomic_write(out / "train_config.json") as tmp:
        tmp.write_text(json.dumps(config, indent=1) + "\n")
    metrics = {"final_loss": float(losses[-1]), "loss_last50": float(np.mean(losses[-50:]))}
    log.info("tune %s: loss (mean of last 50 steps) %.4f; wrote %s", motion, metrics["loss_last50"], out)
    return {**result, "finished": True, "metrics": metrics,
            "outputs": [str(weights), str(out / "loss.csv"), str(plot), str(out / "train_config.json")],
            "artifacts": [str(weights), str(plot)]}


def _plot_loss(losses: list[float], path: Path, title: str) -> Path:
    """Per-step loss (noisy: one random timestep per step) and its running mean."""
    steps = np.arange(1, len(losses) + 1)
    window = max(1, min(50, len(losses) // 5))
    smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.plot(steps, losses, lw=0.6, alpha=0.4, label="loss per step")
    ax.plot(steps[window - 1:], smooth, lw=1.8, label=f"mean of {window} steps")
    ax.set(xlabel="step", ylabel="epsilon MSE (frames >= 1)", title=title, yscale="log")
    ax.legend()
    fig.tight_layout()
    with atomic_write(path) as tmp:
        fig.savefig(tmp)
    plt.close(fig)
    return path


if __name__ == "__main__":
    stage_main(run, per_motion=True)
