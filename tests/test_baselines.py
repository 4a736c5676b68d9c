"""The paper's baselines (lamp_model/baselines) on a small SD v1.x-shaped model."""
from __future__ import annotations

import copy
import csv
import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from lamp_model.baselines import text2video_zero
from lamp_model.small import build_sd


@pytest.fixture(scope="module")
def comps(tmp_path_factory):
    return build_sd(tmp_path_factory.mktemp("tok"), unet_channels=(32, 64), vae_channels=(32, 32, 64, 64), seed=0)


def test_text2video_zero_pipeline_is_importable():
    """Deprecated in diffusers: this fails first when a diffusers upgrade removes it."""
    from diffusers import TextToVideoZeroPipeline  # noqa: F401
    from diffusers.pipelines.deprecated.text_to_video_synthesis import pipeline_text_to_video_zero  # noqa: F401


@pytest.mark.parametrize("steps", [2, 3, 20, 50, 100])
def test_text2video_zero_t0_t1_fit_the_step_count(steps):
    t0, t1 = text2video_zero.timesteps_t0_t1(steps)
    assert 0 <= t0 < t1 <= steps - 1
    if steps == 50:
        assert (t0, t1) == (44, 47)  # the paper's


def test_text2video_zero_makes_the_requested_frames_at_a_non_512_size(comps):
    pipe = text2video_zero.pipeline(comps)
    video = text2video_zero.generate(pipe, "a red star in rain", num_frames=5, height=64, width=96,
                                     num_inference_steps=3, guidance_scale=7.5, seed=1)
    assert video.shape == (5, 64, 96, 3) and video.dtype == np.uint8
    again = text2video_zero.generate(pipe, "a red star in rain", num_frames=5, height=64, width=96,
                                     num_inference_steps=3, guidance_scale=7.5, seed=1)
    assert np.array_equal(video, again)  # seeded
    with pytest.raises(ValueError, match="guidance_scale must be > 1"):
        text2video_zero.generate(pipe, "x", num_frames=2, height=64, width=96, num_inference_steps=2,
                                 guidance_scale=1.0)


def test_text2video_zero_motion_field_is_in_frame_pixels(comps, monkeypatch):
    """The strength handed to diffusers is per 512-px canvas: a 96-px-wide frame moving 12 px per
    frame is 64 canvas px; the default moves the paper's share of the frame (12/512)."""
    seen = {}

    def fake_call(self, prompt, **kw):
        seen.update(kw)
        raise StopIteration

    monkeypatch.setattr(type(text2video_zero.pipeline(comps)), "__call__", fake_call)
    pipe = text2video_zero.pipeline(comps)
    with pytest.raises(StopIteration):
        text2video_zero.generate(pipe, "x", num_frames=2, height=64, width=96, motion_px=(12.0, 0.0))
    assert seen["motion_field_strength_x"] == pytest.approx(64.0) and seen["motion_field_strength_y"] == 0
    with pytest.raises(StopIteration):
        text2video_zero.generate(pipe, "x", num_frames=2, height=64, width=96)
    assert seen["motion_field_strength_x"] == pytest.approx(12.0) == seen["motion_field_strength_y"]


# ---------------------------------------------------------------------------- Tune-A-Video

def test_sparse_causal_attention_reads_only_frames_0_previous_and_itself():
    """Perturbing frame j changes frame i's output exactly when j is 0, i-1 or i."""
    from diffusers.models.attention_processor import Attention

    from lamp_model.baselines.tune_a_video import SparseCausalAttnProcessor
    from lamp_model.layers import FrameContext

    torch.manual_seed(0)
    f, n, c = 5, 6, 16
    ctx = FrameContext()
    ctx.num_frames = f
    attn = Attention(query_dim=c, heads=2, dim_head=8)
    attn.set_processor(SparseCausalAttnProcessor(ctx))
    x = torch.randn(2 * f, n, c)  # 2 videos
    with torch.no_grad():
        base = attn(x).reshape(2, f, n, c)
        for j in range(f):
            bumped = x.clone().reshape(2, f, n, c)
            bumped[1, j] += torch.randn(n, c)  # video 1 only
            out = attn(bumped.reshape(2 * f, n, c)).reshape(2, f, n, c)
            assert torch.equal(out[0], base[0])  # videos do not mix
            for i in range(f):
                changed = not torch.allclose(out[1, i], base[1, i], atol=1e-6)
                assert changed == (j in (0, i - 1, i)), (i, j)


