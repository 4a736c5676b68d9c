"""Does LAMP learn motion in the motion world? The whole method in one process.

Renders the world, trains the base model (VAE, then UNet + text encoder), tunes
one LampUNet per motion and generates 6 held-out prompts per motion, then prints
motion accuracy (the pipeline's motion classifier, `none` counted wrong, chance 1/8) of:
  - the raw held-out clips (the score's own ceiling),
  - the same clips round-tripped through the trained VAE (what a frozen VAE allows),
  - videos of the untuned inflated model (zero-initialised temporal layers),
  - videos of the tuned models, per seed (the seed drives tuning and the sampling noise).
Same lamp_model functions and the same defaults as the DVC stages (every default
below is read from params.yaml; no files, no ffmpeg, no CLIP), so settings can be
explored quickly on any device; the DVC pipeline is the reference.

Held-out prompts and first frames come from the VALIDATION split by default: this
is where settings are chosen. `--split test` scores the reported test prompts
(what `make run` reports); run it once per setting, never to choose one.

    python -m benchmarks.world_motion --seeds 0,1,2                       # params.yaml's settings
    python -m benchmarks.world_motion --base models/world/base --seeds 0,1,2   # reuse `dvc repro base`
"""
from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time

import numpy as np
import torch
from PIL import Image

from benchmarks.common import machine_info
from benchmarks.world_vae import evaluate, render, render_held_out
from lamp_model import world
from lamp_model.base_training import train_text_to_image, train_vae
from lamp_model.loading import load_sd_components
from lamp_model.config import load_params
from lamp_model.motion_score import MotionClassifier
from lamp_model.pipeline import LampPipeline
from lamp_model.small import build_sd
from lamp_model.training import TrainSettings, train_motion
from lamp_model.unet import LampUNet
from lamp_model.video import make_contact_sheet


def train_base(args, frames: np.ndarray, captions: list[str], device) -> tuple:
    with tempfile.TemporaryDirectory() as tok:
        comps = build_sd(tok, unet_channels=tuple(args.unet_channels), text_dim=32, heads=1,
                         vae_channels=tuple(args.vae_channels), latent_channels=args.latent_channels,
                         unet_norm_groups=args.unet_norm_groups, seed=0)
    for part in (comps.vae, comps.unet, comps.text_encoder):
        part.to(device)
    t0 = time.perf_counter()
    train_vae(comps, frames, steps=args.vae_steps, batch_size=args.batch_size, lr=args.lr, seed=0,
              detail_weight=args.vae_detail_weight)
    t_vae = time.perf_counter() - t0
    train_text_to_image(comps, frames, captions, steps=args.unet_steps, batch_size=args.unet_batch_size,
                        lr=args.lr, seed=0)
    return comps, t_vae, time.perf_counter() - t0 - t_vae


def fresh_pipeline(comps, device, temporal_positions: bool = False) -> LampPipeline:
    """The base inflated into a new LampUNet (zero-initialised temporal layers): untuned, or to be tuned."""
    unet = LampUNet.from_unet2d(copy.deepcopy(comps.unet), temporal_positions=temporal_positions)
    return LampPipeline(comps.vae, comps.text_encoder, comps.tokenizer, unet, comps.scheduler).to(device)


def clip_latents(pipe: LampPipeline, clips: list[np.ndarray]) -> torch.Tensor:
    """[n,c,f,h,w] like the cache stage (VAE mean x scaling factor)."""
    return torch.stack([pipe.encode_frames(c).permute(1, 0, 2, 3) for c in clips]).float()


@torch.no_grad()
def generate(pipe: LampPipeline, prompts: list[str], args, seed: int = 0, split: str | None = None,
             ddim_steps: int | None = None) -> list[np.ndarray]:
    """One batch, as the generate stage makes it: first frames from the split's renders (seed 0: the
    held-out data is fixed), every video's noise from its own generator seeded with `seed`."""
    split = split or args.splits[0]
    firsts = [world.render_first_frame(p, height=args.height, width=args.width, seed=0, split=split)
              for p in prompts]
    generators = [torch.Generator().manual_seed(seed) for _ in prompts]
    return list(pipe(prompts, firsts, num_frames=16, height=args.height, width=args.width,
                     num_inference_steps=ddim_steps or args.ddim_steps[0], guidance_scale=args.guidance,
                     alpha=args.alpha, adain=not args.no_adain, generator=generators, progress=False).frames)


