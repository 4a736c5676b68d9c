"""Video I/O against the real static ffmpeg, on small synthetic videos."""
import subprocess
from fractions import Fraction

import cv2
import numpy as np
import pytest

from lamp_model.io import atomic_write
from lamp_model.video import (
    FFMPEG,
    VideoError,
    fit_frames,
    make_contact_sheet,
    probe,
    read_video,
    sample_clips,
    write_gif,
    write_mp4,
)


def ffmpeg(*args, input=None):
    cmd = [FFMPEG, "-hide_banner", "-loglevel", "error", "-y", *map(str, args)]
    subprocess.run(cmd, input=input, check=True)


def smooth_frames(f=16, h=64, w=96):
    """Horizontal and vertical ramps plus a drifting sine: smooth, but each frame differs."""
    t, y, x = np.meshgrid(np.arange(f), np.arange(h), np.arange(w), indexing="ij")
    rgb = [x * 255 / (w - 1), y * 255 / (h - 1), 128 + 100 * np.sin(2 * np.pi * (x / 48 + t / 16))]
    return np.stack(rgb, -1).round().astype(np.uint8)


def _ramp_video(path, keep="1"):
    """30 fps grey ramp (brightness encodes time), keeping frames where `keep` (a select expr)."""
    src = "nullsrc=s=64x48:r=30:d=2,geq=lum='16+100*T':cb=128:cr=128"
    ffmpeg("-f", "lavfi", "-i", f"{src},select='{keep}'", "-fps_mode", "vfr",
           "-c:v", "libx264", "-pix_fmt", "yuv420p", path)


def _shown_times(frames, reference):
    """For each frame, the time of the 30 fps reference frame it shows (ramp is monotonic)."""
    levels = frames.mean(axis=(1, 2, 3))
    return np.abs(levels[:, None] - reference[None]).argmin(axis=1) / 30


def test_mp4_round_trip(tmp_path):
    frames = smooth_frames()
    path = tmp_path / "out" / "clip.mp4"  # missing folder is created
    write_mp4(frames, path, fps=8)

    info = probe(path)
    assert (info.width, info.height, info.n_frames, info.rotation) == (96, 64, 16, 0)
    assert info.fps == pytest.approx(8) and info.duration == pytest.approx(2)
    back, fps = read_video(path)
    assert fps == pytest.approx(8) and back.shape == frames.shape and back.dtype == np.uint8
    err = np.abs(back.astype(int) - frames)
    # libx264 crf 18 + 4:2:0 chroma: measured mean 2.5, 99th percentile 9.
    assert err.mean() < 4 and np.percentile(err, 99) < 14
    assert list(tmp_path.joinpath("out").iterdir()) == [path]  # no temp file left over


def test_mp4_odd_size_padded_by_one_pixel(tmp_path):
    frames = smooth_frames(f=4, h=63, w=95)
    write_mp4(frames, tmp_path / "odd.mp4")
    back, _ = read_video(tmp_path / "odd.mp4")
    assert back.shape == (4, 64, 96, 3)
    assert np.abs(back[:, :63, :95].astype(int) - frames).mean() < 4
    # the added row/column repeats the edge instead of a black line
    assert np.abs(back[:, -1].astype(int) - back[:, -2]).mean() < 4


def test_gif_round_trip(tmp_path):
    frames = smooth_frames()
    write_gif(frames, tmp_path / "clip.gif", fps=8)
    assert (tmp_path / "clip.gif").read_bytes()[:6] == b"GIF89a"
    back, fps = read_video(tmp_path / "clip.gif")
    # gif delays are whole 1/100 s: 8 fps is stored as 0.13/0.12 s, 2.01 s in all
    assert fps == pytest.approx(8, rel=0.02) and back.shape == frames.shape
    # a 256-colour palette with dithering over three independent gradients: measured mean 12.2
    assert np.abs(back.astype(int) - frames).mean() < 16


