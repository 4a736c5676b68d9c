"""Why the training stage caches latents: VAE-encoding a clip every step vs reading cached latents.

    python -m benchmarks.bench_latent_cache --vae small,sd --frames 16 --height 320 --width 512 \
        --repeats 1 --out benchmarks/results/latent_cache_cpu.json

For each VAE (random init; same compute as trained weights):
  * encode: 16 frames [-1,1] at HxW -> latents (distribution mean * scaling_factor), no grad,
    in chunks of --chunk frames (what a training step would do without a cache);
  * cached: safetensors.torch.load_file of the same latents [1,4,f,h/8,w/8] + .to(device)
    (after the first read the file is in the OS page cache, as it is during training).
Speedup = encode time / cached read time. Warm-up excluded, medians of --repeats.
  small: the small VAE from lamp_model.small.build_sd (tests / motion world);
  sd:    the real SD v1.x VAE architecture: AutoencoderKL with block_out_channels=(128,256,512,512),
         4 DownEncoderBlock2D / UpDecoderBlock2D, layers_per_block=2 (SD's config), random init.
"""
from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import torch
from diffusers import AutoencoderKL
from safetensors.torch import load_file, save_file

from lamp_model.small import small_vae_config

from .common import machine_info, median, peak_rss_gib, pick_device, timed, write_json


def sd_vae_config() -> dict:
    return dict(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(128, 256, 512, 512),
                down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                layers_per_block=2, sample_size=512, scaling_factor=0.18215)


def bench_vae(name: str, args, device: torch.device) -> dict:
    torch.manual_seed(0)
    vae = AutoencoderKL(**(sd_vae_config() if name == "sd" else small_vae_config())).to(device).eval()
    frames = torch.rand(args.frames, 3, args.height, args.width, device=device) * 2 - 1

    def encode(x=frames):
        with torch.no_grad():
            return torch.cat([vae.encode(c).latent_dist.mean for c in x.split(args.chunk)]) * vae.config.scaling_factor

    print(f"{name} VAE ({sum(p.numel() for p in vae.encoder.parameters()) / 1e6:.1f}M encoder params):", flush=True)
    for _ in range(args.warmup):  # warm-up on one chunk only: primes kernels without a full extra encode
        print(f"  warm-up encode (1 chunk): {timed(lambda: encode(frames[:args.chunk]), device):.2f}s", flush=True)
    enc_times = []
    for _ in range(args.repeats):
        enc_times.append(timed(encode, device))
        print(f"  encode {args.frames} frames: {enc_times[-1]:.2f}s", flush=True)
    latents = encode()[None].permute(0, 2, 1, 3, 4).contiguous().cpu()  # [1,4,f,h,w] like the cache

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "clip.safetensors"
        save_file({"latents": latents}, str(path))
        load_file(str(path))  # warm-up: page cache
        read_times = [timed(lambda: load_file(str(path))["latents"].to(device), device) for _ in range(20)]
        size = os.path.getsize(path)
    enc, read = median(enc_times), median(read_times)
    print(f"  cached read: {read * 1e3:.3f} ms ({size / 1e6:.2f} MB); speedup {enc / read:.0f}x", flush=True)
    return {"vae": name, "encode_s": enc, "encode_times_s": enc_times, "cached_read_s": read,
            "cache_file_bytes": size, "latent_shape": list(latents.shape), "speedup": enc / read}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vae", default="small,sd", help="comma list of small,sd")
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--height", type=int, default=320)
    p.add_argument("--width", type=int, default=512)
    p.add_argument("--chunk", type=int, default=4, help="frames per VAE call")
    p.add_argument("--device", default="auto")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    result = {"machine": machine_info(device), "settings": vars(args).copy(),
              "results": [bench_vae(n, args, device) for n in args.vae.split(",")]}
    result["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    result["peak_rss_gib"] = round(peak_rss_gib(), 3)
    write_json(args.out, result)


if __name__ == "__main__":
    main()
