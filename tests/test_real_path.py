"""A rehearsal of the real-weights path, as the README tells a GPU user to run it.

Every hub repo configs/real.yaml names (SD v1.4, SD-XL, the SD-XL canny ControlNet,
open_clip's ViT-L-14 "openai" repo, AnimateDiff's motion module) is replaced by a tiny
stand-in with the real layout, placed under the real repo id in a Hugging Face hub cache
(tests/real_standins.py). Then,
in a temp DVC project: `scripts/merge_params.py configs/real.yaml`, tiny sizes and steps
(the only overrides, like `dvc exp run -S`), four world videos per motion copied in as
the user's data/videos/<motion>/*.mp4, the paper's prompts of data/prompts/eval.csv,
`dvc repro report` (SD-XL first frames, tuning with bf16 autocast + gradient checkpointing,
fp16 sampling, open_clip metrics, report), a second run that does nothing,
`lamp edit` with the SD-XL ControlNet, and the AnimateDiff baseline with the paper's
motion module (mm_sd_v14.ckpt by its hub URL). HF_HUB_OFFLINE=1 throughout: the ids resolve from
the cache exactly as after a first download.

Not rehearsed here (needs real weights and a GPU): the ViT-L-14 name lookup (the stand-in
is the same model's hf-hub repo), CUDA kernels and memory, fp16 numerics at full size,
and whether the real models produce good videos.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from lamp_model.config import load_params, write_overrides
from lamp_model.video import read_video, write_mp4
from lamp_model.world import render_video, training_contents

sys.path.insert(0, str(Path(__file__).parent))
from real_standins import OPEN_CLIP_VIT_L14, SD14, SDXL, SDXL_CANNY, build_hub_cache  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
MOTIONS = ["horse_run", "rain"]
F, H, W = 8, 64, 96

# Only sizes, steps, the motions and the CLIP repo differ from configs/real.yaml.
TINY = {
    "motions": MOTIONS,
    "clips.frames": F, "clips.height": H, "clips.width": W, "clips.clips_per_video": 1,
    "train.steps": 2, "train.checkpoint_every": 1,
    "sample.ddim_steps": 2,
    "model.first_frame_steps": 2,
    "metrics.clip_model": f"hf-hub:{OPEN_CLIP_VIT_L14}",  # the name ViT-L-14 fixes a 428 M-parameter model
    "metrics.clip_pretrained": "",
}


def _run(args, root: Path, env: dict, timeout: int = 900) -> subprocess.CompletedProcess:
    out = subprocess.run([str(a) for a in args], cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{args}:\n{out.stdout[-4000:]}\n{out.stderr[-8000:]}"
    return out


@pytest.fixture(scope="module")
def real_project(tmp_path_factory):
    """The temp project after `dvc repro` of the real preset on the stand-ins; yields (root, env, repro output)."""
    tmp = tmp_path_factory.mktemp("real_path")
    cache = tmp / "hub"
    build_hub_cache(cache)
    root = tmp / "project"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for d in ("lamp_model", "tasks", "lamp", "scripts", "configs"):
        shutil.copytree(REPO / d, root / d, ignore=ignore)
    for f in ("dvc.yaml", "params.yaml", "data/prompts/eval.csv"):
        (root / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / f, root / f)
    for motion in MOTIONS:  # the user's videos: 4 per motion, any size (fitted to clips.height x width)
        for i, content in enumerate(training_contents(motion, 4)):
            write_mp4(render_video(motion, content, frames=12, height=72, width=128, seed=i),
                      root / f"data/videos/{motion}/{motion}_{i}.mp4")
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "HF_HUB_CACHE": str(cache),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "DVC_NO_ANALYTICS": "1", "DO_NOT_TRACK": "1",
           "MLFLOW_DISABLE_TELEMETRY": "true", "PYTHONUNBUFFERED": "1"}
    env.pop("LAMP_MLFLOW_PARENT_RUN_ID", None)

    # The README's steps: merge the preset (validated, comments kept), then run the pipeline.
    _run([sys.executable, "scripts/merge_params.py", "configs/real.yaml"], root, env)
    write_overrides(root / "params.yaml", TINY)
    _run([BIN / "dvc", "init", "--no-scm", "-q"], root, env)
    repro = _run([BIN / "dvc", "repro", "report"], root, env)
    return root, env, repro.stdout + repro.stderr


def test_the_preset_names_the_real_repos(real_project):
    """The ids the rehearsal resolved are the preset's own (only sizes, steps and the CLIP repo overridden)."""
    root, _, _ = real_project
    p = load_params(root / "params.yaml")
    assert (p.model.base, p.model.sdxl, p.model.first_frame) == (SD14, SDXL, "sdxl")
    assert (p.data.source, p.data.videos_dir, p.data.eval_prompts) == ("folder", "data/videos", "data/prompts/eval.csv")
    assert (p.model.dtype, p.train.mixed_precision, p.train.gradient_checkpointing) == ("float16", "bf16", True)


