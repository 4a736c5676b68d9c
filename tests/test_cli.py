"""The `lamp` command line end to end on tiny models in a temp project (real files in and out).

One module-scoped project: a tiny SD v1.x-shaped base model (random weights, saved
like a Hugging Face folder), a tiny CLIP, motion-world videos written as mp4, and a
params.yaml with 4 frames at 32x48 and a few steps. `lamp train` runs once (module
fixture); generate / animate / score / edit use its checkpoint.

The flow commands get a second module-scoped project built from it: a DVC project
(`dvc init --no-scm`, this repo's dvc.yaml and stage code) with 2 motions, and a
temporary local Prefect API. `lamp pipeline --set ...` runs the all-motions flow on it
once; then the real ablation flow (2 variants) logs to an MLflow sqlite store in it and
`lamp compare` builds the table from that store.
"""
from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from lamp.cli import app
from lamp_model.config import load_params, write_overrides
from lamp_model.metrics import ClipScorer
from lamp_model.small import build_sd
from lamp_model.unet import LampUNet
from lamp_model.video import read_video, write_mp4
from lamp_model.world import render_video, training_contents

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
H, W, F = 32, 48, 4
MOTION = "horse_run"


def invoke(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def assert_one_line_error(result, *fragments: str) -> None:
    """Exit code 1, a single `error: ...` line on stderr naming the fragments, no traceback."""
    assert result.exit_code == 1, (result.exit_code, result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("project")
    build_sd(root / "tok").save_pretrained(root / "models/base")
    ClipScorer.small(embed_dim=32, image_size=32).save_pretrained(root / "models/clip")
    videos = root / "videos" / MOTION
    videos.mkdir(parents=True)
    for i, content in enumerate(training_contents(MOTION, 3)):
        write_mp4(render_video(MOTION, content, frames=8, height=H, width=W, seed=i), videos / f"v{i}.mp4")
    (root / "prompts.csv").write_text("motion,prompt\nhorse_run,a red star running\n"
                                      "horse_run,a blue circle running\n")
    params = {
        "motions": [MOTION],
        "data": {"source": "folder", "videos_dir": "videos", "eval_prompts": "prompts.csv", "min_videos": 2,
                 "use_captions": False},
        "clips": {"frames": F, "stride": 1, "clips_per_video": 1, "height": H, "width": W},
        "model": {"base": "models/base", "first_frame": "world", "device": "cpu"},
        "train": {"steps": 3, "lr": 1e-3, "checkpoint_every": 100},
        "sample": {"ddim_steps": 2, "seeds": [0]},
        "metrics": {"clip_model": "models/clip"},
        "tracking": {"enabled": False},
    }
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return root


@pytest.fixture(scope="module")
def trained(project) -> Path:
    """`lamp train` on the project's video folder -> the motion checkpoint."""
    result = invoke("train", project / "videos" / MOTION, "--root", project, "--set", "train.steps=2")
    assert result.exit_code == 0, result.stderr
    ckpt = project / "models/motions" / MOTION / "motion.safetensors"
    assert f"wrote {ckpt}" in result.stdout
    return ckpt


def test_train_writes_clips_latents_and_checkpoint(project, trained):
    """train = extract -> cache -> tune through the stage functions; --set reaches the tuner."""
    assert (project / "data/clips" / MOTION / "clips.safetensors").is_file()
    assert (project / "data/latents" / MOTION / "latents.safetensors").is_file()
    config = json.loads((trained.parent / "train_config.json").read_text())
    assert config["train"]["steps"] == 2 and config["clips"] == 3
    unet = LampUNet.from_unet2d(build_sd(project / "tok2").unet)
    unet.load_motion(trained)  # a valid checkpoint of this base


def test_generate_with_prompts_then_score(project, trained, tmp_path):
    out = tmp_path / "gen"
    result = invoke("generate", "--motion", MOTION, "--prompt", "a red star running", "--prompt",
                    "a green square running", "--out", out, "--root", project)
    assert result.exit_code == 0, result.stderr
    rows = list(csv.DictReader(open(out / "index.csv")))
    assert [r["prompt"] for r in rows] == ["a red star running", "a green square running"]
    for r in rows:
        frames, _ = read_video(out / r["mp4"])
        assert frames.shape == (F, H, W, 3)
        assert (out / r["gif"]).stat().st_size > 0 and (out / r["first_frame"]).is_file()
        assert f"wrote {out / r['mp4']}" in result.stdout

    scored = invoke("score", out, "--motion", MOTION, "--root", project)
    assert scored.exit_code == 0, scored.stderr
    per_video = list(csv.DictReader(open(out / "scores/per_video.csv")))
    assert [r["prompt"] for r in per_video] == ["a red star running", "a green square running"]
    assert all(-100 <= float(r["alignment"]) <= 100 and float(r["consistency"]) <= 100 for r in per_video)
    assert all(0 <= float(r["first_frame_fidelity"]) <= 100 for r in per_video)
    summary = json.loads((out / "scores/summary.json").read_text())
    assert summary["n_videos"] == 2 and summary["diversity"] is not None


def test_generate_eval_prompts_default(project, trained, tmp_path):
    """Without --prompt: the motion's rows of data.eval_prompts, one video per prompt and seed."""
    out = tmp_path / "gen"
    result = invoke("generate", "-m", MOTION, "-o", out, "--root", project, "--set", "sample.seeds=[3]")
    assert result.exit_code == 0, result.stderr
    rows = list(csv.DictReader(open(out / "index.csv")))
    assert [(r["prompt"], r["seed"]) for r in rows] == [("a red star running", "3"), ("a blue circle running", "3")]


def _generated(out: Path) -> tuple[list[dict], list[np.ndarray]]:
    """index.csv rows and decoded mp4s of a `lamp generate` folder; every row's files exist."""
    rows = list(csv.DictReader(open(out / "index.csv")))
    videos = []
    for r in rows:
        assert (out / r["gif"]).stat().st_size > 0 and (out / r["first_frame"]).is_file()
        frames, _ = read_video(out / r["mp4"])
        assert frames.shape == (F, H, W, 3)
        videos.append(frames.astype(np.int16))
    return rows, videos


def test_generate_untuned(project, trained, tmp_path):
    """--untuned = the inflated base UNet with LAMP's new layers at their init, no checkpoint read.

    The method inflates with exact identities (TSM conv1d and gate, temporal attention output at zero),
    so untuned videos are the same with TSM and temporal attention switched off, and the same for a
    motion that was never tuned (no checkpoint needed); the tuned weights keep frame 0 (pinned to the
    first frame) and change the frames after it.
    """
    prompt = "a red star running"
    result = invoke("generate", "-m", MOTION, "-p", prompt, "--untuned", "-o", tmp_path / "untuned", "--root", project)
    assert result.exit_code == 0, result.stderr
    rows, (untuned,) = _generated(tmp_path / "untuned")
    assert [(r["prompt"], r["seed"]) for r in rows] == [(prompt, "0")]
    assert f"wrote {tmp_path / 'untuned/index.csv'}" in result.stdout

    assert not (project / "models/motions/rain").exists()
    plain = invoke("generate", "-m", "rain", "-p", prompt, "--untuned", "-o", tmp_path / "plain", "--root", project,
                   "--set", "lamp.tsm=false", "--set", "lamp.temporal_attention=false")
    assert plain.exit_code == 0, plain.stderr
    _, (without_new_layers,) = _generated(tmp_path / "plain")
    assert np.array_equal(without_new_layers, untuned)

    tuned_run = invoke("generate", "-m", MOTION, "-p", prompt, "-o", tmp_path / "tuned", "--root", project)
    assert tuned_run.exit_code == 0, tuned_run.stderr
    _, (tuned,) = _generated(tmp_path / "tuned")
    diff = np.abs(tuned - untuned).mean(axis=(1, 2, 3))  # mean |difference| per frame, 0..255
    assert diff[0] < 1.0, diff
    assert diff[1:].min() > 2 * diff[0] + 0.5, diff

    assert_one_line_error(invoke("generate", "-m", MOTION, "-p", prompt, "--untuned", "--checkpoint", trained,
                                 "--root", project), "--untuned", "--checkpoint")


def test_score_plain_folder_of_videos(project, tmp_path):
    """Any folder of videos: prompt from --prompt, no first frames, no index.csv."""
    folder = tmp_path / "clips"
    folder.mkdir()
    for i, content in enumerate(training_contents(MOTION, 2)):
        write_mp4(render_video(MOTION, content, frames=6, height=H, width=W, seed=i), folder / f"c{i}.mp4")
    result = invoke("score", folder, "--prompt", "a horse running", "--out", tmp_path / "s", "--root", project)
    assert result.exit_code == 0, result.stderr
    rows = list(csv.DictReader(open(tmp_path / "s/per_video.csv")))
    assert [r["file"] for r in rows] == ["c0.mp4", "c1.mp4"]
    assert {r["prompt"] for r in rows} == {"a horse running"}


@pytest.mark.parametrize("policy", ["crop", "pad"])
def test_animate_any_size_image(project, trained, tmp_path, policy):
    """A tall RGBA image of another aspect ratio is fitted (crop: no bars; pad: black bars) and animated."""
    rng = np.random.default_rng(0)
    img = np.concatenate([rng.integers(60, 255, (70, 30, 3)), np.full((70, 30, 1), 255)], axis=2)
    Image.fromarray(img.astype(np.uint8), "RGBA").save(tmp_path / "tall.png")
    out = tmp_path / "anim"
    result = invoke("animate", tmp_path / "tall.png", "--motion", trained, "--prompt", "a star running",
                    "--out", out, "--resize-policy", policy, "--root", project)
    assert result.exit_code == 0, result.stderr
    frames, _ = read_video(out / "tall.mp4")
    assert frames.shape == (F, H, W, 3)
    assert (out / "tall.gif").stat().st_size > 0
    first = np.asarray(Image.open(out / "tall_first_frame.png"))
    assert first.shape == (H, W, 3)
    side_bars = first[:, :5].max()  # a 30x70 image padded to 48x32 leaves black columns left and right
    assert (side_bars == 0) if policy == "pad" else (side_bars > 0)
    for path in (out / "tall.mp4", out / "tall.gif"):
        assert f"wrote {path}" in result.stdout


@pytest.fixture(scope="module")
def world_controlnet(project) -> Path:
    """A canny ControlNet for the project's base where `dvc repro controlnet` puts it (2 steps: shapes only;
    what a trained one does is tests/test_world_editing.py's)."""
    from lamp_model.controlnet_training import ControlNetSettings, save_controlnet, train_controlnet
    from lamp_model.loading import load_sd_components
    from tasks.common import Layout

    frames = read_video(project / "videos" / MOTION / "v0.mp4")[0].copy()
    settings = ControlNetSettings(steps=2, batch_size=2)
    net, _ = train_controlnet(load_sd_components(str(project / "models/base")), frames, ["a star"] * len(frames),
                              settings, progress=False)
    folder = Layout(project).world_controlnet
    save_controlnet(net, folder, settings)
    return folder


def test_edit_without_world_controlnet_says_how_to_build_it(project, tmp_path):
    """In the motion world the edit needs the trained ControlNet: one line naming the folder and the command."""
    video = tmp_path / "v.mp4"
    write_mp4(render_video(MOTION, training_contents(MOTION, 1)[0], frames=4, height=H, width=W), video)
    folder = project / "models/world_controlnet"
    hidden = folder.with_name("world_controlnet.hidden")
    if folder.exists():
        folder.rename(hidden)
    try:
        result = invoke("edit", video, "-p", "x", "--frames", 4, "--stride", 1, "--tune-steps", 0, "--steps", 1,
                        "-o", tmp_path / "o", "--root", project)
    finally:
        if hidden.exists():
            hidden.rename(folder)
    assert_one_line_error(result, str(folder), "dvc repro controlnet")
    assert not (tmp_path / "o").exists()


def test_edit_video(project, world_controlnet, tmp_path):
    """Tune on one video, invert, edit frame 0 with the world's canny ControlNet, regenerate."""
    video = tmp_path / "src_clip.mp4"
    write_mp4(render_video(MOTION, training_contents(MOTION, 1)[0], frames=9, height=40, width=64), video)
    out = tmp_path / "edit"
    result = invoke("edit", video, "--prompt", "a blue circle running", "--frames", F, "--stride", 2,
                    "--tune-steps", 2, "--steps", 2, "--out", out, "--root", project,
                    "--set", "model.first_frame_steps=2")
    assert result.exit_code == 0, result.stderr
    edited, _ = read_video(out / "src_clip_edited.mp4")
    source, _ = read_video(out / "src_clip_source.mp4")
    assert edited.shape == source.shape == (F, H, W, 3)
    assert (out / "src_clip_edited.gif").is_file() and (out / "src_clip_first_frame.png").is_file()
    unet = LampUNet.from_unet2d(build_sd(tmp_path / "tok").unet)
    unet.load_motion(out / "src_clip_motion.safetensors")


def test_edit_with_given_first_frame(project, tmp_path):
    video = tmp_path / "v.mp4"
    write_mp4(render_video(MOTION, training_contents(MOTION, 1)[0], frames=4, height=H, width=W), video)
    Image.fromarray(np.full((20, 20, 3), 200, np.uint8)).save(tmp_path / "e.png")
    result = invoke("edit", video, "-p", "x", "--first-frame", tmp_path / "e.png", "--frames", 4, "--stride", 1,
                    "--tune-steps", 0, "--steps", 1, "-o", tmp_path / "o", "--root", project)
    assert result.exit_code == 0, result.stderr
    first = np.asarray(Image.open(tmp_path / "o/v_first_frame.png"))
    assert first.shape == (H, W, 3) and (first == 200).all()


# ---------------------------------------------------------------------------- bad inputs

def test_missing_image(project, trained, tmp_path):
    result = invoke("animate", tmp_path / "nope.png", "--motion", trained, "--prompt", "x", "--root", project)
    assert_one_line_error(result, "nope.png", "not found")


def test_image_that_is_not_an_image(project, trained, tmp_path):
    (tmp_path / "fake.png").write_text("hello")
    result = invoke("animate", tmp_path / "fake.png", "--motion", trained, "--prompt", "x", "--root", project)
    assert_one_line_error(result, "fake.png", "not a readable image")


def test_unreadable_video(project, tmp_path):
    (tmp_path / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 50)
    result = invoke("edit", tmp_path / "broken.mp4", "--prompt", "x", "--root", project)
    assert_one_line_error(result, "broken.mp4")


def test_checkpoint_from_incompatible_base(project, tmp_path):
    """A motion tuned on a UNet with other widths does not load into the project's base."""
    other = LampUNet.from_unet2d(build_sd(tmp_path / "tok", unet_channels=(16, 32)).unet)
    other.save_motion(tmp_path / "other.safetensors")
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(tmp_path / "img.png")
    result = invoke("animate", tmp_path / "img.png", "--motion", tmp_path / "other.safetensors", "--prompt", "x",
                    "--root", project)
    assert_one_line_error(result, "other.safetensors", "does not fit this UNet", "another base model")


def test_checkpoint_not_safetensors(project, tmp_path):
    (tmp_path / "motion.safetensors").write_bytes(b"PK\x03\x04 this is a zip, not safetensors" * 10)
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(tmp_path / "img.png")
    result = invoke("animate", tmp_path / "img.png", "--motion", tmp_path / "motion.safetensors", "--prompt", "x",
                    "--root", project)
    assert_one_line_error(result, "motion.safetensors", "not a safetensors motion checkpoint")


def test_bad_params_override(project, trained, tmp_path):
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(tmp_path / "img.png")
    result = invoke("animate", tmp_path / "img.png", "--motion", trained, "--prompt", "x", "--root", project,
                    "--set", "sample.ddim_steps=-3")
    assert_one_line_error(result, "sample.ddim_steps", "-3")
    result = invoke("animate", tmp_path / "img.png", "--motion", trained, "--prompt", "x", "--root", project,
                    "--set", "sample.ddim_steps")
    assert_one_line_error(result, "KEY=VALUE")


def test_train_missing_folder_and_too_few_videos(project, tmp_path):
    assert_one_line_error(invoke("train", tmp_path / "absent", "--root", project), "absent")
    (tmp_path / "rain").mkdir()
    write_mp4(render_video("rain", training_contents("rain", 1)[0], frames=6, height=H, width=W),
              tmp_path / "rain/a.mp4")
    assert_one_line_error(invoke("train", tmp_path / "rain", "--root", project), "rain")


def test_generate_without_checkpoint(project, tmp_path):
    result = invoke("generate", "--motion", "rain", "--prompt", "x", "--root", project)
    assert_one_line_error(result, "motion.safetensors", "lamp train")


def test_debug_shows_the_traceback(project, trained, tmp_path):
    with pytest.raises(FileNotFoundError):
        invoke("animate", tmp_path / "nope.png", "--motion", trained, "--prompt", "x", "--debug")


def test_help_of_every_command_runs_as_module():
    """`python -m lamp` works (the console script `lamp` is the same app) and every command has examples."""
    out = subprocess.run([sys.executable, "-m", "lamp", "--help"], capture_output=True, text=True, check=True)
    commands = ("train", "generate", "animate", "edit", "score", "compare", "pipeline")
    assert all(c in out.stdout for c in commands)
    for c in commands:
        result = CliRunner().invoke(app, [c, "--help"])
        assert result.exit_code == 0 and "Example" in result.stdout and "--params" in result.stdout


# ---------------------------------------------------------------------------- flows: pipeline and compare

FLOW_MOTIONS = [MOTION, "rain"]


@pytest.fixture(scope="module")
def flow_project(project, tmp_path_factory) -> Path:
    """A DVC project (`dvc init --no-scm`) with this repo's dvc.yaml and stage code and 2 motions:
    the tiny project's base model, CLIP and horse_run videos plus 2 rain videos, one eval prompt
    each, every param written out (DVC reads them from params.yaml), MLflow tracking off."""
    root = tmp_path_factory.mktemp("flow_project")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in ("lamp_model", "tasks"):
        shutil.copytree(REPO / folder, root / folder, ignore=ignore)
    shutil.copy(REPO / "dvc.yaml", root / "dvc.yaml")
    for folder in ("models/base", "models/clip", f"videos/{MOTION}"):
        shutil.copytree(project / folder, root / folder)
    for i, content in enumerate(training_contents("rain", 2)):
        write_mp4(render_video("rain", content, frames=8, height=H, width=W, seed=i), root / f"videos/rain/v{i}.mp4")
    (root / "prompts.csv").write_text("motion,prompt\nhorse_run,a red star running\nrain,rain on a blue car\n")
    params = load_params(project / "params.yaml", {"motions": FLOW_MOTIONS, "train.steps": 3,
                                                   "tracking.enabled": False})
    (root / "params.yaml").write_text("# tiny LAMP project of tests/test_cli.py\n"
                                      + yaml.safe_dump(params.model_dump(), sort_keys=False))
    dvc(root, "init", "--no-scm", "-q")
    return root


def dvc(root: Path, *args: str) -> str:
    out = subprocess.run([str(BIN / "dvc"), *args], cwd=root, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


@pytest.fixture(scope="module")
def prefect_api(tmp_path_factory):
    """A temporary local Prefect API (own sqlite database, own PREFECT_HOME) for the flows the CLI runs."""
    import prefect.main  # noqa: F401 - sets up Prefect's logging now, on this process's stderr, not the CliRunner's
    from prefect.settings import PREFECT_HOME, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    with temporary_settings({PREFECT_HOME: str(tmp_path_factory.mktemp("prefect_home"))}), \
            prefect_test_harness(server_startup_timeout=180):
        yield


def flow_run_states(name: str) -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[name])))
    return [r.state.type.value for r in runs]


