"""Stage `base`: the motion world's own text-to-image base model (the stand-in for SD v1.4).

No pretrained weights can be downloaded here, so with data.source = world this
stage trains a small SD-shaped model on single frames + captions of the world's
training videos (VAE first, then UNet + text encoder) and a small CLIP for the
metrics, and writes them to models/world/{base,clip}. With real weights it trains
nothing: it checks that they load (a clear ModelUnavailableError offline) and
writes models/world/NOT_USED.txt so the DVC output exists.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from lamp_model import base_training, world
from lamp_model.config import Params
from lamp_model.io import atomic_write
from lamp_model.loading import load_sd_components, resolve_dtype
from lamp_model.metrics import ClipScorer, retrieval_accuracy, train_contrastive
from lamp_model.small import build_sd
from lamp_model.video import fit_frames, make_contact_sheet, read_video
from tasks.common import Layout, StageError, names_world_base, model_source, read_captions, stage_main

log = logging.getLogger("lamp")

SAMPLES_PER_MOTION = 4  # sample sheet: 2 training captions + 2 held-out validation prompts per motion


def run(params: Params, root: Path, motion: str | None = None, run_dir: str = "") -> dict:
    layout = Layout(Path(root), run_dir)
    world_base = names_world_base(params, layout.root)
    if params.data.source != "world":
        if world_base:
            raise StageError(f"params.yaml: model.base = {params.model.base} is the motion world's own base, "
                             "trained only with data.source: world; for your own videos set model.base to "
                             "SD v1.x weights (see configs/real.yaml)")
        return _check_real(params, layout)
    if not world_base:
        return _check_real(params, layout)
    return _train_world(params, layout)


def _check_real(params: Params, layout: Layout) -> dict:
    """Real weights: nothing to train; fail early (and clearly) when they cannot be loaded."""
    source = model_source(layout.root, params.model.base)
    log.info("model.base = %s: real weights, no base training; checking they load", source)
    load_sd_components(source, "cpu", resolve_dtype(params.model.dtype))  # ModelUnavailableError offline
    note = layout.world_models / "NOT_USED.txt"
    with atomic_write(note) as tmp:
        tmp.write_text(f"model.base = {params.model.base} (real weights): the motion world's base model "
                       "is not trained or used.\n")
    return {"trained": False, "base": source, "outputs": [str(note)]}


def _read_world_frames(params: Params, layout: Layout) -> tuple[np.ndarray, list[str], dict[str, list[str]]]:
    """All frames of every motion's training videos at clips size, one caption per frame."""
    h, w = params.clips.height, params.clips.width
    frames, captions, by_motion = [], [], {}
    for motion in params.motions:
        folder = layout.world_videos / motion
        caption_file = folder / "captions.csv"
        if not caption_file.is_file():
            raise StageError(f"{caption_file}: not found; render the motion world first "
                             "(`dvc repro world` or `python -m tasks.world`)")
        rows = read_captions(caption_file, folder)
        if not rows:
            raise StageError(f"{caption_file}: needs the columns file,caption and one row per video; "
                             "render the motion world again (`dvc repro world`)")
        by_motion[motion] = list(rows.values())
        for name, caption in tqdm(rows.items(), desc=f"base: read {motion}", leave=False):
            video, _ = read_video(folder / name)
            video = fit_frames(video, h, w, params.clips.resize_policy)
            frames.append(video)
            captions += [caption] * len(video)
    return np.concatenate(frames), captions, by_motion


def _save_folder(save, folder: Path) -> None:
    """Write a model folder beside its final place, then swap it in with two renames.

    `folder` is always either the complete old model or the complete new one, never half a model
    (a failed `save` leaves the old one untouched); only between the two renames, which take no
    time, does no folder sit at the path, and even a crash there leaves the old model, whole,
    at `.<name>.old` beside it. Leftovers of an interrupted earlier swap are removed first.
    """
    folder.parent.mkdir(parents=True, exist_ok=True)
    new, old = folder.with_name(f".{folder.name}.tmp"), folder.with_name(f".{folder.name}.old")
    shutil.rmtree(new, ignore_errors=True)
    if old.exists() and not folder.exists():  # a crash between the two renames: put the old one back
        os.replace(old, folder)
    shutil.rmtree(old, ignore_errors=True)
    try:
        save(new)
    except BaseException:
        shutil.rmtree(new, ignore_errors=True)
        raise
    if folder.exists():
        os.replace(folder, old)
    os.replace(new, folder)
    shutil.rmtree(old, ignore_errors=True)