def build_parser(params_path: str = "params.yaml") -> argparse.ArgumentParser:
    """Options default to params.yaml's values, so a bare run measures what `make run` does."""
    prm = load_params(params_path)
    bt, tr, sa = prm.base_train, prm.train, prm.sample
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--split", dest="splits", type=_splits, default=["validation"],
                   help="held-out prompts and first frames: validation (choose settings here) or test (report); "
                   "validation,test scores both from the same tuned models (the first is the headline)")
    p.add_argument("--videos", type=int, default=prm.world.videos_per_motion)
    p.add_argument("--height", type=int, default=prm.clips.height)
    p.add_argument("--width", type=int, default=prm.clips.width)
    p.add_argument("--base", default=None, help="load this base model folder (e.g. models/world/base, "
                   "written by `dvc repro base`) instead of training one; the base options are then ignored")
    p.add_argument("--save-base", default=None, help="save the base trained here to this folder (reuse: --base)")
    p.add_argument("--skip-untuned", action="store_true", help="do not generate with the untuned model")
    p.add_argument("--latent-channels", type=int, default=4)
    p.add_argument("--vae-channels", type=lambda s: [int(v) for v in s.split(",")], default=bt.vae_channels,
                   help="VAE block widths; n blocks downsample by 2^(n-1): 32,64,64 gives 16x24 latents at 64x96")
    p.add_argument("--unet-channels", type=lambda s: [int(v) for v in s.split(",")], default=bt.unet_channels)
    p.add_argument("--unet-norm-groups", type=int, default=bt.unet_norm_groups,
                   help="GroupNorm groups of the base UNet (params.yaml base_train.unet_norm_groups; 32 = one "
                        "channel per group at width 32, the earlier default: see results.md)")
    p.add_argument("--vae-steps", type=int, default=bt.vae_steps)
    p.add_argument("--vae-detail-weight", type=float, default=bt.vae_detail_weight,
                   help="train_vae's detail_weight (params.yaml base_train.vae_detail_weight)")
    p.add_argument("--unet-steps", type=int, default=bt.unet_steps)
    p.add_argument("--batch-size", type=int, default=bt.batch_size, help="VAE images per step (base_train.batch_size)")
    p.add_argument("--unet-batch-size", type=int, default=bt.unet_batch_size, help="base_train.unet_batch_size")
    p.add_argument("--lr", type=float, default=bt.lr)
    p.add_argument("--tune-steps", type=int, default=tr.steps, help="train.steps")
    p.add_argument("--tune-lr", type=float, default=tr.lr)
    p.add_argument("--tune-batch", type=int, default=tr.batch_size, help="clips per tuning step (train.batch_size)")
    p.add_argument("--lr-schedule", choices=("constant", "cosine"), default=tr.lr_schedule, help="train.lr_schedule")
    p.add_argument("--warmup-steps", type=int, default=tr.warmup_steps, help="train.warmup_steps")
    p.add_argument("--tune-frames", type=int, default=None,
                   help="tune on the first N frames of each clip (default: all of clips.frames); sampling keeps 16")
    p.add_argument("--motions", default=",".join(world.MOTIONS), help="tune and score only these "
                   "(accuracy is still over all 8 centroids)")
    p.add_argument("--seeds", default="0", help="seeds of tuning and sampling noise (one tuned model per motion "
                   "per seed)")
    p.add_argument("--ddim-steps", type=_ints, default=[sa.ddim_steps],
                   help="sampling steps; a list (20,10) samples every tuned model once per value")
    p.add_argument("--guidance", type=float, default=sa.guidance_scale)
    p.add_argument("--alpha", type=float, default=sa.alpha)
    p.add_argument("--temporal-positions", action=argparse.BooleanOptionalAction,
                   default=prm.lamp.temporal_positions,
                   help="lamp.temporal_positions: a frame index in temporal attention (not in the paper)")
    p.add_argument("--no-adain", action="store_true", default=not sa.adain,
                   help="sample.adain: false (histogram matching only)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", default=None, help="write every figure as JSON here")
    p.add_argument("--sheet", default=None, help="write a contact sheet (PNG) of 2 tuned videos per motion, "
                   "first seed, here")
    p.add_argument("--report", default=None, help="write a markdown table here (e.g. reports/world_motion.md)")
    return p


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",")]


def _splits(text: str) -> list[str]:
    splits = text.split(",")
    if not splits or any(s not in ("validation", "test") for s in splits) or len(set(splits)) < len(splits):
        raise argparse.ArgumentTypeError(f"{text!r}: give validation, test or validation,test")
    return splits


