"""Train a canny ControlNet for the motion world's base model (the stand-in for SD's canny ControlNets).

No pretrained ControlNet fits the world's own base, and one built with `ControlNetModel.from_unet`
is the plain base model until trained (its zero convolutions add nothing), so an edit would ignore
the source's edges. The standard recipe (Zhang et al. 2023) on the world's frames fixes that:
  * the ControlNet starts as a copy of the base UNet's encoder, with zero-initialised outputs;
  * the base UNet, VAE and text encoder stay frozen; only the ControlNet trains;
  * a noise-prediction loss on the frozen VAE's latents, the condition being the OpenCV canny
    map of the clean frame (the same `canny_edges` the edit runs on the source frame);
  * the caption is replaced by "" for a share of the steps (the paper: half), so the edges alone
    must carry the layout and the prompt stays free to change the look;
  * `loss="x0"` (the world's default) measures the noise prediction by the clean latents it implies:
    the plain noise MSE ("eps", SD's) weighs a high-noise step, where a sampler lays the frame out and
    where the edges matter most, ~1/SNR less; under it the small ControlNet's loss did not fall and
    edits kept the source's edges only loosely (benchmarks/edit_settings.py controlnet-training).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import ControlNetModel
from tqdm.auto import tqdm

from .base_training import encode_images
from .editing import build_small_controlnet, canny_edges
from .small import SDComponents

# Written beside the ControlNet's weights: the canny thresholds an edit must use to match training.
SETTINGS_FILE = "controlnet_train.json"


@dataclass(frozen=True)
class ControlNetSettings:
    steps: int = 600
    batch_size: int = 16
    lr: float = 1e-3
    caption_dropout: float = 0.5
    canny_low: int = 100
    canny_high: int = 200
    loss: str = "x0"  # "x0" | "eps"
    seed: int = 0


def _loss(pred: torch.Tensor, noise: torch.Tensor, alpha_bar: torch.Tensor, how: str) -> torch.Tensor:
    """Noise-prediction MSE ("eps"), or the same error measured on the clean latents it implies ("x0":
    x0 error = eps error * sqrt((1 - a) / a), a = alpha_bar_t), where every noise level counts by how
    much of the clean frame is still unknown, high noise (the layout) included."""
    if how == "eps":
        return F.mse_loss(pred, noise)
    if how == "x0":
        per_sample = ((pred - noise) ** 2).mean(dim=tuple(range(1, pred.ndim)))
        return (per_sample * (1 - alpha_bar) / alpha_bar).mean()
    raise ValueError(f"loss = {how!r}: use 'eps' or 'x0'")


def canny_conditions(images: np.ndarray, low: int, high: int) -> torch.Tensor:
    """uint8 images [n,h,w,3] -> canny maps [n,3,h,w] in {0, 1}, as the ControlNet pipeline feeds them."""
    edges = np.stack([canny_edges(image, low, high) for image in images])
    return torch.from_numpy(edges).permute(0, 3, 1, 2).float() / 255.0


@torch.no_grad()
def _encode_captions(comps: SDComponents, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Text embeddings of each distinct caption once (the text encoder is frozen) + an index per image."""
    distinct = sorted(set(captions))
    ids = comps.tokenizer(distinct + [""], padding="max_length", max_length=comps.tokenizer.model_max_length,
                          truncation=True, return_tensors="pt").input_ids.to(comps.text_encoder.device)
    embeddings = comps.text_encoder(ids)[0].cpu()
    position = {c: i for i, c in enumerate(distinct)}
    return embeddings, torch.tensor([position[c] for c in captions])


def train_controlnet(comps: SDComponents, images: np.ndarray, captions: list[str], settings: ControlNetSettings,
                     progress: bool = True) -> tuple[ControlNetModel, list[float]]:
    """Train a canny ControlNet for the frozen `comps` on uint8 images [n,h,w,3] with one caption each.

    Returns the ControlNet (eval mode, no gradients) and the loss per step. Deterministic per seed.
    """
    if len(images) != len(captions):
        raise ValueError(f"{len(images)} images but {len(captions)} captions: give one caption per image")
    s = settings
    device = comps.unet.device
    for frozen in (comps.unet, comps.vae, comps.text_encoder):
        frozen.eval().requires_grad_(False)
    latents = encode_images(comps, images).cpu()
    conditions = canny_conditions(images, s.canny_low, s.canny_high)
    text, caption_index = _encode_captions(comps, captions)
    empty = len(text) - 1
    vae_scale_factor = 2 ** (len(comps.vae.config.block_out_channels) - 1)
    with torch.random.fork_rng(devices=[]):  # the canny encoder's first layers are drawn at random: seeded
        torch.manual_seed(s.seed)
        controlnet = build_small_controlnet(comps.unet, vae_scale_factor)
    controlnet = controlnet.to(device).train().requires_grad_(True)
    scheduler = comps.train_scheduler()
    g = torch.Generator().manual_seed(s.seed)
    opt = torch.optim.AdamW(controlnet.parameters(), lr=s.lr, weight_decay=1e-2)
    losses = []
    for _ in tqdm(range(s.steps), desc="controlnet", leave=False, disable=not progress):
        idx = torch.randint(0, len(latents), (s.batch_size,), generator=g)
        which = caption_index[idx].clone()
        which[torch.rand(s.batch_size, generator=g) < s.caption_dropout] = empty
        noise = torch.randn(latents[idx].shape, generator=g)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (s.batch_size,), generator=g)
        z, noise, t = latents[idx].to(device), noise.to(device), t.to(device)
        hidden, cond = text[which].to(device), conditions[idx].to(device)
        noisy = scheduler.add_noise(z, noise, t)
        down, mid = controlnet(noisy, t, encoder_hidden_states=hidden, controlnet_cond=cond, return_dict=False)
        pred = comps.unet(noisy, t, encoder_hidden_states=hidden, down_block_additional_residuals=down,
                          mid_block_additional_residual=mid).sample
        loss = _loss(pred, noise, scheduler.alphas_cumprod.to(device)[t], s.loss)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(controlnet.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
    controlnet.eval().requires_grad_(False)
    return controlnet, losses


def save_controlnet(controlnet: ControlNetModel, folder: str | Path, settings: ControlNetSettings,
                    summary: dict | None = None) -> None:
    """diffusers folder (config.json + safetensors) plus the settings it was trained with."""
    folder = Path(folder)
    controlnet.save_pretrained(str(folder), safe_serialization=True)
    record = {"settings": asdict(settings), **(summary or {})}
    (folder / SETTINGS_FILE).write_text(json.dumps(record, indent=1) + "\n")


def load_controlnet(folder: str | Path, device: torch.device | str = "cpu",
                    dtype: torch.dtype = torch.float32) -> tuple[ControlNetModel, ControlNetSettings]:
    """A ControlNet saved by `save_controlnet` and its settings; FileNotFoundError naming what is missing."""
    folder = Path(folder)
    settings_file = folder / SETTINGS_FILE
    if not settings_file.is_file() or not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder}: no trained canny ControlNet (config.json and {SETTINGS_FILE})")
    try:
        recorded = json.loads(settings_file.read_text())["settings"]
        settings = ControlNetSettings(**{"loss": "eps", **recorded})  # recorded before `loss` existed: eps
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{settings_file}: not a ControlNet settings record ({e}); train it again") from None
    controlnet = ControlNetModel.from_pretrained(str(folder), dtype=dtype)
    return controlnet.to(device).eval().requires_grad_(False), settings
