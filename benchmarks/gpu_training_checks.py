"""Training options that only a CUDA GPU can check, on the small SD v1.x-shaped model (random weights).

    python -m benchmarks.gpu_training_checks --out benchmarks/results/gpu_training_checks.json

Checks (each reports its numbers, its tolerance and "pass" / "fail" / "skipped"):
  cpu_bf16_parity       bf16 autocast vs fp32: per-step loss within 4 bf16 unit roundoffs (4 x 2^-8),
                        relative (same bound as tests/test_training_reliability.py). Runs anywhere.
  cuda_fp16_resume      fp16 autocast + GradScaler on CUDA: a run stopped after k steps and resumed from
                        its checkpoint ends with the uninterrupted run's losses and weights (exact), and
                        the checkpoint holds the GradScaler's state (scale, growth tracker).
  cuda_8bit_adam        bitsandbytes AdamW8bit vs torch AdamW (fp32 training, same seed): per-step loss
                        within 4 x 2^-8 relative. The 8-bit optimizer keeps Adam's moments quantised
                        blockwise to 8 bits (relative error ~2^-8 of a block's range), so each update
                        differs from AdamW's by about that fraction of lr: at lr 1e-4 over a few steps
                        the loss moves far less than the bound.
Without a CUDA GPU the two cuda_* checks are "skipped" with the reason, and the script says that a
GPU is needed for them (exit code 0; 1 if a check that ran failed).
"""
from __future__ import annotations

import argparse
import copy
import sys
import tempfile
from pathlib import Path

import torch

from lamp_model import LampUNet
from lamp_model.small import build_sd
from lamp_model.training import STATE_FILE, TrainSettings, train_motion

from .common import machine_info, write_json

REL_TOL = 4 * 2.0 ** -8
NEEDS_GPU = "needs a CUDA GPU (torch.cuda.is_available() is false here); run this script on a GPU machine"


def _setup(device: torch.device, frames: int, seed: int = 0):
    with tempfile.TemporaryDirectory() as tok:
        sd = build_sd(tok)
    ids = sd.tokenizer(["horse run"], padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        text = sd.text_encoder(ids)[0]
    clips = torch.randn((3, 4, frames, 4, 6), generator=torch.Generator().manual_seed(seed))
    return sd, clips, text.to(device)


def _unet(sd, device: torch.device) -> LampUNet:
    unet = LampUNet.from_unet2d(copy.deepcopy(sd.unet)).to(device)
    with torch.no_grad():  # off the zero init, so every trainable parameter gets a gradient
        for _, p in unet.trainable_parameters():
            p.add_(0.01)
    return unet


def _rel_diff(a: list[float], b: list[float]) -> float:
    return max(abs(x - y) / abs(y) for x, y in zip(a, b))


def check_parity(sd, clips, text, device, steps: int, **options) -> dict:
    base = train_motion(_unet(sd, device), sd.train_scheduler(), clips, text,
                        TrainSettings(steps=steps, lr=1e-4, seed=5))
    other = train_motion(_unet(sd, device), sd.train_scheduler(), clips, text,
                         TrainSettings(steps=steps, lr=1e-4, seed=5, **options))
    diff = _rel_diff(other, base)
    return {"options": options, "steps": steps, "loss_plain": base, "loss": other,
            "max_rel_diff": diff, "rel_tol": REL_TOL, "status": "pass" if diff <= REL_TOL else "fail"}


def check_fp16_resume(sd, clips, text, device, steps: int) -> dict:
    settings = TrainSettings(steps=steps, lr=1e-3, seed=1, checkpoint_every=max(1, steps // 2),
                             mixed_precision="fp16")
    full = _unet(sd, device)
    losses_full = train_motion(full, sd.train_scheduler(), clips, text, settings)
    with tempfile.TemporaryDirectory() as ckpt:
        train_motion(_unet(sd, device), sd.train_scheduler(), clips, text, settings, ckpt,
                     stop_after=steps // 2)
        scaler_state = torch.load(Path(ckpt) / STATE_FILE, weights_only=True).get("scaler", {})
        resumed = _unet(sd, device)
        losses_resumed = train_motion(resumed, sd.train_scheduler(), clips, text, settings, ckpt)
    same_weights = all(torch.equal(p, q) for (_, p), (_, q) in zip(full.trainable_parameters(),
                                                                    resumed.trainable_parameters()))
    ok = bool(scaler_state) and losses_resumed == losses_full and same_weights
    return {"steps": steps, "stopped_after": steps // 2, "scaler_state_in_checkpoint": scaler_state,
            "same_losses": losses_resumed == losses_full, "same_weights": same_weights,
            "loss": losses_full, "status": "pass" if ok else "fail"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--frames", type=int, default=4)
    ap.add_argument("--out", default=None, help="JSON result file")
    args = ap.parse_args(argv)

    cpu = torch.device("cpu")
    cuda = torch.device("cuda") if torch.cuda.is_available() else None
    result = {"machine": machine_info(cuda or cpu), "checks": {}}
    checks = result["checks"]
    sd, clips, text = _setup(cpu, args.frames)
    checks["cpu_bf16_parity"] = check_parity(sd, clips, text, cpu, args.steps, mixed_precision="bf16")
    if cuda is None:
        checks["cuda_fp16_resume"] = {"status": "skipped", "reason": NEEDS_GPU}
        checks["cuda_8bit_adam"] = {"status": "skipped", "reason": NEEDS_GPU}
    else:
        sd_gpu = copy.deepcopy(sd)
        checks["cuda_fp16_resume"] = check_fp16_resume(sd_gpu, clips, text.to(cuda), cuda, args.steps)
        try:
            import bitsandbytes  # noqa: F401
        except ImportError:
            checks["cuda_8bit_adam"] = {"status": "skipped", "reason": "needs bitsandbytes (pip install bitsandbytes)"}
        else:
            checks["cuda_8bit_adam"] = check_parity(sd_gpu, clips, text.to(cuda), cuda, args.steps,
                                                    use_8bit_adam=True, mixed_precision="no")
    for name, check in checks.items():
        detail = check.get("reason") or (f"max relative loss difference {check['max_rel_diff']:.2e} "
                                         f"(tolerance {check['rel_tol']:.2e})" if "max_rel_diff" in check else
                                         f"same losses {check.get('same_losses')}, same weights "
                                         f"{check.get('same_weights')}")
        print(f"{name}: {check['status']}: {detail}")
    if cuda is None:
        print("cuda_fp16_resume and cuda_8bit_adam were not run: a CUDA GPU is needed for them")
    write_json(args.out, result)
    return 1 if any(c["status"] == "fail" for c in checks.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