def test_variable_frame_rate_is_resampled_evenly(tmp_path):
    path = tmp_path / "vfr.mp4"
    _ramp_video(path, "gte(t,1)+not(mod(n,3))")  # 10 fps for 1 s, then 30 fps for 1 s
    info = probe(path)
    assert info.n_frames == 40 and info.duration == pytest.approx(2)
    assert info.fps == pytest.approx(20)  # true average, not the container's 18.75

    _ramp_video(tmp_path / "cfr.mp4")
    reference = read_video(tmp_path / "cfr.mp4")[0].mean(axis=(1, 2, 3))
    assert len(reference) == 60

    for fps, n in [(10, 20), (None, 40)]:  # None: the average rate, 20 fps
        frames, rate = read_video(path, fps=fps)
        assert rate == pytest.approx(fps or 20) and len(frames) == n
        # each frame shows a source frame at most 0.05 s (half the 10 fps interval)
        # from its slot; decoding without resampling would drift by up to 0.5 s
        offsets = _shown_times(frames, reference) - np.arange(n) / rate
        assert np.abs(offsets).max() <= 0.05 + 1e-9

    # 30 -> 10 fps keeps every third frame; ffmpeg's fps filter takes the last frame
    # of each 0.1 s window centred on the slot, so frames 1, 4, 7, ... (not 0, 3, 6)
    frames, _ = read_video(tmp_path / "cfr.mp4", fps=10)
    shown = _shown_times(frames, reference)
    np.testing.assert_allclose(shown, np.arange(20) / 10 + 1 / 30, atol=1e-9)


def test_rotation_metadata_is_applied(tmp_path):
    frames = smooth_frames(f=4)  # 96 wide, 64 high
    write_mp4(frames, tmp_path / "plain.mp4")
    # `-metadata:s:v rotate=90` is silently ignored by this ffmpeg: use display_rotation
    ffmpeg("-display_rotation", 90, "-i", tmp_path / "plain.mp4", "-c", "copy",
           tmp_path / "rot.mp4")

    info = probe(tmp_path / "rot.mp4")
    assert (info.width, info.height, info.rotation) == (64, 96, 90)
    rotated, _ = read_video(tmp_path / "rot.mp4")
    assert rotated.shape == (4, 96, 64, 3)
    plain, _ = read_video(tmp_path / "plain.mp4")
    expected = np.rot90(plain, k=1, axes=(1, 2))  # +90 is counter-clockwise
    assert np.array_equal(rotated, expected)


def test_audio_track_is_ignored(tmp_path):
    path = tmp_path / "with_audio.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=96x64:rate=12:duration=1",
           "-f", "lavfi", "-i", "sine=frequency=440:duration=3",
           "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", path)
    info = probe(path)
    # the audio runs 3 s; the video's own length and count are what matter
    assert info.n_frames == 12 and info.fps == pytest.approx(12)
    assert info.duration == pytest.approx(1)
    frames, _ = read_video(path)
    assert frames.shape == (12, 64, 96, 3)


@pytest.mark.parametrize(
    "name, codec, rate, n",
    [
        ("ntsc.mp4", ["-c:v", "libx264", "-pix_fmt", "yuv420p"], "30000/1001", 30),
        ("clip.avi", ["-c:v", "mjpeg"], "12", 12),
        ("clip.ts", ["-c:v", "mpeg2video"], "12", 12),
        ("clip.webm", ["-c:v", "libvpx-vp9", "-deadline", "realtime"], "12", 12),
        ("clip.h264", ["-c:v", "libx264"], "12", 12),  # raw stream: decode timestamps only
    ],
)
def test_other_containers_and_rates(tmp_path, name, codec, rate, n):
    path = tmp_path / name
    ffmpeg("-f", "lavfi", "-i", f"testsrc=size=96x64:rate={rate}", "-frames:v", n, *codec, path)
    info = probe(path)
    assert info.n_frames == n and info.fps == pytest.approx(float(Fraction(rate)), rel=1e-6)
    frames, _ = read_video(path)
    assert frames.shape == (n, 64, 96, 3)


def _disc_aspect(frame):
    """Width / height of the bright disc's bounding box."""
    ys, xs = np.nonzero(frame[..., 0] > 128)
    return (xs.max() - xs.min() + 1) / (ys.max() - ys.min() + 1)


def test_odd_size_video_crop_keeps_a_disc_round(tmp_path):
    frame = np.zeros((239, 317, 3), np.uint8)
    cv2.circle(frame, (158, 119), 60, (255, 255, 255), -1)
    path = tmp_path / "odd.mkv"  # 4:2:0 needs even sizes; ffv1 stores 317x239 losslessly
    ffmpeg("-f", "rawvideo", "-pix_fmt", "rgb24", "-s", "317x239", "-r", 8, "-i", "pipe:",
           "-c:v", "ffv1", path, input=np.repeat(frame[None], 3, 0).tobytes())
    frames, _ = read_video(path)
    assert frames.shape == (3, 239, 317, 3)

    cropped = fit_frames(frames, 40, 64)
    assert cropped.shape == (3, 40, 64, 3)
    assert _disc_aspect(cropped[0]) == pytest.approx(1, abs=0.05)  # measured 1.0 (24x24 px)

    stretched = fit_frames(frames, 40, 64, policy="resize")
    assert _disc_aspect(stretched[0]) > 1.15  # the control: plain resize distorts

    padded = fit_frames(frames, 40, 64, policy="pad")
    assert _disc_aspect(padded[0]) == pytest.approx(1, abs=0.1)
    assert padded[:, :, :6].max() == 0 and padded[:, :, -6:].max() == 0  # black side bars


