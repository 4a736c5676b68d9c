"""lamp.repro: `dvc repro` with per-motion stages side by side (what `make run` calls).

The scheduler's invariants on stand-in stages (slots, order, dependencies, failure), then
the real thing: a tiny two-motion pipeline in a fresh DVC repo with an MLflow store, run
with two jobs, must leave DVC with nothing to do and record each stage's torch threads.
"""
from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from lamp.repro import cores, parse_dot, resolve_jobs, schedule, stage_threads, stale_stages
from lamp_model.config import write_overrides

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

DOT = '''strict digraph {
"world";
"base";
"extract@a";
"extract@b";
"tune@a";
"tune@b";
"metrics";
"world" -> "base";
"world" -> "extract@a";
"world" -> "extract@b";
"base" -> "tune@a";
"base" -> "tune@b";
"extract@a" -> "tune@a";
"extract@b" -> "tune@b";
"tune@a" -> "metrics";
"tune@b" -> "metrics";
}
'''


def test_parse_dot_reads_nodes_in_order_and_edges():
    order, needs = parse_dot(DOT)
    assert order == ["world", "base", "extract@a", "extract@b", "tune@a", "tune@b", "metrics"]
    assert needs["tune@a"] == {"base", "extract@a"} and needs["metrics"] == {"tune@a", "tune@b"}
    assert needs["world"] == set()


def test_stale_stages_adds_everything_downstream_in_dependency_order():
    order, needs = parse_dot(DOT)
    assert stale_stages(order, needs, {"extract@b"}) == ["extract@b", "tune@b", "metrics"]
    assert stale_stages(order, needs, set()) == []
    assert stale_stages(order, needs, {"world"}) == order
    everything = stale_stages(order, needs, {"metrics", "world"})  # listing order is not trusted blindly
    assert all(everything.index(up) < everything.index(s) for s in everything for up in needs[s])


def test_per_motion_stages_get_their_share_of_cores_and_others_torch_default():
    assert stage_threads("tune@rain", jobs=2, n_cores=2) == 1
    assert stage_threads("tune@rain", jobs=2, n_cores=16) == 8
    assert stage_threads("tune@rain", jobs=3, n_cores=2) == 1
    assert stage_threads("base", jobs=2, n_cores=2) is None
    assert stage_threads("tune@rain", jobs=1, n_cores=2) is None
    assert resolve_jobs(3, "cpu") == 3
    assert resolve_jobs("auto", "cuda") == 1
    assert resolve_jobs("auto", "cpu") == min(2, cores())


class Recorder:
    """Stand-in stages: each sleeps a little and records when it ran."""

    def __init__(self, fail: str | None = None, seconds: dict[str, float] | None = None):
        self.lock = threading.Lock()
        self.spans: dict[str, tuple[float, float]] = {}
        self.fail = fail
        self.seconds = seconds or {}

    def __call__(self, stage: str) -> None:
        start = time.monotonic()
        time.sleep(self.seconds.get(stage, 0.05))
        with self.lock:
            self.spans[stage] = (start, time.monotonic())
        if stage == self.fail:
            raise RuntimeError(f"{stage} broke")

    def overlapping(self, stage: str) -> set[str]:
        s0, s1 = self.spans[stage]
        return {o for o, (o0, o1) in self.spans.items() if o != stage and o0 < s1 and s0 < o1}

    def busy_at_starts(self) -> int:
        """The most stages running at once (checked at every start)."""
        return max(sum(o0 <= s0 < o1 for o0, o1 in self.spans.values()) for s0, _ in self.spans.values())


@pytest.mark.parametrize("jobs", [1, 2, 3])
def test_schedule_keeps_slots_order_and_dependencies(jobs):
    order, needs = parse_dot(DOT)
    rec = Recorder()
    started = schedule(order, needs, jobs, rec)
    assert sorted(started) == sorted(order)
    for s in order:
        for up in needs[s]:
            assert rec.spans[up][1] <= rec.spans[s][0], f"{s} started before {up} finished"
        if "@" not in s or jobs == 1:
            assert rec.overlapping(s) == set(), f"{s} should have run alone"
    assert rec.busy_at_starts() <= jobs
    if jobs >= 2:  # the two motions' stages did run side by side
        assert "extract@b" in rec.overlapping("extract@a") and "tune@b" in rec.overlapping("tune@a")


