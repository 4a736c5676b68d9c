"""Flow `lamp-ablations`: the paper's ablations (Fig. 5) + post-processing off (both halves or one), side by side.

The shared data and base model come from the main pipeline (DVC tasks world, base,
extract@m, cache@m: skipped when up to date). Each variant then runs tune, generate
and metrics IN-PROCESS (the stages' `run()` with params overrides), writing under
runs/ablations/<variant>/ so variants never overwrite each other or the main
pipeline. Tuning checkpoints are shared (tasks.common.Layout.checkpoints): `full`
and the variants that only change sampling find the main pipeline's tuning (same
settings) finished and do not tune again. Every MLflow run carries tags.variant and
tags.seed; the flow ends with `compare` (flows/compare.py):
reports/ablations/comparison.{csv,md,png}, mean ± std over the seeds run.

`--seeds 0 1 2` runs every variant once per seed: the seed sets the base stage
(base_train.seed), the tuning (train.seed) and the sampling (sample.seeds) together; the
world's data stay fixed (with real weights the base is what it is: only tuning and sampling
vary). The seed of params.yaml's base runs on the main pipeline's data and base, under
runs/ablations/<variant>/seed<s>/. Any other seed first trains its own base and caches its
clips in a project of its own, runs/ablations/projects/seed<s>/ (`seed_project`: the world's
videos and prompts linked, params.yaml = the main one with base_train.seed = s, MLflow
writing to the main store), and runs its variants there (~6 min more per seed on 2 CPU cores).
Those data stages are skipped on a later start when their dvc.yaml deps and params are what
they were built from (`data_stage_up_to_date`), as DVC skips the main pipeline's.

`untuned` samples the inflated base with LAMP's new layers at their identity init (no tuning;
the same first frames, shared noise and post-processing): the level a tuned motion has to beat.

"No first-frame conditioning" is the spec's ablation in full: tuned without a clean
frame 0 AND sampled without a first frame (tasks/generate.py); its first-frame
fidelity is not reported.

    python -m flows.ablations --motions rain helicopter --set train.steps=100
    python -m flows.ablations --seeds 0 1 2
"""
from __future__ import annotations

import argparse
import hashlib
import re
from pathlib import Path

import yaml
from prefect import flow, get_run_logger

from flows.compare import build_comparison
from flows.motion import check_motions
from lamp_model.config import load_params, write_overrides
from lamp_model.io import atomic_write
from tasks import tracking
from tasks.common import trains_base
from tasks.prefect_tasks import GPU_LIMIT, ensure_gpu_limit, inprocess_stage, paths_hash, stage_task

VARIANTS: dict[str, dict] = {
    "full": {},
    "untuned": {},  # not tuned at all (UNTUNED): the reference a motion has to beat
    "first_frame_base": {"model.first_frame": "base"},
    "no_ff_conditioning": {"train.first_frame_conditioning": False},
    "no_shared_noise": {"sample.alpha": 0.0},
    "no_tsm": {"lamp.tsm": False},
    "plain_conv1d": {"lamp.prediction_conv1d": False},
    "no_postprocess": {"sample.adain": False, "sample.histogram_matching": False},
    "no_adain": {"sample.adain": False},  # the two halves of post-processing, one at a time
    "no_histogram_matching": {"sample.histogram_matching": False},
}

UNTUNED = {"untuned"}  # variants sampled from the inflated base (LAMP's new layers at their identity init)


def variant_dir(variant: str, seed: int | None = None) -> str:
    return f"runs/ablations/{variant}" if seed is None else f"runs/ablations/{variant}/seed{seed}"


SHARED_DATA = ("data/world", "data/prompts")  # the world's videos and prompts: the same for every seed


def seed_project(root: str | Path, seed: int) -> Path:
    """The project where a seed with a base of its own runs: runs/ablations/projects/seed<seed>/.

    Its params.yaml is the main one with base_train.seed = seed and tracking.uri = the main
    MLflow store (so `compare` sees every seed); the world's videos and prompts are links to the
    main pipeline's. Its base, clips, latents, checkpoints and variant outputs are its own."""
    root = Path(root).resolve()
    project = root / "runs/ablations/projects" / f"seed{seed}"
    for rel in SHARED_DATA:
        link = project / rel
        if not link.is_symlink():
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(root / rel, target_is_directory=True)
    main = load_params(root / "params.yaml")
    params_file = project / "params.yaml"
    params_file.write_text((root / "params.yaml").read_text())
    write_overrides(params_file, {"base_train.seed": seed, "tracking.uri": tracking.tracking_uri(main, root)})
    return project


