"""Prefect tasks around the stages: composition only, every stage's work is its `run()`.

Two kinds of task:

- `dvc_stage` (main pipeline): runs `dvc --wait-for-lock repro -s <stage>[@motion]` in the
  project root (tasks/dvc_stage.py), i.e. the same `python -m tasks.<stage>` as `dvc repro`. DVC decides
  whether the stage has work to do, so a Prefect run and `dvc repro` share one state:
  after a Prefect run `dvc repro` is a no-op, and a re-run after a failure does only
  what is missing. The stage's own "error: ..." line becomes the task's failure message.
- `inprocess_stage` (ablations): calls `tasks.<stage>.run(params, root, motion, run_dir)`
  in this process with params overrides, and logs the run to MLflow itself.

GPU-bound stages (tune, generate) hold one slot of the Prefect global concurrency
limit `gpu` (strict: the limit must exist; `ensure_gpu_limit` creates it with 1 slot
if it does not), so extract/cache/metrics of other motions overlap with them.
Retries: the I/O-ish stages (extract, metrics, report) get one retry; a stage that
failed on bad input (its "error:" line, exit code 1) is never retried.
"""
from __future__ import annotations

import importlib
import logging
import time
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from lamp_model.config import load_params
from tasks import tracking
from tasks.dvc_stage import StageFailed, dvc_target, run_dvc_stage

GPU_STAGES = ("tune", "generate", "baseline_tune_a_video", "baseline_text2video_zero", "baseline_animatediff")
PER_MOTION = ("extract", "cache", "tune", "generate")
RETRIES = {"extract": 1, "metrics": 1, "report": 1}
GPU_LIMIT = "gpu"


def _logger():
    try:
        from prefect import get_run_logger

        return get_run_logger()
    except Exception:  # outside a flow/task run
        return logging.getLogger("lamp")


def _retry_unless_bad_input(task, task_run, state) -> bool:
    try:
        state.result()
    except StageFailed as e:
        return not e.bad_input
    except Exception:  # noqa: BLE001
        return True
    return False


def _gpu_slot(stage: str, gpu_limit: str | None):
    """The `gpu` global concurrency slot for GPU-bound stages (a no-op context otherwise)."""
    import contextlib

    if stage not in GPU_STAGES or not gpu_limit:
        return contextlib.nullcontext()
    from prefect.concurrency.sync import concurrency

    return concurrency(gpu_limit, occupy=1, strict=True)


@task(name="dvc-stage", cache_policy=NO_CACHE, retry_condition_fn=_retry_unless_bad_input)
def dvc_stage(stage: str, motion: str | None = None, root: str = ".", parent_run_id: str | None = None,
              gpu_limit: str | None = GPU_LIMIT) -> dict:
    with _gpu_slot(stage, gpu_limit):
        return run_dvc_stage(stage, motion, root, parent_run_id, logger=_logger())


def stage_task(stage: str, motion: str | None = None):
    """`dvc_stage` named after its target, with the stage's retry policy."""
    return dvc_stage.with_options(name=f"dvc-{stage}", task_run_name=dvc_target(stage, motion),
                                  retries=RETRIES.get(stage, 0), retry_delay_seconds=2,
                                  tags=["gpu"] if stage in GPU_STAGES else [])


# -- in-process stages (ablations) ----------------------------------------------------------

def data_paths(stage: str, motion: str | None) -> list[str]:
    """The shared inputs an ablation stage reads (its data version in MLflow)."""
    if motion:
        return [f"data/latents/{motion}", "models/world"]
    return ["data/clips", "models/world"]


def paths_hash(root: Path, paths: list[str]) -> str:
    import hashlib

    h = hashlib.sha256()
    for rel in paths:
        p = root / rel
        files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
        for f in files:
            h.update(str(f.relative_to(root)).encode())
            h.update(f.read_bytes() if f.is_file() else b"<missing>")
    return h.hexdigest()[:16]


def run_inprocess_stage(stage: str, root: str = ".", motion: str | None = None, run_dir: str = "",
                        overrides: dict | None = None, variant: str | None = None,
                        parent_run_id: str | None = None, params_file: str = "params.yaml",
                        tags: dict | None = None, stage_kwargs: dict | None = None) -> dict:
    """tasks.<stage>.run(...) with params.yaml + overrides, logged as an MLflow stage run.
    `stage_kwargs`: extra arguments of that run() that are not settings (e.g. generate's untuned)."""
    root_p = Path(root)
    params = load_params(root_p / params_file, overrides=overrides or {})
    module = importlib.import_module(f"tasks.{stage}")
    kwargs = {"run_dir": run_dir} if run_dir else {}  # the data stages have no run_dir: they feed every run
    if motion is not None:
        kwargs["motion"] = motion
    kwargs.update(stage_kwargs or {})
    started = time.monotonic()
    try:
        result = module.run(params, root_p, **kwargs)
    except Exception as e:
        tracking.log_stage_safely(stage, params, root_p, None, motion=motion, variant=variant,
                                  parent_run_id=parent_run_id, duration_s=time.monotonic() - started,
                                  status="FAILED", error=f"{type(e).__name__}: {e}",
                                  deps_hash=paths_hash(root_p, data_paths(stage, motion)), tags=tags)
        raise
    run_id = tracking.log_stage_safely(stage, params, root_p, result, motion=motion, variant=variant,
                                       parent_run_id=parent_run_id, duration_s=time.monotonic() - started,
                                       deps_hash=paths_hash(root_p, data_paths(stage, motion)), tags=tags)
    return {"stage": stage, "motion": motion, "variant": variant, "run_id": run_id,
            "metrics": result.get("metrics") or {}, "outputs": result.get("outputs") or []}


@task(name="stage", cache_policy=NO_CACHE)
def inprocess_stage(stage: str, root: str = ".", motion: str | None = None, run_dir: str = "",
                    overrides: dict | None = None, variant: str | None = None, parent_run_id: str | None = None,
                    gpu_limit: str | None = GPU_LIMIT, tags: dict | None = None,
                    stage_kwargs: dict | None = None) -> dict:
    with _gpu_slot(stage, gpu_limit):
        return run_inprocess_stage(stage, root, motion, run_dir, overrides, variant, parent_run_id, tags=tags,
                                   stage_kwargs=stage_kwargs)


def ensure_gpu_limit(name: str | None = GPU_LIMIT, limit: int = 1) -> None:
    """Create the global concurrency limit `name` (limit slots) unless it exists; an existing one
    must be active (a disabled limit is not enforced: GPU stages would share one GPU at once)."""
    if not name:
        return
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            existing = client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            try:
                client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=limit))
            except Exception:  # noqa: BLE001 - created concurrently
                client.read_global_concurrency_limit_by_name(name)
            return
    if not existing.active:
        raise RuntimeError(
            f"the Prefect global concurrency limit '{name}' is disabled, so GPU stages would not take turns: "
            f"enable it (`prefect gcl enable {name}`), or run without one on purpose (gpu_limit='' / "
            "--gpu-limit '')")
