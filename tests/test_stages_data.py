"""The data stages (world, extract, cache) end to end on tiny real videos and a tiny base model."""
import csv
import json
import logging
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.numpy import load_file

from lamp_model import world
from lamp_model.config import load_params
from lamp_model.errors import ModelUnavailableError
from lamp_model.loading import load_sd_components, load_vae
from lamp_model.pipeline import LampPipeline
from lamp_model.small import build_sd
from lamp_model.unet import LampUNet
from lamp_model.video import FFMPEG, probe, write_mp4
from tasks import cache, extract
from tasks import world as world_stage
from tasks.common import StageError, read_eval_prompts

REPO = Path(__file__).resolve().parents[1]
MOTION = "helicopter"

TINY = {
    "data.source": "folder", "data.videos_dir": "data/videos", "data.min_videos": 2,
    "world.videos_per_motion": 1, "world.frames": 4, "world.height": 32, "world.width": 48,
    "clips.frames": 4, "clips.clips_per_video": 2, "clips.height": 32, "clips.width": 48,
    "model.device": "cpu", "tracking.enabled": False,
}


def tiny_params(**overrides):
    return load_params(REPO / "params.yaml", {**TINY, **overrides})


def ffmpeg(*args):
    subprocess.run([FFMPEG, "-hide_banner", "-loglevel", "error", "-y", *map(str, args)], check=True)


def world_video(path, i=0, frames=8, height=32, width=48):
    """A short motion-world video (content i of the helicopter motion); returns its frames."""
    content = world.training_contents(MOTION, i + 1, seed=0)[i]
    video = world.render_video(MOTION, content, frames=frames, height=height, width=width, seed=i)
    write_mp4(video, path, fps=8)
    return video


def motion_folder(root, n=3, frames=8):
    folder = root / "data/videos" / MOTION
    videos = [world_video(folder / f"{i:02d}.mp4", i, frames) for i in range(n)]
    return folder, videos


# ------------------------------------------------------------------ world

def test_world_stage_renders_every_motion_and_eval_prompts(tmp_path):
    result = world_stage.run(tiny_params(**{"data.source": "world"}), tmp_path)

    videos = tmp_path / "data/world/videos"
    assert sorted(p.name for p in videos.iterdir()) == sorted(world.MOTIONS)
    for motion in world.MOTIONS:
        rows = list(csv.DictReader(open(videos / motion / "captions.csv")))
        assert [r["file"] for r in rows] == ["00.mp4"] and rows[0]["caption"]
        info = probe(videos / motion / "00.mp4")
        assert (info.n_frames, info.height, info.width, info.fps) == (4, 32, 48, 8)
    prompts = read_eval_prompts(tmp_path / "data/prompts/world_eval.csv", list(world.MOTIONS))
    assert sorted(prompts) == sorted(world.MOTIONS) and all(len(p) == 6 for p in prompts.values())
    assert result["videos"] == 8 and result["eval_prompts"] == 48


def test_world_stage_in_folder_mode_writes_placeholder_and_prompts(tmp_path):
    world_stage.run(tiny_params(), tmp_path)
    videos = tmp_path / "data/world/videos"
    assert [p.name for p in videos.iterdir()] == ["README.txt"]
    assert "not used" in (videos / "README.txt").read_text()
    assert len(read_eval_prompts(tmp_path / "data/prompts/world_eval.csv")) == 8


def test_world_stage_rejects_motions_the_world_cannot_render(tmp_path):
    with pytest.raises(StageError, match="dance.*data.source: folder"):
        world_stage.run(tiny_params(**{"data.source": "world", "motions": ["helicopter", "dance"]}), tmp_path)


# ------------------------------------------------------------------ extract