def test_fit_frames_rejects_unknown_policy():
    with pytest.raises(ValueError, match="policy"):
        fit_frames(np.zeros((1, 8, 8, 3), np.uint8), 4, 4, policy="squash")


RNG_BYTES = np.random.default_rng(0).bytes(4096)


def _truncated_mp4(path):
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=96x64:rate=8:duration=1", "-c:v", "libx264", path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _truncated_faststart_mp4(path):
    write_mp4(np.random.default_rng(0).integers(0, 256, (16, 64, 96, 3), np.uint8), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize(
    "name, make, reason",
    [
        ("random.mp4", lambda p: p.write_bytes(RNG_BYTES), "not a readable"),
        ("notes.txt", lambda p: p.write_text("just some text\n"), "not a readable"),
        ("empty.mp4", lambda p: p.write_bytes(b""), "not a readable"),
        ("cut.mp4", _truncated_mp4, "not a readable"),  # index at the end: lost
        ("cut_faststart.mp4", _truncated_faststart_mp4, "truncated"),  # index kept, data cut
        ("tone.m4a", lambda p: ffmpeg("-f", "lavfi", "-i", "sine=d=1", p), "no video stream"),
    ],
)
def test_unreadable_files_raise_video_error_naming_the_file(tmp_path, name, make, reason):
    path = tmp_path / name
    make(path)
    with pytest.raises(VideoError) as exc:
        read_video(path)
    message = str(exc.value)
    assert str(path) in message and reason in message and "remove or replace it" in message
    assert "\n" not in message


def test_missing_file_raises_video_error(tmp_path):
    with pytest.raises(VideoError, match="no such file"):
        probe(tmp_path / "nope.mp4")


def test_sample_clips_spreads_clips_over_the_video():
    clips = sample_clips(100, clip_len=16, stride=2, clips_per_video=3)
    assert [c[0] for c in clips] == [0, 34, 69] and clips[-1][-1] == 99
    assert all(np.diff(c).tolist() == [2] * 15 for c in clips)


def test_sample_clips_edge_cases():
    assert sample_clips(31, 16, 2, 4) == [list(range(0, 31, 2))]  # exactly one fits
    assert sample_clips(5, 1, 1, 1) == [[0]]
    assert [c[0] for c in sample_clips(18, 16, 1, 5)] == [0, 1, 2]  # fewer, distinct clips
    with pytest.raises(ValueError, match="30 frames"):
        sample_clips(30, 16, 2, 1)
    with pytest.raises(ValueError):
        sample_clips(100, 16, 0, 1)


def test_atomic_write_leaves_nothing_when_the_body_fails(tmp_path):
    target = tmp_path / "metrics.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_write(target) as tmp:
            assert tmp.parent == tmp_path and tmp.suffix == ".json"
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert target.read_text() == "old" and list(tmp_path.iterdir()) == [target]

    with atomic_write(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new" and list(tmp_path.iterdir()) == [target]


def test_failed_encode_leaves_no_file(tmp_path):
    with pytest.raises(VideoError, match="could not write"):
        write_mp4(smooth_frames(f=2), tmp_path / "bad.mp4", fps=-1)
    assert list(tmp_path.iterdir()) == []


def test_contact_sheet_layout():
    a = np.full((10, 32, 48, 3), 200, np.uint8)
    b = np.full((3, 16, 48, 3), 100, np.uint8)  # shorter and a different size
    sheet = make_contact_sheet([a, b], ["rain", "firework"], frames_per_row=4)
    label_h = sheet.shape[0] // 2 - 32
    assert sheet.dtype == np.uint8 and sheet.shape == (2 * (label_h + 32), 4 * 48, 3)
    assert sheet[:label_h].max() > 0  # label text drawn
    assert (sheet[label_h : label_h + 32] == 200).all()
    row2 = sheet[2 * label_h + 32 :]
    assert (row2[8:24, : 3 * 48] == 100).all()  # padded to the cell, centred
    assert row2[:, 3 * 48 :].max() == 0  # only 3 frames: last cell black
    assert make_contact_sheet([a], None, 4).shape == (32, 4 * 48, 3)
