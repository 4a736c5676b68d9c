"""First-frame-conditioned LAMP tuning on cached latents (spec "Training").

One timestep per video, all frames noised, then frame 0 is put back clean; the
loss is the epsilon MSE on frames >= 1 only. The train loop writes a resumable
checkpoint every N steps: an interrupted run resumed from it ends with the same
weights as an uninterrupted one (same seed, CPU).
"""
from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler
from diffusers.optimization import get_scheduler
from tqdm.auto import tqdm

from .io import atomic_write
from .unet import LampUNet

STATE_FILE = "train_state.pt"
WEIGHTS_FILE = "motion.safetensors"


@dataclass
class TrainSettings:
    steps: int = 1000
    lr: float = 3e-5
    batch_size: int = 1  # clips per step (paper: 1), each with its own timestep
    weight_decay: float = 1e-2
    grad_clip: float = 1.0
    seed: int = 0
    first_frame_conditioning: bool = True  # False = ablation: noise and loss on all frames
    hflip: bool = False  # flips change a motion's direction: off unless the motion is symmetric
    checkpoint_every: int = 100
    mixed_precision: str = "no"  # "no" | "bf16" | "fp16": autocast on the UNet's device (CPU or CUDA)
    gradient_checkpointing: bool = False
    use_8bit_adam: bool = False
    lr_schedule: str = "constant"  # "constant" | "cosine": diffusers.optimization schedules, after warm-up
    warmup_steps: int = 0  # linear warm-up from 0 to lr over these steps


def lamp_loss(unet: LampUNet, scheduler: DDPMScheduler, latents: torch.Tensor, text_emb: torch.Tensor,
              generator: torch.Generator, first_frame_conditioning: bool = True) -> torch.Tensor:
    """LAMP loss for clean latents [b,c,f,h,w] and text embeddings [b,n,d]."""
    b = latents.shape[0]
    noise = torch.randn(latents.shape, generator=generator, device=generator.device).to(latents)
    t = torch.randint(0, scheduler.config.num_train_timesteps, (b,), generator=generator,
                      device=generator.device).to(latents.device)
    noisy = scheduler.add_noise(latents, noise, t)
    if first_frame_conditioning:
        noisy = torch.cat([latents[:, :, :1], noisy[:, :, 1:]], dim=2)
    pred = unet(noisy, t, text_emb).sample
    if first_frame_conditioning:
        return F.mse_loss(pred[:, :, 1:].float(), noise[:, :, 1:].float())
    return F.mse_loss(pred.float(), noise.float())


def _optimizer(unet: LampUNet, s: TrainSettings) -> torch.optim.Optimizer:
    params = [p for _, p in unet.trainable_parameters()]
    if s.use_8bit_adam:
        try:
            import bitsandbytes as bnb
        except ImportError:
            raise ImportError("use_8bit_adam=true needs bitsandbytes (pip install bitsandbytes, CUDA only); "
                              "or set train.use_8bit_adam: false") from None
        return bnb.optim.AdamW8bit(params, lr=s.lr, weight_decay=s.weight_decay)
    return torch.optim.AdamW(params, lr=s.lr, weight_decay=s.weight_decay)


def _lr_scheduler(optimizer: torch.optim.Optimizer, s: TrainSettings) -> torch.optim.lr_scheduler.LambdaLR:
    """The learning rate of every step: warm-up, then constant or a half cosine down to 0 at `steps`."""
    name = {"constant": "constant_with_warmup", "cosine": "cosine"}[s.lr_schedule]
    return get_scheduler(name, optimizer, num_warmup_steps=s.warmup_steps, num_training_steps=s.steps)


MIXED_PRECISION = ("no", "bf16", "fp16")


def _autocast(device: torch.device, mixed_precision: str):
    """Autocast of the forward pass on the UNet's device, CPU included (weights stay fp32)."""
    if mixed_precision not in MIXED_PRECISION:
        raise ValueError(f"mixed_precision = {mixed_precision!r}: use one of {', '.join(MIXED_PRECISION)}")
    if mixed_precision == "no":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if mixed_precision == "bf16" else torch.float16)


def _grad_scaler(device: torch.device, mixed_precision: str) -> torch.amp.GradScaler:
    """Loss scaling for fp16 only (bf16 has fp32's exponent range: nothing underflows)."""
    return torch.amp.GradScaler(device.type, enabled=mixed_precision == "fp16")


