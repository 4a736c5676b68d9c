"""Choose the trained baselines' learning rates on the VALIDATION prompts, never on the test ones.

    python -m benchmarks.baseline_lr --out benchmarks/results/baseline_lr_cpu.json   # after `make run`

For each method (Tune-A-Video, AnimateDiff) and each learning rate, runs the method's own DVC stage
code (tasks/baseline_*.py, every other setting from params.yaml) with the world's validation prompts
(data/prompts/world_validation.csv) into runs/baseline_lr/<method>/lr_<lr>/, and scores the videos
with the metrics stage's classifier and CLIP, exactly as the `baselines` stage scores the test
prompts. Needs LAMP's data stages (`make run`): the cached clips and the world's base.

The rule, fixed before any run: a method's learning rate is the one with the highest validation
motion accuracy; a tie goes to the rate nearest LAMP's train.lr (on a log scale). The result is
what params.yaml's baselines.<method>.lr should say; the test table is made after, with that rate.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

from lamp_model.config import load_params
from tasks.common import Layout

from .baseline_runs import Scorer, make_videos
from .common import machine_info, write_json

VALIDATION = "data/prompts/world_validation.csv"
TRAINED = ("tune_a_video", "animatediff")


def run_dir(method: str, lr: float) -> str:
    return f"runs/baseline_lr/{method}/lr_{lr:g}"


def choose(scores: dict[float, dict], reference_lr: float) -> float:
    """Highest validation motion accuracy; ties to the rate nearest the reference (log scale)."""
    best = max(s["motion_accuracy"] for s in scores.values())
    tied = [lr for lr, s in scores.items() if s["motion_accuracy"] == best]
    return min(tied, key=lambda lr: abs(math.log(lr / reference_lr)))


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--root", default=".")
    p.add_argument("--methods", default=",".join(TRAINED), help=f"any of {','.join(TRAINED)}")
    p.add_argument("--lrs", default="3e-4,1e-3,3e-3", help="learning rates to compare")
    p.add_argument("--prompts", default=VALIDATION, help="validation prompts (motion,prompt csv; not the test set)")
    p.add_argument("--reuse", action="store_true", help="score videos already made for a method and rate again")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)

    root = Path(args.root)
    base = load_params(root / "params.yaml")
    if Path(args.prompts) == Path(base.data.eval_prompts):
        raise SystemExit(f"--prompts {args.prompts}: that is params.yaml's data.eval_prompts (the reported test "
                         "prompts); choose settings on the validation prompts")
    methods, lrs = args.methods.split(","), [float(v) for v in args.lrs.split(",")]
    unknown = sorted(set(methods) - set(TRAINED))
    if unknown:
        raise SystemExit(f"--methods: unknown {unknown}; choose from {','.join(TRAINED)}")
    score = Scorer(base, root)  # classifier and CLIP: the same for every method and rate
    result = {"what": __doc__.split("\n")[0], "machine": machine_info(torch.device("cpu")),
              "prompts": args.prompts, "rule": "highest validation motion accuracy; ties to the rate nearest "
              f"train.lr = {base.train.lr:g}", "methods": {}}
    for method in methods:
        scores = {}
        for lr in lrs:
            params = load_params(root / "params.yaml", {"data.eval_prompts": args.prompts, "tracking.enabled": False,
                                                        f"baselines.{method}.lr": lr})
            folder = run_dir(method, lr)
            seconds = make_videos(root, params, method, folder, args.reuse)
            s = score(params, Layout(root, folder), method)
            scores[lr] = {"motion_accuracy": s["motion_accuracy"], "alignment": s["alignment"],
                          "motion_none_share": s["motion_none_share"], "n_videos": s["n_videos"],
                          "per_motion": {m: v["motion_accuracy"] for m, v in s["per_motion"].items()},
                          "seconds": round(seconds, 1), "run_dir": folder}
            print(f"{method} lr {lr:g}: motion accuracy {s['motion_accuracy']:.3f}, alignment "
                  f"{s['alignment']:.2f}, none {s['motion_none_share']:.2f} ({seconds:.0f} s)", flush=True)
        chosen = choose(scores, base.train.lr)
        result["methods"][method] = {"scores": {f"{lr:g}": s for lr, s in scores.items()}, "chosen_lr": chosen,
                                     "params_lr": getattr(base.baselines, method).lr}
        print(f"{method}: chosen lr {chosen:g} (params.yaml: {getattr(base.baselines, method).lr:g})", flush=True)
    write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