def _stage_spec(project: Path, code_root: Path, stage: str, motion: str | None):
    """(deps, params, outs) of a dvc.yaml stage with ${item} and ${<param>} resolved from the project's
    params.yaml, and that params.yaml as a dict."""
    spec = yaml.safe_load((code_root / "dvc.yaml").read_text())["stages"][stage]
    body = spec.get("do", spec)
    raw = yaml.safe_load((project / "params.yaml").read_text())

    def value(key: str):
        node = raw
        for part in key.split("."):
            node = node[part]
        return node

    def resolve(text: str) -> str:
        return re.sub(r"\$\{([^}]+)\}", lambda m: motion if m[1] == "item" else str(value(m[1])), str(text))

    params = {key: value(key) for key in body.get("params", [])}
    return [resolve(d) for d in body.get("deps", [])], params, [resolve(o) for o in body.get("outs", [])]


def data_stage_fingerprint(project: str | Path, code_root: str | Path, stage: str, motion: str | None = None) -> str:
    """What a seed project's data stage (base, extract, cache) is built from, as DVC would see it: the
    stage's deps and params in dvc.yaml, read from the project (its data, its base) or, for code, from
    `code_root`. Equal fingerprints: the stage's outputs are up to date and it need not run again."""
    project, code_root = Path(project), Path(code_root)
    deps, params, _ = _stage_spec(project, code_root, stage, motion)
    h = hashlib.sha256(f"{stage}@{motion}".encode())
    h.update(yaml.safe_dump(params, sort_keys=True).encode())
    for dep in deps:
        h.update(paths_hash(project if (project / dep).exists() else code_root, [dep]).encode())
    return h.hexdigest()


def _stage_record(project: Path, stage: str, motion: str | None) -> Path:
    return project / ".stages" / (f"{stage}@{motion}" if motion else stage)


def data_stage_up_to_date(project: str | Path, code_root: str | Path, stage: str, motion: str | None = None) -> bool:
    """A seed project's data stage finished earlier from the same inputs (so a second start of
    `--seeds s` does not train that seed's base again)."""
    project, code_root = Path(project), Path(code_root)
    record = _stage_record(project, stage, motion)
    _, _, outs = _stage_spec(project, code_root, stage, motion)
    return (record.is_file() and all((project / o).exists() for o in outs)
            and record.read_text().strip() == data_stage_fingerprint(project, code_root, stage, motion))


def record_data_stage(project: str | Path, code_root: str | Path, stage: str, motion: str | None = None) -> None:
    record = _stage_record(Path(project), stage, motion)
    record.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(record) as tmp:
        tmp.write_text(data_stage_fingerprint(project, code_root, stage, motion) + "\n")