@pytest.fixture(scope="module")
def tav_unet(comps):
    from lamp_model.baselines.tune_a_video import TuneAVideoUNet

    return TuneAVideoUNet.from_unet2d(copy.deepcopy(comps.unet))


def test_tune_a_video_trainable_set_is_the_authors(tav_unet, comps):
    """attn1.to_q, attn2.to_q and the temporal attention (LayerNorm, q/k/v, zero-init output) of every
    transformer block; no TSM, nothing else. Counted from the 2D UNet, not from the trainable filter."""
    from diffusers.models.attention import BasicTransformerBlock

    blocks = sum(isinstance(m, BasicTransformerBlock) for m in comps.unet.modules())
    names = [n for n, p in tav_unet.named_parameters() if p.requires_grad]
    assert len([n for n in names if n.endswith("attn1.to_q.weight")]) == blocks
    assert len([n for n in names if n.endswith("attn2.to_q.weight")]) == blocks
    temporal = [n for n in names if ".temporal_attn." in n]
    # norm weight + bias, to_q, to_k, to_v (no bias), to_out weight + bias
    assert len(temporal) == 7 * blocks
    assert len(names) == 9 * blocks
    assert not any(".temporal." in n or ".gate." in n for n, _ in tav_unet.named_parameters())  # no TSM
    for n, p in tav_unet.named_parameters():
        if ".temporal_attn.attn.to_out.0." in n:
            assert not p.any()


def test_tune_a_video_frame_0_is_the_2d_unet_at_init(tav_unet, comps):
    """Frame 0 attends to itself only and the temporal attention starts at zero: at init, frame 0 of the
    video UNet is exactly the 2D UNet's output on that frame."""
    g = torch.Generator().manual_seed(0)
    x, text = torch.randn(1, 4, 4, 8, 12, generator=g), torch.randn(1, 77, 32, generator=g)
    with torch.no_grad():
        video = tav_unet(x, 500, text).sample
        frame0 = comps.unet(x[:, :, 0], 500, encoder_hidden_states=text).sample
    assert torch.allclose(video[:, :, 0], frame0, atol=1e-5)


def test_tune_a_video_tunes_on_one_video_and_samples_from_its_inversion(comps, tmp_path):
    from lamp_model.baselines import tune_a_video as tav
    from lamp_model.training import TrainSettings, train_motion

    files = [f"v{i}.mp4" for i in range(6)]
    assert tav.choose_template(files, 3) == tav.choose_template(list(reversed(files)), 3)  # order-free, seeded
    assert len({tav.choose_template(files, s) for s in range(20)}) > 1

    pipe = tav.pipeline(dataclasses.replace(comps, unet=copy.deepcopy(comps.unet)))
    g = torch.Generator().manual_seed(0)
    template = torch.randn(1, 4, 4, 8, 12, generator=g)
    frozen = {n: p.clone() for n, p in pipe.unet.named_parameters() if not p.requires_grad}
    before = {n: p.clone() for n, p in pipe.unet.trainable_parameters()}
    settings = TrainSettings(steps=3, lr=1e-3, first_frame_conditioning=False)
    train_motion(pipe.unet, comps.train_scheduler(), template, pipe.encode_prompt(["a star"]), settings)
    assert all(torch.equal(p, frozen[n]) for n, p in pipe.unet.named_parameters() if n in frozen)
    assert any(not torch.equal(p, before[n]) for n, p in pipe.unet.trainable_parameters())

    path = pipe.unet.save_motion(tmp_path / "tav.safetensors")
    reloaded = tav.TuneAVideoUNet.from_unet2d(copy.deepcopy(comps.unet))
    assert reloaded.load_motion(path)["method"] == "tune_a_video"

    video = tav.sample(pipe, "a star", template, num_frames=4, height=64, width=96, num_inference_steps=3, seed=0)
    again = tav.sample(pipe, "a star", template, num_frames=4, height=64, width=96, num_inference_steps=3, seed=5)
    assert video.shape == (4, 64, 96, 3) and np.array_equal(video, again)  # inverted start: no seed in it
    noise = tav.sample(pipe, "a star", None, num_frames=4, height=64, width=96, num_inference_steps=3, seed=0,
                       start_from_noise=True)
    assert noise.shape == video.shape and not np.array_equal(noise, video)


