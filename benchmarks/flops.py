"""FLOPs of a LAMP training step and sampling step, beside the plain 2D UNet on the same frames.

    python -m benchmarks.flops --config small sd14 --out benchmarks/results/flops.json

Counted with torch.utils.flop_counter.FlopCounterMode on the `meta` device: shapes only, no
memory and no arithmetic, so the SD v1.4-shaped UNet at 16 x 320 x 512 counts in seconds on a
laptop. Meta rather than CPU because on CPU scaled_dot_product_attention runs a fused kernel
the counter does not know (it counts 0 FLOPs for attention); on meta it decomposes into the
matmuls the counter does count. Counted: matmuls, convolutions, attention (2 FLOPs per
multiply-add); not counted: element-wise work (norms, activations, the AdamW update).

  train:  lamp_loss (first-frame-conditioned, batch 1) forward + backward. The plain 2D UNet
          runs the same loss on the f frames as a batch of f images with only attn1.to_q
          trainable (what benchmarks/bench_model.py times as its fwd + bwd baseline).
  sample: one no-grad UNet call on the CFG batch of 2 videos.

`mfu(flops, seconds, device_name)` turns a count and a measured time into model-FLOPs
utilisation against the GPU's dense bf16 peak (benchmarks/gpu_perf.py uses it).
"""
from __future__ import annotations

import argparse

import torch
from diffusers import DDPMScheduler
from torch.utils.flop_counter import FlopCounterMode

from lamp_model.small import SD_SCHEDULE
from lamp_model.training import lamp_loss
from lamp_model.unet import LampUNet

from .bench_model import FramesAsImages, build_unet2d, unet_config
from .common import machine_info, write_json

# Dense (no sparsity) bf16 tensor-core peaks from the vendor datasheets, TFLOPS.
DENSE_BF16_PEAK_TFLOPS = {"H100 PCIe": 756.0, "H100": 989.0, "H200": 989.0, "A100": 312.0}


def dense_bf16_peak_tflops(device_name: str) -> float | None:
    """The peak for a torch.cuda.get_device_name() string (first table key it contains), None if unknown."""
    for key, peak in DENSE_BF16_PEAK_TFLOPS.items():
        if all(word in device_name for word in key.split()):
            return peak
    return None


def mfu(flops: float, seconds: float, device_name: str) -> float | None:
    """Model-FLOPs utilisation: counted FLOPs / time / the device's dense bf16 peak (None if unknown)."""
    peak = dense_bf16_peak_tflops(device_name)
    return None if peak is None or seconds <= 0 else flops / seconds / (peak * 1e12)


def count_flops(fn) -> tuple[int, dict[str, int]]:
    """(total FLOPs, FLOPs per aten op) of one call of fn."""
    with FlopCounterMode(display=False) as counter:
        fn()
    per_op = {str(op): int(n) for op, n in counter.get_flop_counts()["Global"].items()}
    return int(counter.get_total_flops()), dict(sorted(per_op.items()))


def build_pair(config: str, device: str | torch.device = "meta") -> tuple[LampUNet, FramesAsImages]:
    """The LAMP UNet and the plain 2D UNet of one config, random init (on meta: shapes only)."""
    with torch.device(device):
        lamp = LampUNet.from_unet2d(build_unet2d(config))
        plain = FramesAsImages(build_unet2d(config))
    for name, p in plain.named_parameters():  # the baseline trains its attn1.to_q only
        p.requires_grad_("attn1.to_q." in name)
    return lamp, plain


def step_flops(model, latents: torch.Tensor, text: torch.Tensor) -> dict:
    """FLOPs of one training step (loss forward + backward) and one CFG sampling step."""
    scheduler = DDPMScheduler.from_config(SD_SCHEDULE)

    def train():
        lamp_loss(model, scheduler, latents, text, torch.Generator().manual_seed(0)).backward()

    def sample():
        with torch.no_grad():
            model(torch.cat([latents] * 2), torch.tensor([500] * 2, device=latents.device), torch.cat([text] * 2))

    model.train()
    train_total, train_ops = count_flops(train)
    model.zero_grad(set_to_none=True)
    model.eval()
    sample_total, sample_ops = count_flops(sample)
    return {"train_step": train_total, "sampling_step_cfg": sample_total,
            "train_per_op": train_ops, "sampling_per_op": sample_ops}


def count_config(config: str, frames: int, height: int, width: int, device: str = "meta") -> dict:
    lamp, plain = build_pair(config, device)
    _, text_dim = unet_config(config)
    latents = torch.randn(1, 4, frames, height // 8, width // 8, device=device)
    text = torch.randn(1, 77, text_dim, device=device)
    result = {"config": config, "frames": frames, "height": height, "width": width,
              "latent_shape": list(latents.shape), "device": str(device),
              "lamp": step_flops(lamp, latents, text), "plain": step_flops(plain, latents, text)}
    result["lamp_over_plain"] = {k: result["lamp"][k] / result["plain"][k] for k in ("train_step", "sampling_step_cfg")}
    return result


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", nargs="+", choices=["small", "sd14"], default=["small", "sd14"])
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--height", type=int, default=320)
    p.add_argument("--width", type=int, default=512)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    result = {"machine": machine_info(torch.device("cpu")), "settings": vars(args).copy(),
              "note": "FlopCounterMode on the meta device (shapes only); matmul, conv and attention FLOPs, "
                      "2 per multiply-add; element-wise ops and the optimizer not counted", "configs": {}}
    for config in args.config:
        r = count_config(config, args.frames, args.height, args.width)
        result["configs"][config] = r
        for step in ("train_step", "sampling_step_cfg"):
            print(f"{config:6s} {step:18s} LAMP {r['lamp'][step] / 1e12:9.3f} TFLOP  plain "
                  f"{r['plain'][step] / 1e12:9.3f} TFLOP  LAMP/plain {r['lamp_over_plain'][step]:.3f}", flush=True)
    write_json(args.out, result)


if __name__ == "__main__":
    main()
