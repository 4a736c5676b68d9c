"""Text2Video-Zero (Khachatryan et al. 2023): training-free video from a text-to-image model.

diffusers' `TextToVideoZeroPipeline` (deprecated in diffusers, still importable; a test pins the
import) on the base SD components. What its defaults assume, and what this wrapper sets instead:
  * the global motion field is given in pixels of a 512 x 512 canvas; `motion_px` here is in
    pixels of the real frame per frame (x, y) and is scaled to that canvas (default: the paper's
    12 px per frame on a 512-px frame, the same share of the frame at any size);
  * the latent warp is nearest-neighbour, so on small latents the motion moves in whole latent
    cells (a known limit of the method at the motion world's 8 x 12 latents, not a bug here);
  * its cross-frame attention assumes classifier-free guidance (a batch of 2): guidance_scale
    must be > 1;
  * one prompt and one video per call;
  * t0 / t1 (44 / 47 of 50 steps in the paper) are scaled to the step count.
"""
from __future__ import annotations

import numpy as np
import torch
from diffusers import TextToVideoZeroPipeline

from ..small import SDComponents

PAPER_STEPS, PAPER_T0, PAPER_T1 = 50, 44, 47
PAPER_MOTION_PX = 12.0  # per frame, on the 512 x 512 canvas of the paper (and of diffusers' motion field)
CANVAS = 512


def timesteps_t0_t1(num_inference_steps: int) -> tuple[int, int]:
    """The paper's t0 / t1 (counted from the end of the schedule) at another step count: 0 <= t0 < t1 < steps."""
    if num_inference_steps < 2:
        raise ValueError(f"Text2Video-Zero needs at least 2 sampling steps, got {num_inference_steps}")
    t1 = min(num_inference_steps - 1, max(1, round(PAPER_T1 / PAPER_STEPS * num_inference_steps)))
    t0 = min(t1 - 1, max(0, round(PAPER_T0 / PAPER_STEPS * num_inference_steps)))
    return t0, t1


def pipeline(comps: SDComponents) -> TextToVideoZeroPipeline:
    """The diffusers pipeline on the base components (no safety checker: the frames are scored, not served)."""
    return TextToVideoZeroPipeline(vae=comps.vae, text_encoder=comps.text_encoder, tokenizer=comps.tokenizer,
                                   unet=comps.unet, scheduler=comps.scheduler, safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)


def generate(pipe: TextToVideoZeroPipeline, prompt: str, *, num_frames: int, height: int, width: int,
             num_inference_steps: int = 50, guidance_scale: float = 7.5, seed: int = 0,
             motion_px: tuple[float, float] | None = None) -> np.ndarray:
    """One video uint8 [num_frames, height, width, 3] from the prompt alone.

    motion_px: global motion (x, y) in pixels of THIS frame per frame; default the paper's share.
    """
    if guidance_scale <= 1:
        raise ValueError(f"Text2Video-Zero's cross-frame attention assumes classifier-free guidance: "
                         f"guidance_scale must be > 1, got {guidance_scale}")
    if motion_px is None:
        motion_px = (PAPER_MOTION_PX * width / CANVAS, PAPER_MOTION_PX * height / CANVAS)
    t0, t1 = timesteps_t0_t1(num_inference_steps)
    out = pipe(prompt, video_length=num_frames, height=height, width=width, num_inference_steps=num_inference_steps,
               guidance_scale=guidance_scale, generator=torch.Generator().manual_seed(seed),
               motion_field_strength_x=motion_px[0] * CANVAS / width,
               motion_field_strength_y=motion_px[1] * CANVAS / height, t0=t0, t1=t1, output_type="np")
    frames = np.asarray(out.images)
    return (frames.clip(0, 1) * 255).round().astype(np.uint8)