def test_schedule_stops_starting_after_a_failure_but_lets_running_stages_finish():
    order, needs = parse_dot(DOT)
    # extract@a fails at once while extract@b still runs: had b finished first, tune@b could
    # rightly have started before the failure was seen
    rec = Recorder(fail="extract@a", seconds={"extract@a": 0.0, "extract@b": 1.0})
    with pytest.raises(RuntimeError, match="extract@a broke"):
        schedule(order, needs, 2, rec)
    assert "extract@b" in rec.spans  # started beside the failing stage, finished
    assert not {"tune@a", "tune@b", "metrics"} & set(rec.spans)


# -- the real pipeline, tiny ------------------------------------------------------------------

MOTIONS = ["rain", "helicopter"]
TINY = {
    "motions": MOTIONS,
    "world.videos_per_motion": 4, "world.frames": 8, "world.height": 32, "world.width": 48,
    "clips.frames": 8, "clips.height": 32, "clips.width": 48, "clips.clips_per_video": 1,
    "data.min_videos": 4,
    "base_train.vae_steps": 5, "base_train.unet_steps": 5, "base_train.clip_steps": 5,
    "base_train.batch_size": 4, "base_train.unet_batch_size": 4,
    "train.steps": 3, "train.checkpoint_every": 50,
    "sample.ddim_steps": 2, "sample.seeds": [0],
    "model.device": "cpu",
}



@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("repro_project")
    for d in ("lamp_model", "tasks", "lamp", "scripts"):
        shutil.copytree(REPO / d, root / d, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy(REPO / "dvc.yaml", root / "dvc.yaml")
    shutil.copy(REPO / "params.yaml", root / "params.yaml")
    write_overrides(root / "params.yaml", TINY)
    (root / ".gitignore").write_text("/mlflow.db\n/mlartifacts/\n__pycache__/\n")
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1",
           "MLFLOW_DISABLE_TELEMETRY": "true", "HF_HUB_OFFLINE": "1", "GIT_AUTHOR_NAME": "t",
           "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    env.pop("LAMP_MLFLOW_PARENT_RUN_ID", None)
    for cmd in (["git", "init", "-q"], [BIN / "dvc", "init", "-q"], ["git", "add", "-A"],
                ["git", "commit", "-qm", "tiny"]):
        subprocess.run(list(map(str, cmd)), cwd=root, env=env, check=True, capture_output=True)
    return root, env


def _repro(root: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "python"), "-m", "lamp.repro", *args], cwd=root, env=env,
                          capture_output=True, text=True, timeout=900)


def _runs(root: Path):
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    exp = mlflow.get_experiment_by_name("lamp")
    return mlflow.search_runs(experiment_ids=[exp.experiment_id])


