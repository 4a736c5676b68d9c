"""Real-size GPU performance of LAMP in one run (random init at the real shapes, no download).

    python -m benchmarks.gpu_perf --out benchmarks/results/gpu_perf_h100.json     # ~3-6 min on an H100
    python -m benchmarks.gpu_perf --tiny --device cpu                             # tiny widths, < 1 min on CPU

Measures, in this order (each part releases its models before the next):
  1. layouts: the LAMP layers' old vs new layouts at an SD v1.4 feature-map size (bf16),
     same process, alternating repeats (benchmarks/lamp_layouts.py).
  2. train: LAMP and plain 2D UNet, bf16 autocast (fp32 weights, as configs/real.yaml tunes),
     with and without gradient checkpointing: loss forward + backward time, the FLOPs counted
     by benchmarks/flops.py -> MFU, CUDA peak memory; the CFG sampling step (batch 2) likewise.
     The LAMP/plain time ratio is printed beside the FLOP ratio.
  3. sdxl: the SD-XL-shaped first-frame model (UNet, VAE, both text encoders), one first frame
     at its native size via lamp_model.first_frame.from_sdxl; seconds and peak; then released.
  4. sample: one video of 16 x 320 x 512 through LampPipeline (shared noise, DDIM 50 steps, CFG
     12.5, AdaIN + histogram matching, VAE decode, text encoder) in fp16 and in bf16 weights.
  5. edit: lamp_model.editing: DDIM inversion of a 16-frame video, then generation from it.
  6. compile: regional torch.compile of the LAMP UNet (benchmarks/compile_blocks.py): compile time,
     then eager vs compiled tuning and CFG sampling steps in bf16 autocast, and their differences.
Warm-up calls (2 steps for pipelines) are excluded; figures are medians over --repeats.
Random weights: the images are noise and fp16 may overflow to NaN; the timings are the real cost.
"""
from __future__ import annotations

import argparse
import datetime
import gc
import tempfile
import time
from types import SimpleNamespace

import numpy as np
import torch
from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTextModelWithProjection

from lamp_model.small import (SD_SCHEDULE, build_sdxl, build_tokenizer, small_text_config, small_unet_config,
                              small_vae_config, sd14_unet_config, sdxl_unet_config)
from lamp_model.unet import LampUNet

from . import compile_blocks, lamp_layouts
from .bench_latent_cache import sd_vae_config
from .bench_model import FramesAsImages, time_train_steps
from .common import machine_info, median, pick_device, sync, write_json
from .flops import count_config, dense_bf16_peak_tflops, mfu

PROMPT = "a horse running on the beach"


def sizes(tiny: bool) -> dict:
    if tiny:
        return dict(config="small", frames=4, height=64, width=64, steps=2, heads=2, text=(32, 2, 2),
                    text2=(32, 2, 2), unet=small_unet_config((32, 64), 32, 1), vae=small_vae_config())
    return dict(config="sd14", frames=16, height=320, width=512, steps=50, heads=8, text=(768, 12, 12),
                text2=(1280, 32, 20), unet=sd14_unet_config(), vae=sd_vae_config())


