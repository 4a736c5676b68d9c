"""First-frame spatial self-attention, as a diffusers attention processor.

Every frame's queries attend to the keys and values of frame 0. Frame 0 thus
computes exactly the pretrained 2D self-attention, and every later frame reads
its appearance from the first frame (what LAMP's first-frame condition needs).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention

from .layers import FrameContext


class FirstFrameAttnProcessor:
    """Self-attention with K/V taken from the first frame of each video (SDPA)."""

    def __init__(self, ctx: FrameContext):
        self.ctx = ctx

    def __call__(self, attn: Attention, hidden_states: torch.Tensor, encoder_hidden_states=None,
                 attention_mask=None, temb=None, *args, **kwargs) -> torch.Tensor:
        if encoder_hidden_states is not None:
            raise ValueError("FirstFrameAttnProcessor is for self-attention (attn1) only")
        residual = hidden_states
        f = self.ctx.num_frames
        bf, n, c = hidden_states.shape
        b = bf // f

        query = attn.to_q(hidden_states)
        first = hidden_states.reshape(b, f, n, c)[:, 0]  # [b, n, c]
        key, value = attn.to_k(first), attn.to_v(first)
        heads = attn.heads
        head_dim = key.shape[-1] // heads
        key, value = (t.reshape(b, n, heads, head_dim).transpose(1, 2) for t in (key, value))
        if attention_mask is None:
            # All f frames of a video attend to the same keys: one attention per video over its
            # f*n queries, instead of f copies of frame 0's K/V. Same result, no copy.
            query = query.reshape(b, f * n, heads, head_dim).transpose(1, 2)
            out = F.scaled_dot_product_attention(query, key, value)
        else:  # a mask per frame (unused by LAMP's UNet): one attention per frame, K/V copied per frame
            attention_mask = attn.prepare_attention_mask(attention_mask, n, bf)
            attention_mask = attention_mask.view(bf, heads, -1, attention_mask.shape[-1])
            key, value = (t[:, None].expand(b, f, heads, n, head_dim).reshape(bf, heads, n, head_dim)
                          for t in (key, value))
            query = query.reshape(bf, n, heads, head_dim).transpose(1, 2)
            out = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask)
        out = out.transpose(1, 2).reshape(bf, n, heads * head_dim).to(query.dtype)
        out = attn.to_out[1](attn.to_out[0](out))
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor
