"""Video I/O through ffmpeg-python, clip sampling and the resize policy.

All decoding and encoding goes through the static ffmpeg shipped by
imageio-ffmpeg (there is no ffprobe), so metadata is read from what ffmpeg
itself prints. Frames in memory are uint8 RGB arrays [f, h, w, 3].
Both packages are imported on the first read or write, not with this module:
the resize and clip helpers (and everything that imports them) work without them.
"""
from __future__ import annotations

import functools
import importlib
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from lamp_model.io import atomic_write

_NOPTS = -(2**62)  # framecrc prints AV_NOPTS_VALUE (int64 min) for unknown timestamps
_SIZE = re.compile(r", (\d+)x(\d+)\b")
_ROTATION = re.compile(r"rotation of (-?[\d.]+) degrees", re.IGNORECASE)
_RATE = re.compile(r"([\d.]+)(k?) (?:fps|tbr)\b")


class VideoError(Exception):
    """A video file that cannot be read or written; the message names the file."""


class VideoBackendMissing(VideoError, ImportError):
    """ffmpeg-python or imageio-ffmpeg is not installed: no video can be read or written here."""


# module name -> PyPI package. Imported on first video read/write only, so the model package
# (UNet, pipeline, training) imports on machines without them, e.g. a bare GPU image.
_BACKEND = {"ffmpeg": "ffmpeg-python", "imageio_ffmpeg": "imageio-ffmpeg"}


@functools.cache
def _backend():
    """(ffmpeg module, ffmpeg executable), looked up once; one clear error line if missing."""
    modules, missing = {}, []
    for name, package in _BACKEND.items():
        try:
            modules[name] = importlib.import_module(name)
        except ImportError:
            missing.append(package)
    if missing:
        raise VideoBackendMissing(
            f"video read/write needs {' and '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} "
            f"not installed: pip install {' '.join(missing)}") from None
    try:
        exe = modules["imageio_ffmpeg"].get_ffmpeg_exe()
    except RuntimeError as e:  # no bundled binary for this platform and none on PATH
        raise VideoBackendMissing(f"no ffmpeg executable found ({e}); install ffmpeg or set "
                                  "IMAGEIO_FFMPEG_EXE to one") from None
    return modules["ffmpeg"], exe


def ffmpeg_exe() -> str:
    """Path of the ffmpeg executable every read and write runs (imageio-ffmpeg's static build)."""
    return _backend()[1]


def __getattr__(name):
    if name == "FFMPEG":  # the executable's path, resolved on first access
        return ffmpeg_exe()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass
class VideoInfo:
    """What `read_video` will see: width/height are after autorotation.

    fps is the average rate (n_frames / duration); rotation is the display
    rotation in degrees counter-clockwise (ffmpeg's convention, 0..359).
    """

    path: Path
    width: int
    height: int
    fps: float
    n_frames: int
    duration: float
    rotation: int


def _run(stream, path) -> tuple[bytes, str]:
    """Run an ffmpeg graph; turn any failure into a VideoError naming `path`."""
    ffmpeg, exe = _backend()
    try:
        out, err = stream.global_args("-hide_banner", "-nostdin").run(
            cmd=exe, capture_stdout=True, capture_stderr=True
        )
    except ffmpeg.Error as e:
        stderr = e.stderr.decode(errors="replace")
        if "matches no streams" in stderr:
            raise VideoError(f"{path}: has no video stream; remove or replace it") from None
        raise VideoError(
            f"{path}: not a readable video (ffmpeg: {_short_reason(stderr)}); remove or replace it"
        ) from None
    except OSError as e:  # ffmpeg could not be started or its pipes failed (out of memory, I/O error)
        raise VideoError(
            f"{path}: reading failed ({e.strerror or e}); check that the file and {exe} are readable "
            "and the machine has memory free, then rerun"
        ) from None
    return out, err.decode(errors="replace")