class Peak:
    """CUDA peak allocated memory (GiB) inside a `with` block; None on CPU."""

    def __init__(self, device: torch.device):
        self.device, self.gib = device, None

    def __enter__(self):
        if self.device.type == "cuda":
            sync(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            sync(self.device)
            self.gib = round(torch.cuda.max_memory_allocated(self.device) / 2**30, 3)


def release(device: torch.device) -> float | None:
    """Free what the last part left behind; the memory still allocated (GiB)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        return round(torch.cuda.memory_allocated(device) / 2**30, 3)
    return None


def seconds(fn, device: torch.device) -> float:
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


# -- 2. training and sampling steps ---------------------------------------------------------------
def train_part(s: dict, args, device: torch.device, flops: dict, gpu: str) -> dict:
    lh, lw = s["height"] // 8, s["width"] // 8
    latents = torch.randn(1, 4, s["frames"], lh, lw, device=device)
    text = torch.randn(1, 77, s["unet"]["cross_attention_dim"], device=device)
    bench_args = SimpleNamespace(bf16=True, warmup_frames=0)
    out = {}
    for name in ("lamp", "plain"):
        torch.manual_seed(0)
        with torch.device(device):
            unet2d = UNet2DConditionModel(**s["unet"])
            model = LampUNet.from_unet2d(unet2d) if name == "lamp" else FramesAsImages(unet2d)
        if name == "plain":  # the baseline trains attn1.to_q only (as benchmarks/flops.py counts it)
            for n, p in model.named_parameters():
                p.requires_grad_("attn1.to_q." in n)
        trainable = [p for p in model.parameters() if p.requires_grad]
        inner = model.unet
        for ckpt in (False, True):
            (inner.enable_gradient_checkpointing if ckpt else inner.disable_gradient_checkpointing)()
            model.train()
            optimizer = torch.optim.AdamW(trainable, lr=3e-5) if name == "lamp" else None
            print(f"{name} training step, bf16, gradient checkpointing {ckpt}:", flush=True)
            with Peak(device) as peak:
                recs = time_train_steps(model, trainable, latents, text, device, bench_args, args.warmup,
                                        args.repeats, optimizer)
            fwd_bwd = median([r["forward_s"] + r["backward_s"] for r in recs])
            key = f"{name}_bf16{'_ckpt' if ckpt else ''}"
            out[key] = {"fwd_bwd_s": fwd_bwd, "step_s": median([r["total_s"] for r in recs]),
                        "flops": flops[name]["train_step"], "tflops_per_s": flops[name]["train_step"] / fwd_bwd / 1e12,
                        "mfu": mfu(flops[name]["train_step"], fwd_bwd, gpu), "cuda_peak_gib": peak.gib}
            del optimizer
            for p in trainable:
                p.grad = None
        inner.disable_gradient_checkpointing()
        model.eval()
        cfg_latents, cfg_text = torch.cat([latents] * 2), torch.cat([text] * 2)
        t = torch.tensor([500, 500], device=device)

        def step():
            with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16):
                model(cfg_latents, t, cfg_text)

        for _ in range(args.warmup):
            step()
        with Peak(device) as peak:
            times = [seconds(step, device) for _ in range(args.repeats)]
        sample_s = median(times)
        out[f"{name}_sampling_step_cfg_bf16"] = {
            "s": sample_s, "flops": flops[name]["sampling_step_cfg"],
            "tflops_per_s": flops[name]["sampling_step_cfg"] / sample_s / 1e12,
            "mfu": mfu(flops[name]["sampling_step_cfg"], sample_s, gpu), "cuda_peak_gib": peak.gib}
        print(f"  {name} CFG sampling step: {sample_s:.4f}s", flush=True)
        del model, unet2d, inner, trainable
        release(device)
    ratios = {}
    for lamp_key, plain_key, flop_key in (("lamp_bf16", "plain_bf16", "train_step"),
                                          ("lamp_bf16_ckpt", "plain_bf16_ckpt", "train_step"),
                                          ("lamp_sampling_step_cfg_bf16", "plain_sampling_step_cfg_bf16",
                                           "sampling_step_cfg")):
        time_key = "fwd_bwd_s" if "sampling" not in lamp_key else "s"
        time_ratio = out[lamp_key][time_key] / out[plain_key][time_key]
        flop_ratio = flops["lamp_over_plain"][flop_key]
        ratios[lamp_key] = {"time_ratio": time_ratio, "flop_ratio": flop_ratio, "gap": time_ratio / flop_ratio}
    out["lamp_over_plain"] = ratios
    return out


# -- 3.-5. pipelines ------------------------------------------------------------------------------
def sdxl_part(s: dict, args, device: torch.device, tokenizer_dir: str) -> tuple[dict, np.ndarray]:
    torch.manual_seed(0)
    with torch.device(device):
        if args.tiny:
            pipe = build_sdxl(tokenizer_dir)
        else:
            tokenizer = build_tokenizer(tokenizer_dir)
            pipe = StableDiffusionXLPipeline(
                vae=AutoencoderKL(**{**sd_vae_config(), "scaling_factor": 0.13025, "sample_size": 1024}),
                text_encoder=CLIPTextModel(small_text_config(*s["text"])),
                text_encoder_2=CLIPTextModelWithProjection(small_text_config(*s["text2"], projection_dim=1280)),
                tokenizer=tokenizer, tokenizer_2=tokenizer, unet=UNet2DConditionModel(**sdxl_unet_config()),
                scheduler=DDIMScheduler(**SD_SCHEDULE))
    pipe.to(device, torch.float16 if device.type == "cuda" else torch.float32)
    pipe.set_progress_bar_config(disable=True)
    from lamp_model.first_frame import from_sdxl

    native = pipe.unet.config.sample_size * pipe.vae_scale_factor
    from_sdxl(pipe, [PROMPT], s["height"], s["width"], steps=2)  # warm-up
    frames = []
    with Peak(device) as peak:
        secs = seconds(lambda: frames.append(from_sdxl(pipe, [PROMPT], s["height"], s["width"], steps=s["steps"])[0]),
                       device)
    result = {"native_size": native, "steps": s["steps"], "guidance": 5.0, "dtype": str(pipe.unet.dtype),
              "unet_params": sum(p.numel() for p in pipe.unet.parameters()), "s": secs, "cuda_peak_gib": peak.gib}
    del pipe
    result["allocated_after_release_gib"] = release(device)
    print(f"SD-XL first frame at {native}x{native}, {s['steps']} steps: {secs:.2f}s, peak {peak.gib} GiB", flush=True)
    return result, frames[0]


def lamp_pipeline(s: dict, args, device: torch.device, tokenizer_dir: str):
    from lamp_model.pipeline import LampPipeline

    torch.manual_seed(0)
    with torch.device(device):
        unet = LampUNet.from_unet2d(UNet2DConditionModel(**s["unet"]))
        vae = AutoencoderKL(**s["vae"])
        text_encoder = CLIPTextModel(small_text_config(*s["text"]))
    return LampPipeline(vae=vae, text_encoder=text_encoder, tokenizer=build_tokenizer(tokenizer_dir), unet=unet,
                        scheduler=DDIMScheduler(**SD_SCHEDULE))


def sample_part(pipe, s: dict, args, device: torch.device, first: np.ndarray) -> dict:
    out = {}
    for dtype in (torch.float16, torch.bfloat16):
        pipe.to(device, dtype)

        def video(steps):
            return pipe(PROMPT, first, num_frames=s["frames"], height=s["height"], width=s["width"],
                        num_inference_steps=steps, guidance_scale=12.5, generator=torch.Generator().manual_seed(0),
                        progress=False)

        video(2)  # warm-up
        with Peak(device) as peak:
            times = [seconds(lambda: video(s["steps"]), device) for _ in range(args.sample_repeats)]
        name = str(dtype).removeprefix("torch.")
        out[name] = {"s_per_video": median(times), "times_s": times, "cuda_peak_gib": peak.gib}
        print(f"LAMP video {s['frames']}x{s['height']}x{s['width']}, {s['steps']} DDIM steps, CFG 12.5, {name}: "
              f"{median(times):.2f}s, peak {peak.gib} GiB", flush=True)
    return {"steps": s["steps"], "guidance": 12.5, "frames": s["frames"], "height": s["height"], "width": s["width"],
            **out}


def edit_part(pipe, s: dict, args, device: torch.device, first: np.ndarray) -> dict:
    from lamp_model.editing import ddim_invert, edit_video, video_latents

    pipe.to(device, torch.float16 if device.type == "cuda" else torch.bfloat16)
    frames = np.random.default_rng(0).integers(0, 256, (s["frames"], s["height"], s["width"], 3), dtype=np.uint8)
    latents = video_latents(pipe, frames)
    ddim_invert(pipe, latents, 2)  # warm-up
    inverted = []
    with Peak(device) as peak:
        invert_s = seconds(lambda: inverted.append(ddim_invert(pipe, latents, s["steps"])), device)
        generate_s = seconds(lambda: edit_video(pipe, frames, PROMPT, first, height=s["height"], width=s["width"],
                                                num_inference_steps=s["steps"], guidance_scale=12.5,
                                                inverted=inverted[0]), device)
    print(f"editing: DDIM inversion {invert_s:.2f}s + generation {generate_s:.2f}s, peak {peak.gib} GiB", flush=True)
    return {"dtype": str(pipe.unet.dtype), "steps": s["steps"], "invert_s": invert_s, "generate_s": generate_s,
            "cuda_peak_gib": peak.gib, "note": "first-frame edit (ControlNet) not included"}


def run(args) -> dict:
    device = pick_device(args.device)
    s = sizes(args.tiny)
    started = time.perf_counter()
    result = {"machine": machine_info(device), "settings": {**vars(args), **{k: s[k] for k in
              ("config", "frames", "height", "width", "steps")}},
              "date": datetime.date.today().isoformat(),
              "note": "random init at the real shapes (SD v1.4 UNet / VAE / CLIP-L text encoder, SD-XL base)"
                      if not args.tiny else "tiny widths: checks that the script runs, not a measurement"}
    gpu = result["machine"].get("gpu_name", "cpu")
    result["dense_bf16_peak_tflops"] = dense_bf16_peak_tflops(gpu)

    print("1. layouts, old vs new:", flush=True)
    lh, lw = s["height"] // 8, s["width"] // 8
    layout_args = SimpleNamespace(batch=1, frames=s["frames"], channels=s["unet"]["block_out_channels"][0],
                                  heads=s["heads"], height=lh, width=lw, device=str(device), dtype="bf16",
                                  repeats=args.repeats * 4, out=None)
    result["layouts"] = {k: v for k, v in lamp_layouts.run(layout_args).items() if k not in ("machine",)}
    release(device)

    print("2. counted FLOPs (meta device) and training / sampling steps:", flush=True)
    flops = count_config(s["config"], s["frames"], s["height"], s["width"])
    result["flops"] = {k: flops[k] for k in ("latent_shape", "lamp_over_plain")}
    result["flops"].update({m: {k: flops[m][k] for k in ("train_step", "sampling_step_cfg")} for m in ("lamp", "plain")})
    result["train"] = train_part(s, args, device, flops, gpu)

    with tempfile.TemporaryDirectory() as tok:
        print("3. SD-XL first frame:", flush=True)
        result["sdxl"], first = sdxl_part(s, args, device, tok)
        print("4. LAMP sampling:", flush=True)
        pipe = lamp_pipeline(s, args, device, tok)
        pipe.set_progress_bar_config(disable=True)
        result["sample"] = sample_part(pipe, s, args, device, first)
        print("5. editing:", flush=True)
        result["edit"] = edit_part(pipe, s, args, device, first)
        del pipe
    release(device)
    print(f"6. regional torch.compile ({args.compile_backend}), bf16 autocast:", flush=True)
    torch.manual_seed(0)
    with torch.device(device):
        unet = LampUNet.from_unet2d(UNet2DConditionModel(**s["unet"]))
    result["compile"] = compile_blocks.measure(unet, batch=1, frames=s["frames"], height=lh, width=lw, device=device,
                                               backend=args.compile_backend, repeats=args.repeats,
                                               autocast_dtype=torch.bfloat16)
    del unet
    release(device)
    result["total_s"] = time.perf_counter() - started
    print_summary(result)
    return result


def print_summary(r: dict) -> None:
    print(f"\n== summary ({r['machine'].get('gpu_name', r['machine']['device'])}, "
          f"dense bf16 peak {r['dense_bf16_peak_tflops']} TFLOPS) ==")
    for key, v in r["train"].items():
        if key != "lamp_over_plain":
            t = v.get("fwd_bwd_s", v.get("s"))
            mfu_text = f"{v['mfu']:.1%}" if v["mfu"] is not None else "n/a"
            print(f"{key:32s} {t:8.4f}s  {v['flops'] / 1e12:8.2f} TFLOP  {v['tflops_per_s']:7.1f} TFLOP/s  "
                  f"MFU {mfu_text:>6s}  peak {v['cuda_peak_gib']} GiB")
    for key, v in r["train"]["lamp_over_plain"].items():
        print(f"LAMP/plain {key:28s} time {v['time_ratio']:.2f}x  FLOPs {v['flop_ratio']:.2f}x  gap {v['gap']:.2f}x")
    for layer, parts in r["layouts"].items():
        if isinstance(parts, dict) and "forward" in parts:
            print(f"layout {layer:22s} new/old fwd {parts['forward']['new_over_old']:.2f}  "
                  f"fwd+bwd {parts['forward_backward']['new_over_old']:.2f}")
    print(f"SD-XL first frame: {r['sdxl']['s']:.2f}s, peak {r['sdxl']['cuda_peak_gib']} GiB")
    for dtype in ("float16", "bfloat16"):
        v = r["sample"][dtype]
        print(f"LAMP video ({dtype}): {v['s_per_video']:.2f}s, peak {v['cuda_peak_gib']} GiB")
    print(f"editing: invert {r['edit']['invert_s']:.2f}s + generate {r['edit']['generate_s']:.2f}s")
    compile_blocks.print_summary(r["compile"])
    print(f"total {r['total_s']:.0f}s")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tiny", action="store_true", help="tiny widths, 4 frames of 64 x 64, 2 steps (runs on CPU)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--repeats", type=int, default=5, help="timed training/sampling steps (median)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--sample-repeats", type=int, default=1, help="timed videos per dtype")
    p.add_argument("--out", default=None, help="result JSON (default: benchmarks/results/gpu_perf_<gpu>_<date>.json "
                                               "on CUDA, none on CPU)")
    p.add_argument("--compile-backend", default="inductor", help="torch.compile backend of part 6 (--tiny: aot_eager)")
    args = p.parse_args(argv)
    if args.tiny:
        args.compile_backend = "aot_eager"
        args.repeats, args.warmup, args.sample_repeats = min(args.repeats, 2), 1, 1
    result = run(args)
    out = args.out
    if out is None and "gpu_name" in result["machine"]:
        gpu = result["machine"]["gpu_name"].replace("NVIDIA ", "").replace(" ", "_").lower()
        out = f"benchmarks/results/gpu_perf_{gpu}_{result['date']}.json"
    write_json(out, result)


if __name__ == "__main__":
    main()
