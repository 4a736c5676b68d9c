"""Which lever buys motion accuracy per minute of `make run`? (issue: the main job in 20 minutes)

Each lever is a `benchmarks.world_motion` run on `make run`'s own base (models/world/base), seed 0,
that tunes the 8 motions once and scores the same tuned models on the validation prompts (where a
setting is chosen) and on the test prompts (reported beside it, never used to choose), each at 20
and 10 DDIM steps. Minutes are estimated for a whole `make run`: the default's measured minutes plus
the lever's extra seconds here (tuning, sampling, base training), converted by how much faster
`make run`'s stages ran the default (pass --threads 1 to run two levers side by side on 2 cores).

The rule that picks the new default (written after the first two runs, default and cosine, before
the others; validation only, test never used to choose):
a row replaces the default (20 DDIM steps) when its validation gain is >= 0 and it costs no more
minutes, or when it gains at least 2 videos in 48 (noise: one seed) at any cost within the
20-minute budget; among those rows, the highest gain, then the fewest minutes. A base lever's gain
is against its own reference base; fewer DDIM steps are judged by their effect averaged over every
tuned model sampled both ways (see `choose`; first written to compare single rows, which let one
tied pair decide, before the other pairs were in). Where a lever and its reference were also run with
other seeds (`run --seed N`), its gain is their mean paired difference over the seeds both have
(added when the faster `make run` brought 8-frame tuning within budget: on seed 0 alone it gains 2
validation videos and would be chosen; over seeds 0 and 1 it gains none).

    python -m benchmarks.world_levers run default              # one lever -> runs/world_levers/default.json
    python -m benchmarks.world_levers table --default-minutes 21.4 --tracking-db <fresh clone>/mlflow.db
                                                               # -> benchmarks/results/world_levers_cpu.json + .md
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

RUNS = Path("runs/world_levers")
RESULT = Path("benchmarks/results/world_levers_cpu.json")
# the options of benchmarks.world_motion that define each lever (on top of params.yaml's defaults)
LEVERS = {
    "default": [],
    "cosine": ["--lr-schedule", "cosine", "--warmup-steps", "30"],
    "frames8_steps600": ["--tune-frames", "8", "--tune-steps", "600"],
    "steps150_lr3e-3": ["--tune-steps", "150", "--tune-lr", "3e-3"],
    # a cheaper base stage: its reference is a base trained the same way with params.yaml's steps
    # (the benchmark renders frames where the base stage decodes mp4s, so their bases differ)
    "base_trained_here": [],
    "base_vae300_unet600": ["--vae-steps", "300", "--unet-steps", "600"],
    # finer latents (a 4x VAE: 16x24 latents, as configs/world_16x24.yaml) with a UNet of half the width;
    # a tuning step still costs 2x the default's (683 vs 345 ms, 1 thread: per-cell work, not width,
    # dominates), so half the steps keep tuning's minutes
    "base_16x24_unet16-32_steps150": ["--vae-channels", "32,64,64", "--unet-channels", "16,32",
                                      "--tune-steps", "150"],
    # defined, not run yet (measured under the earlier protocol only: reports/world_motion.md)
    "cosine_lr3e-3": ["--lr-schedule", "cosine", "--warmup-steps", "30", "--tune-lr", "3e-3"],
    "frame_index": ["--temporal-positions"],
    "steps600_batch2": ["--tune-steps", "600", "--tune-batch", "2"],
    "base_16x24_unet16-32": ["--vae-channels", "32,64,64", "--unet-channels", "16,32"],  # 2x tuning minutes
}
TRAINS_BASE = {"base_trained_here", "base_vae300_unet600", "base_16x24_unet16-32",
               "base_16x24_unet16-32_steps150"}  # the others tune make run's own base
COMMON = ["--split", "validation,test", "--ddim-steps", "20,10", "--skip-untuned"]  # + the seed, in run()
MAKE_RUN_BASE = ["--base", "models/world/base"]
PER_MOTION = ("extract", "cache", "tune", "generate")  # the stages lamp.repro runs side by side


def run(name: str, seed: int = 0) -> Path:
    """One lever at seed 0 -> RUNS/<lever>.json (the table's rows); another seed -> RUNS/seeds/, the
    spread a seed-0 difference is read against."""
    import torch  # after main() set OMP_NUM_THREADS

    from benchmarks import world_motion

    out = RUNS / f"{name}.json" if seed == 0 else RUNS / "seeds" / f"{name}_seed{seed}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    base = [] if name in TRAINS_BASE else MAKE_RUN_BASE
    world_motion.main(COMMON + base + LEVERS[name] + ["--seeds", str(seed), "--out", str(out)])
    result = json.loads(out.read_text())
    result["threads"] = torch.get_num_threads()
    out.write_text(json.dumps(result, indent=1))
    return out


def stage_runs(tracking_db: str = "mlflow.db") -> dict[str, list[float]]:
    """Seconds of every finished stage run in the project's MLflow store, by stage (the last `make run`
    when the store is fresh): where `make run`'s minutes go, apart from DVC and process start-up."""
    import sqlite3

    con = sqlite3.connect(tracking_db)
    rows = con.execute("SELECT t.value, m.value FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid "
                       "JOIN metrics m ON m.run_uuid = r.run_uuid WHERE t.key = 'stage' AND m.key = 'duration_s' "
                       "AND r.status = 'FINISHED'").fetchall()  # a stage run is logged after it ends: duration_s
    out: dict[str, list[float]] = {}
    for stage, seconds in rows:
        out.setdefault(stage, []).append(float(seconds))
    return out