# ---------------------------------------------------------------------------- AnimateDiff

def test_animatediff_adapter_for_the_small_unet_starts_as_the_2d_unet(comps):
    """Zero-initialised motion-module outputs: every frame of the motion UNet is the 2D UNet's output."""
    from lamp_model.baselines import animatediff

    adapter = animatediff.build_adapter(comps.unet)
    unet = animatediff.motion_unet(copy.deepcopy(comps.unet), adapter)
    g = torch.Generator().manual_seed(0)
    x, text = torch.randn(1, 4, 4, 8, 12, generator=g), torch.randn(1, 77, 32, generator=g)
    with torch.no_grad():
        video = unet(x, 500, text.expand(4, -1, -1)).sample  # one text embedding per frame
        frames = comps.unet(x[0].permute(1, 0, 2, 3), 500, encoder_hidden_states=text.expand(4, -1, -1)).sample
    assert torch.allclose(video[0].permute(1, 0, 2, 3), frames, atol=1e-5)


def test_animatediff_trains_only_motion_modules_and_saves_loads(comps, tmp_path):
    from lamp_model.baselines import animatediff

    unet = animatediff.motion_unet(copy.deepcopy(comps.unet), animatediff.build_adapter(comps.unet))
    before = {n: p.clone() for n, p in unet.named_parameters()}
    g = torch.Generator().manual_seed(0)
    clips, text = torch.randn(3, 4, 4, 8, 12, generator=g), torch.randn(3, 77, 32, generator=g)
    losses = animatediff.train_adapter(unet, comps.train_scheduler(), clips, text, steps=3, batch_size=2)
    assert len(losses) == 3
    changed = {n for n, p in unet.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all("motion_modules" in n for n in changed)

    animatediff.save_adapter(unet, tmp_path / "adapter")
    loaded = animatediff.load_adapter(str(tmp_path / "adapter"))
    state = loaded.state_dict()
    assert len(state) == sum("motion_modules" in k for k in unet.state_dict())
    reloaded = animatediff.motion_unet(copy.deepcopy(comps.unet), loaded)
    assert all(torch.equal(p, dict(unet.named_parameters())[n]) for n, p in reloaded.named_parameters())


def test_animatediff_generates_the_requested_frames_from_text(comps):
    from lamp_model.baselines import animatediff

    pipe = animatediff.pipeline(dataclasses.replace(comps, unet=copy.deepcopy(comps.unet)),
                                animatediff.build_adapter(comps.unet))
    video = animatediff.generate(pipe, "a red star in rain", num_frames=5, height=64, width=96,
                                 num_inference_steps=2, seed=0)
    assert video.shape == (5, 64, 96, 3) and video.dtype == np.uint8


@pytest.mark.parametrize("source", ["guoyww/animatediff-motion-adapter-v1-5-2",
                                    "https://huggingface.co/guoyww/animatediff/blob/main/mm_sd_v14.ckpt"])
def test_animatediff_real_adapter_offline_is_one_clear_line(source, monkeypatch, tmp_path):
    import huggingface_hub

    from lamp_model.baselines import animatediff
    from lamp_model.errors import ModelUnavailableError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ModelUnavailableError) as info:
        animatediff.load_adapter(source)
    message = str(info.value)
    assert "\n" not in message and source in message and "download" in message
    assert info.value.__cause__ is None


# ---------------------------------------------------------------------------- the comparison, end to end

BASELINE_MOTIONS = ["rain", "helicopter"]
TINY = {
    "motions": BASELINE_MOTIONS, "data.eval_prompts": "data/prompts/test_eval.csv",
    "world.videos_per_motion": 4, "world.frames": 8, "world.height": 32, "world.width": 48,
    "clips.frames": 8, "clips.height": 32, "clips.width": 48, "clips.clips_per_video": 1,
    "base_train.vae_steps": 5, "base_train.unet_steps": 5, "base_train.clip_steps": 5,
    "base_train.batch_size": 4, "base_train.unet_batch_size": 4,
    "train.steps": 3, "sample.ddim_steps": 2, "sample.seeds": [0, 1], "sample.batch_size": 2,
    "baselines.tune_a_video.steps": 3, "baselines.animatediff.steps": 6,
    "model.device": "cpu", "tracking.enabled": False,
}