def test_extract_writes_clips_and_manifest(tmp_path):
    folder, videos = motion_folder(tmp_path)
    with open(folder / "captions.csv", "w", newline="") as f:  # 02.mp4 has no row: motion prompt
        csv.writer(f).writerows([("file", "caption"), ("00.mp4", "a red circle flies"), ("01.mp4", "a star")])

    result = extract.run(tiny_params(), tmp_path, MOTION)

    out = tmp_path / "data/clips" / MOTION
    clips = load_file(str(out / "clips.safetensors"))["frames"]
    assert clips.dtype == np.uint8 and clips.shape == (6, 4, 32, 48, 3)
    manifest = json.loads((out / "manifest.json").read_text())
    entries = manifest["clips"]
    assert [e["file"] for e in entries] == ["00.mp4"] * 2 + ["01.mp4"] * 2 + ["02.mp4"] * 2
    assert [e["caption"] for e in entries[::2]] == ["a red circle flies", "a star", "helicopter"]
    # 8 frames, clips of 4: starts spread to 0 and 4
    assert [e["frames"] for e in entries[:2]] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert all(e["fps"] == pytest.approx(8) and e["source_frames"] == 8 for e in entries)
    # same size as the clips: each clip is the video's frames at those indices (up to h264 loss)
    for clip, e in zip(clips, entries):
        source = videos[int(e["file"][:2])][e["frames"]]
        assert np.abs(clip.astype(int) - source).mean() < 4
    assert result["clips"] == 6 and result["videos"] == 3 and result["skipped"] == []

    before = (out / "clips.safetensors").read_bytes()
    extract.run(tiny_params(), tmp_path, MOTION)
    assert (out / "clips.safetensors").read_bytes() == before  # deterministic


def test_captions_ignored_when_disabled(tmp_path):
    folder, _ = motion_folder(tmp_path, n=2)
    (folder / "captions.csv").write_text("file,caption\n00.mp4,a star\n")
    extract.run(tiny_params(**{"data.use_captions": False}), tmp_path, MOTION)
    manifest = json.loads((tmp_path / "data/clips" / MOTION / "manifest.json").read_text())
    assert {e["caption"] for e in manifest["clips"]} == {"helicopter"}


def test_bad_captions_header_is_a_stage_error(tmp_path):
    folder, _ = motion_folder(tmp_path, n=2)
    (folder / "captions.csv").write_text("name,text\n00.mp4,a star\n")
    with pytest.raises(StageError, match=r"captions.csv: needs the columns file,caption"):
        extract.run(tiny_params(), tmp_path, MOTION)


def _disc_video(path, h=60, w=120, r=20):
    """A white disc of radius r centred on a wide black frame."""
    y, x = np.mgrid[:h, :w]
    disc = ((y - h / 2 + 0.5) ** 2 + (x - w / 2 + 0.5) ** 2 <= r * r).astype(np.uint8) * 255
    write_mp4(np.repeat(disc[None, :, :, None], 3, axis=-1).repeat(4, axis=0), path)


def _extent(frame):
    """Height and width of the bright region."""
    ys, xs = np.nonzero(frame[..., 0] > 127)
    return ys.max() - ys.min() + 1, xs.max() - xs.min() + 1


@pytest.mark.parametrize("policy, expect", [("crop", (21, 21)), ("resize", (21, 11))])
def test_crop_policy_never_distorts(tmp_path, policy, expect):
    folder = tmp_path / "data/videos" / MOTION
    for i in range(2):
        _disc_video(folder / f"{i}.mp4")
    params = tiny_params(**{"clips.height": 32, "clips.width": 32, "clips.clips_per_video": 1,
                            "clips.resize_policy": policy})
    extract.run(params, tmp_path, MOTION)
    frame = load_file(str(tmp_path / "data/clips" / MOTION / "clips.safetensors"))["frames"][0, 0]
    # 120x60 -> 32x32: crop scales by 32/60 (diameter 40 -> 21.3) on both axes; resize squashes x to 32/120
    h, w = _extent(frame)
    assert abs(h - expect[0]) <= 1 and abs(w - expect[1]) <= 1


