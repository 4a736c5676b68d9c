"""MLflow tracking of stage runs, pipeline runs and ablation variants.

Where runs go comes from params.yaml `tracking` (never MLflow's implicit default):
  uri:        sqlite:///mlflow.db (a relative sqlite path is taken from the project root),
              or http://127.0.0.1:5000 for an `mlflow server`;
  experiment: the MLflow experiment name;
  enabled:    false = nothing is logged (and mlflow is not even imported).

Run tree (what the MLflow UI shows):
  pipeline run (flow `lamp-all-motions`, tags kind=pipeline)
    world, base, metrics, report          stage runs
    motion run per motion (kind=motion)
      extract@m, cache@m, tune@m, generate@m   stage runs
  A plain `dvc repro` (no LAMP_MLFLOW_PARENT_RUN_ID in the environment) logs
  standalone stage runs. Every run carries the tags stage, motion, variant
  ("main" for the main pipeline, the ablation name for ablations), so the
  compare view lines variants up.

A stage run logs: params = flatten(params) + git commit + deps hash (a sha256 of
the stage's dependency files as declared in dvc.yaml) + runtime.torch_threads (in a
stage that uses torch), metrics = result["metrics"]
+ duration_s, the loss curve result["loss"] as the stepped metric `loss`, and the
files in result["artifacts"], with the stage's own start and end time. With $LAMP_TRACKING_SPOOL
set (lamp.repro sets it), a stage writes that record as JSON into the folder instead, and
the runner logs them all through one MLflow client (`log_spooled`): ~3 s less per stage
process (importing mlflow, opening the sqlite store). Tracking never changes a stage's outcome: a
logging error is one warning line on stderr.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import yaml

from lamp_model.config import Params, flatten

log = logging.getLogger("lamp")

PARENT_ENV = "LAMP_MLFLOW_PARENT_RUN_ID"  # stage runs nest under this run
VARIANT_ENV = "LAMP_VARIANT"  # tag `variant` of stage runs (default "main")
SPOOL_ENV = "LAMP_TRACKING_SPOOL"  # a folder: stage runs are written there as JSON, for the caller to log
MAIN = "main"
_BATCH = 100  # MLflow's limit of params per log_batch call


def enabled(params: Params) -> bool:
    return bool(params.tracking.enabled)


def tracking_uri(params: Params, root: Path | str) -> str:
    """params.tracking.uri with a relative sqlite path resolved against the project root."""
    uri = params.tracking.uri
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        path = uri.removeprefix("sqlite:///")
        if path and path != ":memory:":
            return "sqlite:///" + str((Path(root) / path).resolve())
    return uri


def _client(params: Params, root: Path | str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri(params, root))


def experiment_id(params: Params, root: Path | str, client=None) -> str:
    """The experiment's id, created on first use. A local store keeps artifacts in <root>/mlartifacts."""
    client = client or _client(params, root)
    name = params.tracking.experiment
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    uri = tracking_uri(params, root)
    location = None
    if not uri.startswith(("http://", "https://", "databricks")):
        location = (Path(root).resolve() / "mlartifacts").as_uri()
    try:
        return client.create_experiment(name, artifact_location=location)
    except Exception:  # created by a concurrent process in between
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def _retry(fn, tries: int = 4):
    """sqlite may report 'database is locked' while parallel stages write: retry a few times."""
    for i in range(tries):
        try:
            return fn()
        except Exception as e:  # noqa: BLE001
            if i == tries - 1 or "locked" not in str(e).lower():
                raise
            time.sleep(0.5 * (i + 1))


# -- run tree ----------------------------------------------------------------------------

def start_run(params: Params, root: Path | str, name: str, tags: dict[str, str] | None = None,
              parent_run_id: str | None = None, run_params: dict | None = None) -> str | None:
    """Open a run (pipeline, motion or variant run) and return its id; None when tracking is off."""
    if not enabled(params):
        return None
    from mlflow.entities import Param, RunTag

    client = _client(params, root)
    exp = _retry(lambda: experiment_id(params, root, client))
    tags = {k: str(v) for k, v in (tags or {}).items()}
    if parent_run_id:
        tags["mlflow.parentRunId"] = parent_run_id
    commit = git_commit(root)
    tags["mlflow.source.git.commit"] = commit
    run = _retry(lambda: client.create_run(exp, tags=tags, run_name=name))
    run_id = run.info.run_id
    if run_params:
        ps = [Param(k, _param_value(v)) for k, v in run_params.items()]
        for i in range(0, len(ps), _BATCH):
            _retry(lambda: client.log_batch(run_id, params=ps[i:i + _BATCH]))
    _retry(lambda: client.log_batch(run_id, tags=[RunTag("git_commit", commit)]))
    return run_id