def test_dvc_repro_runs_every_stage_on_the_real_layout(real_project):
    """First frames from SD-XL, tuning, fp16 generation, open_clip metrics and the report, from hub ids offline."""
    root, env, log = real_project
    p = load_params(root / "params.yaml")
    lock = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    for stage in ("world", "base", "metrics", "report"):
        assert stage in lock, stage
    for motion in MOTIONS:
        for stage in ("extract", "cache", "tune", "generate"):
            assert f"{stage}@{motion}" in lock
        train_config = json.loads((root / f"models/motions/{motion}/train_config.json").read_text())
        assert train_config["base"] == SD14
        assert train_config["train"]["mixed_precision"] == "bf16"
        assert train_config["train"]["gradient_checkpointing"] is True

    with open(root / "data/prompts/eval.csv", newline="") as f:
        prompts = [r for r in csv.DictReader(f) if r["motion"] in MOTIONS]
    metrics = json.loads((root / "reports/metrics.json").read_text())
    assert metrics["overall"]["n_videos"] == len(prompts) * len(p.sample.seeds) == 12
    for motion in MOTIONS:
        with open(root / f"outputs/videos/{motion}/index.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        assert sorted(r["prompt"] for r in rows) == sorted(r["prompt"] for r in prompts if r["motion"] == motion)
        for row in rows:
            frames, _ = read_video(root / f"outputs/videos/{motion}" / row["mp4"])
            assert frames.shape == (F, H, W, 3)
            first = np.asarray(Image.open(root / f"outputs/videos/{motion}" / row["first_frame"]))
            assert first.shape == (H, W, 3)  # SD-XL's frame 0, rendered at its native size and fitted
    # The world's renderer and base training are not used with real weights: notes, not models.
    assert not (root / "models/world/base").exists() and (root / "models/world/NOT_USED.txt").is_file()
    assert (root / "reports/summary.md").is_file() and (root / "reports/gallery.html").is_file()


def test_second_dvc_repro_is_a_no_op(real_project):
    root, env, _ = real_project
    status = _run([BIN / "dvc", "status", "--with-deps", "report", "--json"], root, env).stdout
    assert json.loads(status) == {}


def test_lamp_edit_with_the_sdxl_canny_controlnet(real_project):
    """`lamp edit` on a user video: first frame redrawn by SD-XL + its canny ControlNet (the preset's
    first_frame: sdxl picks it), tuned, inverted and regenerated at the preset's clip size."""
    root, env, _ = real_project
    out = root / "outputs/edit"
    result = _run([sys.executable, "-m", "lamp", "edit", "data/videos/rain/rain_0.mp4", "--prompt",
                   "rain on a red car", "--frames", F, "--stride", 1, "--tune-steps", 1, "--steps", 2,
                   "--out", out], root, env)
    assert SDXL_CANNY in result.stderr  # the editor it used
    edited, _ = read_video(out / "rain_0_edited.mp4")
    source, _ = read_video(out / "rain_0_source.mp4")
    assert edited.shape == source.shape == (F, H, W, 3)
    assert not np.array_equal(edited, source)


def test_animatediff_baseline_loads_the_papers_motion_module_by_its_url(real_project):
    """`dvc repro baseline_animatediff` with the preset's adapter: AnimateDiff's original mm_sd_v14.ckpt,
    named by its hub URL, converted by diffusers' single-file loader (its config from the v1 adapter
    repo) and run on the SD v1.4 UNet; text-only videos for every test prompt, nothing trained."""
    root, env, _ = real_project
    p = load_params(root / "params.yaml")
    assert p.baselines.animatediff.adapter == "https://huggingface.co/guoyww/animatediff/blob/main/mm_sd_v14.ckpt"
    _run([BIN / "dvc", "repro", "-s", "baseline_animatediff"], root, env)
    record = json.loads((root / "models/baselines/animatediff/adapter.json").read_text())
    assert record == {"adapter": p.baselines.animatediff.adapter, "trained_here": False}
    assert not (root / "models/baselines/animatediff/diffusion_pytorch_model.safetensors").exists()
    with open(root / "data/prompts/eval.csv", newline="") as f:
        prompts = [r for r in csv.DictReader(f) if r["motion"] in MOTIONS]
    for motion in MOTIONS:
        with open(root / f"outputs/baselines/animatediff/{motion}/index.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        assert len(rows) == len([r for r in prompts if r["motion"] == motion]) * len(p.sample.seeds)
        frames, _ = read_video(root / f"outputs/baselines/animatediff/{motion}" / rows[0]["mp4"])
        assert frames.shape == (F, H, W, 3)
        assert not rows[0]["first_frame"]  # from the prompt alone
    status = _run([BIN / "dvc", "status", "baseline_animatediff", "--json"], root, env).stdout
    assert json.loads(status) == {}


def test_the_motion_module_stand_in_holds_the_v1_adapters_weights(real_project, tmp_path):
    """The single-file conversion is lossless on the stand-in: mm_sd_v14.ckpt by URL == the diffusers
    folder of guoyww/animatediff-motion-adapter-v1-5 (both hold the same weights in the stand-in cache)."""
    root, env, _ = real_project
    code = ("import torch; from diffusers import MotionAdapter;"
            "from lamp_model.baselines.animatediff import load_adapter, SD14_MOTION_MODULE;"
            "a = load_adapter(SD14_MOTION_MODULE).state_dict();"
            "b = MotionAdapter.from_pretrained('guoyww/animatediff-motion-adapter-v1-5').state_dict();"
            "assert set(a) == set(b), set(a) ^ set(b);"
            "print(len(a), max(float((a[k] - b[k]).abs().max()) for k in a))")
    out = _run([sys.executable, "-c", code], root, env).stdout.split()
    assert int(out[-2]) > 100 and float(out[-1]) == 0.0