def _short_reason(stderr: str) -> str:
    """ffmpeg's last line, without its '[demuxer @ 0x..]' and summary prefixes."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    if not lines:
        return "no error message"
    reason = re.sub(r"^(\[[^\]]*\]\s*)+", "", lines[-1])
    return reason.removeprefix("Error opening input files: ")


def _check_exists(path: Path) -> None:
    try:
        exists = path.is_file()
    except (OSError, ValueError) as e:  # e.g. a name too long for the file system, or with a NUL byte
        raise VideoError(f"{path}: cannot be read ({getattr(e, 'strerror', None) or e}); check the path") from None
    if not exists:
        raise VideoError(f"{path}: no such file; check the path")


def _output_section(stderr: str) -> str:
    """The part of ffmpeg's log that describes the output (the mapped stream only)."""
    return stderr[stderr.find("Output #0") :]


def probe(path) -> VideoInfo:
    """Read size, rotation, frame count and timing of the first video stream.

    Copies the stream's packets into ffmpeg's `framecrc` listing (no decoding),
    which gives the exact frame count and timestamps, so variable-frame-rate
    files get their true average rate.
    """
    path = Path(path)
    ffmpeg, _ = _backend()
    _check_exists(path)
    listing, stderr = _run(
        ffmpeg.input(str(path))["V:0"].output("pipe:", c="copy", format="framecrc"), path
    )
    if "partial file" in stderr:  # the mp4 demuxer's word for a cut-off download
        raise VideoError(f"{path}: truncated video (ffmpeg: partial file); remove or replace it")
    text = listing.decode(errors="replace")
    dims = re.search(r"^#dimensions 0:\s*(\d+)x(\d+)", text, re.MULTILINE)
    tb = re.search(r"^#tb 0:\s*(\d+)/(\d+)", text, re.MULTILINE)
    packets = [
        [int(v) for v in line.split(",")[1:4]]
        for line in text.splitlines()
        if line and not line.startswith("#")
    ]
    if not dims or not packets:
        raise VideoError(f"{path}: video stream has no frames; remove or replace it")
    width, height = int(dims[1]), int(dims[2])
    n_frames = len(packets)

    # raw elementary streams (.h264) carry decode timestamps only
    times = [(pts if pts > _NOPTS else dts, dur) for dts, pts, dur in packets]
    starts = [t for t, _ in times if t > _NOPTS]
    ends = [t + dur for t, dur in times if t > _NOPTS]
    duration = (max(ends) - min(starts)) * int(tb[1]) / int(tb[2]) if tb and starts else 0.0
    if duration > 0:
        # timestamps are rounded to the time base: snap to a simple fraction
        # (30000/1001 stays exact) so 12.00004 fps does not decode a 13th frame
        fps = float(Fraction(n_frames / duration).limit_denominator(1001))
    else:  # no usable timestamps: trust the rate ffmpeg prints
        rate = _RATE.search(_output_section(stderr))
        if not rate:
            raise VideoError(f"{path}: video has no frame rate; remove or replace it")
        fps = float(rate[1]) * (1000 if rate[2] else 1)
        duration = n_frames / fps

    rot = _ROTATION.search(_output_section(stderr))
    rotation = round(float(rot[1])) % 360 if rot else 0
    if round(rotation / 90) % 2:  # ffmpeg autorotates on decode: portrait stays portrait
        width, height = height, width
    return VideoInfo(path, width, height, fps, n_frames, duration, rotation)


