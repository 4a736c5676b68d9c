"""LampUNet: the LAMP video UNet, inflated in place from a diffusers 2D UNet.

The 2D UNet runs unchanged on `(b f)` images, so its pretrained weights, its
per-frame GroupNorm and its cross-attention are exactly those of Stable
Diffusion. LAMP adds (spec "Model"):
  * a TSM layer around every 2D conv of the resnets, samplers, conv_in/conv_out;
  * first-frame spatial self-attention (an attention processor on every attn1);
  * temporal attention after the feed-forward of every transformer block.
All new layers start as exact identities, so at init the video UNet computes
the 2D UNet on every frame.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import ConfigMixin, ModelMixin, UNet2DConditionModel
from diffusers.configuration_utils import register_to_config
from diffusers.models.attention import BasicTransformerBlock
from diffusers.models.resnet import Downsample2D, ResnetBlock2D, Upsample2D
from diffusers.utils import BaseOutput
from safetensors import safe_open
from torch import nn

from .attention import FirstFrameAttnProcessor
from .config import LampParams
from .layers import FrameContext, LampTransformerBlock, TSMConv2d
from .io import save_safetensors

NEW_LAYER_MARKERS = (".temporal.", ".gate.", ".temporal_attn.")
# The architecture switches (ablations and options) with their defaults, as params.yaml's
# `lamp` section defines them; a motion checkpoint records them and only loads into a
# UNet built with the same ones.
SWITCH_DEFAULTS = LampParams().model_dump()
SWITCHES = tuple(SWITCH_DEFAULTS)
QUERY_MARKER = "attn1.to_q."


class MotionCheckpointError(ValueError):
    """A motion checkpoint that does not fit this UNet (other base, other switches, not safetensors)."""


@dataclass
class LampUNetOutput(BaseOutput):
    sample: torch.Tensor  # [b, c, f, h, w]


class LampUNet(ModelMixin, ConfigMixin):
    """Video UNet `[b, c, f, h, w] -> [b, c, f, h, w]` built around a `UNet2DConditionModel`."""

    ignore_for_config = ["unet2d"]
    _supports_gradient_checkpointing = True
    # Regional torch.compile (`compile_repeated_blocks`, diffusers' ModelMixin): compile each of these
    # repeated blocks once per shape instead of the whole UNet; the parameter names stay the same.
    _repeated_blocks = ("ResnetBlock2D", "LampTransformerBlock")

    @register_to_config
    def __init__(self, unet_config: dict | None = None, tsm: bool = True, prediction_conv1d: bool = True,
                 first_frame_attention: bool = True, temporal_attention: bool = True,
                 temporal_positions: bool = False, unet2d: UNet2DConditionModel | None = None):
        super().__init__()
        if unet2d is None:
            if unet_config is None:
                raise ValueError("LampUNet needs either unet_config or a unet2d to inflate")
            unet2d = UNet2DConditionModel.from_config(unet_config)
        self.ctx = FrameContext()
        self.unet = unet2d
        self._inflate()

    @classmethod
    def from_unet2d(cls, unet2d: UNet2DConditionModel, *, tsm: bool = True, prediction_conv1d: bool = True,
                    first_frame_attention: bool = True, temporal_attention: bool = True,
                    temporal_positions: bool = False) -> "LampUNet":
        """Inflate a (pretrained) 2D UNet in place; its weights are kept unchanged."""
        model = cls(unet_config=dict(unet2d.config), tsm=tsm, prediction_conv1d=prediction_conv1d,
                    first_frame_attention=first_frame_attention, temporal_attention=temporal_attention,
                    temporal_positions=temporal_positions, unet2d=unet2d)
        if unet2d.dtype != torch.float32 or unet2d.device.type != "cpu":
            model.to(device=unet2d.device, dtype=unet2d.dtype)
        return model

    # -- construction ---------------------------------------------------------------
    def _inflate(self) -> None:
        # The new layers' non-zero initial weights (temporal attention q/k/v) come from a
        # fixed seed, so the same base UNet always inflates to the same video UNet.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            self._add_lamp_layers()

    def _add_lamp_layers(self) -> None:
        cfg = self.config
        for p in self.unet.parameters():
            p.requires_grad_(False)
        if cfg.tsm:
            for module in list(self.unet.modules()):
                self._wrap_convs(module, causal=cfg.prediction_conv1d)
            for name in ("conv_in", "conv_out"):
                setattr(self.unet, name, TSMConv2d(getattr(self.unet, name), self.ctx, causal=cfg.prediction_conv1d))
        if cfg.temporal_attention:
            for module in list(self.unet.modules()):
                blocks = getattr(module, "transformer_blocks", None)
                if blocks is not None:
                    for i, block in enumerate(blocks):
                        if isinstance(block, BasicTransformerBlock):
                            blocks[i] = LampTransformerBlock(block, self.ctx, positions=cfg.temporal_positions)
        if cfg.first_frame_attention:
            processors = dict(self.unet.attn_processors)
            for name in processors:
                if name.endswith("attn1.processor") and "temporal_attn" not in name:
                    processors[name] = FirstFrameAttnProcessor(self.ctx)
            self.unet.set_attn_processor(processors)
        for name, p in self.named_parameters():
            p.requires_grad_(self._is_trainable(name))

    def _wrap_convs(self, module: nn.Module, causal: bool) -> None:
        if isinstance(module, ResnetBlock2D):
            names = ("conv1", "conv2", "conv_shortcut")
        elif isinstance(module, (Downsample2D, Upsample2D)):
            names = ("conv",)
        else:
            return
        for name in names:
            conv = getattr(module, name, None)
            if isinstance(conv, nn.Conv2d):
                setattr(module, name, TSMConv2d(conv, self.ctx, causal=causal))

    @staticmethod
    def _is_trainable(name: str) -> bool:
        return any(m in f".{name}" for m in NEW_LAYER_MARKERS) or QUERY_MARKER in name

    # -- the tuned weights ------------------------------------------------------------
    def trainable_parameters(self) -> list[tuple[str, nn.Parameter]]:
        """(name, parameter) pairs LAMP tunes: new layers and attn1.to_q."""
        return [(n, p) for n, p in self.named_parameters() if self._is_trainable(n)]

    def motion_state_dict(self) -> dict[str, torch.Tensor]:
        return {n: p.detach().clone().contiguous() for n, p in self.trainable_parameters()}

    def load_motion_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Load tuned weights; every key and shape must match this UNet's trainable set."""
        own = dict(self.trainable_parameters())
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        wrong = [k for k in own if k in state and state[k].shape != own[k].shape]
        if missing or unexpected or wrong:
            detail = "; ".join(filter(None, [
                f"{len(missing)} missing (e.g. {missing[0]})" if missing else "",
                f"{len(unexpected)} unexpected (e.g. {unexpected[0]})" if unexpected else "",
                f"{len(wrong)} with other shapes (e.g. {wrong[0]}: {tuple(state[wrong[0]].shape)} vs "
                f"{tuple(own[wrong[0]].shape)})" if wrong else "",
            ]))
            raise MotionCheckpointError(
                f"motion checkpoint does not fit this UNet ({detail}): it was tuned on another base model "
                "or with other ablation switches")
        with torch.no_grad():
            for k, p in own.items():
                p.copy_(state[k].to(dtype=p.dtype, device=p.device))

    def lamp_switches(self) -> dict[str, bool]:
        return {k: bool(self.config[k]) for k in SWITCHES}

    def save_motion(self, path: str | Path, extra_metadata: dict | None = None) -> Path:
        """Write the tuned weights (only) as safetensors, with the switches in its metadata."""
        metadata = {"format": "lamp-motion", "lamp_switches": json.dumps(self.lamp_switches())}
        metadata.update({k: str(v) for k, v in (extra_metadata or {}).items()})
        return save_safetensors(self.motion_state_dict(), path, metadata)

    def load_motion(self, path: str | Path) -> dict[str, str]:
        """Load a motion checkpoint written by `save_motion`; returns its metadata."""
        state, metadata = read_motion_file(path)
        switches = recorded_switches(metadata)
        if switches and switches != self.lamp_switches():
            raise MotionCheckpointError(
                f"{path}: tuned with switches {switches}, but this UNet has {self.lamp_switches()}")
        try:
            self.load_motion_state_dict(state)
        except MotionCheckpointError as e:
            raise MotionCheckpointError(f"{path}: {e}") from None
        return metadata

    # -- forward -----------------------------------------------------------------------
    def compile_repeated_blocks(self, *args, **kwargs) -> None:
        """torch.compile each repeated block (arguments go to torch.compile), allowing one graph per
        distinct block shape and grad mode: with dynamo's default limit of 8 graphs per code object,
        the blocks of a full-size UNet past the 8th shape would silently run eagerly."""
        import torch._dynamo

        blocks = sum(type(m).__name__ in self._repeated_blocks for m in self.modules())
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 2 * blocks)
        super().compile_repeated_blocks(*args, **kwargs)

    def enable_gradient_checkpointing(self) -> None:
        self.unet.enable_gradient_checkpointing()

    def forward(self, sample: torch.Tensor, timestep, encoder_hidden_states: torch.Tensor,
                return_dict: bool = True) -> LampUNetOutput | tuple:
        """sample [b,c,f,h,w], timestep scalar or [b], encoder_hidden_states [b,n,d]."""
        b, c, f, h, w = sample.shape
        self.ctx.num_frames = f
        x = sample.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)
        t = torch.as_tensor(timestep, device=sample.device)
        t = t.expand(b) if t.ndim == 0 else t
        t = t.repeat_interleave(f)
        text = encoder_hidden_states.repeat_interleave(f, dim=0)
        out = self.unet(x, t, encoder_hidden_states=text).sample
        out = out.reshape(b, f, -1, h, w).permute(0, 2, 1, 3, 4)
        return LampUNetOutput(sample=out) if return_dict else (out,)


def recorded_switches(metadata: dict[str, str]) -> dict[str, bool] | None:
    """The switches in a motion checkpoint's metadata (None if not recorded).

    Checkpoints written before a switch existed lack its key; they were tuned with it
    at its default, so the default fills it in.
    """
    raw = metadata.get("lamp_switches")
    return {**SWITCH_DEFAULTS, **{k: bool(v) for k, v in json.loads(raw).items()}} if raw else None


def read_motion_file(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a motion checkpoint, with a clear error when it is not a safetensors file."""
    path = Path(path)
    if not path.is_file():
        raise MotionCheckpointError(f"{path}: motion checkpoint not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises its own error types for foreign files
        raise MotionCheckpointError(
            f"{path}: not a safetensors motion checkpoint ({type(e).__name__}); "
            "pass a file written by `lamp train` / the tune stage") from None
    return state, metadata