def end_run(params: Params, root: Path | str, run_id: str | None, status: str = "FINISHED",
            metrics: dict[str, float] | None = None, tags: dict[str, str] | None = None) -> None:
    """Close a run opened by `start_run` (status FINISHED or FAILED)."""
    if not run_id or not enabled(params):
        return
    from mlflow.entities import Metric, RunTag

    client = _client(params, root)
    now = int(time.time() * 1000)
    ms = [Metric(k, float(v), now, 0) for k, v in (metrics or {}).items() if _is_number(v)]
    ts = [RunTag(k, str(v)[:5000]) for k, v in (tags or {}).items()]
    if ms or ts:
        _retry(lambda: client.log_batch(run_id, metrics=ms, tags=ts))
    _retry(lambda: client.set_terminated(run_id, status=status))


# -- stage runs ----------------------------------------------------------------------------

def log_stage(stage: str, params: Params, root: Path | str, result: dict | None, *, motion: str | None = None,
              variant: str | None = None, parent_run_id: str | None = None, duration_s: float | None = None,
              status: str = "FINISHED", error: str | None = None, deps_hash: str | None = None,
              tags: dict[str, str] | None = None) -> str | None:
    """Log one stage run (finished or failed) as an MLflow run; returns its id (None when off, or when
    $LAMP_TRACKING_SPOOL names a folder: then the run is written there for the caller to log)."""
    if not enabled(params):
        return None
    record = stage_record(stage, params, root, result, motion=motion, variant=variant, parent_run_id=parent_run_id,
                          duration_s=duration_s, status=status, error=error, deps_hash=deps_hash, tags=tags)
    spool = os.environ.get(SPOOL_ENV)
    if spool:
        write_spooled(Path(spool), record)
        return None
    return log_record(record, root)


def stage_record(stage: str, params: Params, root: Path | str, result: dict | None, *, motion: str | None = None,
                 variant: str | None = None, parent_run_id: str | None = None, duration_s: float | None = None,
                 status: str = "FINISHED", error: str | None = None, deps_hash: str | None = None,
                 tags: dict[str, str] | None = None) -> dict:
    """Everything MLflow gets for one stage run, as plain JSON (taken in the stage's own process)."""
    root = Path(root)
    result = result or {}
    variant = variant or os.environ.get(VARIANT_ENV) or MAIN
    parent_run_id = parent_run_id if parent_run_id is not None else os.environ.get(PARENT_ENV) or None
    commit = git_commit(root)
    name = f"{stage}@{motion}" if motion else stage
    if variant != MAIN:
        name = f"{name} [{variant}]"
    tags = {**{k: str(v) for k, v in (tags or {}).items()},
            "stage": stage, "motion": motion or "", "variant": variant, "kind": "stage",
            "method": str(result.get("method") or "lamp"),  # lamp, a baseline, or lamp+baselines (the comparison)
            "git_commit": commit, "mlflow.source.git.commit": commit}
    if parent_run_id:
        tags["mlflow.parentRunId"] = parent_run_id
    if error:
        tags["error"] = error[:5000]
    ps = {k: _param_value(v) for k, v in flatten(params).items()}
    ps["git.commit"] = commit
    ps["dvc.deps_hash"] = deps_hash if deps_hash is not None else stage_deps_hash(root, stage, motion)
    if "torch" in sys.modules:  # float results can depend on it (lamp.repro runs per-motion stages with fewer)
        ps["runtime.torch_threads"] = str(sys.modules["torch"].get_num_threads())
    metrics = {k: float(v) for k, v in (result.get("metrics") or {}).items() if _is_number(v)}
    if duration_s is not None:
        metrics["duration_s"] = float(duration_s)
    end_ms = int(time.time() * 1000)
    artifacts = []
    for path in result.get("artifacts") or []:
        q = Path(path)
        artifacts.append(str(q if q.is_absolute() else (root / q).resolve()))
    return {"name": name, "tags": tags, "params": ps, "metrics": metrics,
            "loss": [float(v) for v in result.get("loss") or [] if _is_number(v)], "artifacts": artifacts,
            "status": status, "end_ms": end_ms,
            "start_ms": end_ms - int(1000 * duration_s) if duration_s is not None else end_ms,
            "tracking": {"uri": params.tracking.uri, "experiment": params.tracking.experiment}}


def log_record(record: dict, root: Path | str, client=None) -> str:
    """One stage run from its record (`stage_record`) into MLflow, with the stage's own start and end time."""
    from mlflow.entities import Metric, Param

    params = Params.model_validate({"tracking": record["tracking"]})
    client = client or _client(params, root)
    exp = _retry(lambda: experiment_id(params, root, client))
    run = _retry(lambda: client.create_run(exp, start_time=record["start_ms"], tags=record["tags"],
                                           run_name=record["name"]))
    run_id = run.info.run_id
    plist = [Param(k, v) for k, v in record["params"].items()]
    for i in range(0, len(plist), _BATCH):
        _retry(lambda: client.log_batch(run_id, params=plist[i:i + _BATCH]))
    end = record["end_ms"]
    metrics = [Metric(k, v, end, 0) for k, v in record["metrics"].items()]
    metrics += [Metric("loss", v, end, step) for step, v in enumerate(record["loss"])]
    for i in range(0, len(metrics), 1000):
        _retry(lambda: client.log_batch(run_id, metrics=metrics[i:i + 1000]))
    for path in record["artifacts"]:
        p = Path(path)
        if p.is_dir():
            client.log_artifacts(run_id, str(p), artifact_path=p.name)
        elif p.is_file():
            client.log_artifact(run_id, str(p))
        else:
            log.warning("tracking: artifact %s not found, not logged", p)
    _retry(lambda: client.set_terminated(run_id, status=record["status"], end_time=end))
    return run_id


