"""`make run` itself over seeds: fresh clones, minutes and test motion accuracy (issue: the main job).

The main job's figure is its own reports/metrics.json, and one run on one machine is not the
figure: each run here is a fresh clone of HEAD (`make setup` timed apart, then `make run`) whose
seeds for the base stage, the tuning and the sampling are all N (`seed`, `base_train.seed`,
`train.seed`, `sample.seeds: [N]`; the world's data stay fixed). `table` puts the runs side by side:
test accuracy mean +- std over seeds (population std, as the
other seed figures), per motion, the minutes and their median.

`--preset configs/world_16x24.yaml` measures a params overlay the same way (merged with
scripts/merge_params.py before the seeds): its runs and table are its own
(runs/make_run_seeds/world_16x24/, benchmarks/results/make_run_seeds_world_16x24_cpu.json).
A table keeps the runs it was built from, so seeds measured on other days or machines (each run
names its machine) are pooled with new ones: a seed run again replaces its earlier record.

    python -m benchmarks.make_run_seeds run --seed 1            # -> runs/make_run_seeds/seed1.json
    python -m benchmarks.make_run_seeds collect /tmp/clone --seed 0 --minutes 19.7 --setup-minutes 2.4
                                                                # a `make run` already done in a fresh clone
    python -m benchmarks.make_run_seeds table                   # -> benchmarks/results/make_run_seeds_cpu.json
    python -m benchmarks.make_run_seeds run --seed 1 --preset configs/world_16x24.yaml
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np

from benchmarks.common import cpu_model
from lamp_model.io import atomic_write

RUNS = Path("runs/make_run_seeds")
RESULTS = Path("benchmarks/results")


def records_dir(preset: Path | None = None) -> Path:
    """Where one seed's record goes: runs/make_run_seeds/ (the default) or .../<preset name>/."""
    return RUNS if preset is None else RUNS / preset.stem


def result_file(preset: Path | None = None) -> Path:
    return RESULTS / ("make_run_seeds_cpu.json" if preset is None else f"make_run_seeds_{preset.stem}_cpu.json")


def seed_overlay(seed: int) -> str:
    return (f"seed: {seed}\nbase_train:\n  seed: {seed}\ntrain:\n  seed: {seed}\n"
            f"sample:\n  seeds: [{seed}]\n")


def collect(clone: Path, seed: int, minutes: float, setup_minutes: float | None, how: str,
            load: list[float] | None = None, preset: Path | None = None) -> Path:
    """The run's record from a clone whose `make run` has finished -> records_dir(preset)/seed<N>.json."""
    metrics = json.loads((clone / "reports/metrics.json").read_text())
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=clone, capture_output=True,
                            text=True).stdout.strip()
    record = {"seed": seed, "commit": commit, "date": date.today().isoformat(), "minutes": round(minutes, 1),
              "setup_minutes": None if setup_minutes is None else round(setup_minutes, 1),
              "machine": f"{os.cpu_count()}-core CPU ({cpu_model()})", "load_average_before": load, "how": how,
              "test_motion_accuracy": metrics["overall"]["motion_accuracy"],
              "test_none_share": metrics["overall"].get("motion_none_share"),
              "per_motion": {m: v["motion_accuracy"] for m, v in metrics["per_motion"].items()}}
    if preset is not None:
        record["preset"] = {"file": preset.as_posix(), "overlay": preset.read_text()}
    out = records_dir(preset) / f"seed{seed}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(out) as tmp:
        tmp.write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps({k: record[k] for k in ("seed", "minutes", "test_motion_accuracy")}))
    return out


