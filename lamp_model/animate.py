"""Image animation (spec "Applications"): any user image as frame 0 + a tuned motion checkpoint.

    from lamp_model.animate import load_pipeline, animate_image, save_video
    pipe = load_pipeline("CompVis/stable-diffusion-v1-4", "models/motions/horse_run/motion.safetensors")
    frames = animate_image(pipe, "photo.jpg", "a horse running on the beach", height=320, width=512)
    save_video(frames, "out/horse")            # -> out/horse.mp4, out/horse.gif

The image may have any size and aspect ratio: it is brought to height x width
with `fit_frames` (policy "crop" = cover + centre-crop, the default, never
distorts; "pad" = fit inside with black bars; "resize" = stretch). The same is
possible by hand: `LampPipeline(...)(prompt, from_image(path, h, w, policy), ...)`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .first_frame import from_image
from .io import atomic_write
from .loading import load_sd_components
from .pipeline import LampPipeline
from .small import SDComponents
from .unet import SWITCHES, LampUNet, read_motion_file, recorded_switches
from .video import write_gif, write_mp4

def motion_switches(path: str | Path) -> dict[str, bool] | None:
    """The LAMP architecture switches a motion checkpoint was tuned with (None if not recorded).

    Raises MotionCheckpointError for a missing file or one that is not safetensors.
    """
    _, metadata = read_motion_file(path)
    return recorded_switches(metadata)


def pipeline_from_components(comps: SDComponents, motion: str | Path | None = None,
                             switches: dict[str, bool] | None = None) -> LampPipeline:
    """Inflate `comps.unet` in place into a LampUNet, load a motion checkpoint into it, build the pipeline.

    switches: LAMP architecture switches; by default the checkpoint's own (else all on).
    """
    if switches is None:
        switches = (motion_switches(motion) if motion is not None else None) or {}
    unet = LampUNet.from_unet2d(comps.unet, **{k: v for k, v in switches.items() if k in SWITCHES})
    if motion is not None:
        unet.load_motion(motion)
    unet.eval().requires_grad_(False)
    return LampPipeline(vae=comps.vae, text_encoder=comps.text_encoder, tokenizer=comps.tokenizer, unet=unet,
                        scheduler=comps.scheduler)


def load_pipeline(base: str, motion: str | Path | None = None, *, switches: dict[str, bool] | None = None,
                  device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> LampPipeline:
    """Base SD v1.x model (folder or hub id) + a motion checkpoint -> LampPipeline.

    The checkpoint is read first, so a file that is not a motion checkpoint fails
    before the (large) base model loads; a checkpoint tuned on another base model
    raises MotionCheckpointError naming both.
    """
    if motion is not None and switches is None:
        switches = motion_switches(motion)
    comps = load_sd_components(base, device, dtype)
    pipe = pipeline_from_components(comps, motion, switches)
    return pipe.to(device)


def animate_image(pipe: LampPipeline, image: str | Path | np.ndarray, prompt: str, *, num_frames: int = 16,
                  height: int = 320, width: int = 512, resize_policy: str = "crop",
                  num_inference_steps: int = 50, guidance_scale: float = 7.5, alpha: float = 0.2,
                  adain: bool = True, histogram_matching: bool = True, seed: int = 0,
                  negative_prompt: str = "", progress: bool = True) -> np.ndarray:
    """Animate one image (path or uint8 array, any size) -> uint8 frames [num_frames, height, width, 3].

    Frame 0 of the result is the fitted image (up to the VAE round trip).
    Deterministic per seed.
    """
    first = from_image(image, height, width, policy=resize_policy)
    out = pipe(prompt, first, num_frames=num_frames, height=height, width=width,
               num_inference_steps=num_inference_steps, guidance_scale=guidance_scale, alpha=alpha, adain=adain,
               histogram_matching=histogram_matching, negative_prompt=negative_prompt,
               generator=torch.Generator().manual_seed(seed), progress=progress)
    return out.frames[0]


def save_image(image: np.ndarray, path: str | Path) -> Path:
    """Write a uint8 RGB image as PNG (atomically)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG")
    return path


def save_video(frames: np.ndarray, stem: str | Path, fps: float = 8) -> tuple[Path, Path]:
    """Write `<stem>.mp4` (H.264) and `<stem>.gif`; returns both paths."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    mp4, gif = stem.with_name(stem.name + ".mp4"), stem.with_name(stem.name + ".gif")
    write_mp4(frames, mp4, fps)
    write_gif(frames, gif, fps)
    return mp4, gif