@pytest.fixture(scope="module")
def pipeline_run(flow_project, prefect_api):
    """`lamp pipeline --set train.steps=2` on the 2-motion DVC project (the flow lamp-all-motions, locally)."""
    t0 = time.monotonic()
    result = invoke("pipeline", "--root", flow_project, "--set", "train.steps=2")
    print(f"lamp pipeline: {time.monotonic() - t0:.0f} s")
    assert result.exit_code == 0, result.stderr[-6000:]
    return result


def test_pipeline_runs_the_flow_with_set_written_to_params(flow_project, pipeline_run):
    """The flow ends Completed with every stage's outputs; --set was written into params.yaml (comments
    kept) before the stages ran, so the tuner used it and DVC agrees: nothing left for `dvc repro report`."""
    root = flow_project
    assert flow_run_states("lamp-all-motions") == ["COMPLETED"]
    assert flow_run_states("lamp-motion") == ["COMPLETED", "COMPLETED"]
    result = json.loads(pipeline_run.stdout[:pipeline_run.stdout.index("wrote ")])
    assert sorted(result["motions"]) == sorted(FLOW_MOTIONS)
    for m in FLOW_MOTIONS:
        assert (root / "data/clips" / m / "clips.safetensors").is_file()
        assert (root / "data/latents" / m / "latents.safetensors").is_file()
        assert json.loads((root / "models/motions" / m / "train_config.json").read_text())["train"]["steps"] == 2
        rows, _ = _generated(root / "outputs/videos" / m)
        assert len(rows) == 1
    metrics = json.loads((root / "reports/metrics.json").read_text())
    assert metrics["overall"]["n_videos"] == 2 and sorted(metrics["per_motion"]) == sorted(FLOW_MOTIONS)
    for name in ("metrics.json", "per_video.csv", "summary.md", "gallery.html"):
        assert f"wrote {root / 'reports' / name}" in pipeline_run.stdout

    text = (root / "params.yaml").read_text()
    assert text.startswith("# tiny LAMP project") and load_params(root / "params.yaml").train.steps == 2
    assert "train.steps=2" in pipeline_run.stderr
    lock = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    assert {lock[f"tune@{m}"]["params"]["params.yaml"]["train"]["steps"] for m in FLOW_MOTIONS} == {2}
    assert json.loads(dvc(root, "status", "--with-deps", "report", "--json")) == {}


