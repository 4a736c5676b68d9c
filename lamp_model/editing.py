"""Video editing with LAMP (spec "Applications").

The recipe, in order (the CLI chains these steps):
1. Tune a LampUNet on the ONE video to edit with the existing
   `lamp_model.training.train_motion` (authors' demo: 24 frames, stride 2,
   ~500 steps); that is the caller's job, not this module's.
2. `ddim_invert` the video's latents (empty prompt, no guidance) to the noise
   that regenerates it.
3. Edit the first frame: `edit_first_frame` runs a ControlNet on its canny
   edges (the paper uses SD-XL; the motion world trains its own small one,
   `lamp_model.controlnet_training`), so the layout stays and the look changes.
4. `edit_video` generates from the inverted noise with the edited first frame
   (no shared-noise mixing in this mode): the motion follows the original.
"""
from __future__ import annotations

import copy

import cv2
import numpy as np
import torch
from diffusers import (ControlNetModel, DDIMInverseScheduler, StableDiffusionControlNetPipeline,
                       StableDiffusionXLControlNetPipeline, UNet2DConditionModel)
from PIL import Image
from tqdm.auto import tqdm

from .pipeline import LampPipeline
from .small import SDComponents
from .video import fit_frames, sample_clips

# The real preset (paper: ControlNet on canny edges with SD-XL).
SDXL_CANNY_CONTROLNET = "diffusers/controlnet-canny-sdxl-1.0"


def prepare_video(frames: np.ndarray, num_frames: int = 24, stride: int = 2, height: int = 320, width: int = 512,
                  policy: str = "crop") -> np.ndarray:
    """The clip to edit: `num_frames` frames every `stride` from the start, fitted to height x width.

    Raises ValueError when the video is too short for num_frames at that stride.
    """
    frames = np.asarray(frames)
    try:
        (indices,) = sample_clips(len(frames), num_frames, stride, 1)
    except ValueError:
        raise ValueError(f"the video has {len(frames)} frames; editing {num_frames} frames at stride {stride} "
                         f"needs {(num_frames - 1) * stride + 1}: lower --frames or --stride") from None
    return fit_frames(frames[indices], height, width, policy)


@torch.no_grad()
def ddim_invert(pipe: LampPipeline, video_latents: torch.Tensor, num_inference_steps: int, prompt: str = "",
                refine: int = 0, progress: bool = False, pin_first_frame: bool = True) -> torch.Tensor:
    """Deterministic DDIM inversion of video latents [1,c,f,h,w] -> noise latents [1,c,f,h,w].

    Mirrors `LampPipeline` sampling so that sampling from the result gives the
    video back: same timesteps (the inverse scheduler is built from the pipeline's
    scheduler config), the UNet sees all frames, and frame 0 stays the clean z0
    throughout, exactly as it is pinned during sampling. Frame 0 of the result is
    therefore z0 (the pipeline replaces it by the first frame's latent anyway).

    Plain DDIM inversion evaluates the UNet at x_{t-1} where sampling will evaluate
    it at x_t, so it is exact only when the noise prediction barely changes between
    steps. `refine` > 0 adds that many fixed-point iterations per step (re-evaluate
    the UNet at the new x_t and redo the step; Pan et al. 2023), which makes the
    DDIM sampler's step from x_t land on x_{t-1} much more exactly, at (1 + refine)
    UNet calls per step.

    `pin_first_frame=False` inverts every frame (for a model sampled without a first frame,
    like Tune-A-Video's).
    """
    inverse = DDIMInverseScheduler.from_config(pipe.scheduler.config)
    inverse.set_timesteps(num_inference_steps, device=pipe.device)
    text = pipe.encode_prompt([prompt] * len(video_latents)).to(pipe.unet.dtype)
    latents = video_latents.to(pipe.device, text.dtype)
    first = 1 if pin_first_frame else 0
    z0 = latents[:, :, :first]
    for t in tqdm(inverse.timesteps, desc="invert", leave=False, disable=not progress):
        eps = pipe.unet(latents, t, text).sample.to(latents.dtype)
        moved = inverse.step(eps[:, :, first:], t, latents[:, :, first:]).prev_sample
        for _ in range(refine):
            eps = pipe.unet(torch.cat([z0, moved], dim=2), t, text).sample.to(latents.dtype)
            moved = inverse.step(eps[:, :, first:], t, latents[:, :, first:]).prev_sample
        latents = torch.cat([z0, moved], dim=2)
    return latents


def canny_edges(image: np.ndarray, low: int = 100, high: int = 200) -> np.ndarray:
    """Canny edge map of a uint8 RGB image, as the 3-channel image a canny ControlNet expects."""
    edges = cv2.Canny(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), low, high)
    return np.repeat(edges[:, :, None], 3, axis=2)