def make_run_stage_seconds(tracking_db: str = "mlflow.db") -> dict[str, float]:
    """Median seconds of one base / tune / generate stage run in the project's MLflow store."""
    runs = stage_runs(tracking_db)
    return {stage: float(np.median(runs[stage])) if runs.get(stage) else float("nan")
            for stage in ("base", "tune", "generate")}


def table(default_minutes: float, stage: dict[str, float], runs_dir: Path = RUNS, result_path: Path = RESULT,
          stage_totals: dict[str, list[float]] | None = None, make_run_jobs: int = 1) -> dict:
    """Every lever's validation and test accuracy beside its estimated `make run` minutes.

    `stage` = the default `make run`'s seconds per tune and per generate stage run. A lever's extra
    seconds in this benchmark (tuning, sampling, base training) are converted to `make run` seconds by
    how much faster `make run`'s stages ran the default than this benchmark did (so 1-thread runs side
    by side price levers the same as a quiet 2-thread run would). Base levers compare with the base
    trained here the default way, the others with the default on `make run`'s base. With
    `make_run_jobs` per-motion stages side by side in that `make run` (lamp.repro), a second of tuning
    or sampling adds 1 / make_run_jobs seconds to its wall time; the base stage runs alone, and a base
    lever's extra seconds are converted by how much faster `make run`'s base stage ran than the
    reference base here (stage["base"], when given; else the tuning ratio)."""
    runs = {p.stem: json.loads(p.read_text()) for p in sorted(runs_dir.glob("*.json"))}
    more_seeds: dict[str, dict[int, dict]] = {}  # lever -> seed -> that seed's tuned models (runs_dir/seeds/)
    for p in sorted((runs_dir / "seeds").glob("*_seed*.json")):
        lever, _, seed = p.stem.rpartition("_seed")
        more_seeds.setdefault(lever, {})[int(seed)] = json.loads(p.read_text())["tuned"][0]
    if "default" not in runs:
        raise SystemExit(f"{runs_dir}/default.json missing: run `python -m benchmarks.world_levers run default` first")
    ref = runs["default"]["tuned"][0]
    n_motions = len(ref["per_motion"])  # one tune and one generate stage run per motion
    tune_speed = n_motions * stage["tune"] / ref["tune_s"]
    ref_gen = ref["scores"]["validation/ddim20"]["generate_s"]
    gen_speed = n_motions * stage["generate"] / ref_gen
    base_ref = runs.get("base_trained_here")
    base_speed = tune_speed
    if base_ref is not None and np.isfinite(stage.get("base", float("nan"))):
        base_speed = stage["base"] / sum(base_ref["base_seconds"].values())
    rows = []
    for name, r in runs.items():
        t = r["tuned"][0]
        compare_with = "base_trained_here" if name in TRAINS_BASE else "default"
        extra_base = 0.0
        if name in TRAINS_BASE and base_ref is not None:
            extra_base = (sum(r["base_seconds"].values()) - sum(base_ref["base_seconds"].values())) * base_speed
        for n in (20, 10):
            val, test = t["scores"][f"validation/ddim{n}"], t["scores"][f"test/ddim{n}"]
            extra_tune = (t["tune_s"] - ref["tune_s"]) * tune_speed / make_run_jobs
            extra_gen = (val["generate_s"] - ref_gen) * gen_speed / make_run_jobs
            by_seed = {"0": val["motion_accuracy"], **{str(sd): other["scores"][f"validation/ddim{n}"]["motion_accuracy"]
                                                      for sd, other in more_seeds.get(name, {}).items()}}
            rows.append({"lever": name, "ddim_steps": n, "options": LEVERS.get(name, r["settings"]),
                         "compare_with": compare_with,
                         "validation": val["motion_accuracy"], "test": test["motion_accuracy"],
                         "validation_by_seed": by_seed,
                         "validation_per_motion": val["per_motion"], "test_per_motion": test["per_motion"],
                         "tune_time_ratio": t["tune_s"] / ref["tune_s"],
                         "make_run_minutes": default_minutes + (extra_base + extra_tune + extra_gen) / 60,
                         "threads": r.get("threads")})
    result = {"what": __doc__.split("\n")[0], "machine": runs["default"]["machine"],
              "default_make_run_minutes": default_minutes, "make_run_stage_seconds": stage,
              "make_run_jobs": make_run_jobs,
              "common_options": COMMON, "rows": rows, "chosen": choose(rows)}
    if stage_totals:  # where the default `make run`'s minutes went: stage bodies vs everything around them
        # per-motion stages ran make_run_jobs at a time: their seconds fill 1 / make_run_jobs of the wall time
        body = sum(sum(v) / (make_run_jobs if k in PER_MOTION else 1) for k, v in stage_totals.items())
        result["make_run_breakdown_s"] = {**{k: round(sum(v), 1) for k, v in sorted(stage_totals.items())},
                                          "stage_bodies_wall": round(body, 1),
                                          "outside_stage_bodies": round(60 * default_minutes - body, 1),
                                          "stage_runs": sum(len(v) for v in stage_totals.values())}
    result_path.write_text(json.dumps(result, indent=1) + "\n")
    md = ["| lever | DDIM steps | validation | test | compare with | tuning time vs default | est. `make run` min |",
          "|---|---:|---:|---:|---|---:|---:|"]
    for row in sorted(rows, key=lambda r: -r["validation"]):
        md.append(f"| {row['lever']} | {row['ddim_steps']} | {row['validation']:.3f} | {row['test']:.3f} | "
                  f"{row['compare_with']} | {row['tune_time_ratio']:.2f}x | {row['make_run_minutes']:.1f} |")
    c = result["chosen"]
    md += ["", f"Chosen by the rule in the module docstring (validation only): {c['lever']}, {c['ddim_steps']} DDIM steps."]
    result_path.with_suffix(".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return result


BUDGET_MINUTES = 20.0
MARGIN = 2 / 48  # two of the 48 validation videos


def choose(rows: list[dict]) -> dict:
    """The module docstring's rule: the row that becomes the default (the default row itself if none qualifies).

    A row's gain = its tuning lever's validation gain at 20 DDIM steps over its reference, plus the
    sampling change's effect averaged over every tuned model sampled both ways (paired: the same
    weights), since one pair is as noisy as one seed."""
    by_name = {(r["lever"], r["ddim_steps"]): r for r in rows}
    default = by_name["default", 20]

    def sampling_effect(n: int) -> float:
        pairs = [r["validation"] - by_name[r["lever"], 20]["validation"] for r in rows
                 if r["ddim_steps"] == n and (r["lever"], 20) in by_name]
        return float(np.mean(pairs)) if n != 20 else 0.0

    def gain(r: dict) -> float:
        # the tuning lever's gain over its reference, averaged over the seeds both were run with
        def by_seed(row: dict) -> dict[str, float]:
            return row.get("validation_by_seed") or {"0": row["validation"]}

        tuned = by_seed(by_name.get((r["lever"], 20), r))
        ref = by_seed(by_name.get((r["compare_with"], 20), default))
        common = sorted(set(tuned) & set(ref))
        return float(np.mean([tuned[sd] - ref[sd] for sd in common])) + sampling_effect(r["ddim_steps"])

    def qualifies(r: dict) -> bool:
        cheaper = r["make_run_minutes"] <= default["make_run_minutes"] + 1e-9
        return (gain(r) >= -1e-9 and cheaper) or (gain(r) >= MARGIN - 1e-9 and r["make_run_minutes"] <= BUDGET_MINUTES)

    references = {r["compare_with"] for r in rows} - {"default"}  # other bases' references: not candidates
    candidates = [r for r in rows if r["lever"] not in references and qualifies(r)] or [default]
    best = min(candidates, key=lambda r: (-round(gain(r), 9), r["make_run_minutes"]))
    return {**best, "gain": gain(best), "sampling_effect": {f"ddim{n}": sampling_effect(n) for n in sorted(
        {r["ddim_steps"] for r in rows})}}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("lever", choices=sorted(LEVERS))
    r.add_argument("--threads", type=int, default=None, help="torch threads (1: two levers side by side)")
    r.add_argument("--seed", type=int, default=0, help="tuning and sampling seed (the table uses seed 0)")
    t = sub.add_parser("table")
    t.add_argument("--default-minutes", type=float, required=True,
                   help="the default `make run`'s measured minutes on this machine (reports/run_time.json)")
    t.add_argument("--tune-seconds", type=float, default=None,
                   help="seconds of one tune stage run in that `make run` (default: median in mlflow.db)")
    t.add_argument("--generate-seconds", type=float, default=None, help="the same for one generate stage run")
    t.add_argument("--tracking-db", default="mlflow.db", help="the MLflow sqlite store of that `make run`")
    t.add_argument("--make-run-jobs", type=int, default=2,
                   help="per-motion stages side by side in that `make run` (params.yaml runner.jobs)")
    args = p.parse_args(argv)
    if args.cmd == "run":
        if args.threads:
            os.environ["OMP_NUM_THREADS"] = str(args.threads)
            import torch
            torch.set_num_threads(args.threads)
        run(args.lever, args.seed)
    else:
        stage = make_run_stage_seconds(args.tracking_db)
        totals = stage_runs(args.tracking_db)
        for name, secs in sorted(totals.items()):
            print(f"make run stage {name}: {len(secs)} runs, {sum(secs):.0f} s in all, median {np.median(secs):.1f} s")
        stage = {"base": stage["base"], "tune": args.tune_seconds or stage["tune"],
                 "generate": args.generate_seconds or stage["generate"]}
        if np.isnan(stage["tune"]) or np.isnan(stage["generate"]):
            raise SystemExit("no tune/generate stage runs in mlflow.db: pass --tune-seconds and --generate-seconds")
        table(args.default_minutes, stage, stage_totals=totals, make_run_jobs=args.make_run_jobs)


if __name__ == "__main__":
    main()
