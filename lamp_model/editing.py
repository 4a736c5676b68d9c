"""Video editing with LAMP (spec "Applications").

The recipe, in order (the CLI chains these steps):
1. Tune a LampUNet on the ONE video to edit with the existing
   `lamp_model.training.train_motion` (authors' demo: 24 frames, stride 2,
   ~500 steps); that is the caller's job, not this module's.
2. `ddim_invert` the video's latents (empty prompt, no guidance) to the noise
   that regenerates it.
3. Edit the first frame: `edit_first_frame` runs a ControlNet on its canny
   edges (the paper uses SD-XL), so the layout stays and the look changes.
4. `edit_video` generates from the inverted noise with the edited first frame
   (no shared-noise mixing in this mode): the motion follows the original.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch
from diffusers import (ControlNetModel, DDIMInverseScheduler, StableDiffusionControlNetPipeline,
                       StableDiffusionXLControlNetPipeline, UNet2DConditionModel)
from PIL import Image
from tqdm.auto import tqdm

from .pipeline import LampPipeline
from .video import fit_frames


@torch.no_grad()
def ddim_invert(pipe: LampPipeline, video_latents: torch.Tensor, num_inference_steps: int, prompt: str = "",
                progress: bool = False) -> torch.Tensor:
    """Deterministic DDIM inversion of video latents [1,c,f,h,w] -> noise latents [1,c,f,h,w].

    Mirrors `LampPipeline` sampling so that sampling from the result gives the
    video back: same timesteps (the inverse scheduler is built from the pipeline's
    scheduler config), the UNet sees all frames, and frame 0 stays the clean z0
    throughout, exactly as it is pinned during sampling. Frame 0 of the result is
    therefore z0 (the pipeline replaces it by the first frame's latent anyway).
    """
    inverse = DDIMInverseScheduler.from_config(pipe.scheduler.config)
    inverse.set_timesteps(num_inference_steps, device=pipe.device)
    text = pipe.encode_prompt([prompt] * len(video_latents))
    latents = video_latents.to(pipe.device, text.dtype)
    z0 = latents[:, :, :1]
    for t in tqdm(inverse.timesteps, desc="invert", leave=False, disable=not progress):
        eps = pipe.unet(latents, t, text.to(pipe.unet.dtype)).sample.to(latents.dtype)
        moved = inverse.step(eps[:, :, 1:], t, latents[:, :, 1:]).prev_sample
        latents = torch.cat([z0, moved], dim=2)
    return latents


def canny_edges(image: np.ndarray, low: int = 100, high: int = 200) -> np.ndarray:
    """Canny edge map of a uint8 RGB image, as the 3-channel image a canny ControlNet expects."""
    edges = cv2.Canny(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), low, high)
    return np.repeat(edges[:, :, None], 3, axis=2)


def build_small_controlnet(unet2d: UNet2DConditionModel) -> ControlNetModel:
    """A ControlNet with the same shape as (and encoder weights copied from) a small UNet, built offline."""
    return ControlNetModel.from_unet(unet2d)


def edit_first_frame(controlnet_pipe: StableDiffusionControlNetPipeline | StableDiffusionXLControlNetPipeline,
                     image: np.ndarray, prompt: str, seed: int = 0, steps: int = 50, guidance: float = 7.5,
                     conditioning_scale: float = 1.0) -> np.ndarray:
    """Redraw `image` [h,w,3] (h, w multiples of 8) from `prompt`, keeping its canny edges.

    Works with the SD v1.x and the SD-XL ControlNet pipelines (same call).
    Returns uint8 [h,w,3]; deterministic per seed.
    """
    h, w = image.shape[:2]
    out = controlnet_pipe(prompt, image=Image.fromarray(canny_edges(image)), height=h, width=w,
                          num_inference_steps=steps, guidance_scale=guidance,
                          controlnet_conditioning_scale=conditioning_scale,
                          generator=torch.Generator().manual_seed(seed), output_type="np").images[0]
    return (out * 255).round().astype(np.uint8)


def edit_video(pipe: LampPipeline, video_frames: np.ndarray, prompt: str, edited_first_frame: np.ndarray, *,
               height: int = 320, width: int = 512, num_inference_steps: int = 50, guidance_scale: float = 7.5,
               adain: bool = True, histogram_matching: bool = True, progress: bool = False) -> np.ndarray:
    """Regenerate `video_frames` [f,h,w,3] with `edited_first_frame` as frame 0 -> uint8 [f,height,width,3].

    `pipe.unet` should be tuned on this video first (see the module docstring).
    Deterministic: the initial noise is the video's DDIM inversion, not random.
    """
    frames = fit_frames(video_frames, height, width)
    latents = pipe.encode_frames(frames).permute(1, 0, 2, 3)[None]  # [1,c,f,h,w]
    noise = ddim_invert(pipe, latents, num_inference_steps, progress=progress)
    out = pipe(prompt, edited_first_frame, num_frames=len(frames), height=height, width=width,
               num_inference_steps=num_inference_steps, guidance_scale=guidance_scale, adain=adain,
               histogram_matching=histogram_matching, latents=noise, progress=progress)
    return out.frames[0]