def main(argv=None) -> dict:
    args = build_parser().parse_args(argv)
    device = torch.device(args.device)

    split = args.splits[0]  # the headline split; the others are scored from the same tuned models
    frames, train_clips, eval_clips = render(args.videos, args.height, args.width, split=split)
    held_out_clips = {split: eval_clips}
    for other in args.splits[1:]:
        held_out_clips[other] = render_held_out(args.height, args.width, split=other)
    captions = [c.caption(m) for m in world.MOTIONS for c in world.training_contents(m, args.videos)
                for _ in range(len(frames) // (len(world.MOTIONS) * args.videos))]
    classifier = MotionClassifier().fit_clips(train_clips)
    if args.base:
        comps, t_vae, t_unet = load_sd_components(args.base, device), 0.0, 0.0
    else:
        comps, t_vae, t_unet = train_base(args, frames, captions, device)
        if args.save_base:
            comps.save_pretrained(args.save_base)
    vae_by_split = {sp: evaluate(comps.vae, clips, classifier) for sp, clips in held_out_clips.items()}
    vae_eval = vae_by_split[split]
    print(f"base: VAE {t_vae:.0f} s, UNet {t_unet:.0f} s; VAE round trip PSNR {vae_eval['psnr_db']:.1f} dB, "
          f"motion accuracy {vae_eval['round_trip_motion_accuracy']:.3f}", flush=True)
    prompts_by_split = {sp: {m: [c.caption(m) for c in world.contents(m, sp, 6)] for m in world.MOTIONS}
                        for sp in args.splits}
    prompts = prompts_by_split[split]
    clip_captions = {m: [c.caption(m) for c in world.training_contents(m, args.videos)
                         for _ in range(len(train_clips[m]) // args.videos)] for m in world.MOTIONS}
    # every (split, DDIM steps) pair scored per tuned model; the first is the headline
    evaluations = [(sp, n) for sp in args.splits for n in args.ddim_steps]

    motions = args.motions.split(",")
    unknown = sorted(set(motions) - set(world.MOTIONS))
    if unknown:
        raise SystemExit(f"--motions: unknown {unknown}; the world's motions are {','.join(world.MOTIONS)}")

    def seen_as(videos: dict[str, list[np.ndarray]]) -> dict[str, list[str]]:
        """The motion the classifier sees in every video (`none`: no motion evidence)."""
        return {m: [classifier.classify(v) for v in vs] for m, vs in videos.items()}

    def accuracy(seen: dict[str, list[str]]) -> tuple[float, dict]:
        per = {m: float(np.mean([s == m for s in preds])) for m, preds in seen.items()}
        return float(np.mean(list(per.values()))), per

    untuned_acc, untuned_per = float("nan"), {}
    if not args.skip_untuned:
        untuned = {}
        for m in motions:
            untuned[m] = generate(fresh_pipeline(comps, device, args.temporal_positions), prompts[m], args)
        untuned_acc, untuned_per = accuracy(seen_as(untuned))
        print(f"untuned: motion accuracy {untuned_acc:.3f}", flush=True)

    settings = dict(steps=args.tune_steps, lr=args.tune_lr, mixed_precision="no", batch_size=args.tune_batch,
                    lr_schedule=args.lr_schedule, warmup_steps=args.warmup_steps)
    runs = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        videos = {e: {} for e in evaluations}
        t_tune, t_generate = 0.0, dict.fromkeys(evaluations, 0.0)
        for m in motions:
            pipe = fresh_pipeline(comps, device, args.temporal_positions)
            latents = clip_latents(pipe, train_clips[m])
            if args.tune_frames:
                latents = latents[:, :, :args.tune_frames]
            text = pipe.encode_prompt(clip_captions[m]).float()
            t0 = time.perf_counter()
            train_motion(pipe.unet, comps.train_scheduler(), latents, text, TrainSettings(seed=seed, **settings))
            t_tune += time.perf_counter() - t0
            for sp, n in evaluations:
                t0 = time.perf_counter()
                videos[sp, n][m] = generate(pipe, prompts_by_split[sp][m], args, seed, split=sp, ddim_steps=n)
                t_generate[sp, n] += time.perf_counter() - t0
        scores = {}
        for sp, n in evaluations:
            seen = seen_as(videos[sp, n])
            acc, per = accuracy(seen)
            scores[f"{sp}/ddim{n}"] = {"motion_accuracy": acc, "per_motion": per, "seen": seen,
                                       "generate_s": t_generate[sp, n]}
        head = scores[f"{split}/ddim{args.ddim_steps[0]}"]
        acc, per, seen = head["motion_accuracy"], head["per_motion"], head["seen"]
        if args.sheet and not runs:
            Image.fromarray(make_contact_sheet([v for m in motions for v in videos[evaluations[0]][m][:2]],
                                               [p for m in motions for p in prompts[m][:2]])).save(args.sheet)
        runs.append({"seed": seed, "motion_accuracy": acc, "per_motion": per, "seen": seen, "tune_s": t_tune,
                     "scores": scores})
        print(f"tuned seed {seed}: motion accuracy {acc:.3f} ({t_tune:.0f} s tuning) "
              + " ".join(f"{m}={v:.2f}" for m, v in per.items()), flush=True)
        for m, preds in seen.items():
            print(f"  {m}: seen as {', '.join(preds)}", flush=True)
        for key, sc in scores.items():
            print(f"  {key}: motion accuracy {sc['motion_accuracy']:.3f} ({sc['generate_s']:.0f} s sampling)",
                  flush=True)
    accs = [r["motion_accuracy"] for r in runs]
    print(f"tuned: {np.mean(accs):.3f} +- {np.std(accs):.3f} over {len(accs)} seeds; untuned {untuned_acc:.3f}; "
          f"VAE ceiling {vae_eval['round_trip_motion_accuracy']:.3f}")
    # what was really run: with --base, settings' vae/unet channels are only the CLI defaults
    base_model = {"vae_block_out_channels": list(comps.vae.config.block_out_channels),
                  "unet_block_out_channels": list(comps.unet.config.block_out_channels),
                  "latent_channels": comps.vae.config.latent_channels}
    result = {"machine": machine_info(device), "settings": vars(args), "base_model": base_model, "vae": vae_eval,
              "vae_by_split": vae_by_split,
              "base_seconds": {"vae": t_vae, "unet": t_unet},
              "untuned": {"motion_accuracy": untuned_acc, "per_motion": untuned_per},
              "tuned": runs, "tuned_mean": float(np.mean(accs)), "tuned_std": float(np.std(accs))}
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
        print("wrote", args.out)
    if args.report:
        with open(args.report, "w") as f:
            f.write(report_markdown(args, vae_eval, untuned_acc, untuned_per, runs, device))
        print("wrote", args.report)
    return result


def report_markdown(args, vae_eval: dict, untuned_acc: float, untuned_per: dict, runs: list[dict],
                    device) -> str:
    """Motion accuracy per motion: tuned (mean +- std over seeds) beside untuned, chance and the VAE ceiling."""
    accs = [r["motion_accuracy"] for r in runs]
    seeds = ",".join(str(r["seed"]) for r in runs)
    base = f"loaded from `{args.base}`" if args.base else (
        f"trained here: VAE {args.vae_steps} steps, UNet + text encoder {args.unet_steps} steps")
    info = machine_info(device)
    where = info.get("gpu_name") or f"{info['cpu_count']} CPU cores ({info['cpu_model']})"
    lines = [
        "# Does LAMP learn motion in the motion world?",
        "",
        f"`python -m benchmarks.world_motion {' '.join(_argv_of(args))}` on {where}, torch {info['torch']}.",
        f"Base model {base}; LAMP tuned {args.tune_steps} steps x batch {args.tune_batch} (lr {args.tune_lr}) "
        "per motion and seed "
        f"(seeds {seeds}); 6 held-out {args.splits[0]} prompts per motion (48 in all), {args.ddim_steps[0]} DDIM steps, "
        f"guidance {args.guidance}, alpha {args.alpha}, first frames from the world's renderer.",
        "",
        "Motion accuracy = share of generated videos that the pipeline's motion classifier assigns to their "
        "own motion (`none` = no motion evidence, counted wrong; chance = 1/8). VAE ceiling = the held-out clips themselves "
        "after a round trip through the frozen VAE: what any model on this VAE can reach.",
        "",
        "| motion | tuned (mean ± std) | untuned | VAE ceiling |",
        "|---|---:|---:|---:|",
    ]
    for m in runs[0]["per_motion"]:
        per = [r["per_motion"][m] for r in runs]
        unt = untuned_per.get(m)
        lines.append(f"| {m} | {np.mean(per):.2f} ± {np.std(per):.2f} | "
                     f"{'-' if unt is None else f'{unt:.2f}'} | "
                     f"{vae_eval['per_motion_accuracy'][m]:.2f} |")
    lines.append(f"| **all** | **{np.mean(accs):.3f} ± {np.std(accs):.3f}** | "
                 f"{'-' if np.isnan(untuned_acc) else f'{untuned_acc:.3f}'} | "
                 f"{vae_eval['round_trip_motion_accuracy']:.3f} |")
    lines += ["", "Chance: 0.125.", ""]
    return "\n".join(lines)


def _argv_of(args) -> list[str]:
    """The command line options that differ from the defaults (for the report's header)."""
    defaults = vars(build_parser().parse_args([]))
    out = []
    for k, v in vars(args).items():
        if k in ("out", "report") or v == defaults.get(k):
            continue
        flag = "--split" if k == "splits" else "--" + k.replace("_", "-")
        out += [flag] if v is True else [flag, ",".join(map(str, v)) if isinstance(v, list) else str(v)]
    return out


if __name__ == "__main__":
    main()