@pytest.fixture(scope="module")
def baselines_project(tmp_path_factory):
    """A temp DVC project (this repo's dvc.yaml and code, 2 motions, tiny sizes) after the flow `lamp-baselines`."""
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    from lamp_model.config import write_overrides

    repo = Path(__file__).resolve().parents[1]
    root = tmp_path_factory.mktemp("baselines_project")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for d in ("lamp_model", "tasks", "flows"):
        shutil.copytree(repo / d, root / d, ignore=ignore)
    for f in ("dvc.yaml", "params.yaml"):
        shutil.copy(repo / f, root / f)
    (root / "data/prompts").mkdir(parents=True)
    (root / "data/prompts/test_eval.csv").write_text(
        "motion,prompt\nrain,rain on a blue car\nrain,rain over a red house\nhelicopter,a green helicopter\n")
    write_overrides(root / "params.yaml", TINY)
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "HF_HUB_OFFLINE": "1",
           "DVC_NO_ANALYTICS": "1"}

    def dvc(*args):
        out = subprocess.run([str(bin_dir / "dvc"), *args], cwd=root, env=env, capture_output=True, text=True,
                             timeout=900)
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-6000:]
        return out.stdout

    dvc("init", "--no-scm", "-q")
    # Through the Prefect flow (a temporary local API): every step is `dvc repro -s`, so afterwards
    # DVC must find nothing to do (test below).
    from prefect.settings import PREFECT_HOME, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    from flows.baselines import lamp_baselines

    old_path = os.environ["PATH"]
    os.environ["PATH"] = env["PATH"]  # the stages' `python` is this venv's
    try:
        with temporary_settings({PREFECT_HOME: str(tmp_path_factory.mktemp("prefect_home"))}), \
                prefect_test_harness(server_startup_timeout=180):
            result = lamp_baselines(str(root), gpu_limit=None)
    finally:
        os.environ["PATH"] = old_path
    assert result["table"].endswith("reports/baselines/table.md")
    return root, dvc


def test_baselines_stage_scores_four_methods_on_the_same_prompts_and_seeds(baselines_project):
    import json

    from tasks.baselines import METHODS

    root, _ = baselines_project
    metrics = json.loads((root / "reports/baselines/metrics.json").read_text())
    assert list(metrics["methods"]) == list(METHODS) and metrics["seeds"] == [0, 1]
    for method, summary in metrics["methods"].items():
        assert summary["n_videos"] == 3 * 2, method  # 3 prompts x 2 seeds, every method
        assert set(summary["per_motion"]) == set(BASELINE_MOTIONS)
        assert set(summary["per_seed"]) == {"0", "1"}
        for key in ("alignment", "consistency", "diversity", "motion_accuracy"):
            assert summary[key] is not None and summary[f"{key}_std"] is not None, (method, key)
        assert 0 <= summary["motion_accuracy"] <= 1
    table = (root / "reports/baselines/table.md").read_text()
    for name in ("LAMP", "Tune-A-Video", "Text2Video-Zero", "AnimateDiff"):
        assert table.count(f"| {name} |") == 2  # this run's row and the paper's
    assert "mean ± std over 2 seeds" in table
    gallery = (root / "reports/baselines/gallery.html").read_text()
    assert gallery.count("<tr><td>") == 2 and gallery.count("<img") == 2 * 4
    for method in METHODS[1:]:
        for motion in BASELINE_MOTIONS:
            assert (root / f"outputs/baselines/{method}/{motion}/index.csv").is_file()
    template = json.loads((root / "models/baselines/tune_a_video/rain/train_config.json").read_text())["template"]
    assert (root / "data/world/videos/rain" / template).is_file()  # one real training video, recorded
    assert (root / "models/baselines/animatediff/diffusion_pytorch_model.safetensors").is_file()