def test_bad_files_are_skipped_with_reasons(tmp_path, caplog):
    folder, _ = motion_folder(tmp_path, n=2)
    good = (folder / "00.mp4").read_bytes()
    # fixed bytes: random ones are sometimes probed as a (video-less) container by ffmpeg
    (folder / "corrupt.mp4").write_bytes(random.Random(0).randbytes(2000))
    (folder / "truncated.mp4").write_bytes(good[: len(good) // 2])
    (folder / "notes.txt").write_text("filmed on a tuesday")
    world_video(folder / "short.mp4", frames=2)  # a clip needs 4 frames

    with caplog.at_level(logging.WARNING, logger="lamp"):
        result = extract.run(tiny_params(), tmp_path, MOTION)

    reasons = {s["file"]: s["reason"] for s in result["skipped"]}
    assert set(reasons) == {"corrupt.mp4", "truncated.mp4", "notes.txt", "short.mp4"}
    assert ("not a readable video" in reasons["corrupt.mp4"] or "has no video stream" in reasons["corrupt.mp4"]) \
        and "remove or replace it" in reasons["corrupt.mp4"]
    assert "truncated" in reasons["truncated.mp4"] or "not a readable" in reasons["truncated.mp4"]
    assert "not a video file" in reasons["notes.txt"]
    assert "too short" in reasons["short.mp4"] and "2 frames" in reasons["short.mp4"]
    for name in reasons:
        assert any(name in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    manifest = json.loads((tmp_path / "data/clips" / MOTION / "manifest.json").read_text())
    assert manifest["skipped"] == result["skipped"] and result["videos"] == 2

    # too few usable videos: a clear error listing the skipped files; earlier clips are kept
    clips_file = tmp_path / "data/clips" / MOTION / "clips.safetensors"
    before = clips_file.read_bytes()
    with pytest.raises(StageError) as err:
        extract.run(tiny_params(**{"data.min_videos": 3}), tmp_path, MOTION)
    msg = str(err.value)
    assert "2 usable videos" in msg and "data.min_videos is 3" in msg
    assert all(name in msg for name in reasons) and "too short" in msg
    assert clips_file.read_bytes() == before


def test_missing_and_empty_folders_are_stage_errors(tmp_path):
    with pytest.raises(StageError, match=rf"data/videos/{MOTION}: no such folder; put the training videos"):
        extract.run(tiny_params(), tmp_path, MOTION)
    with pytest.raises(StageError, match="no such folder; render the motion world first: `dvc repro world`"):
        extract.run(tiny_params(**{"data.source": "world"}), tmp_path, MOTION)
    folder = tmp_path / "data/videos" / MOTION
    folder.mkdir(parents=True)
    (folder / "captions.csv").write_text("file,caption\n")
    with pytest.raises(StageError, match=rf"data/videos/{MOTION}: folder is empty"):
        extract.run(tiny_params(), tmp_path, MOTION)


def test_real_world_videos(tmp_path):
    """Odd size + audio, rotation metadata, variable frame rate, other containers."""
    folder = tmp_path / "data/videos" / MOTION
    folder.mkdir(parents=True)
    ffmpeg("-f", "lavfi", "-i", "testsrc=s=101x75:r=10:d=1", "-f", "lavfi", "-i", "sine=d=1",
           "-c:v", "libx264", "-pix_fmt", "yuv444p", "-c:a", "aac", "-shortest", folder / "odd_audio.mov")
    # landscape 64x48, top half white; displayed rotated by 90 degrees
    half = np.zeros((6, 48, 64, 3), np.uint8)
    half[:, :24] = 255
    write_mp4(half, tmp_path / "plain.mp4")
    ffmpeg("-display_rotation", 90, "-i", tmp_path / "plain.mp4", "-c", "copy", folder / "rotated.mp4")
    ffmpeg("-f", "lavfi", "-i", "testsrc=s=64x48:r=30:d=1,select='not(between(n,5,15))'", "-fps_mode", "vfr",
           "-c:v", "libx264", "-pix_fmt", "yuv420p", folder / "vfr.mp4")
    ffmpeg("-f", "lavfi", "-i", "testsrc=s=80x60:r=8:d=1", "-c:v", "libvpx-vp9", folder / "clip.webm")

    params = tiny_params(**{"data.min_videos": 4, "clips.height": 32, "clips.width": 32,
                            "clips.clips_per_video": 1})
    result = extract.run(params, tmp_path, MOTION)

    assert result["skipped"] == [] and result["videos"] == 4
    clips = load_file(str(tmp_path / "data/clips" / MOTION / "clips.safetensors"))["frames"]
    assert clips.shape == (4, 4, 32, 32, 3)
    entries = {e["file"]: e for e in json.loads((tmp_path / "data/clips" / MOTION / "manifest.json")
                                                .read_text())["clips"]}
    assert entries["odd_audio.mov"]["source_frames"] == 10
    # vfr: 19 of 30 frames kept over 1 s -> evenly spaced at the average rate, not 30 fps
    assert entries["vfr.mp4"]["fps"] < 25 and entries["vfr.mp4"]["source_frames"] < 25
    # rotation applied: the white half is now a left/right half, not the top
    rot = clips[sorted(entries).index("rotated.mp4")][0].astype(float)
    left, right = rot[:, :16].mean(), rot[:, 16:].mean()
    top, bottom = rot[:16].mean(), rot[16:].mean()
    assert abs(left - right) > 200 and abs(top - bottom) < 30


def test_stage_entry_point_reports_bad_input_in_one_line(tmp_path):
    params = tiny_params().model_dump()
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    proc = subprocess.run([sys.executable, "-m", "tasks.extract", "--motion", MOTION, "--root", str(tmp_path)],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "no such folder" in errors[0] and MOTION in errors[0]


# ------------------------------------------------------------------ cache

@pytest.fixture(scope="module")
def base(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sd")
    build_sd(folder / "tok").save_pretrained(folder / "base")
    return folder / "base"


def test_cache_latents_match_the_pipeline(tmp_path, base):
    motion_folder(tmp_path, n=2)
    params = tiny_params(**{"model.base": str(base)})
    extract.run(params, tmp_path, MOTION)
    result = cache.run(params, tmp_path, MOTION)

    out = tmp_path / "data/latents" / MOTION
    latents = load_file(str(out / "latents.safetensors"))["latents"]
    assert latents.dtype == np.float32 and latents.shape == (4, 4, 4, 4, 6)  # [n, c, f, h/8, w/8]
    manifest = json.loads((tmp_path / "data/clips" / MOTION / "manifest.json").read_text())
    assert json.loads((out / "captions.json").read_text()) == [e["caption"] for e in manifest["clips"]]
    assert result["shape"] == [4, 4, 4, 4, 6]

    sd = load_sd_components(str(base))
    pipe = LampPipeline(vae=sd.vae, text_encoder=sd.text_encoder, tokenizer=sd.tokenizer,
                        unet=LampUNet.from_unet2d(sd.unet), scheduler=sd.scheduler)
    clips = load_file(str(tmp_path / "data/clips" / MOTION / "clips.safetensors"))["frames"]
    expected = pipe.encode_frames(clips[1]).permute(1, 0, 2, 3)  # [f, c, h, w] -> [c, f, h, w]
    torch.testing.assert_close(torch.from_numpy(latents[1]), expected, rtol=1e-5, atol=1e-5)
    assert latents.std() > 0

    before = (out / "latents.safetensors").read_bytes()
    cache.run(params, tmp_path, MOTION)
    assert (out / "latents.safetensors").read_bytes() == before


def test_cache_without_clips_says_to_run_extract(tmp_path, base):
    with pytest.raises(StageError, match="run the extract stage first"):
        cache.run(tiny_params(**{"model.base": str(base)}), tmp_path, MOTION)


def test_load_vae_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(ModelUnavailableError, match="cannot load the Stable Diffusion v1.x VAE"):
        load_vae(str(tmp_path / "no_such_model"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelUnavailableError, match="does not hold a diffusers"):
        load_vae(str(tmp_path / "empty"))


def test_load_vae_loads_only_the_vae(base):
    vae = load_vae(str(base))
    assert type(vae).__name__ == "AutoencoderKL" and not any(p.requires_grad for p in vae.parameters())
