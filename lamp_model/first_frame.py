"""Where frame 0 comes from (spec "Inference", step 1, and "Applications").

LAMP leaves appearance to a strong text-to-image model and only learns motion,
so the first frame is made separately: by SD-XL (the paper), by the base SD
v1.x model itself (ablation 1), or given by the user (image animation). Every
source returns uint8 RGB images [height, width, 3], fitted by cover +
centre-crop (`fit_frames`), so nothing is ever distorted.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
from PIL import Image, ImageOps, UnidentifiedImageError

from .video import fit_frames


def _fit(image: np.ndarray, height: int, width: int, policy: str = "crop") -> np.ndarray:
    return fit_frames(image[None], height, width, policy)[0]


def from_image(image: str | Path | np.ndarray, height: int, width: int, policy: str = "crop") -> np.ndarray:
    """A user image (file path or array; grey, RGBA, any size) as the first frame.

    policy: how to reach height x width (`fit_frames`): "crop" (cover + centre-crop,
    default), "pad" (fit inside, black bars) or "resize" (stretch).
    Raises FileNotFoundError for a missing file, ValueError for one that is not an image.
    """
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim not in (2, 3):
            raise ValueError(f"first-frame image array must be uint8 [h,w] or [h,w,c], got {image.dtype} "
                             f"{image.shape}")
        pil = Image.fromarray(image)
    else:
        path = Path(image)
        if not path.is_file():
            raise FileNotFoundError(f"image not found: {path}")
        try:
            with Image.open(path) as opened:
                pil = ImageOps.exif_transpose(opened)  # phone photos store their rotation in EXIF
                pil.load()
        except (UnidentifiedImageError, OSError) as err:
            raise ValueError(f"{path}: not a readable image ({type(err).__name__}); pass a PNG/JPEG/... file") from None
    return _fit(np.asarray(pil.convert("RGB")), height, width, policy)


def _render(pipe, prompts: list[str], fit_to: tuple[int, int], seed: int, **call_kwargs) -> list[np.ndarray]:
    """One call per prompt with its own generator (seed + i): a prompt's image does not depend on the batch.
    Each image is then fitted to fit_to = (height, width); call_kwargs go to the pipeline."""
    images = []
    for i, prompt in enumerate(prompts):
        generator = torch.Generator().manual_seed(seed + i)
        out = pipe(prompt, generator=generator, output_type="np", **call_kwargs).images[0]
        images.append(_fit((out * 255).round().astype(np.uint8), *fit_to))
    return images


def from_sdxl(pipe: StableDiffusionXLPipeline, prompts: list[str], height: int, width: int, seed: int = 0,
              steps: int = 50, guidance: float = 5.0) -> list[np.ndarray]:
    """SD-XL first frames (the paper's choice), rendered at SD-XL's native size, then fitted."""
    return _render(pipe, list(prompts), (height, width), seed, num_inference_steps=steps, guidance_scale=guidance)


def from_base_model(pipe: StableDiffusionPipeline, prompts: list[str], height: int, width: int, seed: int = 0,
                    steps: int = 50, guidance: float = 7.5) -> list[np.ndarray]:
    """First frames from the base SD v1.x model (ablation 1), rendered at height x width."""
    return _render(pipe, list(prompts), (height, width), seed, height=height, width=width,
                   num_inference_steps=steps, guidance_scale=guidance)
