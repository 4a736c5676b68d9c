"""Orchestration end to end, with real components: a Prefect server on 127.0.0.1 (free port)
started by scripts/prefect_local.sh, a process worker `--run-once`, a real DVC repo in a
temp dir (git init + dvc init, this project's dvc.yaml and code), a real MLflow sqlite store.

One tiny pipeline (2 motions, 8 frames at 32x48, a few training steps) is shared by the
tests, in order: (a) deployment run, (b) ablations + comparison, (c) a corrupt video,
(d) scale-out: dispatch=deployment onto two process workers, (e) the strict 1-slot "gpu" limit,
(f) tracking to a real `mlflow server`, then `prefect_local.sh down`.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
MOTIONS = ["rain", "helicopter"]
F, H, W = 8, 32, 48

TINY = {
    "motions": MOTIONS,
    "data.videos_dir": "data/videos",  # "user" videos, so a test can corrupt one
    "data.eval_prompts": "data/prompts/test_eval.csv",
    "data.min_videos": 4,
    "world.videos_per_motion": 4, "world.frames": F, "world.height": H, "world.width": W,
    "clips.frames": F, "clips.height": H, "clips.width": W, "clips.clips_per_video": 1,
    "base_train.vae_steps": 5, "base_train.unet_steps": 5, "base_train.clip_steps": 5,
    "base_train.batch_size": 4, "base_train.unet_batch_size": 4,
    "train.steps": 3, "train.checkpoint_every": 50,
    "sample.ddim_steps": 2, "sample.seeds": [0],
    "model.device": "cpu",
}


def _set(raw: dict, key: str, value) -> None:
    *parents, leaf = key.split(".")
    for p in parents:
        raw = raw.setdefault(p, {})
    raw[leaf] = value


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _sh(cmd, cwd, env, timeout=600, check=True) -> subprocess.CompletedProcess:
    # Started with SIGINT ignored, as under nohup or a CI runner (a background job inherits it): the
    # server and workers prefect_local.sh starts must still stop on the SIGINT of `down` (test_f).
    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                       preexec_fn=_ignore_sigint)
    if check and p.returncode != 0:
        raise AssertionError(f"{cmd} exited {p.returncode}\nstdout:\n{p.stdout[-4000:]}\nstderr:\n{p.stderr[-4000:]}")
    return p


def _write_videos(root: Path) -> None:
    """4 training videos (+ captions.csv) per motion in data/videos/<motion>/ (the world's writer, as
    the user-folder layout), and 2 eval prompts per motion."""
    from lamp_model import world
    from lamp_model.video import write_mp4

    world.make_dataset(root / "data/videos", videos_per_motion=4, frames=F, height=H, width=W, seed=0,
                       write_video=write_mp4, motions=MOTIONS)
    prompts = root / "data/prompts/test_eval.csv"
    prompts.parent.mkdir(parents=True, exist_ok=True)
    with open(prompts, "w", newline="") as f:
        csv.writer(f).writerows([("motion", "prompt"), ("rain", "rain falling on a red car"),
                                 ("rain", "rain over a blue lake"), ("helicopter", "a helicopter over a city"),
                                 ("helicopter", "a yellow helicopter in the sky")])


class Project:
    def __init__(self, root: Path, env: dict, api: str):
        self.root, self.env, self.api = root, env, api

    def run(self, *cmd, timeout=600, check=True, env: dict | None = None):
        return _sh(list(map(str, cmd)), self.root, {**self.env, **(env or {})}, timeout, check)

    def python(self, code: str, timeout=600, check=True):
        return self.run(BIN / "python", "-c", code, timeout=timeout, check=check)

    def python_json(self, code: str, timeout=600):
        """Run `code` (which prints one JSON document last) in the project; return the document."""
        out = self.python(code, timeout=timeout).stdout.strip()
        return json.loads(out.splitlines()[-1])

    def mlflow_runs(self, filter_string: str = ""):
        import mlflow

        mlflow.set_tracking_uri(f"sqlite:///{self.root / 'mlflow.db'}")
        exp = mlflow.get_experiment_by_name("lamp")
        assert exp is not None, "no MLflow experiment 'lamp'"
        return mlflow.search_runs(experiment_ids=[exp.experiment_id], filter_string=filter_string)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("lamp_project")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for d in ("lamp_model", "tasks", "flows", "scripts"):
        shutil.copytree(REPO / d, root / d, ignore=ignore)
    for f in ("dvc.yaml", "prefect.yaml"):
        shutil.copy(REPO / f, root / f)
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    for k, v in TINY.items():
        _set(raw, k, v)
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    (root / ".gitignore").write_text("/mlflow.db\n/mlartifacts/\n/runs/\n/reports/ablations/\n/.prefect/\n"
                                     "/checkpoints/\n__pycache__/\n")
    _write_videos(root)

    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "PREFECT_HOME": str(root / ".prefect"),
           "PREFECT_API_URL": api, "PREFECT_PORT": str(port), "LAMP_WORKERS": "0", "LAMP_ROOT": str(root),
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1", "DVC_NO_ANALYTICS": "1",
           "MLFLOW_DISABLE_TELEMETRY": "true", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1",
           "PREFECT_LOGGING_LEVEL": "INFO", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    env.pop("LAMP_MLFLOW_PARENT_RUN_ID", None)
    p = Project(root, env, api)
    p.run("git", "init", "-q")
    p.run(BIN / "dvc", "init", "-q")
    p.run("git", "add", "-A")
    p.run("git", "commit", "-q", "-m", "tiny LAMP project")
    try:
        p.run("bash", "scripts/prefect_local.sh", "up", timeout=300)
        yield p
    finally:
        _sh(["bash", "scripts/prefect_local.sh", "down"], root, env, timeout=120, check=False)


def _outputs_present(root: Path) -> None:
    for m in MOTIONS:
        assert (root / "data/clips" / m / "clips.safetensors").is_file()
        assert (root / "data/latents" / m / "latents.safetensors").is_file()
        assert (root / "models/motions" / m / "motion.safetensors").is_file()
        assert (root / "outputs/videos" / m / "index.csv").is_file()
    assert json.loads((root / "reports/metrics.json").read_text())["overall"]["n_videos"] == 4
    assert (root / "reports/summary.md").is_file()


def test_a_deployment_run_with_worker(project):
    """`prefect deployment run` + a process worker --run-once: Completed, DVC outputs, nested MLflow runs."""
    p = project
    t0 = time.monotonic()
    out = p.run(BIN / "prefect", "deployment", "run", "lamp-all-motions/default",
                "--param", f"motions={json.dumps(MOTIONS)}").stdout
    assert "Created flow run" in out, out
    worker = p.run(BIN / "prefect", "worker", "start", "--pool", "lamp-local", "--run-once", timeout=900,
                   check=False)
    assert worker.returncode == 0, worker.stdout[-6000:] + worker.stderr[-6000:]

    state = p.python(
        "from prefect.client.orchestration import get_client\n"
        "with get_client(sync_client=True) as c:\n"
        "    runs = c.read_flow_runs()\n"
        "    top = [r for r in runs if r.parent_task_run_id is None and r.deployment_id]\n"
        "    print(len(top), top[0].state.type.value)").stdout.split()
    assert state == ["1", "COMPLETED"], state
    _outputs_present(p.root)

    # DVC and Prefect share one state: nothing left for `dvc repro report` (make run's stages; the ControlNet
    # stage for `lamp edit` is not part of it)
    status = p.run(BIN / "dvc", "status", "--with-deps", "report", "--json").stdout
    assert json.loads(status) == {}, status
    lock = yaml.safe_load((p.root / "dvc.lock").read_text())["stages"]
    assert {f"tune@{m}" for m in MOTIONS} <= set(lock)

    # MLflow: one pipeline run; a motion run per motion under it; every stage run nested
    runs = p.mlflow_runs()
    pipeline = runs[runs["tags.kind"] == "pipeline"]
    assert len(pipeline) == 1 and pipeline["status"].iloc[0] == "FINISHED"
    pid = pipeline["run_id"].iloc[0]
    motion_runs = runs[(runs["tags.kind"] == "motion") & (runs["tags.mlflow.parentRunId"] == pid)]
    assert sorted(motion_runs["tags.motion"]) == sorted(MOTIONS)
    stages = runs[runs["tags.kind"] == "stage"]
    top = stages[stages["tags.mlflow.parentRunId"] == pid]
    assert sorted(top["tags.stage"]) == ["base", "metrics", "report", "world"]
    for _, mr in motion_runs.iterrows():
        nested = stages[stages["tags.mlflow.parentRunId"] == mr["run_id"]]
        assert sorted(nested["tags.stage"]) == ["cache", "extract", "generate", "tune"]
        assert set(nested["tags.motion"]) == {mr["tags.motion"]}
    tune = stages[stages["tags.stage"] == "tune"].iloc[0]
    assert tune["params.train.steps"] == "3" and len(tune["params.dvc.deps_hash"]) == 16
    assert tune["params.git.commit"] not in ("", "none")
    import mlflow

    history = mlflow.tracking.MlflowClient().get_metric_history(tune["run_id"], "loss")
    assert [h.step for h in history] == [0, 1, 2]
    metrics = stages[stages["tags.stage"] == "metrics"].iloc[0]
    assert "metrics.alignment" in metrics and "metrics.rain/alignment" in metrics
    print(f"deployment run: {time.monotonic() - t0:.0f} s")


def test_b_ablations_compare_from_mlflow(project, assert_same_motion):
    """Ablation flow on 2 motions: comparison table rows = variants, values = MLflow metrics runs."""
    p = project
    variants = ["full", "untuned", "no_shared_noise", "no_tsm"]
    t0 = time.monotonic()
    p.python("from flows.ablations import lamp_ablations\n"
             f"print(lamp_ablations(motions={MOTIONS!r}, variants={variants!r}, overrides={{'train.steps': 2}}))",
             timeout=900)
    for v in variants:
        for m in MOTIONS:
            assert (p.root / "runs/ablations" / v / "outputs/videos" / m / "index.csv").is_file()
        assert (p.root / "runs/ablations" / v / "reports/metrics.json").is_file()
    # no_shared_noise only changes sampling: it has full's tuned weights (the same checkpoint key)
    assert_same_motion(p.root / "runs/ablations/full/models/motions/rain/motion.safetensors",
                       p.root / "runs/ablations/no_shared_noise/models/motions/rain/motion.safetensors")
    # untuned is sampled without any tuning: no checkpoint of its own, no tune runs
    assert not (p.root / "runs/ablations/untuned/models/motions").exists()
    assert p.mlflow_runs("tags.stage = 'tune' AND tags.variant = 'untuned'").empty
    assert len(p.mlflow_runs("tags.stage = 'generate' AND tags.variant = 'untuned'")) == len(MOTIONS)
    out = p.root / "reports/ablations"
    with open(out / "comparison.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["variant"] for r in rows] == variants
    runs = p.mlflow_runs("tags.stage = 'metrics' AND tags.variant != 'main'")
    for r in rows:
        mine = runs[runs["tags.variant"] == r["variant"]]
        assert len(mine) == 1
        for key in ("alignment", "consistency", "rain/alignment", "helicopter/consistency"):
            assert float(r[key]) == pytest.approx(mine[f"metrics.{key}"].iloc[0], abs=1e-3)
        on_disk = json.loads((p.root / "runs/ablations" / r["variant"] / "reports/metrics.json").read_text())
        assert float(r["alignment"]) == pytest.approx(on_disk["overall"]["alignment"], abs=1e-3)
    md = (out / "comparison.md").read_text()
    assert "| variant |" in md and "| no_tsm |" in md and "## rain" in md
    assert (out / "comparison.png").stat().st_size > 1000
    # tune/generate runs are tagged per variant and nest under the variant's run
    tunes = p.mlflow_runs("tags.stage = 'tune' AND tags.variant = 'no_tsm'")
    assert sorted(tunes["tags.motion"]) == sorted(MOTIONS)
    assert set(tunes["params.lamp.tsm"]) == {"False"}
    # the main pipeline is untouched
    assert json.loads(p.run(BIN / "dvc", "status", "--with-deps", "report", "--json").stdout) == {}
    print(f"ablations: {time.monotonic() - t0:.0f} s")


def _mtimes(root: Path, pattern: str) -> dict[str, float]:
    return {str(f.relative_to(root)): f.stat().st_mtime for f in sorted(root.glob(pattern))}


def test_c_corrupt_video_then_rerun_does_only_missing_work(project):
    """A corrupt video fails its motion only; after fixing it, a re-run does only the missing work."""
    p = project
    t0 = time.monotonic()
    # new work for both motions (another sampling seed) + one unusable helicopter video
    params = yaml.safe_load((p.root / "params.yaml").read_text())
    params["sample"]["seeds"] = [1]
    (p.root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    bad = p.root / "data/videos/helicopter/01.mp4"
    good = bad.read_bytes()
    bad.write_bytes(b"this is not a video" * 100)
    tuned = _mtimes(p.root, "models/motions/*/motion.safetensors")

    r1 = p.run(BIN / "python", "-m", "flows.all_motions", "--motions", *MOTIONS, check=False)
    log1 = r1.stdout + r1.stderr
    assert r1.returncode != 0
    assert "1 of 2 motions failed: ['helicopter']" in log1, log1[-5000:]
    assert "error: " in log1 and "01.mp4" in log1  # the stage's own error line reaches the flow
    # rain completed its new work; helicopter stopped at extract
    lock = yaml.safe_load((p.root / "dvc.lock").read_text())["stages"]
    assert lock["generate@rain"]["params"]["params.yaml"]["sample"]["seeds"] == [1]
    assert lock["generate@helicopter"]["params"]["params.yaml"]["sample"]["seeds"] == [0]
    runs = p.mlflow_runs()
    pipe = runs[runs["tags.kind"] == "pipeline"].sort_values("start_time").iloc[-1]
    assert pipe["status"] == "FAILED" and pipe["tags.failed_motions"] == "helicopter"

    bad.write_bytes(good)
    rain_mtimes = _mtimes(p.root, "outputs/videos/rain/*")
    r2 = p.run(BIN / "python", "-m", "flows.all_motions", "--motions", *MOTIONS, check=False)
    assert r2.returncode == 0, (r2.stdout + r2.stderr)[-6000:]
    assert json.loads(p.run(BIN / "dvc", "status", "--with-deps", "report", "--json").stdout) == {}
    assert _mtimes(p.root, "models/motions/*/motion.safetensors") == tuned  # no tuning re-ran
    assert _mtimes(p.root, "outputs/videos/rain/*") == rain_mtimes  # rain was done
    runs = p.mlflow_runs()
    pipe = runs[runs["tags.kind"] == "pipeline"].sort_values("start_time").iloc[-1]
    assert pipe["status"] == "FINISHED"
    motion_ids = set(runs[(runs["tags.kind"] == "motion") & (runs["tags.mlflow.parentRunId"] == pipe["run_id"])]
                     ["run_id"])
    ran = runs[(runs["tags.kind"] == "stage")
               & runs["tags.mlflow.parentRunId"].isin(motion_ids | {pipe["run_id"]})]
    ran_names = sorted(f"{s}@{m}" if m else s for s, m in zip(ran["tags.stage"], ran["tags.motion"]))
    # only what was missing ran: helicopter's generate (its extract outputs come back from the DVC
    # cache, or extract re-runs on the restored video), then metrics and report
    assert set(ran_names) - {"extract@helicopter"} == {"generate@helicopter", "metrics", "report"}, ran_names
    print(f"corrupt + rerun: {time.monotonic() - t0:.0f} s")


# -- scale-out: dispatch=deployment onto one process worker per "GPU" --------------------------------

_FAN_OUT = '''
import json, time
from datetime import datetime, timezone
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, FlowRunFilterParentTaskRunId
from prefect.deployments import run_deployment
from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter
from prefect.exceptions import ObjectNotFound

with get_client(sync_client=True) as c:
    try:  # the flows create the "gpu" limit themselves when it is missing (ensure_gpu_limit)
        c.delete_global_concurrency_limit_by_name("gpu")
    except ObjectNotFound:
        pass
since = datetime.now(timezone.utc)
parent = run_deployment("lamp-all-motions/default", parameters={"motions": MOTIONS, "dispatch": "deployment"},
                        timeout=TIMEOUT, poll_interval=2)
with get_client(sync_client=True) as c:
    parent = c.read_flow_run(parent.id)
    tasks = c.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[parent.id])))
    kids = c.read_flow_runs(flow_run_filter=FlowRunFilter(
        parent_task_run_id=FlowRunFilterParentTaskRunId(any_=[t.id for t in tasks])))
    # which worker ran each flow run: only the worker that ran it emits "executed-flow-run" for it
    # (a flow run's worker label is also written by a worker that loses the race to submit it)
    wanted = {str(r.id) for r in [parent, *kids]}
    ran_by, deadline = {}, time.monotonic() + 60
    while not wanted <= set(ran_by) and time.monotonic() < deadline:
        time.sleep(1)
        page = c.read_events(filter=EventFilter(occurred=EventOccurredFilter(since=since),
                                                event=EventNameFilter(name=["prefect.worker.executed-flow-run"])),
                             limit=50)
        ran_by = {r.id.removeprefix("prefect.flow-run."): e.resource.name
                  for e in page.events for r in e.related if r.role == "flow-run"}
    gpu = c.read_global_concurrency_limit_by_name("gpu")

    def info(r):
        return {"flow": c.read_flow(r.flow_id).name, "name": r.name, "state": r.state.type.value,
                "motion": r.parameters.get("motion"), "queue": r.work_queue_name, "ran_by": ran_by.get(str(r.id)),
                "start": r.start_time.timestamp() if r.start_time else None,
                "end": r.end_time.timestamp() if r.end_time else None}

    print(json.dumps({"parent": info(parent), "children": [info(k) for k in kids],
                      "gpu": {"limit": gpu.limit, "active": gpu.active, "decay": gpu.slot_decay_per_second}}))
'''


def test_d_fan_out_one_motion_per_worker(project):
    """lamp-all-motions with dispatch=deployment, two process workers with a GPU each (limit 1, queue
    "motions", scripts/prefect_local.sh workers with LAMP_WORKERS=2): one Completed `lamp-motion` child flow
    run per motion, run by two different workers at the same time; the parent on the orchestrator worker."""
    p = project
    t0 = time.monotonic()
    # new work for both motions: a sampling seed never used before (not in DVC's run cache either)
    params = yaml.safe_load((p.root / "params.yaml").read_text())
    params["sample"]["seeds"] = [2]
    (p.root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # fast polling so the test does not wait for the workers (default: every 10 s)
    p.run("bash", "scripts/prefect_local.sh", "workers", timeout=60,
          env={"LAMP_WORKERS": "2", "PREFECT_WORKER_QUERY_SECONDS": "2"})
    res = p.python_json(f"MOTIONS = {MOTIONS!r}\nTIMEOUT = 900\n" + _FAN_OUT, timeout=960)

    parent, kids = res["parent"], res["children"]
    assert parent["flow"] == "lamp-all-motions" and parent["state"] == "COMPLETED", res
    assert parent["queue"] == "default" and parent["ran_by"] == "lamp-orchestrator", res
    assert len(kids) == 2, res
    assert {k["flow"] for k in kids} == {"lamp-motion"}, res
    assert sorted(k["motion"] for k in kids) == sorted(MOTIONS), res
    assert [k["state"] for k in kids] == ["COMPLETED", "COMPLETED"], res
    assert {k["queue"] for k in kids} == {"motions"}, res
    # one motion per worker (each runs one flow run at a time), and the two ran in parallel
    assert sorted(k["ran_by"] for k in kids) == ["lamp-worker-0", "lamp-worker-1"], res
    assert max(k["start"] for k in kids) < min(k["end"] for k in kids), res
    # the flow re-created the "gpu" limit it needs: 1 slot, active, not a rate limit (decay 0)
    assert res["gpu"] == {"limit": 1, "active": True, "decay": 0.0}, res

    # real work was done, by DVC, in the shared state: the new seed is generated and scored
    lock = yaml.safe_load((p.root / "dvc.lock").read_text())["stages"]
    for m in MOTIONS:
        assert lock[f"generate@{m}"]["params"]["params.yaml"]["sample"]["seeds"] == [2]
        with open(p.root / "outputs/videos" / m / "index.csv", newline="") as f:
            assert {r["seed"] for r in csv.DictReader(f)} == {"2"}
    assert json.loads(p.run(BIN / "dvc", "status", "--with-deps", "report", "--json").stdout) == {}
    # MLflow: the pipeline run (dispatch=deployment) with a motion run per motion nested under it
    runs = p.mlflow_runs()
    pipe = runs[runs["tags.kind"] == "pipeline"].sort_values("start_time").iloc[-1]
    assert pipe["status"] == "FINISHED" and pipe["tags.dispatch"] == "deployment"
    motion_runs = runs[(runs["tags.kind"] == "motion") & (runs["tags.mlflow.parentRunId"] == pipe["run_id"])]
    assert sorted(motion_runs["tags.motion"]) == sorted(MOTIONS)
    assert set(motion_runs["status"]) == {"FINISHED"}
    gen = runs[(runs["tags.stage"] == "generate") & runs["tags.mlflow.parentRunId"].isin(motion_runs["run_id"])]
    assert sorted(gen["tags.motion"]) == sorted(MOTIONS)
    print(f"fan-out on two workers: {time.monotonic() - t0:.0f} s")


_GPU_LIMIT = '''
import json, time
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitUpdate
from prefect.concurrency.sync import concurrency
from tasks.prefect_tasks import GPU_LIMIT, _gpu_slot, ensure_gpu_limit

out = {}
with get_client(sync_client=True) as c:
    def slots(name=GPU_LIMIT):
        return c.read_global_concurrency_limit_by_name(name).active_slots

    lim = c.read_global_concurrency_limit_by_name(GPU_LIMIT)
    out["gpu"] = {"limit": lim.limit, "active": lim.active, "decay": lim.slot_decay_per_second,
                  "active_slots": lim.active_slots}
    # exclusive: while a GPU stage holds the slot, a second GPU stage cannot get one
    with _gpu_slot("tune", GPU_LIMIT):
        out["held"] = slots()
        try:
            with concurrency(GPU_LIMIT, occupy=1, timeout_seconds=3, strict=True):
                out["second"] = "acquired"
        except TimeoutError:
            out["second"] = "timed out"
    deadline = time.monotonic() + 10
    while slots() and time.monotonic() < deadline:
        time.sleep(0.5)
    out["after"] = slots()
    # non-GPU stages take no slot at all
    with _gpu_slot("extract", GPU_LIMIT):
        out["extract"] = slots()
    # strict: a missing limit is an error, not a silent no-op
    try:
        with _gpu_slot("generate", "lamp-no-such-limit"):
            out["missing"] = "ran without a limit"
    except Exception as e:
        out["missing"] = type(e).__name__
    # ensure_gpu_limit: creates a 1-slot limit when missing, keeps an existing one as it is
    ensure_gpu_limit("lamp-test-gpu")
    ensure_gpu_limit("lamp-test-gpu", limit=4)
    made = c.read_global_concurrency_limit_by_name("lamp-test-gpu")
    out["created"] = {"limit": made.limit, "active": made.active, "decay": made.slot_decay_per_second}
    # ... and refuses a disabled one (it would not be enforced)
    c.update_global_concurrency_limit("lamp-test-gpu", GlobalConcurrencyLimitUpdate(active=False))
    try:
        ensure_gpu_limit("lamp-test-gpu")
        out["disabled"] = "accepted"
    except RuntimeError as e:
        out["disabled"] = str(e)
    c.delete_global_concurrency_limit_by_name("lamp-test-gpu")
print(json.dumps(out))
'''


def test_e_gpu_limit_is_one_strict_slot(project):
    """The "gpu" global concurrency limit (re-created by the flow in test_d) has exactly 1 slot, is active and
    no rate limit; GPU stages acquire it strictly (a missing limit fails) and exclusively (a second holder waits);
    ensure_gpu_limit refuses a disabled limit."""
    res = project.python_json(_GPU_LIMIT, timeout=120)
    assert res["gpu"] == {"limit": 1, "active": True, "decay": 0.0, "active_slots": 0}, res
    assert res["held"] == 1 and res["second"] == "timed out" and res["after"] == 0, res
    assert res["extract"] == 0, res
    assert res["missing"] == "ConcurrencySlotAcquisitionError", res
    assert res["created"] == {"limit": 1, "active": True, "decay": 0.0}, res
    assert "'lamp-test-gpu' is disabled" in res["disabled"] and "prefect gcl enable" in res["disabled"], res


def _wait_http(url: str, proc: subprocess.Popen, seconds: float = 120) -> None:
    import urllib.request

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"{url} not answering after {seconds} s")


def _session_alive(sid: int) -> list[int]:
    """Live (not zombie) processes of the session `sid` (Linux /proc)."""
    alive = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[3]) == sid and fields[0] != "Z":  # state ppid pgrp session ...
                alive.append(int(d.name))
    return alive


def _stop_session(proc: subprocess.Popen, seconds: float = 30) -> list[int]:
    """SIGTERM to the process group of `proc` (started with start_new_session: the server and its uvicorn
    worker), then wait for all of it; returns the processes that had to be SIGKILLed (none = clean stop)."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        proc.poll()
        if proc.returncode is not None and not _session_alive(proc.pid):
            return []
        time.sleep(0.2)
    left = _session_alive(proc.pid)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    proc.wait(timeout=10)
    return left


