"""LAMP's "free lunch" post-processing: keep every frame's colours on frame 0's.

AdaIN on latents fixes the drift of per-channel statistics; histogram matching
in pixels fixes what is left after decoding.
"""
from __future__ import annotations

import numpy as np
import torch


def adain_latents(latents: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Match the per-frame, per-channel mean/std over HxW of frames >= 1 to frame 0.

    latents: [b, c, f, h, w]. Frame 0 is returned bit-identical.
    """
    ref = latents[:, :, :1]
    rest = latents[:, :, 1:]
    dims = (-2, -1)
    ref_mean, ref_std = ref.mean(dims, keepdim=True), ref.std(dims, keepdim=True)
    mean, std = rest.mean(dims, keepdim=True), rest.std(dims, keepdim=True)
    matched = (rest - mean) / (std + eps) * ref_std + ref_mean
    return torch.cat([ref, matched], dim=2)


def match_histograms(frames: np.ndarray) -> np.ndarray:
    """Map each RGB channel of frames >= 1 onto the histogram of frame 0 (frames uint8 [f,h,w,3])."""
    out = frames.copy()
    for c in range(3):
        ref_cdf = _cdf(frames[0, ..., c])
        for i in range(1, len(frames)):
            src = frames[i, ..., c]
            lut = np.interp(_cdf(src), ref_cdf, np.arange(256))
            out[i, ..., c] = np.round(lut[src]).astype(np.uint8)
    return out


def _cdf(channel: np.ndarray) -> np.ndarray:
    hist = np.bincount(channel.ravel(), minlength=256).astype(np.float64)
    return np.cumsum(hist) / hist.sum()
