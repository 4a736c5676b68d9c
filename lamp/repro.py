"""`dvc repro`, with the per-motion stages of different motions side by side.

DVC runs one stage at a time. On a 2-core CPU that leaves a core idle in every
Python start-up, and a torch process with 2 threads is only ~1.5x one with 1
thread; two 1-thread tuning processes side by side do ~1.3x the work of one
2-thread process. So this runner takes the stages `dvc repro TARGET` would run, in
DVC's order, and runs each as `dvc --wait-for-lock repro -s <stage>`
(tasks/dvc_stage.py) with up to `runner.jobs` at once:

- a per-motion stage (`tune@rain`, any `stage@item` of a foreach) takes one slot and
  runs with cores // jobs torch threads;
- any other stage (world, base, metrics, report) takes every slot: it runs alone with
  torch's default threads, as under `dvc repro`.

Which stage runs with how many threads depends only on its name and `jobs`, never on
timing, so a rerun on the same machine writes the same bytes. DVC still decides what
is stale and records every stage in dvc.lock; the runner ends with `dvc repro TARGET`,
which must find nothing left to do. With jobs = 1 it is plain `dvc repro TARGET`. Stages
hand their MLflow runs to the runner, which logs them all at the end through one client
(tasks/tracking.py: ~3 s less per stage process).

    python -m lamp.repro report            (what `make run` calls)
    python -m lamp.repro report --jobs 1
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import re
import subprocess
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path

from lamp_model.config import ParamsError, load_params
from tasks import tracking
from tasks.dvc_stage import StageFailed, dvc_executable, run_dvc_stage, stage_env

log = logging.getLogger("lamp.repro")
SPOOL_DIR = "runs/tracking_spool"  # stage runs waiting to be logged (a crashed run's are logged next time)


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def resolve_jobs(jobs: int | str, device: str) -> int:
    """runner.jobs as a number: "auto" = 2 on a CPU with >= 2 cores, 1 when the stages use a GPU."""
    if jobs != "auto":
        return int(jobs)
    if device.startswith("cuda"):
        return 1
    if device == "auto":
        import torch

        if torch.cuda.is_available():
            return 1
    return min(2, cores())


def is_per_motion(stage: str) -> bool:
    """A foreach stage's instance (`tune@rain`): one of several that share no outputs."""
    return "@" in stage