def test_two_jobs_build_the_pipeline_dvc_agrees_and_threads_are_recorded(project):
    root, env = project
    p = _repro(root, env, "report", "--jobs", "2")
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    n_stages = 4 + 4 * len(MOTIONS)  # world, base, metrics, report + 4 per motion
    assert f"{n_stages} stage(s) to run for report, 2 at a time" in p.stdout
    assert (root / "reports/metrics.json").is_file()
    status = subprocess.run([str(BIN / "dvc"), "status", "report"], cwd=root, env=env, capture_output=True,
                            text=True, check=True)
    assert "up to date" in status.stdout, status.stdout
    # Every stage run reached MLflow through the runner's spool, with the stage's own duration and times.
    runs = _runs(root)
    assert len(runs) == n_stages and set(runs["status"]) == {"FINISHED"}, runs[["tags.mlflow.runName", "status"]]
    assert not list((root / "runs/tracking_spool").glob("*.json"))
    spans = (runs["end_time"] - runs["start_time"]).dt.total_seconds()
    assert ((spans - runs["metrics.duration_s"]).abs() < 0.01).all()
    threads = dict(zip(runs["tags.mlflow.runName"], runs["params.runtime.torch_threads"]))
    per_motion = max(1, cores() // 2)
    for m in MOTIONS:
        for stage in ("cache", "tune", "generate"):
            assert threads[f"{stage}@{m}"] == str(per_motion), (stage, m, threads)
    # Nothing stale is left: a second run starts no stage.
    again = _repro(root, env, "report", "--jobs", "2")
    assert again.returncode == 0 and "0 stage(s) to run" in again.stdout, again.stdout[-2000:]


def test_bad_jobs_is_one_line_and_runs_nothing(project):
    root, env = project
    p = _repro(root, env, "report", "--jobs", "0")
    assert p.returncode == 2 and p.stderr.strip().count("\n") == 0 and "--jobs 0" in p.stderr
    params = root / "params.yaml"
    saved = params.read_text()
    try:
        params.write_text(saved.replace("jobs: auto", "jobs: many"))
        p = _repro(root, env, "report")
        assert p.returncode == 1 and p.stderr.startswith("error: ") and "params.yaml: runner.jobs = 'many'" in p.stderr, p.stderr
        assert p.stderr.strip().count("\n") == 0
    finally:
        params.write_text(saved)


def test_spooled_stage_runs_reach_mlflow_and_a_failed_one_is_kept(tmp_path, monkeypatch):
    """A stage under the runner writes its MLflow run as a file; the runner logs it with the stage's times.
    One that cannot be logged stays in the spool (tracking never loses or fails a run)."""
    from lamp_model.config import load_params
    from tasks import tracking

    params = load_params(REPO / "params.yaml", {"tracking.uri": "sqlite:///mlflow.db"})
    spool = tmp_path / "spool"
    monkeypatch.setenv(tracking.SPOOL_ENV, str(spool))
    run_id = tracking.log_stage("tune", params, tmp_path, {"metrics": {"final_loss": 0.25}, "loss": [1.0, 0.5]},
                                motion="rain", duration_s=2.5, deps_hash="abc")
    assert run_id is None and len(list(spool.glob("*.json"))) == 1 and not (tmp_path / "mlflow.db").exists()
    broken = tracking.stage_record("metrics", params, tmp_path, None, duration_s=1.0, deps_hash="abc")
    (tmp_path / "a_file").write_text("not a folder")
    broken["tracking"]["uri"] = f"sqlite:///{tmp_path}/a_file/mlflow.db"  # a store that cannot be opened
    tracking.write_spooled(spool, broken)
    monkeypatch.delenv(tracking.SPOOL_ENV)
    logged, failed = tracking.log_spooled(spool, tmp_path)
    assert (logged, failed) == (1, 1)
    assert [p.name.endswith("-metrics.json") for p in spool.glob("*.json")] == [True]
    runs = _runs(tmp_path)
    assert list(runs["tags.mlflow.runName"]) == ["tune@rain"] and runs["metrics.final_loss"][0] == 0.25
    assert runs["params.dvc.deps_hash"][0] == "abc"
    assert (runs["end_time"][0] - runs["start_time"][0]).total_seconds() == pytest.approx(2.5, abs=0.01)


def test_ablation_seeds_vary_the_base_in_a_project_of_their_own(project, monkeypatch):
    """`flows.ablations --seeds 0 1` on the tiny world pipeline: seed 0 (params' base_train.seed) runs on
    the main pipeline's base; seed 1 trains its own base in runs/ablations/projects/seed1 from the same
    world videos (linked, not copied) and logs to the main MLflow store, so the comparison has both
    seeds. The main pipeline's base is left as it was."""
    from safetensors.torch import load_file

    from flows.ablations import lamp_ablations
    from lamp_model.config import load_params

    root, env = project
    assert _repro(root, env, "report").returncode == 0  # the main pipeline (built by the test above)
    for key in ("PATH", "HF_HUB_OFFLINE", "DVC_NO_ANALYTICS", "MLFLOW_DISABLE_TELEMETRY"):
        monkeypatch.setenv(key, env[key])
    main_unet = root / "models/world/base/unet/diffusion_pytorch_model.safetensors"
    before = main_unet.stat().st_mtime_ns
    lamp_ablations(motions=MOTIONS, variants=["full"], root=str(root), seeds=[0, 1], gpu_limit=None)

    seed1 = root / "runs/ablations/projects/seed1"
    assert (seed1 / "data/world").is_symlink() and (seed1 / "data/world").resolve() == (root / "data/world").resolve()
    params = load_params(seed1 / "params.yaml")
    assert params.base_train.seed == 1 and params.tracking.uri == f"sqlite:///{(root / 'mlflow.db').resolve()}"
    assert not (root / "runs/ablations/projects/seed0").exists()
    assert main_unet.stat().st_mtime_ns == before
    a, b = load_file(main_unet), load_file(seed1 / "models/world/base/unet/diffusion_pytorch_model.safetensors")
    assert a.keys() == b.keys() and not all(torch.equal(a[k], b[k]) for k in a)  # another base
    assert (seed1 / "runs/ablations/full/seed1/reports/metrics.json").is_file()
    assert (root / "runs/ablations/full/seed0/reports/metrics.json").is_file()

    runs = _runs(root)
    full = runs[(runs["tags.stage"] == "metrics") & (runs["tags.variant"] == "full")]
    assert sorted(full["tags.seed"]) == ["0", "1"]
    with open(root / "reports/ablations/comparison.csv", newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert row["variant"] == "full" and float(row["n_seeds"]) == 2

    # a second start of the seed finds its base and clips up to date: nothing of them runs again
    seed1_unet = seed1 / "models/world/base/unet/diffusion_pytorch_model.safetensors"
    built = seed1_unet.stat().st_mtime_ns
    lamp_ablations(motions=MOTIONS, variants=["full"], root=str(root), seeds=[1], gpu_limit=None)
    assert seed1_unet.stat().st_mtime_ns == built
    runs = _runs(root)
    project_runs = runs[runs["tags.variant"] == "seed1_project"]
    assert sorted(project_runs["tags.stage"]) == sorted(["base"] + ["extract", "cache"] * len(MOTIONS))


def test_a_stage_whose_paths_another_dvc_process_holds_waits_for_them(tmp_path, monkeypatch):
    """While `dvc repro` runs a stage, DVC locks its outputs: a second process checking a stage that
    reads them fails at once with "is busy". run_dvc_stage waits for them and then runs the stage
    (two ablation flows of one project, or a flow started beside `dvc repro`)."""
    from tasks.dvc_stage import BUSY, StageFailed, run_dvc_stage

    monkeypatch.delenv("LAMP_MLFLOW_PARENT_RUN_ID", raising=False)
    (tmp_path / "dvc.yaml").write_text(
        "stages:\n"
        "  slow:\n    cmd: touch started && sleep 8 && echo made > a.txt\n    outs: [a.txt]\n"
        "  use:\n    cmd: cp a.txt b.txt\n    deps: [a.txt]\n    outs: [b.txt]\n")
    for cmd in (["git", "init", "-q"], [str(BIN / "dvc"), "init", "-q"]):
        subprocess.run(cmd, cwd=tmp_path, check=True, capture_output=True)
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}
    slow = subprocess.Popen([str(BIN / "dvc"), "repro", "-s", "slow"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "started").exists():
            assert slow.poll() is None and time.monotonic() < deadline, slow.stdout.read()
            time.sleep(0.2)
        with pytest.raises(StageFailed, match=BUSY):  # without waiting: DVC's own error
            run_dvc_stage("use", root=str(tmp_path), busy_wait_s=0)
        result = run_dvc_stage("use", root=str(tmp_path))
        assert slow.wait(timeout=120) == 0
    finally:
        slow.kill()
    assert result["ran"] and (tmp_path / "b.txt").read_text() == "made\n"


def test_a_seed_projects_data_stage_is_up_to_date_only_for_the_inputs_it_was_built_from(tmp_path):
    """The fingerprint follows dvc.yaml: the stage's params and deps count, other settings do not."""
    from flows.ablations import data_stage_fingerprint, data_stage_up_to_date, record_data_stage

    project = tmp_path / "seed1"
    (project / "data/world/videos/rain").mkdir(parents=True)
    (project / "data/world/videos/rain/00.mp4").write_bytes(b"video")
    (project / "models/world").mkdir(parents=True)
    shutil.copy(REPO / "params.yaml", project / "params.yaml")
    first = data_stage_fingerprint(project, REPO, "base")
    assert not data_stage_up_to_date(project, REPO, "base")  # never built
    record_data_stage(project, REPO, "base")
    assert data_stage_up_to_date(project, REPO, "base")

    write_overrides(project / "params.yaml", {"train.steps": 7})  # not a param of the base stage
    assert data_stage_fingerprint(project, REPO, "base") == first
    write_overrides(project / "params.yaml", {"base_train.seed": 5})  # one of its params
    assert data_stage_fingerprint(project, REPO, "base") != first
    assert not data_stage_up_to_date(project, REPO, "base")
    record_data_stage(project, REPO, "base")
    (project / "data/world/videos/rain/00.mp4").write_bytes(b"another video")  # one of its deps
    assert not data_stage_up_to_date(project, REPO, "base")
    record_data_stage(project, REPO, "base")
    shutil.rmtree(project / "models/world")  # its output gone
    assert not data_stage_up_to_date(project, REPO, "base")
    # per-motion stages resolve ${item}: another motion's clips are another stage
    assert data_stage_fingerprint(project, REPO, "extract", "rain") != data_stage_fingerprint(
        project, REPO, "extract", "helicopter")
