"""What every stage shares: the file layout, params loading, eval prompts and the entry point.

Every stage is a plain function `run(params, root, motion=None) -> dict` in
`tasks/<stage>.py`. DVC calls it through `python -m tasks.<stage> [--motion M]`
(see `stage_main`), Prefect through the task wrappers in `tasks/prefect_tasks.py`,
the CLI directly: one implementation of each stage.

The dict a stage returns is what gets logged (MLflow, logs): JSON-able, with
  "outputs":   [paths written],
  "metrics":   {name: float}           (optional, e.g. final loss, alignment),
  "artifacts": [files worth keeping in MLflow: checkpoint, a few gifs, reports] (optional),
  "loss":      [loss per training step] (tune only),
plus anything else that describes the run (counts, skipped files with reasons).

Paths are all relative to the project (DVC repo) root, which is the working
directory unless `--root` is given. `Layout` is the one place that names them.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lamp_model.config import MOTIONS, Params, ParamsError, load_params

log = logging.getLogger("lamp")

# index.csv of a motion's generated videos (stage `generate`; read by `metrics` and `report`):
# prompt_index = row of that motion's prompt in the eval csv, seed = sampling seed,
# mp4/gif = the video, first_frame = PNG of the first frame given to the pipeline.
GENERATED_COLUMNS = ("prompt_index", "seed", "prompt", "mp4", "gif", "first_frame")
# What the `metrics` stage scores per video and per motion (reports/metrics.json; plots of `report`).
METRIC_KEYS = ("alignment", "consistency", "diversity", "motion_accuracy", "first_frame_fidelity")


def names_world_base(params: Params, root: Path | str) -> bool:
    """Whether model.base is the motion world's own base (a folder under models/world)."""
    root = Path(root)
    return (root / params.model.base).resolve().is_relative_to(Layout(root).world_models.resolve())


def trains_base(params: Params, root: Path | str) -> bool:
    """Whether the base stage trains the base (the motion world's own) rather than checking real
    weights, which a seed cannot change."""
    return params.data.source == "world" and names_world_base(params, root)


class StageError(Exception):
    """Bad input a stage cannot work with; the message names the file/field and what to do."""


@dataclass(frozen=True)
class Layout:
    """Where each stage reads and writes, relative to the project root.

    Inputs and shared models (videos, clips, latents, the world base) live under
    `root`, and so do tuning checkpoints (keyed by everything that shapes them).
    What a run produces (tuned motions, generated videos, reports) lives under
    `root / run_dir`: `run_dir` is "" for the main pipeline and e.g.
    "runs/ablations/no_tsm" for an ablation variant, so variants share the data
    stages and never overwrite each other's results.
    """

    root: Path
    run_dir: str = ""

    @property
    def out(self) -> Path:
        return self.root / self.run_dir if self.run_dir else self.root

    # -- inputs -------------------------------------------------------------------------
    def videos(self, params: Params, motion: str) -> Path:
        """Training videos of one motion: <videos_dir>/<motion>/*.mp4 (+ captions.csv)."""
        return self.root / params.data.videos_dir / motion

    def eval_prompts_file(self, params: Params) -> Path:
        return self.root / params.data.eval_prompts

    # -- motion world (stage `world`) ----------------------------------------------------
    @property
    def world_videos(self) -> Path:
        return self.root / "data/world/videos"

    @property
    def world_eval_prompts(self) -> Path:
        """The world's test prompts: reported by `make run`, never used to choose a setting."""
        return self.root / "data/prompts/world_eval.csv"

    @property
    def world_validation_prompts(self) -> Path:
        """The world's validation prompts: for choosing settings (benchmarks/world_motion.py)."""
        return self.root / "data/prompts/world_validation.csv"

    # -- per-motion data (stages `extract`, `cache`) --------------------------------------
    def clips(self, motion: str) -> Path:
        """clips.safetensors (uint8 frames [n, f, h, w, 3]) + manifest.json."""
        return self.root / "data/clips" / motion

    def latents(self, motion: str) -> Path:
        """latents.safetensors (latents [n, 4, f, h/8, w/8]) + captions.json (one caption per clip)."""
        return self.root / "data/latents" / motion

    # -- models (stages `base`, `tune`) ---------------------------------------------------
    @property
    def world_models(self) -> Path:
        """The motion world's own base model (base/) and small CLIP (clip/)."""
        return self.root / "models/world"

    @property
    def world_controlnet(self) -> Path:
        """The motion world's canny ControlNet for `lamp edit` (stage `controlnet`): a diffusers
        ControlNetModel folder + controlnet_train.json. Beside models/world, not in it: DVC
        outputs may not nest."""
        return self.root / "models/world_controlnet"

    def motion_model(self, motion: str) -> Path:
        """motion.safetensors (tuned weights only) + loss.csv + train_config.json."""
        return self.out / "models/motions" / motion

    def checkpoints(self, motion: str, key: str) -> Path:
        """Resumable training state; not a DVC output (DVC deletes outputs before a rerun).

        Under `root`, shared by every run_dir: the key hashes everything that shapes the
        tuned weights, so an ablation variant whose tuning is the main pipeline's (`full`,
        or one that only changes sampling) finds it finished and does not tune again."""
        return self.root / "checkpoints" / motion / key

    # -- outputs (stages `generate`, `metrics`, `report`) -----------------------------------
    def generated(self, motion: str, method: str = "lamp") -> Path:
        """Generated videos of one motion. index.csv has one row per video with the columns
        GENERATED_COLUMNS (file names relative to this folder); plus contact_sheet.png.
        A baseline `method` (tune_a_video, ...) writes the same layout under outputs/baselines/."""
        if method == "lamp":
            return self.out / "outputs/videos" / motion
        return self.out / "outputs/baselines" / method / motion

    @property
    def baseline_models(self) -> Path:
        return self.out / "models/baselines"

    @property
    def reports(self) -> Path:
        return self.out / "reports"