def edge_f1(edges: np.ndarray, reference: np.ndarray, tolerance: int = 2) -> float:
    """How well an edge map [h,w] or [h,w,3] (non-zero = edge) matches a reference one, in [0, 1].

    The harmonic mean of precision (share of edge pixels within `tolerance` px of a reference edge)
    and recall (share of reference edge pixels within `tolerance` px of an edge): the boundary F1 of
    segmentation benchmarks. The tolerance forgives the pixel or two a VAE decode shifts an edge by;
    an empty map scores 0 against a non-empty one (two empty maps agree: 1).
    """
    edges, reference = (np.asarray(e).reshape(e.shape[:2] + (-1,)).max(-1) > 0 for e in (edges, reference))
    if not edges.any() or not reference.any():
        return float(edges.any() == reference.any())
    size = 2 * tolerance + 1
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    near_reference = cv2.dilate(reference.astype(np.uint8), kernel) > 0
    near_edges = cv2.dilate(edges.astype(np.uint8), kernel) > 0
    precision = (edges & near_reference).sum() / edges.sum()
    recall = (reference & near_edges).sum() / reference.sum()
    return float(0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall))


def build_small_controlnet(unet2d: UNet2DConditionModel, vae_scale_factor: int = 8) -> ControlNetModel:
    """A ControlNet with the same shape as (and encoder weights copied from) a small UNet, built offline.

    Its condition encoder downsamples the canny map by `vae_scale_factor` (SD's 8 by default) to the
    latents' size. Its zero convolutions make it add nothing until trained
    (`lamp_model.controlnet_training`).
    """
    downsamples = int(np.log2(vae_scale_factor))
    if 2**downsamples != vae_scale_factor or not 1 <= downsamples <= 3:
        raise ValueError(f"vae_scale_factor={vae_scale_factor}: the canny encoder downsamples by 2, 4 or 8")
    return ControlNetModel.from_unet(unet2d, conditioning_embedding_out_channels=(16, 32, 96, 256)[:downsamples + 1])


def small_controlnet_pipeline(comps: SDComponents, controlnet: ControlNetModel) -> StableDiffusionControlNetPipeline:
    """An SD v1.x canny-ControlNet pipeline on the base model itself (the motion world, tests).

    `controlnet` is one trained for this base (`lamp_model.controlnet_training`). Uses a copy of
    the base 2D UNet, so call it before (or independently of) inflating `comps.unet` into a LampUNet.
    """
    unet2d = copy.deepcopy(comps.unet)
    return StableDiffusionControlNetPipeline(
        vae=comps.vae, text_encoder=comps.text_encoder, tokenizer=comps.tokenizer, unet=unet2d,
        controlnet=_on(controlnet, unet2d.device, unet2d.dtype), scheduler=comps.scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)


