"""scripts/merge_params.py: the documented way to switch params.yaml to real weights."""
import shutil
import subprocess
import sys
from pathlib import Path

from lamp_model.config import load_params

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts/merge_params.py"


def merge(overlay: Path, params: Path):
    return subprocess.run([sys.executable, str(SCRIPT), str(overlay), "--params", str(params)],
                          capture_output=True, text=True, timeout=60)


def test_real_overlay_gives_the_real_preset_and_keeps_comments(tmp_path):
    params = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", params)
    out = merge(ROOT / "configs/real.yaml", params)
    assert out.returncode == 0, out.stderr
    p = load_params(params)
    assert p.model.base == "CompVis/stable-diffusion-v1-4"
    assert (p.clips.height, p.clips.width) == (320, 512)
    assert p.metrics.clip_model == "ViT-L-14" and p.metrics.clip_pretrained == "openai"
    assert p.sample.alpha == 0.2  # untouched values stay
    # bf16 autocast on the GPU; the shipped motion world trains in fp32 (autocast now acts on CPUs too)
    assert p.train.mixed_precision == "bf16"
    assert load_params(ROOT / "params.yaml").train.mixed_precision == "no"
    assert "# real: 3.0e-5 (paper)" in params.read_text()  # comments survive


def test_world_16x24_overlay_gives_finer_latents_frame_positions_and_longer_tuning(tmp_path):
    params = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", params)
    assert load_params(params).lamp.temporal_positions is False  # the paper's default
    out = merge(ROOT / "configs/world_16x24.yaml", params)
    assert out.returncode == 0, out.stderr
    p, shipped = load_params(params), load_params(ROOT / "params.yaml")
    assert p.base_train.vae_channels == [32, 64, 64] and p.lamp.temporal_positions is True
    assert (p.base_train.vae_steps, p.base_train.unet_steps) == (600, 1500)  # the base it was measured on
    assert p.train.steps == 900 and p.train.batch_size == shipped.train.batch_size
    assert p.model.base == shipped.model.base  # still the motion world


def test_merge_changes_only_the_overlay_lines(tmp_path):
    """Every line the overlay does not set is written back as it was (comments, `null`s, quotes)."""
    params = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", params)
    before = params.read_text().splitlines()
    assert any(line.split("#")[0].rstrip().endswith(": null") for line in before)  # an unset value to keep
    overlay = tmp_path / "one.yaml"
    overlay.write_text("train:\n  steps: 123\n")
    assert merge(overlay, params).returncode == 0
    after = params.read_text().splitlines()
    changed = [(a, b) for a, b in zip(before, after) if a != b]
    assert len(after) == len(before) and len(changed) == 1, changed
    assert changed[0][1].split("#")[0].split() == ["steps:", "123"]


def test_invalid_overlay_writes_nothing(tmp_path):
    params = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", params)
    before = params.read_text()
    overlay = tmp_path / "bad.yaml"
    overlay.write_text("train:\n  lr: -1\n")
    out = merge(overlay, params)
    assert out.returncode == 1
    assert "train.lr" in out.stderr and "-1" in out.stderr
    assert params.read_text() == before