def run(seed: int, workdir: Path, preset: Path | None = None) -> Path:
    """A fresh clone of HEAD with every seed set to `seed` (after `preset`, if any): `make setup`, then
    `make run`, both timed."""
    repo = Path.cwd()
    clone = workdir / (f"seed{seed}" if preset is None else f"{preset.stem}_seed{seed}")
    shutil.rmtree(clone, ignore_errors=True)
    subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True)
    t0 = time.monotonic()
    subprocess.run(["make", "setup"], cwd=clone, check=True, stdout=subprocess.DEVNULL)
    setup = (time.monotonic() - t0) / 60
    merge = [str(clone / ".venv/bin/python"), "scripts/merge_params.py"]
    if preset is not None:
        subprocess.run([*merge, str(preset.resolve())], cwd=clone, check=True)
    if seed != 0:
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            f.write(seed_overlay(seed))
        subprocess.run([*merge, f.name], cwd=clone, check=True)
    load = [round(x, 2) for x in os.getloadavg()]
    t0 = time.monotonic()
    with open(clone / "make_run.log", "w") as log:
        subprocess.run(["make", "run"], cwd=clone, check=True, stdout=log, stderr=subprocess.STDOUT)
    minutes = (time.monotonic() - t0) / 60
    return collect(clone, seed, minutes, setup, "fresh clone of HEAD, make setup then make run, nothing else "
                   "running", load, preset)


def pooled_runs(records: Path, result_path: Path) -> list[dict]:
    """The records of every seed: those in the table already written (seeds measured earlier, perhaps
    elsewhere), replaced seed by seed by the records in `records` (the newer measurement)."""
    by_seed = {}
    if result_path.is_file():
        by_seed = {r["seed"]: r for r in json.loads(result_path.read_text())["runs"]}
    by_seed.update({r["seed"]: r for r in (json.loads(p.read_text()) for p in records.glob("seed*.json"))})
    return [by_seed[s] for s in sorted(by_seed)]


def table(records: Path = records_dir(), result_path: Path = result_file()) -> dict:
    runs = pooled_runs(records, result_path)
    if not runs:
        raise SystemExit(f"no runs in {records} or {result_path}: "
                         "`python -m benchmarks.make_run_seeds run --seed N` first")
    acc = [r["test_motion_accuracy"] for r in runs]
    motions = list(runs[0]["per_motion"])
    per_motion = {m: float(np.mean([r["per_motion"][m] for r in runs])) for m in motions}
    minutes = [r["minutes"] for r in runs]
    result = {"what": __doc__.split("\n")[0], "seeds": [r["seed"] for r in runs],
              "test_motion_accuracy": {"mean": float(np.mean(acc)), "std": float(np.std(acc)), "runs": acc},
              "per_motion_mean": per_motion, "lowest_motion": min(per_motion, key=per_motion.get),
              "minutes": minutes, "median_minutes": float(np.median(minutes)), "runs": runs}
    presets = sorted({r["preset"]["file"] for r in runs if "preset" in r})
    if presets:
        result["preset"] = ", ".join(presets)
    result_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(result_path) as tmp:
        tmp.write_text(json.dumps(result, indent=1) + "\n")
    print(f"test motion accuracy {result['test_motion_accuracy']['mean']:.3f} +- "
          f"{result['test_motion_accuracy']['std']:.3f} over seeds {result['seeds']}; minutes {minutes} "
          f"(median {result['median_minutes']:.1f}); per motion: "
          + ", ".join(f"{m} {v:.2f}" for m, v in per_motion.items()))
    return result


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--seed", type=int, required=True)
    r.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "lamp_make_run_seeds")
    c = sub.add_parser("collect")
    c.add_argument("clone", type=Path)
    c.add_argument("--seed", type=int, required=True)
    c.add_argument("--minutes", type=float, required=True)
    c.add_argument("--setup-minutes", type=float, default=None)
    c.add_argument("--load", type=float, nargs=3, default=None, help="load average before the run")
    c.add_argument("--how", default="fresh clone, make setup then make run, nothing else running")
    t = sub.add_parser("table")
    for q in (r, c, t):
        q.add_argument("--preset", type=Path, default=None,
                       help="a params overlay merged before the seeds, e.g. configs/world_16x24.yaml")
    args = p.parse_args(argv)
    if args.preset is not None and not args.preset.is_file():
        raise SystemExit(f"--preset {args.preset}: not found (a params overlay such as configs/world_16x24.yaml)")
    if args.cmd == "run":
        run(args.seed, args.workdir, args.preset)
    elif args.cmd == "collect":
        collect(args.clone, args.seed, args.minutes, args.setup_minutes, args.how, args.load, args.preset)
    else:
        table(records_dir(args.preset), result_file(args.preset))


if __name__ == "__main__":
    main()
