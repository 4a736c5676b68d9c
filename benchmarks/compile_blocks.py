"""Regional torch.compile of the LAMP UNet: compile time, then eager vs compiled step time, same outputs.

    python -m benchmarks.compile_blocks --out benchmarks/results/compile_blocks_cpu.json   # the world's model, CPU
    python -m benchmarks.compile_blocks --backend aot_eager --repeats 1                    # graph capture only

`LampUNet.compile_repeated_blocks()` (diffusers' regional compilation) compiles every
ResnetBlock2D (with its TSM convs) and LampTransformerBlock (2D block + first-frame
attention + temporal attention) once per input shape. Measured here, in one process on
the same weights and inputs, alternating eager / compiled repeats (median):
  * the first call of each step kind, which includes compiling (reported on its own);
  * a tuning step (forward + backward of the noise loss) and a CFG sampling step (batch 2);
  * the largest output difference and the relative difference of all trainable gradients.
Default: the motion world's base-model shape from params.yaml (batch 4 clips of 16 frames,
8 x 12 latents). benchmarks/gpu_perf.py runs `measure` at the SD v1.4 shape on a GPU.
"""
from __future__ import annotations

import argparse
import copy
import datetime
import tempfile
import time

import torch

from lamp_model.config import load_params
from lamp_model.small import build_sd
from lamp_model.unet import LampUNet

from .common import machine_info, median, pick_device, sync, write_json


def _inputs(unet: LampUNet, batch: int, frames: int, height: int, width: int, device: torch.device, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    c = unet.unet.config.in_channels
    d = unet.unet.config.cross_attention_dim
    sample = torch.randn(batch, c, frames, height, width, generator=g).to(device)
    text = torch.randn(batch, 77, d, generator=g).to(device)
    target = torch.randn(sample.shape, generator=g).to(device)
    return sample, text, target


def measure(unet: LampUNet, *, batch: int, frames: int, height: int, width: int, device: torch.device,
            backend: str = "inductor", repeats: int = 5, autocast_dtype: torch.dtype | None = None) -> dict:
    """Eager vs regionally compiled `unet` (a copy is compiled): seconds and differences."""
    eager = unet.to(device).train()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # the new layers start as identities (zero gates): give them weights as after tuning
        for _, p in eager.trainable_parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=g).to(p.device, p.dtype))
            p.requires_grad_(True)
    compiled = copy.deepcopy(eager)
    sample, text, target = _inputs(eager, batch, frames, height, width, device)
    t = torch.full((batch,), 500, device=device)
    autocast = (torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype is not None
                else torch.autocast(device.type, enabled=False))

    def train_step(model):
        model.zero_grad(set_to_none=True)
        with autocast:
            out = model(sample, t, text).sample
            loss = torch.nn.functional.mse_loss(out.float(), target)
        loss.backward()
        return out.detach()

    @torch.no_grad()
    def sample_step(model):
        with autocast:
            return model(torch.cat([sample[:1]] * 2), t[:1].expand(2), torch.cat([text[:1]] * 2)).sample

    def seconds(fn):
        sync(device)
        t0 = time.perf_counter()
        out = fn()
        sync(device)
        return time.perf_counter() - t0, out

    t0 = time.perf_counter()
    compiled.compile_repeated_blocks(backend=backend, dynamic=False)
    result = {"backend": backend, "compile_call_s": time.perf_counter() - t0}
    # First calls: eager warm-up; compiled = tracing + code generation (+ the step itself).
    seconds(lambda: train_step(eager))
    result["first_train_step_compiled_s"], _ = seconds(lambda: train_step(compiled))
    seconds(lambda: sample_step(eager))
    result["first_sample_step_compiled_s"], _ = seconds(lambda: sample_step(compiled))

    times = {k: [] for k in ("train_eager", "train_compiled", "sample_eager", "sample_compiled")}
    for _ in range(repeats):  # alternate, so load changes on a shared machine hit both alike
        for kind, step in (("train", train_step), ("sample", sample_step)):
            for name, model in (("eager", eager), ("compiled", compiled)):
                s, _ = seconds(lambda: step(model))
                times[f"{kind}_{name}"].append(s)
    for k, v in times.items():
        result[f"{k}_s"] = median(v)
    result["train_speedup"] = result["train_eager_s"] / result["train_compiled_s"]
    result["sample_speedup"] = result["sample_eager_s"] / result["sample_compiled_s"]

    out_e, out_c = train_step(eager), train_step(compiled)
    grads_e = {n: p.grad for n, p in eager.trainable_parameters()}
    grads_c = {n: p.grad for n, p in compiled.trainable_parameters()}
    result["max_abs_diff_output"] = float((out_e.float() - out_c.float()).abs().max())
    diff = torch.cat([(grads_e[n] - grads_c[n]).flatten().float() for n in grads_e])
    result["rel_diff_grad"] = float(diff.norm() / torch.cat([g.flatten().float() for g in grads_e.values()]).norm())
    result["max_abs_diff_sample"] = float((sample_step(eager).float() - sample_step(compiled).float()).abs().max())
    return result


def world_unet(params_path: str = "params.yaml") -> tuple[LampUNet, dict]:
    """The motion world's base UNet shape (random init) inflated to LAMP, and its tuning shape."""
    p = load_params(params_path)
    bt = p.base_train
    with tempfile.TemporaryDirectory() as tok:
        comps = build_sd(tok, unet_channels=bt.unet_channels, text_dim=bt.text_dim, heads=bt.heads,
                         vae_channels=bt.vae_channels, unet_norm_groups=bt.unet_norm_groups, seed=bt.seed)
    down = 2 ** (len(bt.vae_channels) - 1)
    shape = dict(batch=p.train.batch_size, frames=p.clips.frames, height=p.clips.height // down,
                 width=p.clips.width // down)
    return LampUNet.from_unet2d(comps.unet, **p.lamp.model_dump()), shape


def print_summary(r: dict) -> None:
    print(f"backend {r['backend']}: first compiled tuning step {r['first_train_step_compiled_s']:.1f} s, "
          f"first sampling step {r['first_sample_step_compiled_s']:.1f} s (compiling included)")
    print(f"tuning step   eager {r['train_eager_s'] * 1e3:7.1f} ms  compiled {r['train_compiled_s'] * 1e3:7.1f} ms  "
          f"speed-up {r['train_speedup']:.2f}x")
    print(f"sampling step eager {r['sample_eager_s'] * 1e3:7.1f} ms  compiled {r['sample_compiled_s'] * 1e3:7.1f} ms  "
          f"speed-up {r['sample_speedup']:.2f}x")
    print(f"differences: output {r['max_abs_diff_output']:.2e}, sampling {r['max_abs_diff_sample']:.2e}, "
          f"gradients (relative, all trainable) {r['rel_diff_grad']:.2e}")


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--backend", default="inductor", help="torch.compile backend (aot_eager: capture only)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    torch.manual_seed(0)
    unet, shape = world_unet(args.params)
    result = {"date": datetime.date.today().isoformat(), "machine": machine_info(device), "shape": shape,
              **measure(unet, **shape, device=device, backend=args.backend, repeats=args.repeats)}
    print_summary(result)
    write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
