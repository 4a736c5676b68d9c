"""What `lamp edit` does in the motion world, on the 16 TEST looks: the three checks of the slow
editing tests, measured on a project's base and ControlNet and written as JSON.

    make run && .venv/bin/dvc repro controlnet
    python -m benchmarks.world_editing --out benchmarks/results/world_editing_cpu.json   # ~6 min, 2 cores

The slow tests (tests/test_world_editing.py, `make test-slow`) train the world, base and
ControlNet stages in a temporary project and assert on the same functions; this module reports
them for the project at --root (the README's editing table comes from its JSON). Report only:
every setting the edit uses was chosen on validation looks (benchmarks/edit_settings.py).

Sources: 2 test looks per motion (drawn with seed 1), 8 frames at 64x96 rendered with seeds 200+
(no training video uses them); each is edited towards a third test look of its motion (other colour,
shape, size or background), so a kept layout can only come from the source's edges. The checks and
their bars were fixed on 2026-12-07 before these sources were first scored together:
  * edges: edge F1 (`editing.edge_f1`, 2 px) of the edited frame 0 against the source's, paired with
    the same prompt and seed sampled without the ControlNet (scale 0); one-sided sign test over the
    decided pairs (ties dropped): n >= 10 and p <= 0.05, and a higher mean;
  * reconstruction: DDIM inversion (empty prompt) then regeneration with the unedited frame 0,
    guidance 1, post-processing off, every 4th source: PSNR of frames >= 1 against the VAE decoding
    of the source's latents >= 30 dB and >= 10 dB above sampling from fresh noise;
  * later frames: the edited frame 0 regenerated from the inversion (untuned LAMP UNet, the
    sampling guidance, post-processing off); among edits that moved frame 0's mean colour by >= 20,
    one FOLLOWS when every frame >= 1 is nearer the edited frame 0's mean colour than the source's;
    sign test n >= 10, p <= 0.05.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
from pathlib import Path

import numpy as np
import torch

from lamp_model.editing import (MIN_COLOUR_CHANGE, canny_edges, colour_distance, colour_follow, ddim_invert, edge_f1,
                                edit_first_frame, edit_video, video_latents)

from .common import machine_info, write_json
from . import edit_settings
from .edit_settings import FRAMES, HEIGHT, LOOK_SEED, STEPS, WIDTH, load_editor

RENDER_SEED = 200
MIN_DECIDED, MAX_P = 10, 0.05
MIN_PSNR, MIN_PSNR_GAIN = 30.0, 10.0


def editing_sources() -> list[tuple[str, np.ndarray, str, str]]:
    """(motion, video [8,64,96,3], edit prompt, caption): 2 test looks per motion, the prompt a third look's;
    render seeds 200+ in the training split's seed space (the slow tests' sources since 2026-12-07)."""
    return edit_settings.sources("test", RENDER_SEED, render_split="train")


def sign_test(wins: int, n: int) -> float:
    """One-sided binomial p of >= `wins` successes in `n` fair coin flips."""
    return sum(math.comb(n, k) for k in range(wins, n + 1)) / 2**n


def first_frame_edits(editor, settings, sources, scale: float) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Each source's frame 0 edited at ControlNet `scale`, and the same prompt and seed at scale 0."""
    canny = {"canny_low": settings.canny_low, "canny_high": settings.canny_high}
    edits = [edit_first_frame(editor, video[0], prompt, seed=j, steps=STEPS, conditioning_scale=scale, **canny)
             for j, (_, video, prompt, _) in enumerate(sources)]
    plain = [edit_first_frame(editor, video[0], prompt, seed=j, steps=STEPS, conditioning_scale=0.0)
             for j, (_, video, prompt, _) in enumerate(sources)]
    return edits, plain


def edge_check(settings, sources, edits, plain) -> dict:
    def f1(image, video):
        return edge_f1(canny_edges(image, settings.canny_low, settings.canny_high),
                       canny_edges(video[0], settings.canny_low, settings.canny_high))

    edited = [f1(e, video) for e, (_, video, *_) in zip(edits, sources)]
    unconditioned = [f1(p, video) for p, (_, video, *_) in zip(plain, sources)]
    decided = [(e, u) for e, u in zip(edited, unconditioned) if e != u]
    wins, n = sum(e > u for e, u in decided), len(decided)
    p = sign_test(wins, n)
    return {"mean_f1_edited": float(np.mean(edited)), "mean_f1_unconditioned": float(np.mean(unconditioned)),
            "wins": wins, "decided": n, "ties": len(sources) - n, "p": p,
            "passed": bool(n >= MIN_DECIDED and p <= MAX_P and np.mean(edited) > np.mean(unconditioned)),
            "per_source": [{"motion": m, "edited": round(e, 3), "unconditioned": round(u, 3)}
                           for (m, *_), e, u in zip(sources, edited, unconditioned)]}


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255.0**2 / np.mean((a.astype(float) - b.astype(float)) ** 2)))