def read_video(path, fps: float | None = None) -> tuple[np.ndarray, float]:
    """Decode the first video stream to uint8 RGB [f, h, w, 3] and its fps.

    Frames always come out evenly spaced in time: phone videos are often
    variable-frame-rate, so decoding goes through ffmpeg's `fps` filter at
    `fps` if given, else at the stream's average rate. Each output slot shows
    the last source frame within half an output interval of it (the filter's
    default rounding, which tolerates jittery timestamps), else repeats the
    previous one. Rotation metadata is applied (ffmpeg autorotates), audio and other
    streams are ignored.
    """
    if fps is not None and fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    path = Path(path)
    info = probe(path)  # also rejects missing, truncated and video-less files
    ffmpeg, _ = _backend()
    rate = float(fps) if fps is not None else info.fps
    out, stderr = _run(
        ffmpeg.input(str(path))["V:0"]
        .filter("fps", fps=rate)
        .output("pipe:", format="rawvideo", pix_fmt="rgb24"),
        path,
    )
    size = _SIZE.search(_output_section(stderr))
    if not size or not out:
        raise VideoError(f"{path}: decoded no frames; remove or replace it")
    w, h = int(size[1]), int(size[2])
    return np.frombuffer(out, np.uint8).reshape(-1, h, w, 3), rate


