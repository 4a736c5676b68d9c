"""Flow `lamp-motion`: one motion's stages, extract -> cache -> tune -> generate.

Each step is a `dvc repro -s <stage>@<motion>` task (tasks/prefect_tasks.py), so DVC
skips what is up to date. The motion gets an MLflow run (tag kind=motion) nested under
`parent_run_id` (the pipeline run of `lamp-all-motions`); its stage runs nest under it.

    python -m flows.motion --motion rain
"""
from __future__ import annotations

import argparse
from pathlib import Path

from prefect import flow

from lamp_model.config import load_params
from tasks import tracking
from tasks.prefect_tasks import GPU_LIMIT, PER_MOTION, ensure_gpu_limit, stage_task


def check_motions(params, motions: list[str]) -> None:
    unknown = [m for m in motions if m not in params.motions]
    if unknown:
        raise ValueError(f"motions {unknown} are not in params.yaml motions {params.motions}; "
                         "add them there (DVC stages fan out over that list)")


@flow(name="lamp-motion", flow_run_name="motion-{motion}")
def lamp_motion(motion: str, root: str = ".", parent_run_id: str | None = None,
                gpu_limit: str | None = GPU_LIMIT) -> dict:
    root = str(Path(root).resolve())
    params = load_params(Path(root) / "params.yaml")
    check_motions(params, [motion])
    ensure_gpu_limit(gpu_limit)
    run_id = tracking.safely(tracking.start_run, params, root, f"motion {motion}",
                             tags={"kind": "motion", "motion": motion, "variant": tracking.MAIN},
                             parent_run_id=parent_run_id)
    results = []
    try:
        for stage in PER_MOTION:
            results.append(stage_task(stage, motion)(stage, motion, root, run_id, gpu_limit))
    except BaseException as e:
        tracking.safely(tracking.end_run, params, root, run_id, "FAILED", tags={"error": str(e)})
        raise
    tracking.safely(tracking.end_run, params, root, run_id, "FINISHED",
                    metrics={"stages_ran": sum(r["ran"] for r in results)})
    return {"motion": motion, "mlflow_run_id": run_id, "stages": results}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Run one motion's stages (extract, cache, tune, generate).")
    ap.add_argument("--motion", required=True)
    ap.add_argument("--root", default=".")
    ap.add_argument("--gpu-limit", default=GPU_LIMIT, help="global concurrency limit name ('' = none)")
    a = ap.parse_args(argv)
    lamp_motion(a.motion, a.root, gpu_limit=a.gpu_limit or None)


if __name__ == "__main__":
    main()