def _train_world(params: Params, layout: Layout) -> dict:
    bt, out = params.base_train, layout.world_models
    images, captions, by_motion = _read_world_frames(params, layout)
    log.info("base: %d frames (%dx%d) with %d distinct captions from %d motions", len(images),
             images.shape[1], images.shape[2], len(set(captions)), len(by_motion))
    # Shuffled once (seeded): the VAE's scaling factor is estimated on the first frames.
    perm = np.random.default_rng(bt.seed).permutation(len(images))
    images, captions = images[perm], [captions[i] for i in perm]

    times = {}
    with tempfile.TemporaryDirectory() as tok_dir:
        comps = build_sd(tok_dir, unet_channels=tuple(bt.unet_channels), text_dim=bt.text_dim, heads=bt.heads,
                         vae_channels=tuple(bt.vae_channels), unet_norm_groups=bt.unet_norm_groups, seed=bt.seed)
    t0 = time.perf_counter()
    vae_losses = base_training.train_vae(comps, images, steps=bt.vae_steps, batch_size=bt.batch_size, lr=bt.lr,
                                         seed=bt.seed, detail_weight=bt.vae_detail_weight)
    times["vae_s"] = time.perf_counter() - t0
    vae_psnr = _vae_psnr(comps, images[:64])
    log.info("base: VAE %d steps in %.0f s, reconstruction PSNR %.1f dB", bt.vae_steps, times["vae_s"], vae_psnr)
    t0 = time.perf_counter()
    unet_losses = base_training.train_text_to_image(comps, images, captions, steps=bt.unet_steps,
                                                    batch_size=bt.unet_batch_size, lr=bt.lr, seed=bt.seed)
    times["unet_s"] = time.perf_counter() - t0
    _save_folder(comps.save_pretrained, out / "base")
    log.info("base: UNet + text encoder %d steps in %.0f s; saved %s", bt.unet_steps, times["unet_s"], out / "base")

    t0 = time.perf_counter()
    scorer = ClipScorer.small(image_size=min(images.shape[1:3]) // 8 * 8, seed=bt.seed)
    clip_losses = train_contrastive(scorer, images, captions, steps=bt.clip_steps, seed=bt.seed)
    times["clip_s"] = time.perf_counter() - t0
    clip_acc = retrieval_accuracy(scorer, images[:256], captions[:256])
    _save_folder(scorer.save_pretrained, out / "clip")
    log.info("base: CLIP %d steps in %.0f s, caption retrieval %.2f; saved %s", bt.clip_steps, times["clip_s"],
             clip_acc, out / "clip")

    t0 = time.perf_counter()
    sheet, sample_prompts = _sample_sheet(comps, params, by_motion)
    times["samples_s"] = time.perf_counter() - t0
    sheet_path = out / "base_samples.png"
    with atomic_write(sheet_path) as tmp:
        Image.fromarray(sheet).save(tmp)

    def last(losses):
        return float(np.mean(losses[-50:])) if losses else float("nan")

    metrics = {"vae_loss": last(vae_losses), "vae_psnr_db": vae_psnr, "unet_loss": last(unet_losses),
               "clip_loss": last(clip_losses), "clip_retrieval_acc": clip_acc}
    # No timings in the DVC output: the same params give byte-identical files (and hash), so a
    # re-run base does not invalidate every downstream stage. Timings go to MLflow (and the log lines above).
    summary = {"frames": len(images), "captions": len(set(captions)), "motions": list(by_motion),
               "size": list(images.shape[1:3]), "settings": bt.model_dump(), "metrics": metrics,
               "sample_prompts": sample_prompts,
               "loss_curves_every_10": {"vae": vae_losses[::10], "unet": unet_losses[::10],
                                        "clip": clip_losses[::10]}}
    summary_path = out / "base_train.json"
    with atomic_write(summary_path) as tmp:
        tmp.write_text(json.dumps(summary, indent=1) + "\n")
    outputs = [str(out / "base"), str(out / "clip"), str(summary_path), str(sheet_path)]
    return {"trained": True, "frames": len(images), "outputs": outputs, "metrics": {**metrics, **times},
            "artifacts": [str(sheet_path), str(summary_path)]}


@torch.no_grad()
def _vae_psnr(comps, images: np.ndarray) -> float:
    """Reconstruction PSNR (dB): the VAE is frozen for LAMP, so it must reproduce world frames well."""
    x = base_training._pixels(images)
    recon = comps.vae.decode(comps.vae.encode(x).latent_dist.mean).sample.clamp(-1, 1)
    mse = float(((recon - x) / 2).pow(2).mean())
    return float(10 * np.log10(1.0 / max(mse, 1e-10)))


def _sample_sheet(comps, params: Params, by_motion: dict[str, list[str]]) -> tuple[np.ndarray, list[dict]]:
    """One row per motion: base-model images for 2 training captions and 2 held-out validation prompts."""
    pipe = comps.pipeline()
    pipe.set_progress_bar_config(disable=True)
    rows, labels, prompts_used = [], [], []
    for motion, captions in tqdm(by_motion.items(), desc="base: samples", leave=False):
        held_out = [c.caption(motion) for c in world.contents(motion, "validation", 2, params.world.seed)] \
            if motion in world.MOTIONS else []
        prompts = (captions[:SAMPLES_PER_MOTION - len(held_out)] + held_out)[:SAMPLES_PER_MOTION]
        images = []
        for i, prompt in enumerate(prompts):
            generator = torch.Generator().manual_seed(params.seed + i)
            image = pipe(prompt, height=params.clips.height, width=params.clips.width, generator=generator,
                         num_inference_steps=params.sample.ddim_steps, guidance_scale=params.sample.guidance_scale,
                         output_type="np").images[0]
            images.append((image * 255).round().astype(np.uint8))
        rows.append(np.stack(images))
        labels.append(f"{motion}: {len(prompts) - len(held_out)} training captions, {len(held_out)} held-out")
        prompts_used.append({"motion": motion, "prompts": prompts})
    return make_contact_sheet(rows, labels, frames_per_row=SAMPLES_PER_MOTION), prompts_used


if __name__ == "__main__":
    stage_main(run, per_motion=False)
