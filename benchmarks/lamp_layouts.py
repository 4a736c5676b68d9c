"""Old vs new tensor layouts of the LAMP layers: same weights, same outputs, which is faster.

    python -m benchmarks.lamp_layouts --channels 128 --height 20 --width 32 --frames 16 \
        --repeats 15 --out benchmarks/results/layouts_cpu.json

The `*_reference` functions are the layers' previous formulations, kept so that the tests can
check the new ones against them and this script can time both in one process (alternating
repeats, median):
  * TSM: permute to [b*h*w, c, f], pad, conv1d, permute back, then y + m * g
    (new: pad of a transposed view, (k x 1) conv2d on [b, c, f, h*w], one addcmul);
  * first-frame attention: frame 0's K/V copied to every frame with repeat_interleave
    (new: one attention per video over all f*n queries against frame 0's n keys).
"""
from __future__ import annotations

import argparse
import contextlib
import time

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention

from lamp_model.attention import FirstFrameAttnProcessor
from lamp_model.layers import FrameContext, TSMConv2d

from .common import machine_info, median, pick_device, sync, write_json


def tsm_reference(layer: TSMConv2d, x: torch.Tensor) -> torch.Tensor:
    """TSMConv2d.forward as it was: two permute round trips through [b*h*w, c, f]."""
    y2d = layer.conv(x)
    f = layer.ctx.num_frames
    bf, c, h, w = y2d.shape
    b = bf // f
    seq = y2d.reshape(b, f, c, h, w).permute(0, 3, 4, 2, 1).reshape(b * h * w, c, f)
    pad = (layer.kernel_size - 1, 0) if layer.causal else ((layer.kernel_size - 1) // 2,) * 2
    motion = layer.temporal(F.pad(seq, pad))
    motion = motion.reshape(b, h, w, c, f).permute(0, 4, 3, 1, 2).reshape(bf, c, h, w)
    return y2d + motion * torch.sigmoid(layer.gate(y2d))


def first_frame_attention_reference(attn: Attention, hidden_states: torch.Tensor, num_frames: int,
                                    attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """FirstFrameAttnProcessor as it was: frame 0's K/V repeated for every frame."""
    residual = hidden_states
    f = num_frames
    bf, n, c = hidden_states.shape
    b = bf // f
    query = attn.to_q(hidden_states)
    first = hidden_states.reshape(b, f, n, c)[:, 0]
    key = attn.to_k(first).repeat_interleave(f, dim=0)
    value = attn.to_v(first).repeat_interleave(f, dim=0)
    heads = attn.heads
    head_dim = key.shape[-1] // heads
    query, key, value = (t.reshape(bf, -1, heads, head_dim).transpose(1, 2) for t in (query, key, value))
    if attention_mask is not None:
        attention_mask = attn.prepare_attention_mask(attention_mask, n, bf)
        attention_mask = attention_mask.view(bf, heads, -1, attention_mask.shape[-1])
    out = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask)
    out = out.transpose(1, 2).reshape(bf, -1, heads * head_dim).to(query.dtype)
    out = attn.to_out[1](attn.to_out[0](out))
    if attn.residual_connection:
        out = out + residual
    return out / attn.rescale_output_factor


def random_tsm(channels: int, frames: int, causal: bool = True, seed: int = 0) -> TSMConv2d:
    """A TSM layer with non-zero temporal and gate weights (at init they are zero: nothing to compare)."""
    torch.manual_seed(seed)
    layer = TSMConv2d(torch.nn.Conv2d(channels, channels, 3, padding=1), FrameContext(frames), causal=causal)
    for p in (layer.temporal.weight, layer.temporal.bias, layer.gate.weight, layer.gate.bias):
        torch.nn.init.normal_(p, std=0.05)
    return layer


def random_first_frame_attention(channels: int, heads: int, frames: int, seed: int = 0
                                 ) -> tuple[Attention, FrameContext]:
    torch.manual_seed(seed)
    attn = Attention(query_dim=channels, heads=heads, dim_head=channels // heads, bias=False)
    ctx = FrameContext(frames)
    attn.set_processor(FirstFrameAttnProcessor(ctx))
    return attn, ctx


def time_pair(old, new, inputs, device, repeats: int, backward: bool, dtype=None) -> dict:
    """Median seconds of old(x) and new(x), alternated call by call so both see the same machine load."""
    times = {"old": [], "new": []}
    cast = torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
    for i in range(repeats + 2):  # the first two rounds warm up
        for name, fn in (("old", old), ("new", new)) if i % 2 else (("new", new), ("old", old)):
            sync(device)
            t0 = time.perf_counter()
            if backward:
                with cast:
                    out = fn(inputs)
                out.float().square().mean().backward()
            else:
                with torch.no_grad(), cast:
                    fn(inputs)
            sync(device)
            if i >= 2:
                times[name].append(time.perf_counter() - t0)
    old_s, new_s = median(times["old"]), median(times["new"])
    return {"old_s": old_s, "new_s": new_s, "new_over_old": new_s / old_s}


def run(args) -> dict:
    device = pick_device(args.device)
    dtype = {"fp32": None, "bf16": torch.bfloat16}[args.dtype]
    b, f, c, h, w = args.batch, args.frames, args.channels, args.height, args.width
    result = {"machine": machine_info(device), "settings": vars(args).copy(), "tsm": {}, "first_frame_attention": {}}
    tsm = random_tsm(c, f).to(device)
    x = torch.randn(b * f, c, h, w, device=device, requires_grad=True)
    attn, _ = random_first_frame_attention(c, args.heads, f)
    attn.to(device)
    tokens = torch.randn(b * f, h * w, c, device=device, requires_grad=True)
    for backward in (False, True):
        key = "forward_backward" if backward else "forward"
        result["tsm"][key] = time_pair(lambda t: tsm_reference(tsm, t), tsm, x, device, args.repeats, backward, dtype)
        result["first_frame_attention"][key] = time_pair(
            lambda t: first_frame_attention_reference(attn, t, f), attn, tokens, device, args.repeats, backward, dtype)
    for layer in ("tsm", "first_frame_attention"):
        for key, r in result[layer].items():
            print(f"{layer:22s} {key:17s} old {r['old_s'] * 1e3:8.2f} ms  new {r['new_s'] * 1e3:8.2f} ms  "
                  f"new/old {r['new_over_old']:.2f}", flush=True)
    return result


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--channels", type=int, default=128)
    p.add_argument("--heads", type=int, default=2)
    p.add_argument("--height", type=int, default=20, help="latent height of the feature map")
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32", help="bf16 = autocast")
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    write_json(args.out, run(args))


if __name__ == "__main__":
    main()