@pytest.fixture(scope="module")
def ablations(flow_project, pipeline_run):
    """The real ablation flow (3 variants: full, a sampling-only one that renders its first frames with the
    base model, and one more; both motions) on the project, with MLflow tracking on
    (a sqlite store in the project); `lamp compare` first, while the store has no ablation runs."""
    from flows.ablations import lamp_ablations

    root = flow_project
    write_overrides(root / "params.yaml", {"tracking.enabled": True})  # no DVC stage reads `tracking`
    before = invoke("compare", "--root", root)
    states = {f: f.stat().st_mtime_ns for f in sorted((root / "checkpoints").rglob("train_state.pt"))}
    t0 = time.monotonic()
    flow = lamp_ablations(motions=FLOW_MOTIONS, variants=["full", "first_frame_base", "no_shared_noise"],
                          root=str(root),
                          overrides={"train.steps": 2})
    print(f"ablation flow: {time.monotonic() - t0:.0f} s")
    return {"before": before, "flow": flow, "states": states}


def test_ablations_reuse_the_main_pipelines_tuning(flow_project, ablations, assert_same_motion):
    """`full` and the sampling-only variants have the main pipeline's tuning settings (train.steps 2 in
    both): they find its finished checkpoints (shared, keyed by what shapes the weights) and do not tune
    again: the checkpoints are untouched and every variant holds the main pipeline's weights."""
    root = flow_project
    states = ablations["states"]
    assert len(states) == len(FLOW_MOTIONS)
    assert {f: f.stat().st_mtime_ns for f in states} == states
    assert sorted((root / "checkpoints").rglob("train_state.pt")) == sorted(states)  # no new tuning state
    for m in FLOW_MOTIONS:
        for variant in ("full", "first_frame_base", "no_shared_noise"):
            assert_same_motion(root / "models/motions" / m / "motion.safetensors",
                               root / "runs/ablations" / variant / "models/motions" / m / "motion.safetensors")


