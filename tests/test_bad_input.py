"""Bad input ends with one clear line naming the file (and line) and what to do, never a traceback.

Known cases (captions.csv that is not UTF-8, broken, names missing or duplicated videos; an OS
error while reading a video), then property-based fuzzing of every reader of user files: captions,
the eval prompts csv, params.yaml and videos cut at random byte offsets. Each fuzz test prints
how many inputs it tried (`pytest -s` shows it). Hypothesis runs derandomized (the same inputs in
every run, so CI cannot flake) and keeps no example database.
"""
from __future__ import annotations

import errno
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lamp_model import world
from lamp_model.config import MOTIONS, ParamsError, load_params
from lamp_model.video import VideoError, read_video, write_mp4
from tasks import extract
from tasks.common import StageError, read_captions, read_eval_prompts, stage_main

REPO = Path(__file__).resolve().parents[1]
MOTION = "helicopter"
TINY = {
    "data.source": "folder", "data.videos_dir": "data/videos", "data.min_videos": 2,
    "clips.frames": 4, "clips.clips_per_video": 1, "clips.height": 32, "clips.width": 48,
    "model.device": "cpu", "tracking.enabled": False,
}
FUZZ = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def tiny_params(**overrides):
    return load_params(REPO / "params.yaml", {**TINY, **overrides})


@pytest.fixture(scope="module")
def clip_video():
    content = world.training_contents(MOTION, 1, seed=0)[0]
    return world.render_video(MOTION, content, frames=8, height=32, width=48, seed=0)


def motion_folder(root: Path, video, n=2) -> Path:
    folder = root / "data/videos" / MOTION
    folder.mkdir(parents=True)
    for i in range(n):
        write_mp4(video, folder / f"{i:02d}.mp4", fps=8)
    return folder


def assert_one_clear_line(message: str, path: Path, *fragments: str) -> None:
    assert "\n" not in message and message.startswith(str(path)), message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


# -- captions.csv --------------------------------------------------------------------------------
@pytest.mark.parametrize("content, fragments", [
    ("file,caption\n00.mp4,un caf\xe9\n".encode("latin-1"), ["not UTF-8 text (byte 0xe9", "save it as UTF-8"]),
    (b'file,caption\n00.mp4,"a star\n01.mp4,rain\n', [":2: not valid CSV (unexpected end of data)",
                                                       "data.use_captions: false"]),
    (b"file,caption\n00.mp4,a star\n02.mp4,rain\n", [":3: names 02.mp4, which is not in",
                                                    "fix the file name or remove the row"]),
    (b"file,caption\n00.mp4,a star\n01.mp4,rain\n00.mp4,a moon\n",
     [":4: 00.mp4 is listed twice (first on line 2); keep one row per video"]),
])
def test_bad_captions_stop_extract_with_one_line_before_writing_anything(tmp_path, clip_video, content,
                                                                         fragments):
    folder = motion_folder(tmp_path, clip_video)
    (folder / "captions.csv").write_bytes(content)
    with pytest.raises(StageError) as e:
        extract.run(tiny_params(), tmp_path, MOTION)
    assert_one_clear_line(str(e.value), folder / "captions.csv", *fragments)
    assert not (tmp_path / "data/clips").exists()


def test_bad_captions_through_the_stage_entry_point(tmp_path, clip_video, capsys):
    """What `dvc repro` runs: exit code 1 and one `error:` line on stderr; earlier outputs stay."""
    folder = motion_folder(tmp_path, clip_video)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(tiny_params().model_dump()))
    stage_main(extract.run, per_motion=True, argv=["--motion", MOTION, "--root", str(tmp_path)])
    before = (tmp_path / "data/clips" / MOTION / "clips.safetensors").read_bytes()
    (folder / "captions.csv").write_bytes(b"file,caption\n00.mp4,\xff\xfe\n")
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        stage_main(extract.run, per_motion=True, argv=["--motion", MOTION, "--root", str(tmp_path)])
    assert exit_.value.code == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith(f"error: {folder / 'captions.csv'}: not UTF-8 text"), err
    assert (tmp_path / "data/clips" / MOTION / "clips.safetensors").read_bytes() == before


def test_world_captions_naming_a_missing_video_stop_the_base_stage(tmp_path, clip_video):
    from tasks import base

    params = tiny_params(**{"data.source": "world", "motions": [MOTION]})
    folder = tmp_path / "data/world/videos" / MOTION
    folder.mkdir(parents=True)
    write_mp4(clip_video, folder / "00.mp4", fps=8)
    (folder / "captions.csv").write_text("file,caption\n00.mp4,a star\n01.mp4,a moon\n")
    with pytest.raises(StageError) as e:
        base.run(params, tmp_path)
    assert_one_clear_line(str(e.value), folder / "captions.csv", ":3: names 01.mp4, which is not in")
    assert not (tmp_path / "models").exists()


