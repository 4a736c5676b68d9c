"""Tune-A-Video (Wu et al. 2023): one-shot tuning on ONE video, as the LAMP paper runs it per motion.

Built on LAMP's inflation machinery (`LampUNet`), not a second UNet:
  * sparse-causal self-attention: frame i's queries attend to the keys/values of frames 0 and
    i-1 (an attention processor on every attn1, `SparseCausalAttnProcessor`);
  * temporal attention after the feed-forward of every transformer block, pre-LayerNorm, output
    zero-initialised (`LampTransformerBlock`, the same layer as TAV's `attn_temp`);
  * no TSM, no first-frame attention; trainable: `attn1.to_q`, `attn2.to_q` and the temporal
    attention, as in the authors' code; the loss on all frames (no first-frame conditioning).
Sampling starts from the DDIM-inverted latents of the template video (the authors' default;
`start_from_noise` gives plain sampling) with no first frame, shared noise or post-processing.
The template: one training video per motion, drawn by `choose_template` (seeded, recorded).
"""
from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import Attention

from ..editing import ddim_invert
from ..layers import FrameContext
from ..unet import LampUNet

TRAINABLE_MARKERS = ("attn1.to_q.", "attn2.to_q.", ".temporal_attn.")
SWITCHES = dict(tsm=False, prediction_conv1d=False, first_frame_attention=False, temporal_attention=True,
                temporal_positions=False)


def choose_template(videos: Sequence[str], seed: int) -> str:
    """The one training video TAV tunes on, drawn like the paper's "one random video of that motion"."""
    if not videos:
        raise ValueError("no training videos to choose a Tune-A-Video template from")
    return random.Random(seed).choice(sorted(videos))


class SparseCausalAttnProcessor:
    """Self-attention whose keys/values for frame i are those of frames 0 and i-1 (frame 0: 0 and 0)."""

    def __init__(self, ctx: FrameContext):
        self.ctx = ctx

    def __call__(self, attn: Attention, hidden_states: torch.Tensor, encoder_hidden_states=None,
                 attention_mask=None, temb=None, *args, **kwargs) -> torch.Tensor:
        if encoder_hidden_states is not None:
            raise ValueError("SparseCausalAttnProcessor is for self-attention (attn1) only")
        if attention_mask is not None:
            raise ValueError("SparseCausalAttnProcessor takes no attention mask")
        residual = hidden_states
        f = self.ctx.num_frames
        bf, n, c = hidden_states.shape
        b = bf // f
        frames = hidden_states.reshape(b, f, n, c)
        previous = [max(i - 1, 0) for i in range(f)]
        context = torch.cat([frames[:, [0] * f], frames[:, previous]], dim=2).reshape(bf, 2 * n, c)
        heads = attn.heads
        query = attn.to_q(hidden_states)
        key, value = attn.to_k(context), attn.to_v(context)
        head_dim = key.shape[-1] // heads
        query, key, value = (t.reshape(bf, -1, heads, head_dim).transpose(1, 2) for t in (query, key, value))
        out = F.scaled_dot_product_attention(query, key, value)
        out = out.transpose(1, 2).reshape(bf, n, heads * head_dim).to(query.dtype)
        out = attn.to_out[1](attn.to_out[0](out))
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


class TuneAVideoUNet(LampUNet):
    """The Tune-A-Video video UNet: LAMP's inflation with TAV's attention and trainable set."""

    @classmethod
    def from_unet2d(cls, unet2d: UNet2DConditionModel, **ignored) -> "TuneAVideoUNet":
        return super().from_unet2d(unet2d, **SWITCHES)

    def _add_lamp_layers(self) -> None:
        super()._add_lamp_layers()  # temporal attention only (SWITCHES)
        processors = dict(self.unet.attn_processors)
        for name in processors:
            if name.endswith("attn1.processor") and "temporal_attn" not in name:
                processors[name] = SparseCausalAttnProcessor(self.ctx)
        self.unet.set_attn_processor(processors)

    @staticmethod
    def _is_trainable(name: str) -> bool:
        return any(m in f".{name}" for m in TRAINABLE_MARKERS)

    def save_motion(self, path, extra_metadata: dict | None = None):
        return super().save_motion(path, {"method": "tune_a_video", **(extra_metadata or {})})


def pipeline(comps):
    """A LampPipeline whose unet is `comps.unet` inflated in place into a TuneAVideoUNet (trainable set on)."""
    from ..pipeline import LampPipeline

    return LampPipeline(vae=comps.vae, text_encoder=comps.text_encoder, tokenizer=comps.tokenizer,
                        unet=TuneAVideoUNet.from_unet2d(comps.unet), scheduler=comps.scheduler)


def sample(pipe, prompt: str, template_latents: torch.Tensor | None, *, num_frames: int, height: int, width: int,
           num_inference_steps: int = 50, guidance_scale: float = 7.5, seed: int = 0,
           start_from_noise: bool = False, inverted: torch.Tensor | None = None) -> np.ndarray:
    """One video uint8 [f, h, w, 3] from a `LampPipeline` whose unet is a tuned `TuneAVideoUNet`.

    By default from the DDIM inversion of `template_latents` [1,c,f,h,w] (empty prompt, all frames;
    pass `inverted` to reuse one inversion for many prompts); `start_from_noise` samples from seeded noise.
    """
    if not start_from_noise and inverted is None:
        if template_latents is None:
            raise ValueError("sampling from the inverted template needs template_latents (or inverted)")
        inverted = ddim_invert(pipe, template_latents, num_inference_steps, pin_first_frame=False)
    out = pipe(prompt, None, num_frames=num_frames, height=height, width=width,
               num_inference_steps=num_inference_steps, guidance_scale=guidance_scale, alpha=0.0, adain=False,
               histogram_matching=False, generator=torch.Generator().manual_seed(seed),
               latents=None if start_from_noise else inverted, progress=False)
    return out.frames[0]
