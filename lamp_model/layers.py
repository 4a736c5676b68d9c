"""The new layers LAMP adds to a 2D UNet: the TSM conv wrapper and temporal attention.

Both run inside a 2D UNet whose tensors are `(b f) c h w` (spatial) or
`(b f) (h w) c` (tokens). They need the frame count `f` to fold frames back out;
it travels through a shared `FrameContext` that `LampUNet.forward` sets, like
diffusers passes state to attention processors.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention
from torch import nn


@dataclass
class FrameContext:
    """Number of frames in the batch currently running through the UNet."""

    num_frames: int = 1


class TSMConv2d(nn.Module):
    """Temporal-spatial motion layer around a pretrained 2D conv.

    out = y2d + conv1d(y2d) * sigmoid(gate(y2d)), with y2d = conv2d(x) per frame.
    The conv1d runs over frames at each pixel. `causal=True` is the paper's
    video-prediction variant: frame t sees t-2, t-1, t only (left zero-padding).
    Conv1d and gate start at zero, so at init the layer is exactly the 2D conv.
    """

    def __init__(self, conv: nn.Conv2d, ctx: FrameContext, causal: bool = True, kernel_size: int = 3):
        super().__init__()
        self.conv = conv
        self.ctx = ctx
        self.causal = causal
        self.kernel_size = kernel_size
        channels = conv.out_channels
        self.temporal = nn.Conv1d(channels, channels, kernel_size, padding=0)
        self.gate = nn.Conv2d(channels, 1, kernel_size=3, padding=1)
        for layer in (self.temporal, self.gate):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y2d = self.conv(x)
        f = self.ctx.num_frames
        bf, c, h, w = y2d.shape
        b = bf // f
        # The conv1d over frames at every pixel is a (k x 1) conv2d on [b, c, f, h*w]: one
        # layout change (the padding copy of a transposed view) instead of two permute round
        # trips through [b*h*w, c, f]; the result is added back through a view.
        pad = (self.kernel_size - 1, 0) if self.causal else ((self.kernel_size - 1) // 2,) * 2
        seq = F.pad(y2d.reshape(b, f, c, h * w).transpose(1, 2), (0, 0, *pad))  # [b, c, f + k - 1, hw]
        motion = F.conv2d(seq, self.temporal.weight[..., None], self.temporal.bias)  # [b, c, f, hw]
        gate = torch.sigmoid(self.gate(y2d)).reshape(b, f, 1, h * w)
        out = torch.addcmul(y2d.reshape(b, f, c, h * w), motion.transpose(1, 2), gate)
        return out.reshape(bf, c, h, w)


def frame_positions(num_frames: int, dim: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """[f, dim] sinusoidal encoding of the frame index (Transformer style: sin on even, cos on odd channels)."""
    pos = torch.arange(num_frames, device=device, dtype=torch.float32)[:, None]
    angle = pos / 10000 ** (torch.arange(0, dim, 2, device=device, dtype=torch.float32) / dim)
    enc = torch.zeros(num_frames, dim, device=device)
    enc[:, 0::2] = torch.sin(angle)
    enc[:, 1::2] = torch.cos(angle[:, : dim // 2])
    return enc.to(dtype)


class TemporalAttention(nn.Module):
    """Self-attention over the frames at each spatial position, pre-LayerNorm, residual.

    The output projection (weight and bias) starts at zero: an exact identity at init.
    `positions=True` adds a sinusoidal frame index to the attention's (normalised) input.
    Without it attention over frames is permutation-equivariant: it cannot tell frame 2
    from frame 12, only what they contain. Not in the paper (off by default); it lifts
    motion accuracy in the 16x24 motion world (reports/world_motion.md).
    """

    def __init__(self, dim: int, heads: int, ctx: FrameContext, positions: bool = False):
        super().__init__()
        self.ctx = ctx
        self.positions = positions
        self.norm = nn.LayerNorm(dim)
        self.attn = Attention(query_dim=dim, heads=heads, dim_head=dim // heads, bias=False)
        nn.init.zeros_(self.attn.to_out[0].weight)
        nn.init.zeros_(self.attn.to_out[0].bias)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        f = self.ctx.num_frames
        bf, n, c = hidden_states.shape
        b = bf // f
        seq = hidden_states.reshape(b, f, n, c).transpose(1, 2).reshape(b * n, f, c)
        x = self.norm(seq)
        if self.positions:
            x = x + frame_positions(f, c, x.device, x.dtype)
        seq = seq + self.attn(x)
        return seq.reshape(b, n, f, c).transpose(1, 2).reshape(bf, n, c)


class LampTransformerBlock(nn.Module):
    """A pretrained 2D transformer block followed by temporal attention (after the FF)."""

    def __init__(self, block: nn.Module, ctx: FrameContext, positions: bool = False):
        super().__init__()
        self.block = block
        dim = block.norm1.normalized_shape[0]
        heads = block.attn1.heads
        self.temporal_attn = TemporalAttention(dim, heads, ctx, positions=positions)

    def forward(self, hidden_states: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        return self.temporal_attn(self.block(hidden_states, *args, **kwargs))