# -- spooled stage runs (lamp.repro: one MLflow client for all stages, not one per stage process) -----

def write_spooled(spool: Path, record: dict) -> Path:
    """The record as <spool>/<end ms>-<pid>-<name>.json, written whole (a reader never sees half a file)."""
    spool.mkdir(parents=True, exist_ok=True)
    safe = re.sub(r"[^A-Za-z0-9@_.-]+", "_", record["name"])
    path = spool / f"{record['end_ms']}-{os.getpid()}-{safe}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record))
    os.replace(tmp, path)
    return path


def log_spooled(spool: Path, root: Path | str) -> tuple[int, int]:
    """Log every spooled stage run to MLflow, oldest first, deleting each once logged; a run that fails
    to log stays for the next call. Returns (logged, failed)."""
    logged = failed = 0
    clients: dict[str, object] = {}  # one per store: opening a sqlite store costs ~1 s
    for path in sorted(Path(spool).glob("*.json")):
        try:
            record = json.loads(path.read_text())
            uri = record["tracking"]["uri"]
            if uri not in clients:
                clients[uri] = _client(Params.model_validate({"tracking": record["tracking"]}), root)
            log_record(record, root, clients[uri])
        except Exception as e:  # noqa: BLE001 - tracking never changes a run's outcome
            failed += 1
            print(f"warning: MLflow tracking of {path.name} failed ({type(e).__name__}: {e}); kept in {spool}",
                  file=sys.stderr)
            continue
        path.unlink()
        logged += 1
    return logged, failed


def log_stage_safely(*args, **kwargs) -> str | None:
    """`log_stage` that turns any tracking error into one warning line (the stage's outcome stands)."""
    try:
        return log_stage(*args, **kwargs)
    except Exception as e:  # noqa: BLE001
        print(f"warning: MLflow tracking failed ({type(e).__name__}: {e}); the stage result is unaffected",
              file=sys.stderr)
        return None


def safely(fn, *args, **kwargs):
    """Call a tracking function; an error becomes a warning (a run's outcome never depends on MLflow)."""
    try:
        return fn(*args, **kwargs)
    except Exception as e:  # noqa: BLE001
        log.warning("MLflow tracking failed (%s: %s); continuing without it", type(e).__name__, e)
        return None


# -- provenance --------------------------------------------------------------------------

def git_commit(root: Path | str) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() if out.returncode == 0 else "none"
    except (OSError, subprocess.SubprocessError):
        return "none"


def stage_deps(root: Path | str, stage: str, motion: str | None = None) -> list[str]:
    """The stage's dependency paths as declared in dvc.yaml (${item} and ${params} resolved)."""
    root = Path(root)
    dvc_file = root / "dvc.yaml"
    if not dvc_file.is_file():
        return []
    spec = (yaml.safe_load(dvc_file.read_text()) or {}).get("stages", {}).get(stage)
    if not spec:
        return []
    if "foreach" in spec:
        spec = spec.get("do", {})
    raw_params = {}
    if (root / "params.yaml").is_file():
        raw_params = yaml.safe_load((root / "params.yaml").read_text()) or {}

    def lookup(m: re.Match) -> str:
        key = m.group(1)
        if key == "item":
            return motion or ""
        value = raw_params
        for part in key.split("."):
            value = value.get(part, "") if isinstance(value, dict) else ""
        return str(value)

    deps = []
    for dep in spec.get("deps") or []:
        dep = next(iter(dep)) if isinstance(dep, dict) else dep
        deps.append(re.sub(r"\$\{\s*([\w.]+)\s*\}", lookup, str(dep)))
    return deps


def stage_deps_hash(root: Path | str, stage: str, motion: str | None = None) -> str:
    """sha256 over the stage's dependency files (path + content), the data version of the run."""
    root = Path(root)
    h = hashlib.sha256()
    for dep in stage_deps(root, stage, motion):
        path = root / dep
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for f in files:
            h.update(str(f.relative_to(root)).encode())
            if f.is_file():
                with open(f, "rb") as fh:
                    for chunk in iter(lambda: fh.read(1 << 20), b""):
                        h.update(chunk)
            else:
                h.update(b"<missing>")
    return h.hexdigest()[:16]


def _param_value(v) -> str:
    return str(v)[:6000]


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v

