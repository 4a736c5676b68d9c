"""Table 1 over several seeds: LAMP and its three baselines, each trained and sampled once per seed.

    python -m benchmarks.baseline_seeds --seeds 0,1,2 --out benchmarks/results/baselines_seeds.json
    (after `make baselines`)

A seed s sets every random draw of every method, as flows/ablations.py does for LAMP: LAMP's
tuning and sampling noise (train.seed, sample.seeds = [s]), Tune-A-Video's template video
(baselines.tune_a_video.template_seed) and its tuning, AnimateDiff's adapter initialisation and
training (baselines.animatediff.seed), Text2Video-Zero's sampling noise. Everything else is
params.yaml's (the test prompts, the world and its base model). The seed whose settings are the
pipeline's own (params.yaml's seeds, all equal to it) is read from the pipeline's outputs
(`make baselines`, no second run); every other seed runs each method's DVC stage code into
runs/baseline_seeds/seed<s>/. The row of a method is the mean over seeds with the population std
(ddof 0) — tasks/baselines.py's `over_seeds`, as in reports/baselines/metrics.json.
"""
from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path

import torch

from lamp_model.config import load_params
from tasks.baselines import METHODS, NAMES, STARTS_FROM, over_seeds
from tasks.common import Layout
from tasks.metrics import _clean

from .baseline_runs import Scorer, make_videos
from .common import machine_info, write_json


def seed_overrides(seed: int) -> dict:
    """Every random draw of every method set to `seed`."""
    return {"train.seed": seed, "sample.seeds": [seed], "baselines.tune_a_video.template_seed": seed,
            "baselines.animatediff.seed": seed}


def is_pipelines_seed(params, seed: int) -> bool:
    """True when the pipeline's own outputs are this seed's run (params.yaml already sets every draw to it)."""
    def value(dotted: str):
        return functools.reduce(getattr, dotted.split("."), params)

    return all(value(k) == v for k, v in seed_overrides(seed).items())


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--root", default=".")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--methods", default=",".join(METHODS), help=f"any of {','.join(METHODS)}")
    p.add_argument("--reuse", action="store_true", help="score a seed's videos already made under runs/ again")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)

    root = Path(args.root)
    base = load_params(root / "params.yaml")
    seeds, methods = [int(s) for s in args.seeds.split(",")], args.methods.split(",")
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise SystemExit(f"--methods: unknown {unknown}; choose from {','.join(METHODS)}")
    score = Scorer(base, root)
    per_seed: dict[str, dict[str, dict]] = {m: {} for m in methods}
    seconds: dict[str, dict[str, float]] = {m: {} for m in methods}
    for seed in seeds:
        params = load_params(root / "params.yaml", {**seed_overrides(seed), "tracking.enabled": False})
        run_dir = "" if is_pipelines_seed(base, seed) else f"runs/baseline_seeds/seed{seed}"
        for method in methods:
            seconds[method][str(seed)] = 0.0 if not run_dir else round(
                make_videos(root, params, method, run_dir, args.reuse), 1)
            per_seed[method][str(seed)] = score(params, Layout(root, run_dir), method)
            s = per_seed[method][str(seed)]
            print(f"seed {seed} {method}: motion accuracy {s['motion_accuracy']:.3f}, alignment "
                  f"{s['alignment']:.2f} ({'the pipeline' if not run_dir else run_dir})", flush=True)
    rows = {}
    for method in methods:
        row = over_seeds(per_seed[method])
        row.update(name=NAMES[method], starts_from=STARTS_FROM[method], seconds=seconds[method])
        rows[method] = _clean(row)
        print(f"{NAMES[method]}: motion accuracy {row['motion_accuracy']:.3f} ± "
              f"{row['motion_accuracy_std'] or 0:.3f} over seeds {seeds}", flush=True)
    result = {"what": __doc__.split("\n")[0], "machine": machine_info(torch.device("cpu")), "seeds": seeds,
              "prompts": base.data.eval_prompts, "clip_model": base.metrics.clip_model, "methods": rows,
              "command": "python -m benchmarks.baseline_seeds " + " ".join(sys.argv[1:] if argv is None else argv)}
    write_json(args.out, result)
    if not args.out:
        print(json.dumps(rows, indent=1)[:2000])
    return result


if __name__ == "__main__":
    main()