def reconstruction_check(pipe, sources) -> dict:
    rows = []
    for motion, video, *_ in sources[::4]:
        latents = video_latents(pipe, video)
        inverted = ddim_invert(pipe, latents, STEPS)
        kwargs = dict(height=HEIGHT, width=WIDTH, num_inference_steps=STEPS, guidance_scale=1.0, adain=False,
                      histogram_matching=False)
        rebuilt = edit_video(pipe, video, "", video[0], inverted=inverted, **kwargs)
        noise = torch.randn(inverted.shape, generator=torch.Generator().manual_seed(0))
        fresh = edit_video(pipe, video, "", video[0], inverted=noise, **kwargs)
        target = pipe.decode_latents(latents)[0]
        rows.append({"motion": motion, "psnr_db": psnr(rebuilt[1:], target[1:]),
                     "fresh_noise_db": psnr(fresh[1:], target[1:])})
    passed = all(r["psnr_db"] >= MIN_PSNR and r["psnr_db"] >= r["fresh_noise_db"] + MIN_PSNR_GAIN for r in rows)
    return {"passed": passed, "per_source": rows}


def follow_check(pipe, sources, edits, guidance: float) -> dict:
    rows = []
    for (motion, video, prompt, _), edited0 in zip(sources, edits):
        if colour_distance(edited0, video[0]) < MIN_COLOUR_CHANGE:
            continue
        inverted = ddim_invert(pipe, video_latents(pipe, video), STEPS)
        out = edit_video(pipe, video, prompt, edited0, height=HEIGHT, width=WIDTH, num_inference_steps=STEPS,
                         guidance_scale=guidance, adain=False, histogram_matching=False, inverted=inverted)
        to_edit, to_source = colour_follow(out, video[0])
        rows.append({"motion": motion, "follows": bool((to_edit < to_source).all()),
                     "to_edit": np.round(to_edit, 1).tolist(), "to_source": np.round(to_source, 1).tolist()})
    n, k = len(rows), sum(r["follows"] for r in rows)
    p = sign_test(k, n)
    return {"follow": k, "counted": n, "p": p, "passed": bool(n >= MIN_DECIDED and p <= MAX_P), "per_source": rows}


def measure(root: Path) -> dict:
    """The three checks on the base and ControlNet of the project at `root`."""
    from lamp_model.animate import pipeline_from_components

    params, comps, editor, settings = load_editor(root)
    pipe = pipeline_from_components(comps)  # the editor holds its own copy of the 2D UNet
    sources = editing_sources()
    edits, plain = first_frame_edits(editor, settings, sources, params.edit.controlnet_scale)
    edges = edge_check(settings, sources, edits, plain)
    print(f"edges: F1 {edges['mean_f1_edited']:.3f} vs {edges['mean_f1_unconditioned']:.3f}, {edges['wins']} of "
          f"{edges['decided']} decided, p = {edges['p']:.4f}", flush=True)
    rebuilt = reconstruction_check(pipe, sources)
    print("reconstruction: " + ", ".join(f"{r['motion']} {r['psnr_db']:.1f} dB (fresh {r['fresh_noise_db']:.1f})"
                                         for r in rebuilt["per_source"]), flush=True)
    follow = follow_check(pipe, sources, edits, params.sample.guidance_scale)
    print(f"later frames: {follow['follow']} of {follow['counted']} follow, p = {follow['p']:.4f}", flush=True)
    return {"what": "lamp edit in the motion world on 16 test looks: edges kept, inversion, later frames",
            "split": "test", "controlnet_scale": params.edit.controlnet_scale,
            "guidance": params.sample.guidance_scale, "controlnet": dataclasses.asdict(settings),
            "settings": {"height": HEIGHT, "width": WIDTH, "frames": FRAMES, "ddim_steps": STEPS,
                         "look_seed": LOOK_SEED, "render_seed": RENDER_SEED},
            "edges": edges, "reconstruction": rebuilt, "later_frames": follow}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--root", default=".")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    result = {**measure(Path(args.root)), "machine": machine_info(torch.device("cpu"))}
    write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
