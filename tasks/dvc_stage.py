"""One DVC stage as a subprocess: `dvc --wait-for-lock repro -s <stage>[@motion]`.

Shared by the Prefect tasks (tasks/prefect_tasks.py) and the parallel runner
(lamp/repro.py). DVC decides whether the stage has work to do and records it in
dvc.lock, so whoever runs the stage, a later `dvc repro` is a no-op. DVC holds its
repository lock while it checks and records a stage, not while the stage's command
runs, so stages that share no outputs can run side by side (`--wait-for-lock` makes
the second one wait for the check instead of failing). While one stage's command runs,
DVC also locks that stage's outputs and dependencies; another process that checks a
stage touching them fails at once with "... is busy" (e.g. two ablation flows of one
project, or a flow started while `dvc repro` runs). That is not a failure of the stage:
it is retried after a pause until the paths are free (BUSY_WAIT_S).
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
import time
from collections import deque
from pathlib import Path

from tasks import tracking

THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
BUSY = "is busy, it is being blocked by"  # DVC's rwlock: another process holds a path this stage reads or writes
BUSY_WAIT_S = 6 * 3600.0  # how long a stage waits for such paths in all (a base stage on a CPU: minutes)  # torch's intra-op threads follow OMP_NUM_THREADS


class StageFailed(RuntimeError):
    """A stage run failed. `bad_input` is True when the stage itself reported bad input (no retry)."""

    def __init__(self, message: str, bad_input: bool = False):
        super().__init__(message)
        self.bad_input = bad_input


def dvc_target(stage: str, motion: str | None = None) -> str:
    return f"{stage}@{motion}" if motion else stage


def dvc_executable() -> str:
    """The dvc next to this Python (the project's venv) first, then PATH."""
    local = Path(sys.executable).parent / "dvc"
    return str(local) if local.exists() else (shutil.which("dvc") or "dvc")


def stage_env(parent_run_id: str | None = None, variant: str | None = None,
              threads: int | None = None, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment of a stage subprocess: this venv first on PATH (dvc.yaml runs `python -m ...`);
    `threads` caps the stage's torch threads (None: torch's default, one per core); `extra` is added."""
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.setdefault("DVC_NO_ANALYTICS", "1")
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.pop(tracking.PARENT_ENV, None)
    if parent_run_id:
        env[tracking.PARENT_ENV] = parent_run_id
    if variant:
        env[tracking.VARIANT_ENV] = variant
    if threads is not None:
        env.update({name: str(threads) for name in THREAD_ENV})
    env.update(extra or {})
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


def strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text)


def is_progress_redraw(line: str) -> bool:
    """A tqdm redraw (not worth a log line)."""
    return "it/s]" in line or "s/it]" in line


def run_dvc_stage(stage: str, motion: str | None = None, root: str = ".", parent_run_id: str | None = None,
                  timeout: float | None = None, threads: int | None = None,
                  logger: logging.Logger | logging.LoggerAdapter | None = None,
                  extra_env: dict[str, str] | None = None, busy_wait_s: float = BUSY_WAIT_S) -> dict:
    """`dvc --wait-for-lock repro -s <target>` in `root`; returns {"target", "stage", "motion", "ran",
    "seconds"}; raises StageFailed with the stage's own error line. Retried while DVC says a path
    it needs is busy in another process (up to `busy_wait_s` in all)."""
    logger = logger or logging.getLogger("lamp")
    target = dvc_target(stage, motion)
    cmd = [dvc_executable(), "--wait-for-lock", "repro", "-s", target]
    logger.info("%s: %s (cwd %s%s)", target, " ".join(cmd[1:]), root,
                f", {threads} torch thread{'s' * (threads != 1)}" if threads else "")
    started = time.monotonic()
    pause = 2.0
    while True:
        rc, ran, output = _run_once(cmd, target, root, stage_env(parent_run_id, threads=threads, extra=extra_env),
                                    logger, timeout)
        if rc == 0 or BUSY not in output or time.monotonic() - started > busy_wait_s:
            break
        logger.info("%s: paths busy in another DVC process; retrying in %.0f s", target, pause)
        time.sleep(pause)
        pause = min(2 * pause, 30.0)
    seconds = time.monotonic() - started
    if rc != 0:
        msg, bad_input = error_message(output)
        raise StageFailed(f"{target} failed (dvc exit {rc}): {msg or output[-2000:]}", bad_input=bad_input)
    logger.info("%s: %s in %.1f s", target, "ran" if ran else "up to date (skipped by DVC)", seconds)
    return {"target": target, "stage": stage, "motion": motion, "ran": ran, "seconds": seconds}


def _run_once(cmd: list[str], target: str, root: str, env: dict[str, str],
              logger: logging.Logger | logging.LoggerAdapter, timeout: float | None) -> tuple[int, bool, str]:
    """One `dvc repro` process, its output logged line by line: (exit code, ran, output tail)."""
    tail: deque[str] = deque(maxlen=400)
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            bufsize=1)
    ran = False
    assert proc.stdout is not None
    for line in proc.stdout:
        line = strip_ansi(line.rstrip("\n"))
        tail.append(line)
        if f"Running stage '{target}'" in line:
            ran = True
        if line.strip() and not is_progress_redraw(line):
            logger.info("%s | %s", target, line)
    return proc.wait(timeout=timeout), ran, "\n".join(tail)
