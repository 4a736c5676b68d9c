"""Flow `lamp-all-motions`: the whole pipeline, motions in parallel.

world -> base, then one `lamp-motion` sub-flow per motion (in parallel; a failing motion
does not stop the others), then metrics -> report when every motion of params.yaml
succeeded. The flow fails at the end listing the failed motions and their errors.
Every step is `dvc repro -s <stage>`: after this flow `dvc repro` is a no-op, and a
re-run does only what is missing.

dispatch="local": the motion sub-flows run in this process (threads; GPU stages
take the `gpu` concurrency slot). dispatch="deployment": each motion is a flow run of
the deployment `lamp-motion/default`, picked up by whichever worker of the pool is
free (one worker per GPU, each started with its own CUDA_VISIBLE_DEVICES).

MLflow: one pipeline run (kind=pipeline) per flow run; motion runs and stage runs nest under it.

    python -m flows.all_motions --motions rain helicopter
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Literal

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.motion import check_motions, lamp_motion
from lamp_model.config import load_params, write_overrides
from tasks import tracking
from tasks.prefect_tasks import GPU_LIMIT, ensure_gpu_limit, stage_task

MOTION_DEPLOYMENT = "lamp-motion/default"


@task(name="motion-local", task_run_name="motion-{motion}", cache_policy=NO_CACHE)
def motion_local(motion: str, root: str, parent_run_id: str | None, gpu_limit: str | None) -> dict:
    return lamp_motion(motion, root, parent_run_id, gpu_limit)


@task(name="motion-deployment", task_run_name="motion-{motion}", cache_policy=NO_CACHE)
def motion_deployment(motion: str, root: str, parent_run_id: str | None, gpu_limit: str | None,
                      deployment: str) -> dict:
    from prefect.deployments import run_deployment

    fr = run_deployment(deployment, parameters={"motion": motion, "root": root, "parent_run_id": parent_run_id,
                                                "gpu_limit": gpu_limit},
                        timeout=None, poll_interval=2, flow_run_name=f"motion-{motion}")
    if fr.state is None or not fr.state.is_completed():
        name = fr.state.name if fr.state else "unknown"
        raise RuntimeError(f"flow run {fr.name} of {deployment} ended {name}: "
                           f"{fr.state.message if fr.state else ''}")
    return {"motion": motion, "flow_run": fr.name, "flow_run_id": str(fr.id)}


@flow(name="lamp-all-motions")
def lamp_all_motions(motions: list[str] | None = None, root: str = ".",
                     dispatch: Literal["local", "deployment"] = "local", deployment: str = MOTION_DEPLOYMENT,
                     gpu_limit: str | None = GPU_LIMIT, overrides: dict | None = None) -> dict:
    """`overrides` (dotted params, e.g. {"train.steps": 100}; `lamp pipeline --set`) are validated and
    written into ROOT/params.yaml before any stage runs, like `dvc exp run -S`: the DVC stages read
    that file, so afterwards `dvc repro` is still a no-op and params.yaml says what made the outputs."""
    logger = get_run_logger()
    root = str(Path(root).resolve())
    if overrides:
        changed = write_overrides(Path(root) / "params.yaml", overrides)
        logger.info("params.yaml: %s", ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changed.items())
                    or "the overrides are its values already")
    params = load_params(Path(root) / "params.yaml")
    motions = list(motions or params.motions)
    check_motions(params, motions)
    ensure_gpu_limit(gpu_limit)
    run_id = tracking.safely(tracking.start_run, params, root, "pipeline",
                             tags={"kind": "pipeline", "variant": tracking.MAIN, "motions": ",".join(motions),
                                   "dispatch": dispatch},
                             run_params={"motions": motions, "dispatch": dispatch})
    failed: dict[str, str] = {}
    done: list[str] = []
    try:
        for stage in ("world", "base"):
            stage_task(stage)(stage, None, root, run_id, gpu_limit)
        if dispatch == "deployment":
            futures = {m: motion_deployment.submit(m, root, run_id, gpu_limit, deployment) for m in motions}
        else:
            futures = {m: motion_local.submit(m, root, run_id, gpu_limit) for m in motions}
        for m, fut in futures.items():
            fut.wait()
            try:
                fut.result()
                done.append(m)
            except BaseException as e:  # noqa: BLE001 - a failed motion; the others go on
                failed[m] = str(e)
                logger.error("motion %s failed: %s", m, e)
        if failed:
            logger.warning("metrics and report skipped: they score all motions and %s failed", sorted(failed))
        elif set(params.motions) <= set(motions):
            for stage in ("metrics", "report"):
                stage_task(stage)(stage, None, root, run_id, gpu_limit)
        else:
            logger.info("metrics and report skipped: they score every motion in params.yaml %s, this run had %s",
                        params.motions, motions)
        if failed:
            lines = "".join(f"\n- {m}: {msg}" for m, msg in sorted(failed.items()))
            raise RuntimeError(f"{len(failed)} of {len(motions)} motions failed: {sorted(failed)}{lines}")
    except BaseException as e:
        tracking.safely(tracking.end_run, params, root, run_id, "FAILED",
                        metrics={"motions_done": len(done), "motions_failed": len(failed)},
                        tags={"error": str(e), "failed_motions": ",".join(sorted(failed))})
        raise
    tracking.safely(tracking.end_run, params, root, run_id, "FINISHED",
                    metrics={"motions_done": len(done), "motions_failed": 0})
    return {"motions": done, "mlflow_run_id": run_id}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Run the LAMP pipeline (all motions) as a Prefect flow.")
    ap.add_argument("--motions", nargs="*", default=None, help="default: motions in params.yaml")
    ap.add_argument("--root", default=".")
    ap.add_argument("--dispatch", choices=("local", "deployment"), default="local")
    ap.add_argument("--deployment", default=MOTION_DEPLOYMENT)
    ap.add_argument("--gpu-limit", default=GPU_LIMIT, help="global concurrency limit name ('' = none)")
    a = ap.parse_args(argv)
    lamp_all_motions(a.motions or None, a.root, a.dispatch, a.deployment, a.gpu_limit or None)


if __name__ == "__main__":
    main()