def test_compare_without_ablation_runs(ablations):
    """No ablation runs in the project's MLflow store yet: a one-line error saying to run the ablations."""
    assert_one_line_error(ablations["before"], "ablations")


def test_compare_for_seeds_without_runs(flow_project, ablations, tmp_path):
    """--seed keeps only those seeds: none finished for seed 7, so a one-line error naming it, no files."""
    result = invoke("compare", "--root", flow_project, "--seed", "7", "--out", tmp_path / "cmp")
    assert_one_line_error(result, "for seeds [7]", "run the ablations first")
    assert not (tmp_path / "cmp").exists()


def test_compare_table_from_mlflow_runs(flow_project, ablations):
    """`lamp compare` after the ablation flow: comparison.{csv,md,png} under reports/ablations, one row per
    variant, every value the one logged in MLflow by that variant's metrics run."""
    import mlflow

    root, out = flow_project, flow_project / "reports/ablations"
    shutil.rmtree(out, ignore_errors=True)  # the flow wrote a comparison too: these files must come from `lamp compare`
    result = invoke("compare", "--root", root)
    assert result.exit_code == 0, result.stderr
    for name in ("comparison.csv", "comparison.md", "comparison.png"):
        assert f"wrote {out / name}" in result.stdout
    assert all(v in result.stdout for v in ("full", "first_frame_base", "no_shared_noise"))

    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["lamp"],
                              filter_string="tags.stage = 'metrics' AND tags.variant != 'main'")
    assert sorted(runs["tags.variant"]) == ["first_frame_base", "full", "no_shared_noise"]
    assert set(runs["tags.ablation_run"]) == {ablations["flow"]["mlflow_run_id"]}
    logged = {r["tags.variant"]: {k.removeprefix("metrics."): v for k, v in r.items()
                                  if k.startswith("metrics.") and k != "metrics.duration_s" and v == v}
              for _, r in runs.iterrows()}

    with open(out / "comparison.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["variant"] for r in rows] == ["full", "first_frame_base", "no_shared_noise"]  # spec order
    for r in rows:
        assert float(r["n_seeds"]) == 1  # one run per variant: no spread
        assert all(float(v) == 0 for k, v in r.items() if k.endswith("_std") and v != "")
        values = {k: float(v) for k, v in r.items()
                  if k not in ("variant", "n_seeds") and not k.endswith("_std") and v != ""}
        assert values.keys() == logged[r["variant"]].keys()
        assert {"alignment", "consistency", "rain/alignment", f"{MOTION}/motion_accuracy"} <= values.keys()
        for k, v in values.items():
            assert v == pytest.approx(logged[r["variant"]][k], abs=1e-4), (r["variant"], k)
        on_disk = json.loads((root / "runs/ablations" / r["variant"] / "reports/metrics.json").read_text())
        assert values["alignment"] == pytest.approx(on_disk["overall"]["alignment"], abs=1e-3)

    md = (out / "comparison.md").read_text()
    header, _, *table = md.split("## Overall")[1].split("## ")[0].strip().splitlines()
    columns = [c.strip() for c in header.strip("|").split("|")][1:]
    for line in table:
        variant, *cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells == [f"{logged[variant][c]:.2f} ± 0.00" for c in columns], variant  # one seed: no spread
    assert f"## {MOTION}" in md and "## rain" in md
    with Image.open(out / "comparison.png") as png:
        assert png.format == "PNG" and min(png.size) > 100

    parent = ablations["flow"]["mlflow_run_id"]
    only = invoke("compare", "--root", root, "--ablation-run-id", parent, "--out", out / "only")
    assert only.exit_code == 0, only.stderr
    assert (out / "only/comparison.csv").read_text() == (out / "comparison.csv").read_text()
    assert_one_line_error(invoke("compare", "--root", root, "--ablation-run-id", "no-such-run"),
                          "no-such-run", "ablations")

    # the per-seed record gives the same table without the MLflow store; a wrong file is one line
    assert f"wrote {out / 'per_seed.csv'}" in result.stdout
    again = invoke("compare", "--root", root, "--per-seed", out / "per_seed.csv", "--out", out / "again")
    assert again.exit_code == 0, again.stderr
    assert (out / "again/comparison.csv").read_text() == (out / "comparison.csv").read_text()
    assert_one_line_error(invoke("compare", "--root", root, "--per-seed", out / "comparison.csv",
                                 "--out", out / "bad"), "comparison.csv", "missing")
    assert not (out / "bad").exists()


def test_flow_commands_check_their_input(project, flow_project):
    """Refused before anything runs or is written: another --params file (the DVC stages read
    ROOT/params.yaml), a root that is not a DVC project, a motion not in params.yaml, a bad --set;
    compare takes no --set (its MLflow store is the one params.yaml names)."""
    params = (flow_project / "params.yaml").read_text()
    assert_one_line_error(invoke("pipeline", "--root", flow_project, "--params", project / "params.yaml"),
                          "--params", "params.yaml")
    assert_one_line_error(invoke("pipeline", "--root", project), "dvc.yaml")
    assert_one_line_error(invoke("pipeline", MOTION, "birds_fly", "--root", flow_project), "birds_fly")
    assert_one_line_error(invoke("pipeline", "--root", flow_project, "--set", "train.steps=0"), "train.steps", "0")
    assert_one_line_error(invoke("pipeline", "--root", flow_project, "--set", "train.stepz=5"), "stepz")
    assert (flow_project / "params.yaml").read_text() == params
    assert_one_line_error(invoke("compare", "--root", flow_project, "--set", "tracking.experiment=x"),
                          "params.yaml", "--set")


def test_score_failing_while_writing_keeps_the_previous_results(project, tmp_path, monkeypatch):
    """per_video.csv and summary.json are replaced whole or not at all: a disk that fills up
    half-way through the csv leaves the previous scores, and no temporary file."""
    import tasks.metrics

    folder = tmp_path / "clips"
    folder.mkdir()
    for i, content in enumerate(training_contents(MOTION, 2)):
        write_mp4(render_video(MOTION, content, frames=6, height=H, width=W, seed=i), folder / f"c{i}.mp4")
    out = tmp_path / "s"
    assert invoke("score", folder, "--prompt", "a horse", "--out", out, "--root", project).exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert sorted(before) == ["per_video.csv", "summary.json"]

    real_clean, calls = tasks.metrics._clean, []

    def disk_full_at_second_row(value):
        calls.append(value)
        if len(calls) > 10:  # the first row (8 columns) is written, then the disk is full
            raise OSError(28, "No space left on device")
        return real_clean(value)

    monkeypatch.setattr(tasks.metrics, "_clean", disk_full_at_second_row)
    with pytest.raises(OSError, match="No space left on device"):
        invoke("score", folder, "--prompt", "another prompt", "--out", out, "--root", project)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
