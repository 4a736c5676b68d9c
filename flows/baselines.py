"""Flow `lamp-baselines`: the paper's Table 1 on our data, LAMP beside its three baselines.

The main pipeline first (`lamp-all-motions`: DVC skips what is built), then the baseline stages —
Tune-A-Video per motion (in parallel), Text2Video-Zero, AnimateDiff — each holding a slot of
the `gpu` concurrency limit, then the `baselines` stage that scores the four methods
(reports/baselines/). Every step is `dvc repro -s <stage>`: after this flow `dvc repro baselines`
is a no-op. MLflow: one run (kind=baselines) with the stage runs nested under it, each tagged
with its method.

    python -m flows.baselines          (= make baselines, through Prefect)
"""
from __future__ import annotations

import argparse
from pathlib import Path

from prefect import flow, get_run_logger

from flows.all_motions import lamp_all_motions
from lamp_model.config import load_params
from tasks import tracking
from tasks.prefect_tasks import GPU_LIMIT, ensure_gpu_limit, stage_task


@flow(name="lamp-baselines")
def lamp_baselines(root: str = ".", gpu_limit: str | None = GPU_LIMIT) -> dict:
    logger = get_run_logger()
    root = str(Path(root).resolve())
    params = load_params(Path(root) / "params.yaml")
    ensure_gpu_limit(gpu_limit)
    lamp_all_motions(root=root, gpu_limit=gpu_limit)
    run_id = tracking.safely(tracking.start_run, params, root, "baselines",
                             tags={"kind": "baselines", "variant": tracking.MAIN, "method": "lamp+baselines"},
                             run_params={"motions": params.motions})
    try:
        futures = [stage_task("baseline_tune_a_video", m).submit("baseline_tune_a_video", m, root, run_id, gpu_limit)
                   for m in params.motions]
        futures += [stage_task(s).submit(s, None, root, run_id, gpu_limit)
                    for s in ("baseline_text2video_zero", "baseline_animatediff")]
        for fut in futures:
            fut.result()
        stage_task("baselines")("baselines", None, root, run_id, gpu_limit)
    except BaseException as e:
        tracking.safely(tracking.end_run, params, root, run_id, "FAILED", tags={"error": str(e)})
        raise
    tracking.safely(tracking.end_run, params, root, run_id, "FINISHED")
    logger.info("Table 1 on this data: %s", Path(root) / "reports/baselines/table.md")
    return {"mlflow_run_id": run_id, "table": str(Path(root) / "reports/baselines/table.md")}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="LAMP beside Tune-A-Video, Text2Video-Zero and AnimateDiff (Prefect).")
    ap.add_argument("--root", default=".")
    ap.add_argument("--gpu-limit", default=GPU_LIMIT, help="global concurrency limit name ('' = none)")
    a = ap.parse_args(argv)
    lamp_baselines(a.root, a.gpu_limit or None)


if __name__ == "__main__":
    main()
