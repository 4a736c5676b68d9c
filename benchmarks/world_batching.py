"""What a batch costs at the motion world's size: tuning steps and sampling, batch 1 vs b.

At 16 x 64 x 96 (latents 16 x 8 x 12) the small LampUNet does very little arithmetic per
clip, so on a CPU a step's time is mostly per-operation overhead, which a batch shares.
Prints seconds per step (tuning) and per video (sampling) for each batch size and the
throughput ratio against batch 1; this decides `train.batch_size` and how `generate` batches.

    python -m benchmarks.world_batching --batches 1,2,4,8 --out benchmarks/results/world_batching_cpu.json
"""
from __future__ import annotations

import argparse
import tempfile

import numpy as np
import torch

from benchmarks.common import machine_info, median, pick_device, timed, write_json
from lamp_model.pipeline import LampPipeline
from lamp_model.small import build_sd
from lamp_model.training import lamp_loss
from lamp_model.unet import LampUNet


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batches", default="1,2,4,8")
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--height", type=int, default=64)
    p.add_argument("--width", type=int, default=96)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--ddim-steps", type=int, default=20)
    p.add_argument("--sample-batches", default="1,6", help="videos per pipeline call")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    device = pick_device(args.device)
    with tempfile.TemporaryDirectory() as tok:
        comps = build_sd(tok, seed=0)
    unet = LampUNet.from_unet2d(comps.unet).to(device)
    scheduler = comps.train_scheduler()
    params = [q for _, q in unet.trainable_parameters()]
    opt = torch.optim.AdamW(params, lr=1e-4)
    g = torch.Generator().manual_seed(0)
    h, w = args.height // 8, args.width // 8
    text = torch.randn(1, 77, unet.config.unet_config["cross_attention_dim"], generator=g)

    train = {}
    for b in [int(x) for x in args.batches.split(",")]:
        latents = torch.randn(b, 4, args.frames, h, w, generator=g).to(device)

        def step():
            loss = lamp_loss(unet, scheduler, latents, text.expand(b, -1, -1).to(device), g)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        step()  # warm-up
        s = median([timed(step, device) for _ in range(args.repeats)])
        train[b] = {"s_per_step": s, "s_per_clip": s / b}
        print(f"tuning step, batch {b}: {s:.3f} s ({s / b:.3f} s per clip)", flush=True)

    pipe = LampPipeline(comps.vae, comps.text_encoder, comps.tokenizer, unet.eval(), comps.scheduler).to(device)
    first = np.full((args.height, args.width, 3), 128, np.uint8)
    sample = {}
    for b in [int(x) for x in args.sample_batches.split(",")]:
        def call():
            with torch.no_grad():
                pipe(["a red star"] * b, first, num_frames=args.frames, height=args.height, width=args.width,
                     num_inference_steps=args.ddim_steps, generator=[torch.Generator().manual_seed(i)
                                                                      for i in range(b)], progress=False)

        s = timed(call, device)
        sample[b] = {"s_per_call": s, "s_per_video": s / b}
        print(f"sampling, {b} videos per call: {s:.2f} s ({s / b:.2f} s per video)", flush=True)

    b1 = train[min(train)]["s_per_clip"]
    ratios = {b: b1 / r["s_per_clip"] for b, r in train.items()}
    s1 = sample[min(sample)]["s_per_video"]
    sratios = {b: s1 / r["s_per_video"] for b, r in sample.items()}
    print("tuning throughput vs batch 1: " + ", ".join(f"batch {b}: {r:.2f}x" for b, r in ratios.items()))
    print("sampling throughput vs 1 video per call: " + ", ".join(f"{b}: {r:.2f}x" for b, r in sratios.items()))
    result = {"machine": machine_info(device), "settings": vars(args), "train": train, "sample": sample,
              "train_throughput_vs_batch1": ratios, "sample_throughput_vs_1": sratios}
    write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