def read_csv_rows(path: Path, columns: tuple[str, ...], fix: str) -> list[tuple[int, dict[str, str]]]:
    """(line, row) of a UTF-8 csv with at least `columns`; values stripped, missing ones "".

    Anything that is not such a file (unreadable, not UTF-8, broken quoting, a missing column)
    is a StageError naming the file (and line) and what to do; `fix` says how to fix the file.
    """
    try:
        data = path.read_bytes()
    except OSError as e:
        raise StageError(f"{path}: cannot be read ({e.strerror or e}); {fix}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise StageError(f"{path}: not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}); "
                         f"save it as UTF-8") from None
    reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)  # an unclosed quote is an error
    rows, line = [], 1
    try:
        if not reader.fieldnames or not set(columns) <= {(c or "").strip() for c in reader.fieldnames}:
            raise StageError(f"{path}: needs the columns {','.join(columns)} (has {reader.fieldnames}); {fix}")
        while True:
            line = reader.line_num + 1  # where the next row starts (a quoted value may span lines)
            row = next(reader, None)
            if row is None:
                return rows
            row = {(k or "").strip(): v for k, v in row.items() if isinstance(k, str)}
            rows.append((line, {c: (row.get(c) or "").strip() for c in columns}))
    except csv.Error as e:
        raise StageError(f"{path}:{line}: not valid CSV ({e}); {fix}") from None


def read_captions(path: Path, folder: Path | None = None) -> dict[str, str]:
    """file name -> caption from a captions.csv (columns file,caption; one row per video).

    A row with an empty file name or caption, a file listed twice, or (with `folder`) a file
    that is not in `folder` stops with the line and what to do.
    """
    fix = "fix it, or set data.use_captions: false to train with the motion prompt"
    out: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for line, row in read_csv_rows(path, ("file", "caption"), fix):
        name, caption = row["file"], row["caption"]
        if not name or not caption:
            raise StageError(f"{path}:{line}: empty file name or caption; {fix}")
        if name in out:
            raise StageError(f"{path}:{line}: {name} is listed twice (first on line {first_line[name]}); "
                             "keep one row per video")
        if folder is not None and not _is_file(folder / name):
            raise StageError(f"{path}:{line}: names {name}, which is not in {folder}; "
                             "fix the file name or remove the row")
        out[name], first_line[name] = caption, line
    return out


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except (OSError, ValueError):  # a name too long for the file system, or with a NUL byte
        return False