def test_f_mlflow_server_tracking(project, tmp_path):
    """tracking.uri = http://127.0.0.1:<port> of a real `mlflow server` (sqlite store, proxied artifacts in a
    temp dir): `python -m tasks.metrics` logs its run there (params, metrics = reports/metrics.json, artifacts),
    and the server stops cleanly."""
    import mlflow
    from mlflow.tracking import MlflowClient

    p = project
    t0 = time.monotonic()
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    store = tmp_path / "mlflow-server"
    store.mkdir()
    log = open(tmp_path / "mlflow-server.log", "w")
    server = subprocess.Popen(
        [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{store / 'mlflow.db'}", "--artifacts-destination", str(store / "artifacts")],
        cwd=tmp_path, env=p.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_http(f"{url}/health", server)
        params = yaml.safe_load((p.root / "params.yaml").read_text())
        params["tracking"]["uri"] = url
        (p.root / "params.http.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        r = p.run(BIN / "python", "-m", "tasks.metrics", "--params", "params.http.yaml", timeout=300)
        assert "MLflow tracking failed" not in r.stderr, r.stderr[-3000:]

        client = MlflowClient(tracking_uri=url)
        exp = client.get_experiment_by_name("lamp")
        assert exp is not None and exp.artifact_location.startswith("mlflow-artifacts:")
        previous_uri = mlflow.get_tracking_uri()
        mlflow.set_tracking_uri(url)
        try:
            runs = mlflow.search_runs(experiment_ids=[exp.experiment_id], filter_string="tags.stage = 'metrics'")
        finally:
            mlflow.set_tracking_uri(previous_uri)
        assert len(runs) == 1
        run = runs.iloc[0]
        assert run["status"] == "FINISHED" and run["tags.kind"] == "stage" and run["tags.variant"] == "main"
        assert run["params.tracking.uri"] == url and run["params.sample.seeds"] == str(params["sample"]["seeds"])
        assert len(run["params.dvc.deps_hash"]) == 16 and run["metrics.duration_s"] > 0
        overall = json.loads((p.root / "reports/metrics.json").read_text())["overall"]
        for key in ("alignment", "consistency", "n_videos"):
            assert run[f"metrics.{key}"] == pytest.approx(overall[key], abs=1e-4)
        # artifacts went through the server into --artifacts-destination
        names = {a.path for a in client.list_artifacts(run["run_id"])}
        assert "metrics.json" in names, names
        assert list((store / "artifacts").rglob("metrics.json"))
        # nothing reached the project's own sqlite store, and the pipeline state is untouched
        assert p.mlflow_runs(f"attributes.run_id = '{run['run_id']}'").empty
        assert json.loads(p.run(BIN / "dvc", "status", "--with-deps", "report", "--json").stdout) == {}
    finally:
        (p.root / "params.http.yaml").unlink(missing_ok=True)
        left = _stop_session(server)
        log.close()
    assert not left, f"mlflow server processes {left} did not stop on SIGTERM"
    with pytest.raises(ConnectionRefusedError):  # nothing listens on its port any more
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    print(f"mlflow server tracking: {time.monotonic() - t0:.0f} s")


def test_prefect_local_down_stops_cleanly(project):
    """scripts/prefect_local.sh down stops the workers (test_d's three) and the server by PID (SIGINT);
    the fixture's teardown is then a no-op."""
    p = project
    run = p.root / ".prefect/run"
    workers = {f.name: int(f.read_text()) for f in run.glob("worker-*.pid")}
    assert sorted(workers) == ["worker-0.pid", "worker-1.pid", "worker-orchestrator.pid"], workers
    pid = int((run / "server.pid").read_text())
    for q in (pid, *workers.values()):
        os.kill(q, 0)
    t0 = time.monotonic()
    out = p.run("bash", "scripts/prefect_local.sh", "down", timeout=180).stdout
    # Every process stops on SIGINT: the script's SIGTERM fallback comes only after 30 s per process,
    # so < 30 s in all means none needed it, although all were started with SIGINT ignored (see _sh).
    assert time.monotonic() - t0 < 30 and "SIGTERM" not in out, out
    time.sleep(0.5)
    for q in (pid, *workers.values()):
        with pytest.raises(ProcessLookupError):
            os.kill(q, 0)
    assert not list(run.glob("*.pid"))


# -- fast: the tracking hook of `python -m tasks.<stage>` and the failure message -----------------

def _stage(root: Path, env: dict, *args) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "python"), "-m", *args, "--root", str(root)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def test_stage_main_logs_mlflow_runs_nested_and_failed(tmp_path):
    """A stage run through stage_main becomes an MLflow run (tags, params, metrics); with
    LAMP_MLFLOW_PARENT_RUN_ID it nests; a bad-input failure is a FAILED run with the error;
    tracking.enabled: false logs nothing."""
    import mlflow

    from lamp_model.config import load_params
    from tasks import tracking
    from tasks.dvc_stage import error_message

    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    for k, v in {**TINY, "world.videos_per_motion": 1, "world.frames": 2, "world.height": 16,
                 "world.width": 16, "data.videos_dir": "data/world/videos"}.items():
        _set(raw, k, v)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    env = {k: v for k, v in os.environ.items() if k not in (tracking.PARENT_ENV, tracking.VARIANT_ENV)}
    params = load_params(tmp_path / "params.yaml")
    parent = tracking.start_run(params, tmp_path, "pipeline", tags={"kind": "pipeline"})

    ok = _stage(tmp_path, {**env, tracking.PARENT_ENV: parent}, "tasks.world")
    assert ok.returncode == 0, ok.stderr[-3000:]
    (tmp_path / "data/world/videos/rain/00.mp4").write_bytes(b"garbage")
    for f in (tmp_path / "data/world/videos/rain").glob("0[1-9].mp4"):
        f.unlink()
    bad = _stage(tmp_path, env, "tasks.extract", "--motion", "rain")
    assert bad.returncode == 1
    msg, bad_input = error_message(bad.stdout + bad.stderr)
    assert bad_input and msg.startswith("error: ") and "00.mp4" in msg

    mlflow.set_tracking_uri(tracking.tracking_uri(params, tmp_path))
    assert tracking.tracking_uri(params, tmp_path) == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    runs = mlflow.search_runs(experiment_names=["lamp"], filter_string="tags.kind = 'stage'")
    world = runs[runs["tags.stage"] == "world"].iloc[0]
    assert world["status"] == "FINISHED" and world["tags.mlflow.parentRunId"] == parent
    assert world["tags.variant"] == "main" and world["params.world.frames"] == "2"
    assert world["metrics.videos"] == 8.0 and world["metrics.duration_s"] > 0
    extract = runs[runs["tags.stage"] == "extract"].iloc[0]
    assert extract["status"] == "FAILED" and extract["tags.motion"] == "rain"
    assert "00.mp4" in extract["tags.error"] and pd_isna(extract.get("tags.mlflow.parentRunId"))

    raw["tracking"]["enabled"] = False
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    again = _stage(tmp_path, env, "tasks.world")
    assert again.returncode == 0
    assert len(mlflow.search_runs(experiment_names=["lamp"], filter_string="tags.kind = 'stage'")) == 2


def pd_isna(v) -> bool:
    return v is None or v != v
