"""Stage `extract` (per motion): the motion's videos -> fixed-size training clips.

Every file in <videos_dir>/<motion>/ is decoded (any container ffmpeg reads;
variable frame rate, rotation and audio are handled by `read_video`), up to
clips.clips_per_video clips are sampled from it and fitted to clips.height x
clips.width (crop by default: no distortion). A file that cannot be used is
skipped with a warning and listed under "skipped", so one bad download does
not stop a motion; too few usable videos does.

Writes data/clips/<motion>/clips.safetensors ("frames": uint8 [n, f, h, w, 3])
and manifest.json (one entry per clip: source file, fps, frame count, frame
indices, caption).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file
from tqdm.auto import tqdm

from lamp_model.config import Params
from lamp_model.io import atomic_write
from lamp_model.video import VideoBackendMissing, VideoError, fit_frames, read_video, sample_clips
from tasks.common import Layout, StageError, read_captions, stage_main

log = logging.getLogger("lamp")

VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v")
CAPTIONS = "captions.csv"


def run(params: Params, root: Path, motion: str | None = None) -> dict:
    layout = Layout(Path(root))
    folder = layout.videos(params, motion)
    what = (f"put the training videos of '{motion}' there ({params.data.min_videos} or more, "
            f"{'/'.join(VIDEO_SUFFIXES)}), or remove it from motions in params.yaml")
    if params.data.source == "world":
        what = "render the motion world first: `dvc repro world` or `python -m tasks.world`"
    if not folder.is_dir():
        raise StageError(f"{folder}: no such folder; {what}")
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.name != CAPTIONS)
    if not files:
        raise StageError(f"{folder}: folder is empty; {what}")

    captions = {}
    if params.data.use_captions and (folder / CAPTIONS).is_file():
        captions = read_captions(folder / CAPTIONS, folder)
        log.info("captions from %s", folder / CAPTIONS)
    default_caption = params.motion_prompt(motion)
    c = params.clips

    clips, entries, skipped, used = [], [], [], []
    for path in tqdm(files, desc=f"extract {motion}", unit="video"):
        if path.suffix.lower() not in VIDEO_SUFFIXES:
            reason = f"not a video file (expected {', '.join(VIDEO_SUFFIXES)})"
        else:
            try:
                frames, fps = read_video(path)
                picks = sample_clips(len(frames), c.frames, c.stride, c.clips_per_video)
                reason = None
            except VideoBackendMissing:
                raise  # no video can be read here: one line saying what to install, not N skipped files
            except VideoError as e:
                reason = str(e).removeprefix(f"{path}: ")
            except ValueError as e:  # too short for one clip
                reason = f"too short: {e}"
        if reason:
            log.warning("skipping %s: %s", path, reason)
            skipped.append({"file": path.name, "reason": reason})
            continue
        caption = captions.get(path.name)
        if caption is None:
            if captions:
                log.warning("%s: no row for %s; using the motion prompt %r", folder / CAPTIONS, path.name,
                            default_caption)
            caption = default_caption
        for idx in picks:
            clips.append(fit_frames(frames[idx], c.height, c.width, policy=c.resize_policy))
            entries.append({"file": path.name, "fps": fps, "source_frames": len(frames), "frames": idx,
                            "caption": caption})
        used.append(path.name)

    if len(used) < params.data.min_videos:
        listing = "".join(f"\n  {s['file']}: {s['reason']}" for s in skipped)
        raise StageError(f"{folder}: {len(used)} usable videos, data.min_videos is {params.data.min_videos}; "
                         f"add videos or fix these{listing or ' (none skipped)'}")

    out = layout.clips(motion)
    data = np.stack(clips)
    with atomic_write(out / "clips.safetensors") as tmp:
        save_file({"frames": data}, str(tmp))
    manifest = {"motion": motion, "videos_dir": f"{params.data.videos_dir}/{motion}",
                "resize_policy": c.resize_policy, "clips": entries, "skipped": skipped}
    with atomic_write(out / "manifest.json") as tmp:
        tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    log.info("wrote %d clips %s from %d videos to %s (%d skipped)", len(data), list(data.shape[1:]), len(used),
             out, len(skipped))
    return {"motion": motion, "videos": len(used), "clips": len(data), "shape": list(data.shape),
            "skipped": skipped, "outputs": [str(out / "clips.safetensors"), str(out / "manifest.json")],
            "metrics": {"videos": float(len(used)), "clips": float(len(data)), "skipped": float(len(skipped))}}


if __name__ == "__main__":
    stage_main(run, per_motion=True)