def read_eval_prompts(path: Path, motions: list[str] | None = None) -> dict[str, list[str]]:
    """motion -> prompts from a csv with columns motion,prompt.

    Rows of the paper's motions that are not selected in `motions` are left out (a run on
    a subset of motions uses the full eval set); a motion that is neither selected nor one
    of the paper's 8 is a typo or a missing motion folder: an error naming the line.
    """
    if not path.is_file():
        raise StageError(f"{path}: eval prompt file not found; set data.eval_prompts in params.yaml "
                         "(data/prompts/eval.csv is the paper's set)")
    out: dict[str, list[str]] = {}
    fix = "fix it or set data.eval_prompts in params.yaml to another file"
    for line, row in read_csv_rows(path, ("motion", "prompt"), fix):
        motion, prompt = row["motion"], row["prompt"]
        if motions is not None and motion not in motions:
            if motion in MOTIONS:
                continue
            raise StageError(f"{path}:{line}: prompt for unknown motion {motion!r} "
                             f"(motions in params.yaml: {motions}); fix the motion or add it to params")
        if not prompt:
            raise StageError(f"{path}:{line}: empty prompt")
        out.setdefault(motion, []).append(prompt)
    return out


def model_source(root: Path, name: str) -> str:
    """A model path in params.yaml is relative to the project root; anything else is a hub id."""
    local = Path(root) / name
    return str(local) if local.exists() else name


def fingerprint(*parts) -> str:
    """Short stable hash of JSON-able parts (settings, file digests): names a checkpoint folder."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_generated(layout: Layout, motion: str, method: str = "lamp") -> list[dict]:
    """Rows of a motion's index.csv (stage `generate`, or a baseline's stage), with every referenced file checked."""
    folder = layout.generated(motion, method)
    stage = "generate" if method == "lamp" else f"baseline_{method}"
    index = folder / "index.csv"
    if not index.is_file():
        raise StageError(f"{folder}: no generated videos (index.csv missing); run the `{stage}` stage for {motion}")
    with open(index, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in GENERATED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise StageError(f"{index}: missing columns {missing} (needs {list(GENERATED_COLUMNS)}); "
                             f"rerun the `{stage}` stage for {motion}")
        rows = list(reader)
    if not rows:
        raise StageError(f"{folder}: index.csv lists no generated videos; run the `{stage}` stage for {motion}")
    for line, row in enumerate(rows, start=2):
        for column in ("mp4", "first_frame"):
            if column == "first_frame" and not row[column]:
                continue  # sampled without a first frame (ablation: no first-frame conditioning)
            if not (folder / row[column]).is_file():
                raise StageError(f"{index}:{line}: {column} file {folder / row[column]} not found; "
                                 f"rerun the `{stage}` stage for {motion}")
    return rows


def stage_main(run: Callable[..., dict], per_motion: bool, argv: list[str] | None = None) -> None:
    """`python -m tasks.<stage> [--motion M] [--params params.yaml] [--root .]` for DVC.

    Known bad input ends with one clear line on stderr and exit code 1 (no traceback).
    """
    module = run.__module__ or ""
    if module == "__main__":  # `python -m tasks.<stage>`
        module = getattr(getattr(sys.modules["__main__"], "__spec__", None), "name", None) or module
    stage = module.removeprefix("tasks.")
    parser = argparse.ArgumentParser(description=stage)
    if per_motion:
        parser.add_argument("--motion", required=True)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--root", default=".")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stderr)
    from lamp_model.errors import ModelUnavailableError
    from lamp_model.video import VideoError

    def _track(stage, params, root, result, motion, duration_s, error) -> None:
        """Log the stage run to MLflow (tasks/tracking.py); never changes the stage's outcome."""
        if params is None or not params.tracking.enabled:
            return
        from tasks import tracking

        tracking.log_stage_safely(stage, params, Path(root), result, motion=motion, duration_s=duration_s,
                                  status="FAILED" if error else "FINISHED", error=error)

    motion = args.motion if per_motion else None
    params, result, started = None, None, time.monotonic()
    try:
        params = load_params(Path(args.root) / args.params)
        kwargs = {"motion": args.motion} if per_motion else {}
        result = run(params, Path(args.root), **kwargs)
    except (StageError, ParamsError, ModelUnavailableError, VideoError) as e:
        print(f"error: {e}", file=sys.stderr)
        _track(stage, params, args.root, None, motion, time.monotonic() - started, f"error: {e}")
        sys.exit(1)
    except BaseException as e:
        _track(stage, params, args.root, None, motion, time.monotonic() - started, f"{type(e).__name__}: {e}")
        raise
    _track(stage, params, args.root, result, motion, time.monotonic() - started, None)
    log.info("%s done: %s", stage, json.dumps(result, default=str)[:2000])