# -- an OS error while reading a video -----------------------------------------------------------
def test_os_error_while_reading_a_video_is_one_line_and_extract_skips_the_file(tmp_path, clip_video,
                                                                               monkeypatch):
    import ffmpeg._run

    folder = motion_folder(tmp_path, clip_video, n=3)
    real_popen = ffmpeg._run.subprocess.Popen

    def popen(args, *a, **kw):
        if any(str(arg).endswith("01.mp4") for arg in args):
            raise OSError(errno.EIO, "Input/output error")
        return real_popen(args, *a, **kw)

    monkeypatch.setattr(ffmpeg._run.subprocess, "Popen", popen)
    with pytest.raises(VideoError) as e:
        read_video(folder / "01.mp4")
    assert_one_clear_line(str(e.value), folder / "01.mp4", "reading failed (Input/output error)", "rerun")
    result = extract.run(tiny_params(), tmp_path, MOTION)
    assert result["videos"] == 2
    assert [s["file"] for s in result["skipped"]] == ["01.mp4"]
    assert "Input/output error" in result["skipped"][0]["reason"]


# -- fuzzing -------------------------------------------------------------------------------------
CSV_PIECES = st.sampled_from(["file", "caption", "motion", "prompt", ",", "\n", "\r\n", '"', '""', " ",
                              "00.mp4", "01.mp4", "rain", "helicopter", "a red star", "\ufeff", "\x00", "é"])
CSV_TEXT = st.lists(CSV_PIECES, max_size=40).map("".join)
CSV_BYTES = st.one_of(CSV_TEXT.map(lambda t: t.encode("utf-8")),
                      CSV_TEXT.map(lambda t: t.encode("utf-16")),
                      st.binary(max_size=200),
                      st.tuples(CSV_TEXT, st.binary(max_size=8), CSV_TEXT).map(
                          lambda p: p[0].encode() + p[1] + p[2].encode()))


def _report(name: str, count: list) -> None:
    print(f"\n{name}: {len(count)} inputs tried")


def test_fuzz_captions_reader(tmp_path):
    folder = tmp_path / "videos"
    folder.mkdir()
    for name in ("00.mp4", "01.mp4"):
        (folder / name).write_bytes(b"")
    path, tried = folder / "captions.csv", []

    @FUZZ
    @given(CSV_BYTES)
    def check(content):
        tried.append(content)
        path.write_bytes(content)
        try:
            captions = read_captions(path, folder)
        except StageError as e:
            assert_one_clear_line(str(e), path)
        else:
            assert all(isinstance(k, str) and k and (folder / k).is_file() and v for k, v in captions.items())

    check()
    _report("captions.csv", tried)
    assert len(tried) >= 200


def test_fuzz_eval_prompts_reader(tmp_path):
    path, tried = tmp_path / "eval.csv", []

    @FUZZ
    @given(CSV_BYTES, st.sampled_from([None, ["rain"], ["rain", "dance"]]))
    def check(content, motions):
        tried.append(content)
        path.write_bytes(content)
        try:
            prompts = read_eval_prompts(path, motions)
        except StageError as e:
            assert_one_clear_line(str(e), path)
        else:
            allowed = set(motions) if motions is not None else None
            assert all((allowed is None or m in allowed) and all(p for p in ps) for m, ps in prompts.items())

    check()
    _report("eval prompts csv", tried)
    assert len(tried) >= 200


YAML_PIECES = st.sampled_from(["train:", "  lr:", " 0.5", " -1", " 1e-3", " no", " yes", " null", "\n", "  ",
                               "seed: 1", "motions: [rain, horse_run]", "motions: []", "[", "]", "{", "}", ":",
                               "- ", "data:", "  source: world", "  source: moon", "2024-02-30", "&a", "*a",
                               "!!python/object:os.system", "'", '"', "\t", "\ufeff", "\xff", "clips:",
                               "  height: 33", "mixed_precision: fp8", "train: 3", "é", "#"])
YAML_BYTES = st.one_of(st.lists(YAML_PIECES, max_size=30).map(lambda p: "".join(p).encode("utf-8")),
                       st.lists(YAML_PIECES, max_size=30).map(lambda p: "".join(p).encode("latin-1", "replace")),
                       st.binary(max_size=200))


def test_fuzz_params_yaml(tmp_path):
    path, tried = tmp_path / "params.yaml", []

    @FUZZ
    @given(YAML_BYTES, st.sampled_from([None, {"train.lr": 0.5}, {"data.source": "folder"}]))
    def check(content, overrides):
        tried.append(content)
        path.write_bytes(content)
        try:
            params = load_params(path, overrides)
        except ParamsError as e:  # one line per invalid field, each naming the file
            lines = str(e).splitlines()
            assert lines and all(line.startswith(str(path)) for line in lines), str(e)
        else:
            assert params.train.lr > 0 and set(params.motions) and params.clips.height % 8 == 0

    check()
    _report("params.yaml", tried)
    assert len(tried) >= 200


def test_fuzz_videos_cut_at_random_offsets(tmp_path, clip_video):
    whole = tmp_path / "whole.mp4"
    write_mp4(clip_video, whole, fps=8)
    data = whole.read_bytes()
    path, tried = tmp_path / "cut.mp4", []

    @settings(FUZZ, max_examples=50)
    @given(st.integers(0, len(data) - 1))
    def check(offset):
        tried.append(offset)
        path.write_bytes(data[:offset])
        try:
            frames, fps = read_video(path)
        except VideoError as e:
            assert_one_clear_line(str(e), path, "remove or replace it")
        else:  # a cut that leaves whole frames decodes to fewer, valid frames
            assert frames.dtype == np.uint8 and frames.shape[1:] == clip_video.shape[1:]
            assert 0 < len(frames) <= len(clip_video) and fps > 0

    check()
    _report("videos cut at random offsets", tried)
    assert len(tried) >= 50