def _resize(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize every frame: INTER_AREA to shrink (no aliasing), INTER_CUBIC to grow."""
    h, w = frames.shape[1:3]
    if (h, w) == (height, width):
        return frames
    interp = cv2.INTER_AREA if height * width < h * w else cv2.INTER_CUBIC
    return np.stack([cv2.resize(f, (width, height), interpolation=interp) for f in frames])


def fit_frames(frames: np.ndarray, height: int, width: int, policy: str = "crop") -> np.ndarray:
    """Bring frames [f, h, w, 3] to [f, height, width, 3].

    Policies:
    - "crop" (default): scale so the frame covers height x width, then
      centre-crop the excess. Never distorts; loses the borders of the long side.
    - "pad": scale so the frame fits inside, then pad with black, centred.
      Never distorts and keeps everything, at the cost of black bars.
    - "resize": stretch to height x width. Distorts when aspect ratios differ.
    """
    frames = _check_frames(frames)
    h, w = frames.shape[1:3]
    if policy == "resize":
        return _resize(frames, height, width)
    if policy == "crop":
        scale = max(height / h, width / w)
        nh, nw = max(height, round(h * scale)), max(width, round(w * scale))
        scaled = _resize(frames, nh, nw)
        top, left = (nh - height) // 2, (nw - width) // 2
        return np.ascontiguousarray(scaled[:, top : top + height, left : left + width])
    if policy == "pad":
        scale = min(height / h, width / w)
        nh = min(height, max(1, round(h * scale)))
        nw = min(width, max(1, round(w * scale)))
        out = np.zeros((len(frames), height, width, 3), np.uint8)
        top, left = (height - nh) // 2, (width - nw) // 2
        out[:, top : top + nh, left : left + nw] = _resize(frames, nh, nw)
        return out
    raise ValueError(f"unknown resize policy {policy!r}; use 'crop', 'pad' or 'resize'")


def sample_clips(
    n_frames: int, clip_len: int, stride: int, clips_per_video: int
) -> list[list[int]]:
    """Frame indices of up to `clips_per_video` distinct clips, starts evenly spread.

    Clip = [start + stride * k for k < clip_len]. Starts run from 0 to the last
    start that fits, evenly spaced (a single clip starts at 0, so it includes
    the video's first frame). Short videos give fewer clips rather than
    duplicates. Raises ValueError if not even one clip fits.
    """
    if clip_len < 1 or stride < 1 or clips_per_video < 1:
        raise ValueError(
            f"clip_len, stride and clips_per_video must be >= 1, "
            f"got {clip_len}, {stride}, {clips_per_video}"
        )
    span = (clip_len - 1) * stride + 1
    if n_frames < span:
        raise ValueError(
            f"video has {n_frames} frames, a clip of {clip_len} frames at stride {stride} "
            f"needs {span}"
        )
    starts = np.linspace(0, n_frames - span, clips_per_video).round().astype(int)
    return [[int(s) + stride * k for k in range(clip_len)] for s in dict.fromkeys(starts)]


def _check_frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or not len(frames):
        raise ValueError(
            f"expected non-empty uint8 frames [f, h, w, 3], got {frames.dtype} {frames.shape}"
        )
    return frames


def _raw_input(frames: np.ndarray, fps: float):
    h, w = frames.shape[1:3]
    ffmpeg, _ = _backend()
    return ffmpeg.input("pipe:", format="rawvideo", pix_fmt="rgb24", s=f"{w}x{h}", framerate=fps)


def _encode(stream, frames: np.ndarray, path: Path) -> None:
    ffmpeg, exe = _backend()
    try:
        stream.global_args("-hide_banner", "-loglevel", "error").overwrite_output().run(
            cmd=exe, input=np.ascontiguousarray(frames).tobytes(), capture_stdout=True,
            capture_stderr=True,
        )
    except ffmpeg.Error as e:
        reason = _short_reason(e.stderr.decode(errors="replace"))
        raise VideoError(f"{path}: could not write video (ffmpeg: {reason})") from None


def write_mp4(frames: np.ndarray, path, fps: float = 8) -> None:
    """Write frames as an H.264 mp4 that browsers and MLflow's UI can play.

    yuv420p needs even sizes, so an odd height/width gets its last row/column
    repeated (1 px, no black line). `+faststart` puts the index first so the
    file streams. Written atomically.
    """
    frames = _check_frames(frames)
    h, w = frames.shape[1:3]
    frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    path = Path(path)
    _backend()  # fail before a temporary file exists
    with atomic_write(path) as tmp:
        stream = _raw_input(frames, fps).output(
            str(tmp), format="mp4", vcodec="libx264", pix_fmt="yuv420p", crf=18,
            movflags="+faststart",
        )
        _encode(stream, frames, path)


def write_gif(frames: np.ndarray, path, fps: float = 8) -> None:
    """Write an endlessly looping gif with a palette computed from the frames.

    palettegen/paletteuse keeps colours far better than the fixed web palette.
    GIF delays are whole hundredths of a second, so e.g. 8 fps plays at ~8.
    Written atomically.
    """
    frames = _check_frames(frames)
    path = Path(path)
    ffmpeg, _ = _backend()
    with atomic_write(path) as tmp:
        split = _raw_input(frames, fps).split()
        palette = split[1].filter("palettegen")
        stream = ffmpeg.filter([split[0], palette], "paletteuse").output(str(tmp), format="gif")
        _encode(stream, frames, path)


def make_contact_sheet(
    videos: list[np.ndarray], labels: list[str] | None = None, frames_per_row: int = 8
) -> np.ndarray:
    """One row per video of `frames_per_row` evenly spaced frames, label above.

    Lets a person judge a motion's videos at a glance. Cells take the first
    video's frame size; other sizes are fitted with the "pad" policy. Videos
    shorter than a row leave black cells.
    """
    if not videos:
        raise ValueError("make_contact_sheet needs at least one video")
    if labels is not None and len(labels) != len(videos):
        raise ValueError(f"{len(labels)} labels for {len(videos)} videos")
    h, w = _check_frames(videos[0]).shape[1:3]
    font = ImageFont.load_default()
    label_h = font.getbbox("Ag")[3] + 4 if labels is not None else 0
    row_h = label_h + h
    sheet = Image.new("RGB", (w * frames_per_row, row_h * len(videos)))
    draw = ImageDraw.Draw(sheet)
    for row, video in enumerate(videos):
        video = fit_frames(video, h, w, policy="pad")
        picks = np.linspace(0, len(video) - 1, min(frames_per_row, len(video))).round().astype(int)
        for col, i in enumerate(picks):
            sheet.paste(Image.fromarray(video[i]), (col * w, row * row_h + label_h))
        if labels is not None:
            draw.text((2, row * row_h + 2), labels[row], fill=(255, 255, 255), font=font)
    return np.asarray(sheet)