@flow(name="lamp-ablations")
def lamp_ablations(motions: list[str] | None = None, variants: list[str] | None = None, root: str = ".",
                   overrides: dict | None = None, gpu_limit: str | None = GPU_LIMIT,
                   seeds: list[int] | None = None) -> dict:
    """`overrides` (dotted params, e.g. {"train.steps": 100}) apply to every variant's tune/generate/metrics;
    the shared data stages run with params.yaml as it is. `seeds`: one run of every variant per seed
    (train.seed = sample.seeds = [seed]); None: params.yaml's seeds, once."""
    logger = get_run_logger()
    root = str(Path(root).resolve())
    base_params = load_params(Path(root) / "params.yaml")
    motions = list(motions or base_params.motions)
    check_motions(base_params, motions)
    variants = list(variants or VARIANTS)
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
    if "full" in variants:  # first: the reference row
        variants.remove("full")
        variants.insert(0, "full")
    overrides = dict(overrides or {})
    ensure_gpu_limit(gpu_limit)
    parent = tracking.safely(tracking.start_run, base_params, root, "ablations",
                             tags={"kind": "ablations", "variant": "ablations", "motions": ",".join(motions)},
                             run_params={"motions": motions, "variants": variants, "overrides": overrides})

    # shared data and base model: the main pipeline's DVC stages (no-ops when up to date)
    for stage in ("world", "base"):
        stage_task(stage)(stage, None, root, parent, gpu_limit)
    for m in motions:
        for stage in ("extract", "cache"):
            stage_task(stage, m)(stage, m, root, parent, gpu_limit)
    projects = {}  # seed -> the project of a seed with a base of its own
    for seed in seeds or []:
        if seed != base_params.base_train.seed and trains_base(base_params, root):
            projects[seed] = str(seed_project(root, seed))
            for stage, m in [("base", None)] + [(st, m) for m in motions for st in ("extract", "cache")]:
                target = f"{stage}{'@' + m if m else ''}"
                if data_stage_up_to_date(projects[seed], root, stage, m):
                    logger.info("%s [seed%d project]: up to date (its inputs are those it was built from)",
                                target, seed)
                    continue
                inprocess_stage.with_options(task_run_name=f"{target} [seed{seed} project]")(
                    stage, root=projects[seed], motion=m, variant=f"seed{seed}_project", parent_run_id=parent,
                    gpu_limit=gpu_limit, tags={"ablation_run": parent or "", "seed": str(seed)})
                record_data_stage(projects[seed], root, stage, m)

    results, failed = {}, {}
    runs = [(v, s) for s in (seeds if seeds else [None]) for v in variants]
    for variant, seed in runs:
        ov = {**overrides, "motions": motions, **VARIANTS[variant]}
        if seed is not None:
            ov.update({"train.seed": seed, "sample.seeds": [seed]})
        run_dir = variant_dir(variant, seed)
        name = variant if seed is None else f"{variant}/seed{seed}"
        vroot = projects.get(seed, root)
        vparams = load_params(Path(vroot) / "params.yaml", overrides=ov)
        seed_tag = str(vparams.train.seed)
        vrun = tracking.safely(tracking.start_run, vparams, root, f"variant {name}",
                               tags={"kind": "variant", "variant": variant, "seed": seed_tag}, parent_run_id=parent,
                               run_params={"overrides": ov, "run_dir": run_dir})
        tags = {"ablation_run": parent or "", "seed": seed_tag}
        common = dict(root=vroot, run_dir=run_dir, overrides=ov, variant=variant, parent_run_id=vrun,
                      gpu_limit=gpu_limit, tags=tags)
        untuned = variant in UNTUNED
        try:
            for m in motions:
                # tune: a no-op when its checkpoint is finished
                for stage in ("generate",) if untuned else ("tune", "generate"):
                    inprocess_stage.with_options(task_run_name=f"{stage}@{m} [{name}]")(
                        stage, motion=m, stage_kwargs={"untuned": True} if untuned else None, **common)
            res = inprocess_stage.with_options(task_run_name=f"metrics [{name}]")("metrics", **common)
            results[name] = res["metrics"]
            tracking.safely(tracking.end_run, vparams, root, vrun, "FINISHED", metrics=res["metrics"])
        except Exception as e:  # noqa: BLE001 - one variant failing does not stop the others
            failed[name] = str(e)
            logger.error("variant %s failed: %s", name, e)
            tracking.safely(tracking.end_run, vparams, root, vrun, "FAILED", tags={"error": str(e)})

    table = None
    if results:
        table = build_comparison(root, ablation_run_id=parent)
    tracking.safely(tracking.end_run, base_params, root, parent, "FAILED" if failed else "FINISHED",
                    tags={"failed_variants": ",".join(sorted(failed))} if failed else None)
    if failed:
        lines = "".join(f"\n- {v}: {msg}" for v, msg in sorted(failed.items()))
        raise RuntimeError(f"{len(failed)} of {len(runs)} variant runs failed: {sorted(failed)}{lines}")
    return {"variants": list(results), "mlflow_run_id": parent,
            "comparison": None if table is None else str(Path(root) / "reports/ablations/comparison.csv")}


def _parse_set(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        if not key or not _:
            raise SystemExit(f"--set {item!r}: use key=value, e.g. train.steps=100")
        out[key] = yaml.safe_load(value)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Run the LAMP ablations and compare them (MLflow).")
    ap.add_argument("--motions", nargs="*", default=None)
    ap.add_argument("--variants", nargs="*", default=None, help=f"default: all of {list(VARIANTS)}")
    ap.add_argument("--root", default=".")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="params overrides for the variants")
    ap.add_argument("--gpu-limit", default=GPU_LIMIT, help="global concurrency limit name ('' = none)")
    ap.add_argument("--seeds", nargs="*", type=int, default=None,
                    help="run every variant once per seed (tuning + sampling); the table gives mean ± std")
    a = ap.parse_args(argv)
    lamp_ablations(a.motions or None, a.variants or None, a.root, _parse_set(a.set), a.gpu_limit or None,
                   a.seeds or None)


if __name__ == "__main__":
    main()