def train_motion(unet: LampUNet, scheduler: DDPMScheduler, clips: torch.Tensor, text_embs: torch.Tensor,
                 settings: TrainSettings, checkpoint_dir: str | Path | None = None,
                 on_step: Callable[[int, float], None] | None = None, stop_after: int | None = None
                 ) -> list[float]:
    """Tune `unet` in place on latent clips [n,c,f,h,w]; returns the loss of every step.

    `text_embs` is [1,n,d] (one motion prompt) or [n_clips,n,d] (a caption per clip).
    With `checkpoint_dir`, resumes from its last checkpoint if there is one.
    `stop_after` ends the run early after that many steps (a simulated interruption).
    """
    device = unet.device
    s = settings
    unet.train()
    if s.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    optimizer = _optimizer(unet, s)
    lr_scheduler = _lr_scheduler(optimizer, s)
    generator = torch.Generator(device="cpu").manual_seed(s.seed)
    scaler = _grad_scaler(device, s.mixed_precision)
    losses: list[float] = []
    start = 0
    if checkpoint_dir is not None and (Path(checkpoint_dir) / STATE_FILE).exists():
        start, losses = _resume(unet, optimizer, lr_scheduler, scaler, generator, Path(checkpoint_dir))
    params = [p for _, p in unet.trainable_parameters()]
    end = s.steps if stop_after is None else min(s.steps, start + stop_after)
    for step in tqdm(range(start, end), initial=start, total=s.steps, desc="tune", leave=False):
        idx = torch.randint(0, clips.shape[0], (s.batch_size,), generator=generator)
        latents = clips[idx].to(device)
        if s.hflip:
            flip = torch.rand(s.batch_size, generator=generator) < 0.5
            latents = torch.where(flip.to(device)[:, None, None, None, None], latents.flip(-1), latents)
        text = text_embs[idx] if text_embs.shape[0] > 1 else text_embs.expand(s.batch_size, -1, -1)
        with _autocast(device, s.mixed_precision):
            loss = lamp_loss(unet, scheduler, latents, text.to(device), generator, s.first_frame_conditioning)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(params, s.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        lr_scheduler.step()
        losses.append(loss.item())
        if on_step is not None:
            on_step(step, losses[-1])
        done = step + 1
        if checkpoint_dir is not None and (done % s.checkpoint_every == 0 or done == end):
            save_checkpoint(unet, optimizer, generator, done, losses, Path(checkpoint_dir), s, scaler,
                            lr_scheduler)
    unet.eval()
    return losses


def save_checkpoint(unet: LampUNet, optimizer, generator, step: int, losses: list[float], folder: Path,
                    settings: TrainSettings, scaler: torch.amp.GradScaler | None = None,
                    lr_scheduler: torch.optim.lr_scheduler.LRScheduler | None = None) -> None:
    """The resumable state (one atomic file: weights, optimizer, learning-rate schedule, fp16 loss scale,
    RNG) + the weights
    as safetensors. The loss scale (and its growth tracker) decides which fp16 steps are skipped
    and how gradients are unscaled, so a resumed fp16 run needs it to take the same steps."""
    folder.mkdir(parents=True, exist_ok=True)
    state = {"step": step, "losses": losses, "motion": unet.motion_state_dict(),
             "optimizer": optimizer.state_dict(), "generator": generator.get_state(),
             "scaler": scaler.state_dict() if scaler is not None else {},
             "lr_scheduler": lr_scheduler.state_dict() if lr_scheduler is not None else {}}
    with atomic_write(folder / STATE_FILE) as tmp:
        torch.save(state, tmp)
    unet.save_motion(folder / WEIGHTS_FILE, {"step": step, "train_settings": json.dumps(asdict(settings))})


def _resume(unet: LampUNet, optimizer, lr_scheduler, scaler: torch.amp.GradScaler, generator, folder: Path
            ) -> tuple[int, list[float]]:
    state = torch.load(folder / STATE_FILE, weights_only=True)
    unet.load_motion_state_dict(state["motion"])
    optimizer.load_state_dict(state["optimizer"])  # holds the current step's learning rate
    if state.get("lr_scheduler"):  # absent in checkpoints written before schedules (constant rate)
        lr_scheduler.load_state_dict(state["lr_scheduler"])
    if state.get("scaler"):  # empty when the run was not fp16 (the scaler was disabled)
        scaler.load_state_dict(state["scaler"])
    generator.set_state(state["generator"])
    return int(state["step"]), list(state["losses"])