def stage_threads(stage: str, jobs: int, n_cores: int) -> int | None:
    """Torch threads of a stage: cores // jobs for a per-motion stage when jobs > 1, else torch's default."""
    if jobs <= 1 or not is_per_motion(stage):
        return None
    return max(1, n_cores // jobs)


def _dvc(root: Path, *args: str) -> str:
    proc = subprocess.run([dvc_executable(), *args], cwd=root, env=stage_env(), capture_output=True, text=True)
    if proc.returncode != 0:
        raise StageFailed(f"dvc {' '.join(args)} failed: {(proc.stderr or proc.stdout).strip()[-2000:]}")
    return proc.stdout


def parse_dot(dot: str) -> tuple[list[str], dict[str, set[str]]]:
    """(stages in DVC's listing order, stage -> the stages it depends on) from `dvc dag --dot`."""
    order: list[str] = []
    needs: dict[str, set[str]] = {}
    for line in dot.splitlines():
        edge = re.fullmatch(r'\s*"([^"]+)"\s*->\s*"([^"]+)";?\s*', line)
        node = re.fullmatch(r'\s*"([^"]+)";?\s*', line)
        if edge:
            up, down = edge.groups()
            for s in (up, down):
                if s not in needs:
                    order.append(s)
                    needs[s] = set()
            needs[down].add(up)
        elif node and node.group(1) not in needs:
            order.append(node.group(1))
            needs[node.group(1)] = set()
    return order, needs


def stale_stages(order: list[str], needs: dict[str, set[str]], changed: set[str]) -> list[str]:
    """The stages `dvc repro` would run: the changed ones and everything downstream of them,
    in an order where every stage comes after the stages it needs (DVC's listing order first)."""
    todo = set(changed) & set(needs)
    grew = True
    while grew:
        grew = False
        for s in order:
            if s not in todo and needs[s] & todo:
                todo.add(s)
                grew = True
    ordered: list[str] = []
    placed: set[str] = set()
    while len(ordered) < len(todo):
        for s in order:
            if s in todo and s not in placed and not (needs[s] & todo) - placed:
                ordered.append(s)
                placed.add(s)
                break
        else:
            raise StageFailed(f"dvc dag has a cycle among {sorted(todo - placed)}")
    return ordered


def plan(root: Path, target: str | None) -> tuple[list[str], dict[str, set[str]]]:
    """The stale stages of `target` (all of dvc.yaml when None), in run order, and their dependencies."""
    args = [target] if target else []
    order, needs = parse_dot(_dvc(root, "dag", "--dot", *args))
    changed = set(json.loads(_dvc(root, "status", "--json", *(["--with-deps", target] if target else [])) or "{}"))
    return stale_stages(order, needs, changed), needs


def schedule(stages: list[str], needs: dict[str, set[str]], jobs: int, run_stage) -> list[str]:
    """Run `run_stage(stage)` for every stage, at most `jobs` slots busy: a per-motion stage takes one
    slot, any other stage all of them. Stages start in list order (a stage waits for the stages it
    needs; one that does not fit yet holds back the ones after it). The first failure stops new
    starts; the running ones finish, then it is raised. Returns the stages in the order they started."""
    pending = list(stages)
    in_plan = set(stages)
    done: set[str] = set()
    started: list[str] = []
    running: dict[Future, tuple[str, int]] = {}
    failure: BaseException | None = None
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        while (pending and failure is None) or running:
            free = jobs - sum(w for _, w in running.values())
            if failure is None:
                for s in list(pending):
                    if (needs.get(s, set()) & in_plan) - done:
                        continue  # waits for a stage it needs
                    weight = 1 if is_per_motion(s) else jobs
                    if weight > free:
                        break  # the next stage in order waits for slots: nothing overtakes it
                    pending.remove(s)
                    started.append(s)
                    running[pool.submit(run_stage, s)] = (s, weight)
                    free -= weight
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in finished:
                s, _ = running.pop(fut)
                try:
                    fut.result()
                    done.add(s)
                except BaseException as e:  # noqa: BLE001 - raised once the running stages finish
                    failure = failure or e
    if failure is not None:
        raise failure
    return started


def repro(root: Path | str = ".", target: str | None = None, jobs: int | str | None = None) -> dict:
    """Bring `target` up to date like `dvc repro target`, per-motion stages `jobs` at a time."""
    root = Path(root).resolve()
    params = load_params(root / "params.yaml")
    n_jobs = resolve_jobs(params.runner.jobs if jobs is None else jobs, params.model.device)
    n_cores = cores()
    t0 = time.monotonic()
    stages, needs = plan(root, target)
    per_motion_threads = stage_threads("stage@motion", n_jobs, n_cores)
    log.info("%d stage(s) to run for %s, %d at a time on %d core(s)%s", len(stages), target or "dvc.yaml",
             n_jobs, n_cores, f" (per-motion stages with {per_motion_threads} torch thread(s) each)"
             if per_motion_threads else "")
    # Stage runs go to MLflow through this process's one client (tasks/tracking.py, SPOOL_ENV).
    spool = root / SPOOL_DIR
    spool_env = {tracking.SPOOL_ENV: str(spool)} if params.tracking.enabled else {}

    def run_stage(stage: str) -> None:
        name, _, item = stage.partition("@")
        run_dvc_stage(name, item or None, str(root), threads=stage_threads(stage, n_jobs, n_cores), logger=log,
                      extra_env=spool_env)

    try:
        schedule(stages, needs, n_jobs, run_stage)
    finally:
        if spool_env and spool.is_dir():
            logged, failed = tracking.log_spooled(spool, root)
            log.info("MLflow: %d stage run(s) logged%s", logged, f", {failed} kept in {spool}" if failed else "")
    # What the runner did is what `dvc repro` would have done: DVC must find nothing left.
    final = _dvc(root, "repro", *([target] if target else []))
    if "up to date" not in final:
        log.warning("dvc repro found stages the runner left stale:\n%s", final.strip())
    seconds = time.monotonic() - t0
    log.info("done: %d stage(s) in %.1f min", len(stages), seconds / 60)
    return {"stages": stages, "jobs": n_jobs, "cores": n_cores, "seconds": seconds}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lamp.repro", description=__doc__.split("\n\n")[0])
    ap.add_argument("target", nargs="?", default=None, help="DVC stage to bring up to date (default: all of dvc.yaml)")
    ap.add_argument("--jobs", "-j", default=None,
                    help="stages at a time (default: params.yaml runner.jobs); 1 = plain dvc repro")
    ap.add_argument("--root", default=".", help="project root (dvc.yaml, params.yaml)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    jobs = args.jobs
    if jobs is not None and jobs != "auto":
        if not jobs.isdigit() or int(jobs) < 1:
            print(f"error: --jobs {jobs}: give a number of stages at a time (>= 1) or auto", file=sys.stderr)
            return 2
        jobs = int(jobs)
    try:
        repro(args.root, args.target, jobs)
    except (StageFailed, ParamsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
