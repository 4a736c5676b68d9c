"""Speed and memory of the LAMP video UNet (random weights, no download).

    python -m benchmarks.bench_model --config small --frames 16 --height 320 --width 512 \
        --device auto --repeats 3 --out benchmarks/results/small_cpu.json

Measures, in this order (so the CPU peak RSS after the training step belongs to it):
  1. train: one LAMP training step = lamp_loss forward + backward + grad clip + AdamW step on the
     trainable set (batch 1, first-frame-conditioned loss), split into its phases; peak memory.
  2. overhead: LampUNet vs the plain UNet2DConditionModel on the same frames (f frames = a batch of
     f images): no-grad forward time, forward+backward time (same loss; the plain UNet trains its
     attn1.to_q only), parameter counts.
  3. sample: time per video. small: the whole LampPipeline (DDIM + CFG, VAE, text encoder).
     sd14 / sdxl: UNet forward time per step x2 (CFG) x steps, EXTRAPOLATED (no pipeline run).
Warm-up iterations are excluded; figures are medians over --repeats.
--config sdxl: UNet forward time only (text_time conditions are random tensors) - for GPU users.
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import os
import tempfile

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, UNet2DConditionModel
from torch import nn

from lamp_model.small import SD_SCHEDULE, build_sd, sd14_unet_config, sdxl_unet_config
from lamp_model.training import lamp_loss
from lamp_model.unet import LampUNet

from .common import (current_rss_gib, machine_info, median, peak_rss_gib, pick_device, sync, timed,
                     write_json)


class FramesAsImages(nn.Module):
    """The plain 2D UNet on [b,c,f,h,w] as a batch of b*f images (what LampUNet wraps, minus LAMP)."""

    def __init__(self, unet: UNet2DConditionModel, added_cond: dict | None = None):
        super().__init__()
        self.unet = unet
        self.added_cond = added_cond

    def forward(self, sample, timestep, encoder_hidden_states):
        b, c, f, h, w = sample.shape
        x = sample.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)
        t = torch.as_tensor(timestep, device=sample.device)
        t = (t.expand(b) if t.ndim == 0 else t).repeat_interleave(f)
        text = encoder_hidden_states.repeat_interleave(f, dim=0)
        out = self.unet(x, t, encoder_hidden_states=text, added_cond_kwargs=self.added_cond).sample
        return _Out(out.reshape(b, f, -1, h, w).permute(0, 2, 1, 3, 4))


class _Out:
    def __init__(self, sample):
        self.sample = sample


def unet_config(name: str) -> tuple[dict | None, int]:
    """(UNet config or None for the small build_sd one, text embedding width)."""
    if name == "sd14":
        return sd14_unet_config(), 768
    if name == "sdxl":
        return sdxl_unet_config(), 2048
    return None, 32


def build_unet2d(name: str, seed: int = 0) -> UNet2DConditionModel:
    cfg, _ = unet_config(name)
    torch.manual_seed(seed)
    if cfg is None:  # the same small UNet build_sd makes (no tokenizer/VAE needed here)
        from lamp_model.small import small_unet_config
        return UNet2DConditionModel(**small_unet_config((32, 64), 32, 1))
    return UNet2DConditionModel(**cfg)


def count(params) -> int:
    return sum(p.numel() for p in params)


def autocast(device: torch.device, bf16: bool):
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def time_train_steps(model, trainable, latents, text, device, args, n_warmup, n_timed, optimizer=None):
    """Time loss-forward / backward / (clip + AdamW) phases of training steps; returns per-step dicts."""
    scheduler = DDPMScheduler.from_config(SD_SCHEDULE)
    gen = torch.Generator(device="cpu").manual_seed(0)
    records = []
    for i in range(n_warmup + n_timed):
        lat = latents[:, :, :args.warmup_frames] if i < n_warmup and args.warmup_frames else latents
        rec = {}
        sync(device)

        def fwd():
            with autocast(device, args.bf16):
                rec["loss"] = lamp_loss(model, scheduler, lat, text, gen)

        rec["forward_s"] = timed(fwd, device)
        cpu = timed.last_cpu_s
        if optimizer is not None:
            optimizer.zero_grad(set_to_none=True)
        rec["backward_s"] = timed(lambda: rec["loss"].backward(), device)
        cpu += timed.last_cpu_s
        if optimizer is not None:
            def opt():
                torch.nn.utils.clip_grad_norm_(trainable, 1.0)
                optimizer.step()
            rec["optimizer_s"] = timed(opt, device)
            cpu += timed.last_cpu_s
        else:
            for p in trainable:
                p.grad = None
        rec["total_s"] = sum(v for k, v in rec.items() if k.endswith("_s"))
        rec["loss"] = float(rec["loss"].detach())
        rec["process_cpu_s"] = cpu
        if i >= n_warmup:
            records.append(rec)
        print(f"  {'warm-up' if i < n_warmup else 'timed'} step: " +
              ", ".join(f"{k}={v:.3f}" for k, v in rec.items()), flush=True)
    return records


def time_forward(model, latents, text, device, args, n_warmup, n_timed) -> list[float]:
    t = torch.tensor([500], device=device)
    times = []
    for i in range(n_warmup + n_timed):
        lat = latents[:, :, :args.warmup_frames] if i < n_warmup and args.warmup_frames else latents

        def fwd():
            with torch.no_grad(), autocast(device, args.bf16):
                model(lat, t, text)

        s = timed(fwd, device)
        if i >= n_warmup:
            times.append(s)
        print(f"  {'warm-up' if i < n_warmup else 'timed'} forward: {s:.3f}s", flush=True)
    return times


def summarize_steps(records: list[dict]) -> dict:
    keys = [k for k in records[0] if k.endswith("_s") or k == "process_cpu_s"]
    return {"median": {k: median([r[k] for r in records]) for k in keys}, "steps": records}


def sdxl_added_cond(batch: int, device) -> dict:
    return {"text_embeds": torch.randn(batch, 1280, device=device),
            "time_ids": torch.randn(batch, 6, device=device)}


def run(args) -> dict:
    device = pick_device(args.device)
    torch.manual_seed(0)
    result = {"machine": machine_info(device), "settings": vars(args).copy(), "notes": []}
    lh, lw = args.height // 8, args.width // 8
    _, text_dim = unet_config(args.config)
    latents = torch.randn(1, 4, args.frames, lh, lw, device=device)
    text = torch.randn(1, 77, text_dim, device=device)
    result["settings"]["latent_shape"] = list(latents.shape)
    baseline_rss = current_rss_gib()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    parts = set(args.parts.split(","))
    if args.config == "sdxl":
        parts &= {"overhead"}
        result["notes"].append("sdxl: plain UNet forward time only, random text_time conditions "
                               "(LampUNet.forward takes no added_cond_kwargs, so LAMP on SD-XL is not timed)")
    w, r = args.warmup, args.repeats

    # 1. LAMP training step --------------------------------------------------------------------------
    unet2d = build_unet2d(args.config).to(device)
    plain_total = count(unet2d.parameters())
    model = LampUNet.from_unet2d(unet2d) if args.config != "sdxl" else None
    result["params"] = {"plain_total": plain_total}
    if model is not None:
        model.to(device)
        trainable = [p for _, p in model.trainable_parameters()]
        result["params"].update({"lamp_total": count(model.parameters()),
                            "lamp_trainable": count(trainable)})
        result["params"]["lamp_over_plain_total"] = result["params"]["lamp_total"] / plain_total
        result["params"]["trainable_fraction_of_lamp"] = result["params"]["lamp_trainable"] / result["params"]["lamp_total"]
        result["params"]["new_layer_params"] = result["params"]["lamp_total"] - plain_total
        print("params:", result["params"], flush=True)
    result["memory"] = {"baseline_rss_gib": round(baseline_rss, 3),
                        "after_build_rss_gib": round(current_rss_gib(), 3)}

    if "train" in parts and model is not None:
        print("LAMP training step (forward + backward + clip + AdamW):", flush=True)
        model.train()
        if args.grad_ckpt:
            model.enable_gradient_checkpointing()
        optimizer = torch.optim.AdamW(trainable, lr=3e-5, weight_decay=1e-2)
        recs = time_train_steps(model, trainable, latents, text, device, args, w, r, optimizer)
        result["train_step"] = summarize_steps(recs)
        mem = {"cpu_peak_rss_gib": round(peak_rss_gib(), 3),
               "cpu_peak_rss_delta_over_baseline_gib": round(peak_rss_gib() - baseline_rss, 3)}
        if device.type == "cuda":
            mem["cuda_max_memory_allocated_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 3)
            mem["cuda_max_memory_reserved_gib"] = round(torch.cuda.max_memory_reserved(device) / 2**30, 3)
        result["memory"]["train_step"] = mem
        print("  memory:", mem, flush=True)
        optimizer.zero_grad(set_to_none=True)
        del optimizer
        gc.collect()

    # 2. overhead vs the plain UNet ------------------------------------------------------------------
    if "overhead" in parts:
        ov = {}
        if model is not None:
            model.eval()
            print("LAMP no-grad forward:", flush=True)
            ov["lamp_forward_s"] = median(time_forward(model, latents, text, device, args, w, r))
            if "train_step" in result:  # forward + backward of the training step just measured
                m = result["train_step"]["median"]
                ov["lamp_fwd_bwd_s"] = m["forward_s"] + m["backward_s"]
            del model, trainable
            gc.collect()
        added = sdxl_added_cond(args.frames, device) if args.config == "sdxl" else None
        plain = FramesAsImages(build_unet2d(args.config).to(device), added)
        print("plain UNet no-grad forward:", flush=True)
        ov["plain_forward_s"] = median(time_forward(plain, latents, text, device, args, w, r))
        if "lamp_fwd_bwd_s" in ov:
            print("plain UNet forward + backward (same loss; attn1.to_q trainable):", flush=True)
            plain.train()
            if args.grad_ckpt:
                plain.unet.enable_gradient_checkpointing()
            q = []
            for n, p in plain.named_parameters():
                p.requires_grad_("attn1.to_q." in n)
                if p.requires_grad:
                    q.append(p)
            recs = time_train_steps(plain, q, latents, text, device, args, w, r)
            ov["plain_fwd_bwd_s"] = summarize_steps(recs)["median"]["total_s"]
            ov["fwd_bwd_ratio_lamp_over_plain"] = ov["lamp_fwd_bwd_s"] / ov["plain_fwd_bwd_s"]
        if "lamp_forward_s" in ov:
            ov["forward_ratio_lamp_over_plain"] = ov["lamp_forward_s"] / ov["plain_forward_s"]
        result["overhead"] = ov
        print("overhead:", ov, flush=True)
        del plain
        gc.collect()

    # 3. sampling time per video ------------------------------------------------------------------
    if "sample" in parts and args.config != "sdxl":
        if args.config == "small":
            result["sampling"] = sample_small(args, device, w, r)
        elif "overhead" in result and "lamp_forward_s" in result["overhead"]:
            per_step = 2 * result["overhead"]["lamp_forward_s"]
            result["sampling"] = {
                "kind": "EXTRAPOLATED: 2 x (LAMP UNet no-grad forward, batch 1) per DDIM step x steps; "
                        "VAE decode, text encoder and scheduler not included",
                "unet_s_per_step_cfg": per_step, "steps": 50, "extrapolated_s_per_video_50_steps": 50 * per_step}
        print("sampling:", result.get("sampling"), flush=True)
    result["memory"]["final_peak_rss_gib"] = round(peak_rss_gib(), 3)
    result["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return result


def sample_small(args, device, n_warmup, n_timed) -> dict:
    """The whole LampPipeline on the small components: prompt + first frame -> 16-frame video."""
    from lamp_model.pipeline import LampPipeline

    with tempfile.TemporaryDirectory() as tok:
        sd = build_sd(tok)
    unet = LampUNet.from_unet2d(sd.unet)
    pipe = LampPipeline(vae=sd.vae, text_encoder=sd.text_encoder, tokenizer=sd.tokenizer, unet=unet,
                        scheduler=sd.scheduler).to(device)
    first = np.random.default_rng(0).integers(0, 256, (args.height, args.width, 3), dtype=np.uint8)
    times = []
    n_timed = args.sample_repeats or n_timed
    for i in range(n_warmup + n_timed):
        steps = 2 if i < n_warmup else args.ddim_steps  # warm-up: 2 steps are enough to prime kernels

        def call():
            with autocast(device, args.bf16):
                pipe("a horse running", first, num_frames=args.frames, height=args.height, width=args.width,
                     num_inference_steps=steps, guidance_scale=7.5,
                     generator=torch.Generator().manual_seed(i), progress=False)

        s = timed(call, device)
        print(f"  {'warm-up' if i < n_warmup else 'timed'} video ({steps} steps): {s:.2f}s", flush=True)
        if i >= n_warmup:
            times.append(s)
    per_video = median(times)
    return {"kind": "MEASURED: full LampPipeline (small VAE + text encoder), DDIM + CFG 7.5, AdaIN + "
                    "histogram matching", "steps": args.ddim_steps, "s_per_video": per_video,
            "times_s": times, "extrapolated_s_per_video_50_steps": per_video * 50 / args.ddim_steps
            if args.ddim_steps != 50 else per_video}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", choices=["small", "sd14", "sdxl"], default="small")
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--height", type=int, default=320)
    p.add_argument("--width", type=int, default=512)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--repeats", type=int, default=3, help="timed iterations (median reported)")
    p.add_argument("--warmup", type=int, default=1, help="untimed warm-up iterations")
    p.add_argument("--warmup-frames", type=int, default=0,
                   help="frames in warm-up iterations (0 = --frames); fewer keeps slow CPU runs short")
    p.add_argument("--ddim-steps", type=int, default=50)
    p.add_argument("--sample-repeats", type=int, default=0, help="timed videos (0 = --repeats)")
    p.add_argument("--parts", default="train,overhead,sample", help="comma list of train,overhead,sample")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (GPU; on CPU uses CPU autocast)")
    p.add_argument("--grad-ckpt", action="store_true", help="gradient checkpointing in the UNet blocks")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    result = run(args)
    write_json(args.out, result)


if __name__ == "__main__":
    main()
