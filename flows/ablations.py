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

`--seeds 0 1 2` runs every variant once per seed (train.seed and sample.seeds set to
it: tuning and sampling noise vary together; the world and the base model are the
main pipeline's), under runs/ablations/<variant>/seed<s>/.

"No first-frame conditioning" is the spec's ablation in full: tuned without a clean
frame 0 AND sampled without a first frame (tasks/generate.py); its first-frame
fidelity is not reported.

    python -m flows.ablations --motions rain helicopter --set train.steps=100
    python -m flows.ablations --seeds 0 1 2
"""
from __future__ import annotations

import argparse
from pathlib import Path

import yaml
from prefect import flow, get_run_logger

from flows.compare import build_comparison
from flows.motion import check_motions
from lamp_model.config import load_params
from tasks import tracking
from tasks.prefect_tasks import GPU_LIMIT, ensure_gpu_limit, inprocess_stage, stage_task

VARIANTS: dict[str, dict] = {
    "full": {},
    "first_frame_base": {"model.first_frame": "base"},
    "no_ff_conditioning": {"train.first_frame_conditioning": False},
    "no_shared_noise": {"sample.alpha": 0.0},
    "no_tsm": {"lamp.tsm": False},
    "plain_conv1d": {"lamp.prediction_conv1d": False},
    "no_postprocess": {"sample.adain": False, "sample.histogram_matching": False},
    "no_adain": {"sample.adain": False},  # the two halves of post-processing, one at a time
    "no_histogram_matching": {"sample.histogram_matching": False},
}


def variant_dir(variant: str, seed: int | None = None) -> str:
    return f"runs/ablations/{variant}" if seed is None else f"runs/ablations/{variant}/seed{seed}"


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

    results, failed = {}, {}
    runs = [(v, s) for s in (seeds if seeds else [None]) for v in variants]
    for variant, seed in runs:
        ov = {**overrides, "motions": motions, **VARIANTS[variant]}
        if seed is not None:
            ov.update({"train.seed": seed, "sample.seeds": [seed]})
        run_dir = variant_dir(variant, seed)
        name = variant if seed is None else f"{variant}/seed{seed}"
        vparams = load_params(Path(root) / "params.yaml", overrides=ov)
        seed_tag = str(vparams.train.seed)
        vrun = tracking.safely(tracking.start_run, vparams, root, f"variant {name}",
                               tags={"kind": "variant", "variant": variant, "seed": seed_tag}, parent_run_id=parent,
                               run_params={"overrides": ov, "run_dir": run_dir})
        tags = {"ablation_run": parent or "", "seed": seed_tag}
        common = dict(root=root, run_dir=run_dir, overrides=ov, variant=variant, parent_run_id=vrun,
                      gpu_limit=gpu_limit, tags=tags)
        try:
            for m in motions:
                for stage in ("tune", "generate"):  # tune: a no-op when its checkpoint is finished
                    inprocess_stage.with_options(task_run_name=f"{stage}@{m} [{name}]")(stage, motion=m,
                                                                                         **common)
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