def test_baselines_rerun_is_a_no_op_and_stay_out_of_the_main_job(baselines_project):
    import json

    root, dvc = baselines_project
    assert json.loads(dvc("status", "--json", "baselines", "--with-deps")) == {}
    main_job = dvc("dag", "report", "--md")
    assert "baseline" not in main_job and "tune@rain" in main_job


def test_baseline_runs_are_tagged_and_kept_out_of_the_ablation_table(tmp_path):
    """A real MLflow store: the `baselines` stage run (tag method) feeds `lamp compare --baselines`;
    the ablation table still reads `metrics` runs only."""
    from pathlib import Path

    import mlflow
    from typer.testing import CliRunner

    from flows.compare import baseline_table, comparison_table, search_metric_runs
    from lamp.cli import app
    from lamp_model.config import load_params, write_overrides
    from tasks import tracking
    from tasks.baselines import METHODS

    (tmp_path / "params.yaml").write_text((Path(__file__).parents[1] / "params.yaml").read_text())
    write_overrides(tmp_path / "params.yaml", {"tracking.uri": f"sqlite:///{tmp_path / 'mlflow.db'}"})
    params = load_params(tmp_path / "params.yaml")
    metrics = {f"{m}/{k}": v for i, m in enumerate(METHODS) for k, v in
               (("alignment", 40.0 + i), ("motion_accuracy", 0.1 * i), ("n_videos", 48))}
    tracking.log_stage("baselines", params, tmp_path, {"method": "lamp+baselines", "metrics": metrics},
                       deps_hash="x")
    tracking.log_stage("metrics", params, tmp_path, {"metrics": {"motion_accuracy": 0.3}}, variant="no_tsm",
                       deps_hash="x")
    table = baseline_table(tmp_path)
    assert list(table.index) == list(METHODS)
    assert table.loc["animatediff", "alignment"] == 43.0 and table.loc["tune_a_video", "motion_accuracy"] == 0.1
    ablations = comparison_table(search_metric_runs(tmp_path))
    assert list(ablations.index) == ["no_tsm"]
    runs = mlflow.search_runs(search_all_experiments=True)
    assert set(runs["tags.method"]) == {"lamp+baselines", "lamp"}
    result = CliRunner().invoke(app, ["compare", "--baselines", "--root", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "text2video_zero" in result.stdout and "43.0" in result.stdout


def _digest(folder: Path) -> dict:
    """sha256 of every file under `folder`: the pipeline's outputs before and after a benchmark."""
    return {p.relative_to(folder): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_baseline_lr_is_chosen_on_validation_prompts_without_touching_the_test_outputs(baselines_project):
    """benchmarks/baseline_lr.py runs the stage code per rate into runs/, scores the validation videos and
    applies the pre-set rule; the test prompts and the pipeline's own outputs are left alone."""
    from benchmarks import baseline_lr

    root, _ = baselines_project
    validation = root / "data/prompts/val.csv"
    validation.write_text("motion,prompt\nrain,rain on a yellow hut\nhelicopter,a blue helicopter at night\n")

    before = (_digest(root / "outputs"), _digest(root / "models/baselines"))
    with pytest.raises(SystemExit, match="test"):
        baseline_lr.main(["--root", str(root), "--prompts", "data/prompts/test_eval.csv"])
    result = baseline_lr.main(["--root", str(root), "--prompts", "data/prompts/val.csv", "--methods",
                               "tune_a_video", "--lrs", "1e-3,1e-2", "--out", str(root / "lr.json")])
    assert (_digest(root / "outputs"), _digest(root / "models/baselines")) == before
    scores = result["methods"]["tune_a_video"]["scores"]
    assert set(scores) == {"0.001", "0.01"}
    for lr, s in scores.items():
        videos = root / s["run_dir"] / "outputs/baselines/tune_a_video"
        prompts = {r["prompt"] for m in BASELINE_MOTIONS
                   for r in csv.DictReader((videos / m / "index.csv").open())}
        assert prompts == {"rain on a yellow hut", "a blue helicopter at night"}, lr
        assert s["n_videos"] == 2 * 2  # one prompt per motion x sample.seeds [0, 1]
    best = max(s["motion_accuracy"] for s in scores.values())
    assert scores[f"{result['methods']['tune_a_video']['chosen_lr']:g}"]["motion_accuracy"] == best
    assert json.loads((root / "lr.json").read_text())["methods"]["tune_a_video"]["chosen_lr"] in (1e-3, 1e-2)


def test_baseline_lr_ties_go_to_the_rate_nearest_lamps():
    from benchmarks.baseline_lr import choose

    assert choose({3e-4: {"motion_accuracy": 0.5}, 3e-3: {"motion_accuracy": 0.25}}, 1e-3) == 3e-4
    assert choose({1e-4: {"motion_accuracy": 0.5}, 3e-3: {"motion_accuracy": 0.5}}, 1e-3) == 3e-3
    assert choose({1e-4: {"motion_accuracy": 0.5}, 1e-3: {"motion_accuracy": 0.5}}, 1e-3) == 1e-3


def test_baseline_seeds_trains_and_samples_every_method_once_per_seed(baselines_project):
    """benchmarks/baseline_seeds.py: one run of each method per seed (its stage code, into runs/), the
    table's row = mean ± std over the seeds; the pipeline's own outputs are not touched."""
    from benchmarks import baseline_seeds

    root, _ = baselines_project

    before = _digest(root / "outputs")
    result = baseline_seeds.main(["--root", str(root), "--seeds", "0,1"])
    assert _digest(root / "outputs") == before  # params.yaml samples seeds [0, 1]: no seed is the pipeline's
    assert result["seeds"] == [0, 1] and list(result["methods"]) == ["lamp", "tune_a_video", "text2video_zero",
                                                                      "animatediff"]
    for method, row in result["methods"].items():
        assert row["n_videos"] == 3 * 2, method  # 3 test prompts x one sample per seed x 2 seeds
        assert set(row["per_seed"]) == {"0", "1"} and row["motion_accuracy_std"] is not None
        per_seed = [row["per_seed"][s]["motion_accuracy"] for s in ("0", "1")]
        assert row["motion_accuracy_std"] == pytest.approx(np.std(per_seed), abs=1e-4)  # population std
        for seed in (0, 1):
            index = root / f"runs/baseline_seeds/seed{seed}" / (
                "outputs/videos/rain" if method == "lamp" else f"outputs/baselines/{method}/rain") / "index.csv"
            assert {r["seed"] for r in csv.DictReader(index.open())} == {str(seed)}, (method, seed)
    tav = [json.loads((root / f"runs/baseline_seeds/seed{s}/models/baselines/tune_a_video/rain/train_config.json")
                      .read_text())["settings"]["template_seed"] for s in (0, 1)]
    assert tav == [0, 1]


def test_a_methods_spread_over_seeds_is_the_population_std_like_every_other_seed_figure():
    """over_seeds' std is the one flows.compare and make_run_seeds report (ddof 0), so a baseline's ±
    and LAMP's ablation ± mean the same thing; one seed has no spread."""
    from tasks.baselines import KEYS, PER_MOTION_KEYS, over_seeds

    def seed_row(acc: float) -> dict:
        row = {k: acc for k in KEYS}
        row.update(n_videos=2, first_frame_fidelity=90.0,
                   per_motion={"rain": {"n_videos": 2, **{k: acc for k in PER_MOTION_KEYS}}})
        return row

    accs = [0.25, 0.5, 0.125]
    row = over_seeds({str(i): seed_row(a) for i, a in enumerate(accs)})
    assert row["motion_accuracy"] == pytest.approx(np.mean(accs))
    assert row["motion_accuracy_std"] == pytest.approx(np.std(accs))
    assert over_seeds({"0": seed_row(0.5)})["motion_accuracy_std"] is None


def test_baseline_seeds_reads_the_pipeline_only_for_the_seed_params_yaml_sets_everywhere():
    from benchmarks.baseline_seeds import is_pipelines_seed
    from lamp_model.config import load_params

    repo = Path(__file__).resolve().parents[1]
    params = load_params(repo / "params.yaml", {"train.seed": 0, "sample.seeds": [0],
                                                "baselines.tune_a_video.template_seed": 0,
                                                "baselines.animatediff.seed": 0})
    assert is_pipelines_seed(params, 0) and not is_pipelines_seed(params, 1)
    two = load_params(repo / "params.yaml", {"train.seed": 0, "sample.seeds": [0, 1]})
    assert not is_pipelines_seed(two, 0)
