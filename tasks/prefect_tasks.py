"""Prefect tasks around the stages: composition only, every stage's work is its `run()`.

Two kinds of task:

- `dvc_stage` (main pipeline): runs `dvc --wait-for-lock repro -s <stage>[@motion]` in the
  project root, i.e. the same `python -m tasks.<stage>` as `dvc repro`. DVC decides
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
import os
import re
import shutil
import subprocess
import sys
import time
from collections import deque
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from lamp_model.config import load_params
from tasks import tracking

GPU_STAGES = ("tune", "generate", "baseline_tune_a_video", "baseline_text2video_zero", "baseline_animatediff")
PER_MOTION = ("extract", "cache", "tune", "generate")
RETRIES = {"extract": 1, "metrics": 1, "report": 1}
GPU_LIMIT = "gpu"


class StageFailed(RuntimeError):
    """A stage run failed. `bad_input` is True when the stage itself reported bad input (no retry)."""

    def __init__(self, message: str, bad_input: bool = False):
        super().__init__(message)
        self.bad_input = bad_input


def _logger():
    try:
        from prefect import get_run_logger

        return get_run_logger()
    except Exception:  # outside a flow/task run
        return logging.getLogger("lamp")


def dvc_target(stage: str, motion: str | None = None) -> str:
    return f"{stage}@{motion}" if motion else stage


def dvc_executable() -> str:
    """The dvc next to this Python (the project's venv) first, then PATH."""
    local = Path(sys.executable).parent / "dvc"
    return str(local) if local.exists() else (shutil.which("dvc") or "dvc")


def stage_env(parent_run_id: str | None = None, variant: str | None = None) -> dict[str, str]:
    """Environment of a stage subprocess: this venv first on PATH (dvc.yaml runs `python -m ...`)."""
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.setdefault("DVC_NO_ANALYTICS", "1")
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.pop(tracking.PARENT_ENV, None)
    if parent_run_id:
        env[tracking.PARENT_ENV] = parent_run_id
    if variant:
        env[tracking.VARIANT_ENV] = variant
    return env


def error_message(output: str) -> tuple[str | None, bool]:
    """(message, bad_input) from a stage's output: its "error: ..." line (with indented
    continuation lines), else DVC's own "ERROR: ..." line."""
    lines = output.splitlines()
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].startswith("error: "):
            msg = [lines[i]]
            for nxt in lines[i + 1:]:
                if not nxt.startswith((" ", "\t")):
                    break
                msg.append(nxt)
            return "\n".join(msg), True
    for line in reversed(lines):
        if line.startswith("ERROR:"):
            return line, False
    return None, False


def run_dvc_stage(stage: str, motion: str | None = None, root: str = ".", parent_run_id: str | None = None,
                  timeout: float | None = None) -> dict:
    """`dvc --wait-for-lock repro -s <target>` in `root`; returns {"target", "ran", "seconds"}."""
    target = dvc_target(stage, motion)
    cmd = [dvc_executable(), "--wait-for-lock", "repro", "-s", target]
    logger = _logger()
    logger.info("%s: %s (cwd %s)", target, " ".join(cmd[1:]), root)
    started = time.monotonic()
    tail: deque[str] = deque(maxlen=400)
    proc = subprocess.Popen(cmd, cwd=root, env=stage_env(parent_run_id), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, bufsize=1)
    ran = False
    assert proc.stdout is not None
    for line in proc.stdout:
        line = strip_ansi(line.rstrip("\n"))
        tail.append(line)
        if f"Running stage '{target}'" in line:
            ran = True
        if line.strip() and "it/s]" not in line and "s/it]" not in line:  # skip tqdm redraws
            logger.info("%s | %s", target, line)
    rc = proc.wait(timeout=timeout)
    seconds = time.monotonic() - started
    if rc != 0:
        output = "\n".join(tail)
        msg, bad_input = error_message(output)
        raise StageFailed(f"{target} failed (dvc exit {rc}): {msg or output[-2000:]}", bad_input=bad_input)
    logger.info("%s: %s in %.1f s", target, "ran" if ran else "up to date (skipped by DVC)", seconds)
    return {"target": target, "stage": stage, "motion": motion, "ran": ran, "seconds": seconds}


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
        return run_dvc_stage(stage, motion, root, parent_run_id)


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
                        tags: dict | None = None) -> dict:
    """tasks.<stage>.run(...) with params.yaml + overrides, logged as an MLflow stage run."""
    root_p = Path(root)
    params = load_params(root_p / params_file, overrides=overrides or {})
    module = importlib.import_module(f"tasks.{stage}")
    kwargs = {"run_dir": run_dir}
    if motion is not None:
        kwargs["motion"] = motion
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
                    gpu_limit: str | None = GPU_LIMIT, tags: dict | None = None) -> dict:
    with _gpu_slot(stage, gpu_limit):
        return run_inprocess_stage(stage, root, motion, run_dir, overrides, variant, parent_run_id, tags=tags)


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


def strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text)
