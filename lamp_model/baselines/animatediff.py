"""AnimateDiff (Guo et al. 2023): motion modules trained on much video, text-only generation.

diffusers' `MotionAdapter` + `UNetMotionModel.from_unet2d` + `AnimateDiffPipeline` on the base
SD components. Real weights: the SD v1.4 motion module the paper compares with (`mm_sd_v14.ckpt`
in guoyww/animatediff, loaded with `MotionAdapter.from_single_file`), or a diffusers adapter
folder / hub id such as guoyww/animatediff-motion-adapter-v1-5-2. In the motion world an adapter
is built for the world's small UNet and trained on all motions' training videos with their
captions (the analogue of AnimateDiff's large-scale pre-training), with every motion module's
output projection zero-initialised as in the original, so the untrained adapter adds nothing.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from diffusers import AnimateDiffPipeline, DDPMScheduler, MotionAdapter, UNet2DConditionModel, UNetMotionModel
from tqdm.auto import tqdm

from ..small import SDComponents
from ..training import lamp_loss

# The paper's baseline: AnimateDiff's SD v1.4 motion module (a single .ckpt file in the hub repo).
SD14_MOTION_MODULE = "https://huggingface.co/guoyww/animatediff/blob/main/mm_sd_v14.ckpt"
V15_ADAPTER = "guoyww/animatediff-motion-adapter-v1-5-2"  # documented option (diffusers folder layout)


def build_adapter(unet2d: UNet2DConditionModel, heads: int = 1, max_frames: int = 32, seed: int = 0) -> MotionAdapter:
    """A motion adapter shaped for `unet2d` (its widths, layers per block and GroupNorm groups), outputs at zero."""
    cfg = unet2d.config
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        adapter = MotionAdapter(block_out_channels=tuple(cfg.block_out_channels),
                                motion_layers_per_block=cfg.layers_per_block, motion_num_attention_heads=heads,
                                motion_norm_num_groups=cfg.norm_num_groups, motion_max_seq_length=max_frames,
                                use_motion_mid_block=True)
    with torch.no_grad():
        for name, module in adapter.named_modules():
            if name.endswith("proj_out"):
                module.weight.zero_()
                module.bias.zero_()
    return adapter


def motion_unet(unet2d: UNet2DConditionModel, adapter: MotionAdapter) -> UNetMotionModel:
    """The video UNet: the 2D UNet's weights (frozen) + the adapter's motion modules (trainable)."""
    unet = UNetMotionModel.from_unet2d(unet2d, adapter)
    unet.freeze_unet2d_params()
    return unet.to(unet2d.device)


def train_adapter(unet: UNetMotionModel, scheduler: DDPMScheduler, clips: torch.Tensor, text_embs: torch.Tensor,
                  steps: int, lr: float = 1e-3, batch_size: int = 4, seed: int = 0, grad_clip: float = 1.0,
                  weight_decay: float = 1e-2) -> list[float]:
    """AnimateDiff's objective on latent clips [n,c,f,h,w] with one caption embedding each [n,77,d]:
    noise on all frames, epsilon MSE on all frames; only the motion modules change. Returns the losses."""
    if len(clips) != len(text_embs):
        raise ValueError(f"{len(clips)} clips but {len(text_embs)} caption embeddings")
    params = [p for p in unet.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(seed)
    losses = []
    unet.train()
    for _ in tqdm(range(steps), desc="animatediff", leave=False):
        idx = torch.randint(0, len(clips), (batch_size,), generator=generator)
        loss = lamp_loss(_TextPerFrame(unet), scheduler, clips[idx].to(unet.device), text_embs[idx].to(unet.device),
                         generator, first_frame_conditioning=False)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
        optimizer.step()
        losses.append(loss.item())
    unet.eval()
    return losses


class _TextPerFrame(torch.nn.Module):
    """UNetMotionModel takes one text embedding per frame ([b*f, n, d], as AnimateDiffPipeline repeats
    them); LAMP's loss passes one per video ([b, n, d])."""

    def __init__(self, unet: UNetMotionModel):
        super().__init__()
        self.unet = unet

    def forward(self, sample: torch.Tensor, timestep, text: torch.Tensor):
        return self.unet(sample, timestep, text.repeat_interleave(sample.shape[2], dim=0))


def save_adapter(unet: UNetMotionModel, folder: str | Path) -> None:
    """The trained motion modules as a diffusers MotionAdapter folder (loads with `load_adapter`)."""
    unet.save_motion_modules(str(folder), safe_serialization=True)


def load_adapter(source: str, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> MotionAdapter:
    """A MotionAdapter from a diffusers folder / hub id, or an original AnimateDiff .ckpt (path or hub URL).

    Offline without the weights: one ModelUnavailableError line saying what to download.
    """
    from ..errors import ModelUnavailableError
    from ..loading import _hub_kwargs, _unavailable

    single_file = source.endswith((".ckpt", ".safetensors", ".pth"))
    try:
        if single_file:
            local = Path(source).is_file()
            adapter = MotionAdapter.from_single_file(source, torch_dtype=dtype,
                                                     **({} if local else {"local_files_only": _hub_kwargs(
                                                         "hub")["local_files_only"]}))
        else:
            adapter = MotionAdapter.from_pretrained(source, torch_dtype=dtype, **_hub_kwargs(source))
    except (OSError, ValueError, EnvironmentError) as e:
        if not single_file:
            raise _unavailable(source, "AnimateDiff motion adapter", e) from None
        reason = " ".join(str(e).split())[:200]
        raise ModelUnavailableError(
            f"cannot load the AnimateDiff motion module '{source}': not a readable file here, and not in the local "
            "Hugging Face cache with the hub out of reach. With internet, download it once (for the paper's "
            "module: `huggingface-cli download guoyww/animatediff mm_sd_v14.ckpt`) and pass the file's path. "
            f"[{type(e).__name__}: {reason}]") from None
    return adapter.to(device)


def pipeline(comps: SDComponents, adapter: MotionAdapter) -> AnimateDiffPipeline:
    """diffusers' AnimateDiffPipeline on the base components (the 2D UNet is wrapped, not changed)."""
    return AnimateDiffPipeline(vae=comps.vae, text_encoder=comps.text_encoder, tokenizer=comps.tokenizer,
                               unet=comps.unet, motion_adapter=adapter, scheduler=comps.scheduler)


def generate(pipe: AnimateDiffPipeline, prompt: str, *, num_frames: int, height: int, width: int,
             num_inference_steps: int = 50, guidance_scale: float = 7.5, seed: int = 0) -> np.ndarray:
    """One video uint8 [num_frames, height, width, 3] from the prompt alone (no first frame, as in the paper)."""
    out = pipe(prompt, num_frames=num_frames, height=height, width=width, num_inference_steps=num_inference_steps,
               guidance_scale=guidance_scale, generator=torch.Generator().manual_seed(seed), output_type="np")
    frames = np.asarray(out.frames[0])
    return (frames.clip(0, 1) * 255).round().astype(np.uint8)
