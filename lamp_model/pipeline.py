"""LampPipeline: text + first frame -> video (spec "Inference").

1. The first frame (any image: from SD-XL, the base model, the motion world's
   renderer or the user) is fitted to HxW and VAE-encoded to z0.
2. Shared-noise init: eps_i <- alpha * eps_0 + (1 - alpha) * eps_i.
3. DDIM with classifier-free guidance; the UNet sees all frames, the scheduler
   updates frames >= 1 only, and frame 0 stays exactly z0 at every step.
4. AdaIN on latents, decode, histogram matching in pixels (each switchable).

Without a first frame (`first_frame=None`: the ablation "no first-frame
conditioning", for a model tuned without it) every frame starts from its own
noise and is denoised from the prompt alone; post-processing then matches the
frames to the generated frame 0.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from diffusers import AutoencoderKL, DDIMScheduler, DiffusionPipeline
from diffusers.utils import BaseOutput
from tqdm.auto import tqdm
from transformers import CLIPTextModel, CLIPTokenizer

from .postprocess import adain_latents, match_histograms
from .unet import LampUNet
from .video import fit_frames


@torch.no_grad()
def encode_frames(vae: AutoencoderKL, frames: np.ndarray, batch_size: int = 16) -> torch.Tensor:
    """uint8 [n,h,w,3] -> latents [n,4,h/8,w/8] on the VAE's device and dtype.

    The distribution mean (not a sample) times scaling_factor: deterministic, so the
    latent cache and the pipeline's first frame see the same latents for the same pixels.
    Encoded `batch_size` frames at a time to bound memory at full resolution.
    """
    x = torch.tensor(np.asarray(frames))  # a copy: frames may be a read-only view (safetensors, mmap)
    out = []
    for chunk in x.split(batch_size):
        chunk = chunk.to(vae.device, vae.dtype).permute(0, 3, 1, 2) / 127.5 - 1.0
        out.append(vae.encode(chunk).latent_dist.mean * vae.config.scaling_factor)
    return torch.cat(out)


@dataclass
class LampPipelineOutput(BaseOutput):
    frames: np.ndarray  # uint8 [b, f, h, w, 3]


class LampPipeline(DiffusionPipeline):
    """Diffusers-style pipeline; components are the SD v1.x ones with a `LampUNet`."""

    model_cpu_offload_seq = "text_encoder->unet->vae"

    def __init__(self, vae: AutoencoderKL, text_encoder: CLIPTextModel, tokenizer: CLIPTokenizer,
                 unet: LampUNet, scheduler: DDIMScheduler):
        super().__init__()
        self.register_modules(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                              scheduler=scheduler)

    @property
    def vae_scale(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    # -- encoders ---------------------------------------------------------------------
    @torch.no_grad()
    def encode_prompt(self, prompts: list[str]) -> torch.Tensor:
        """Text embeddings [n, 77, d]; prompts over the encoder's length are truncated with a warning."""
        max_len = self.tokenizer.model_max_length
        for p in prompts:
            n = len(self.tokenizer(p, truncation=False).input_ids)
            if n > max_len:
                warnings.warn(f"prompt has {n} tokens, the text encoder takes {max_len}: truncated: {p!r}",
                              stacklevel=2)
        ids = self.tokenizer(prompts, padding="max_length", max_length=max_len, truncation=True,
                             return_tensors="pt").input_ids.to(self.device)
        return self.text_encoder(ids)[0]

    def encode_frames(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 [n,h,w,3] -> latents [n,4,h/8,w/8] (distribution mean: deterministic)."""
        return encode_frames(self.vae, frames)

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor) -> np.ndarray:
        """latents [b,c,f,h,w] -> uint8 [b,f,H,W,3]."""
        b, c, f, h, w = latents.shape
        flat = latents.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w) / self.vae.config.scaling_factor
        images = torch.cat([self.vae.decode(chunk.to(self.vae.dtype)).sample for chunk in flat.split(8)])
        images = ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        return images.permute(0, 2, 3, 1).reshape(b, f, *images.shape[-2:], 3).cpu().numpy()

    # -- sampling ---------------------------------------------------------------------
    def shared_noise(self, shape, alpha: float,
                     generator: torch.Generator | list[torch.Generator] | None) -> torch.Tensor:
        """Per-frame noise mixed with the noise of frame 0 (the authors' eps_s).

        With a list of generators (one per video, as in diffusers), video i's noise comes from
        generator i alone, so a batch of videos starts from the same noise as each video alone.
        """
        if isinstance(generator, list):
            if len(generator) != shape[0]:
                raise ValueError(f"got {len(generator)} generators for {shape[0]} videos")
            noise = torch.cat([torch.randn((1, *shape[1:]), generator=g, device=g.device) for g in generator])
        else:
            noise = torch.randn(shape, generator=generator, device=getattr(generator, "device", "cpu"))
        return alpha * noise[:, :, :1] + (1 - alpha) * noise

    @torch.no_grad()
    def __call__(self, prompt: str | list[str], first_frame: np.ndarray | list[np.ndarray] | None, *,
                 num_frames: int = 16, height: int = 320, width: int = 512, num_inference_steps: int = 50,
                 guidance_scale: float = 7.5, alpha: float = 0.2, adain: bool = True,
                 histogram_matching: bool = True, negative_prompt: str = "",
                 generator: torch.Generator | list[torch.Generator] | None = None,
                 latents: torch.Tensor | None = None,
                 callback: Callable[[int, torch.Tensor], None] | None = None,
                 progress: bool = True) -> LampPipelineOutput:
        """Generate `num_frames` frames per prompt whose frame 0 is `first_frame`.

        first_frame: uint8 image [h,w,3] (one per prompt, or one for all), any size: it is
            scaled to cover HxW and centre-cropped (no distortion). None: no first frame
            (no pinned frame 0, no shared-noise mixing; all frames from noise and the prompt).
        generator: one for the batch, or one per prompt (each video then depends on its own only).
        latents: optional initial noise [b,c,f,h,w] (e.g. from DDIM inversion); then no
            shared-noise mixing is applied.
        callback(step_index, latents) is called after every denoising step.
        """
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        b = len(prompts)
        if height % self.vae_scale or width % self.vae_scale:
            raise ValueError(f"height and width must be multiples of {self.vae_scale}, got {height}x{width}")
        pinned = first_frame is not None
        if pinned:
            firsts = [first_frame] if isinstance(first_frame, np.ndarray) and first_frame.ndim == 3 else first_frame
            if len(firsts) == 1 and b > 1:
                firsts = firsts * b
            if len(firsts) != b:
                raise ValueError(f"got {len(firsts)} first frames for {b} prompts")
            firsts = np.stack([fit_frames(f[None], height, width)[0] for f in firsts])
            z0 = self.encode_frames(firsts)[:, :, None]  # [b,c,1,h,w]

        text = self.encode_prompt(prompts)
        do_cfg = guidance_scale > 1.0
        if do_cfg:
            text = torch.cat([self.encode_prompt([negative_prompt] * b), text])

        shape = (b, self.vae.config.latent_channels, num_frames, height // self.vae_scale, width // self.vae_scale)
        if latents is None:  # the shared-noise term is tied to the given frame 0: none without one
            latents = self.shared_noise(shape, alpha if pinned else 0.0, generator) * self.scheduler.init_noise_sigma
        latents = latents.to(self.device, self.vae.dtype)
        first = 1 if pinned else 0  # the frames the scheduler moves start here
        if pinned:
            latents = torch.cat([z0, latents[:, :, 1:]], dim=2)

        self.scheduler.set_timesteps(num_inference_steps, device=self.device)
        for i, t in enumerate(tqdm(self.scheduler.timesteps, desc="sample", leave=False, disable=not progress)):
            model_in = torch.cat([latents] * 2) if do_cfg else latents
            model_in = self.scheduler.scale_model_input(model_in, t)
            eps = self.unet(model_in, t, text.to(self.unet.dtype)).sample.to(latents.dtype)
            if do_cfg:
                uncond, cond = eps.chunk(2)
                eps = uncond + guidance_scale * (cond - uncond)
            moved = self.scheduler.step(eps[:, :, first:], t, latents[:, :, first:]).prev_sample
            latents = torch.cat([z0, moved], dim=2) if pinned else moved
            if callback is not None:
                callback(i, latents)

        if adain:
            latents = adain_latents(latents)
        frames = self.decode_latents(latents)
        if histogram_matching:
            frames = np.stack([match_histograms(v) for v in frames])
        return LampPipelineOutput(frames=frames)