def _on(model: torch.nn.Module, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """Move to the device; cast only when the dtype differs (diffusers warns on every cast request)."""
    model = model.to(device)
    return model if model.dtype == dtype else model.to(dtype)


def load_sdxl_controlnet_pipeline(controlnet: str = SDXL_CANNY_CONTROLNET,
                                  sdxl: str = "stabilityai/stable-diffusion-xl-base-1.0",
                                  device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
                                  ) -> StableDiffusionXLControlNetPipeline:
    """The paper's first-frame editor: SD-XL + a canny ControlNet, from folders or hub ids.

    Offline without the weights: ModelUnavailableError saying what to download.
    """
    from .loading import _hub_kwargs, _unavailable

    try:
        net = ControlNetModel.from_pretrained(controlnet, dtype=dtype, **_hub_kwargs(controlnet))
    except (OSError, ValueError, EnvironmentError) as e:
        raise _unavailable(controlnet, "canny ControlNet", e) from None
    try:
        pipe = StableDiffusionXLControlNetPipeline.from_pretrained(sdxl, controlnet=net, dtype=dtype,
                                                                   **_hub_kwargs(sdxl))
    except (OSError, ValueError, EnvironmentError) as e:
        raise _unavailable(sdxl, "SD-XL pipeline", e) from None
    return pipe.to(device)


def _render_size(h: int, w: int, pipe) -> tuple[int, int]:
    """SD-XL draws badly far below its native size (1024x1024 for the real weights): render at the
    pipeline's native area, same aspect ratio, sides multiples of 8 VAE cells."""
    if not isinstance(pipe, StableDiffusionXLControlNetPipeline):
        return h, w
    native = pipe.unet.config.sample_size * pipe.vae_scale_factor
    step = 8 * pipe.vae_scale_factor
    scale = native / (h * w) ** 0.5
    return max(step, round(h * scale / step) * step), max(step, round(w * scale / step) * step)


def edit_first_frame(controlnet_pipe: StableDiffusionControlNetPipeline | StableDiffusionXLControlNetPipeline,
                     image: np.ndarray, prompt: str, seed: int = 0, steps: int = 50, guidance: float = 7.5,
                     conditioning_scale: float = 1.0, canny_low: int = 100, canny_high: int = 200) -> np.ndarray:
    """Redraw `image` [h,w,3] (h, w multiples of 8) from `prompt`, keeping its canny edges.

    Works with the SD v1.x and the SD-XL ControlNet pipelines (same call); SD-XL
    renders at its native area (1024^2 for the real weights) (same aspect ratio) and the result is
    fitted back to h x w. `canny_low` / `canny_high` must be the thresholds the
    ControlNet was trained with. `conditioning_scale` 0 gives the plain base model's
    sample (same seed). Returns uint8 [h,w,3]; deterministic per seed.
    """
    h, w = image.shape[:2]
    rh, rw = _render_size(h, w, controlnet_pipe)
    control = canny_edges(fit_frames(image[None], rh, rw)[0], canny_low, canny_high)
    out = controlnet_pipe(prompt, image=Image.fromarray(control), height=rh, width=rw,
                          num_inference_steps=steps, guidance_scale=guidance,
                          controlnet_conditioning_scale=conditioning_scale,
                          generator=torch.Generator().manual_seed(seed), output_type="np").images[0]
    return fit_frames((out * 255).round().astype(np.uint8)[None], h, w)[0]


def video_latents(pipe: LampPipeline, frames: np.ndarray) -> torch.Tensor:
    """uint8 frames [f,h,w,3] -> VAE latents [1,c,f,h/8,w/8] (deterministic)."""
    return pipe.encode_frames(frames).permute(1, 0, 2, 3)[None]


def edit_video(pipe: LampPipeline, video_frames: np.ndarray, prompt: str, edited_first_frame: np.ndarray, *,
               height: int = 320, width: int = 512, num_inference_steps: int = 50, guidance_scale: float = 7.5,
               adain: bool = True, histogram_matching: bool = True, resize_policy: str = "crop",
               inverted: torch.Tensor | None = None, progress: bool = False) -> np.ndarray:
    """Regenerate `video_frames` [f,h,w,3] with `edited_first_frame` as frame 0 -> uint8 [f,height,width,3].

    `pipe.unet` should be tuned on this video first (see the module docstring).
    Deterministic: the initial noise is the video's DDIM inversion (empty prompt, no
    guidance), not random, and no shared-noise mixing is applied. Pass `inverted`
    (from `ddim_invert`, same step count) to reuse one inversion for several edits.
    """
    if inverted is None:
        frames = fit_frames(video_frames, height, width, resize_policy)
        inverted = ddim_invert(pipe, video_latents(pipe, frames), num_inference_steps, progress=progress)
    out = pipe(prompt, fit_frames(edited_first_frame[None], height, width, resize_policy)[0],
               num_frames=inverted.shape[2], height=height, width=width,
               num_inference_steps=num_inference_steps, guidance_scale=guidance_scale, adain=adain,
               histogram_matching=histogram_matching, latents=inverted, progress=progress)
    return out.frames[0]


# An edit that moves frame 0's mean RGB colour (0..255) less than this kept the source's colours:
# whether later frames follow it says nothing.
MIN_COLOUR_CHANGE = 20.0


def colour_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Distance between the mean RGB colours (0..255) of two images."""
    def mean(image):
        return np.asarray(image).reshape(-1, 3).astype(float).mean(0)

    return float(np.linalg.norm(mean(a) - mean(b)))


def colour_follow(edited: np.ndarray, source_first_frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """How an edited video's frames >= 1 sit between its own frame 0 and the source's frame 0.

    Returns, per frame >= 1, the distance of its mean RGB colour (0..255) to the edited frame 0's
    and to the source frame 0's. An edit whose look the model carries through the video has every
    first distance below the second; one that falls back to the source's look does not.
    """
    to_edit = np.array([colour_distance(f, edited[0]) for f in edited[1:]])
    to_source = np.array([colour_distance(f, source_first_frame) for f in edited[1:]])
    return to_edit, to_source


def motion_kept(edited: np.ndarray, source: np.ndarray) -> float:
    """Mean frame-to-frame change of the edited video over the source's (1 = as much movement).

    A regenerated video that freezes on its frame 0 scores near 0, whatever its colours."""
    def change(v):
        return float(np.abs(np.diff(np.asarray(v).astype(float), axis=0)).mean())

    return change(edited) / max(change(source), 1e-9)
