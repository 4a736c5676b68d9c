"""Stage `metrics`: score every generated video (paper Table 1 CLIP metrics + motion scores).

Reads each motion's `outputs/videos/<motion>/index.csv` (stage `generate`) and
the training clips of every motion (`data/clips/<motion>/clips.safetensors`,
stage `extract`). Writes, under `reports/`:

- metrics.json: the DVC metrics file, {"overall": {...}, "per_motion": {motion: {...}},
  "confusion": {...}} with alignment, consistency, diversity, motion_accuracy,
  first_frame_fidelity, n_videos; per motion also motion_precision and motion_recall
  (= motion_accuracy of that motion's videos), overall motion_none_share.
- confusion.json: {"labels": [motions..., "none"], "counts": {true: {predicted: n}}}.
  `diversity` is the paper's sense: diversity among one motion's videos (per motion),
  and overall the mean of the per-motion values; `diversity_all_videos` (all pairs
  across motions) is given beside it. Values are rounded to 4 decimals so a rerun
  gives the same bytes; a value that does not exist (diversity of one video) is null.
- per_video.csv: one row per video (PER_VIDEO_COLUMNS).
- motion_centroids.json: the motion classifier fit on the training clips.

Motion accuracy: `lamp_model.motion_score.MotionClassifier` (nearest centroid on
optical-flow descriptors, with the reject class `none`), fit on the training
clips of all motions in params (chance = 1 / number of motions). A video without
the evidence of a motion (static, flicker, vanishing or frozen content, noise)
is classified `none` and never counts as correct. The confusion matrix over the
motions + `none` goes to metrics.json ("confusion") for the report.

`score_videos` is the per-video scoring, usable on any list of videos (a CLI
`lamp score` calls it with `load_scorer` and the classifier from motion_centroids.json).
"""
from __future__ import annotations

import csv
import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from safetensors.numpy import load_file
from tqdm import tqdm

from lamp_model.config import Params
from lamp_model.io import atomic_write
from lamp_model.metrics import ClipScorer
from lamp_model.motion_score import NONE, MotionClassifier, confusion_matrix, first_frame_fidelity
from lamp_model.video import read_video
from tasks.common import METRIC_KEYS, Layout, StageError, read_generated, stage_main

log = logging.getLogger("lamp")

PER_VIDEO_COLUMNS = ("motion", "prompt_index", "seed", "prompt", "alignment", "consistency",
                     "predicted_motion", "motion_correct", "first_frame_fidelity", "mp4")
DECIMALS = 4


@dataclass(frozen=True)
class VideoToScore:
    """One video to score: its file, the prompt it was generated from, the motion it should show,
    and optionally the first-frame image it was given (for first-frame fidelity)."""

    mp4: Path
    prompt: str
    motion: str
    first_frame: Path | None = None


# ------------------------------------------------------------------ loading

def load_scorer(params: Params, root: Path) -> ClipScorer:
    """params.metrics.clip_model: a folder written by ClipScorer.save_pretrained (relative to root),
    an open_clip model name with params.metrics.clip_pretrained (e.g. ViT-L-14 / openai), or an open_clip
    repo with its own config and weights (hf-hub:org/name, local-dir:PATH; clip_pretrained not used)."""
    import open_clip

    from lamp_model.loading import resolve_device

    name, pretrained = params.metrics.clip_model, params.metrics.clip_pretrained
    device = resolve_device(params.model.device)
    folder = root / name
    if folder.is_dir():
        return ClipScorer.from_pretrained(folder, device)
    if name.startswith(("hf-hub:", "local-dir:")):  # an open_clip repo/folder: config and weights inside
        return ClipScorer.from_open_clip(name, device=str(device))  # offline: ModelUnavailableError
    if name in open_clip.list_models():
        if not pretrained:
            raise StageError(f"params.yaml: metrics.clip_pretrained is empty for the open_clip model {name!r}; "
                             "set it to a pretrained tag (e.g. openai) or a checkpoint file")
        return ClipScorer.from_open_clip(name, pretrained, str(device))  # offline: ModelUnavailableError
    raise StageError(f"params.yaml: metrics.clip_model = {name!r}: no CLIP folder at {folder} and not an "
                     "open_clip model name; run the `base` stage (it writes models/world/clip) or set "
                     "an open_clip name such as ViT-L-14")


def load_clips(layout: Layout, motion: str) -> np.ndarray:
    """Training clips uint8 [n, f, h, w, 3] of one motion (stage `extract`)."""
    path = layout.clips(motion) / "clips.safetensors"
    if not path.is_file():
        raise StageError(f"{path}: training clips not found; run the `extract` stage for {motion}")
    clips = load_file(str(path)).get("frames")
    if clips is None or clips.ndim != 5 or clips.shape[-1] != 3 or len(clips) == 0:
        shape = None if clips is None else clips.shape
        raise StageError(f"{path}: needs a non-empty uint8 tensor 'frames' [n, f, h, w, 3] (got {shape}); "
                         f"rerun the `extract` stage for {motion}")
    return clips


def fit_classifier(params: Params, layout: Layout) -> MotionClassifier:
    """The motion classifier (centroids + reject thresholds) fit on every training clip of every motion."""
    clips = {m: list(load_clips(layout, m)) for m in tqdm(params.motions, desc="training clips", leave=False)}
    return MotionClassifier().fit_clips(clips)


# ------------------------------------------------------------------ scoring

def _read_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _mean(values) -> float:
    values = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(values)) if values else math.nan


def score_videos(videos: list[VideoToScore], scorer: ClipScorer,
                 classifier: MotionClassifier | None = None) -> tuple[list[dict], dict, dict]:
    """Score videos; returns (rows, per_motion, overall) like ClipScorer.score_set, plus the motion scores.

    rows: motion, prompt, alignment, consistency, predicted_motion, motion_correct,
    first_frame_fidelity (NaN without a first frame). Without a classifier the motion
    columns are None and no motion_accuracy is given; with one, overall["confusion"]
    is `confusion_matrix` over the classifier's motions.
    """
    if not videos:
        raise ValueError("score_videos needs at least one video")
    decoded, extra = [], []
    for v in tqdm(videos, desc="reading + motion scores", leave=False):
        frames, _ = read_video(v.mp4)
        predicted = None
        if classifier is not None:
            predicted = classifier.classify(frames)
        fidelity = (first_frame_fidelity(frames[0], _read_rgb(v.first_frame))
                    if v.first_frame is not None else math.nan)
        decoded.append((frames, v.prompt, v.motion))
        extra.append({"predicted_motion": predicted,
                      "motion_correct": None if predicted is None else predicted == v.motion,
                      "first_frame_fidelity": fidelity})
    clip_rows, per_motion, overall = scorer.score_set(decoded)
    rows = [{"motion": r["motion"], "prompt": r["prompt"], "alignment": r["alignment"],
             "consistency": r["consistency"], **e} for r, e in zip(clip_rows, extra)]

    def motion_scores(rs) -> dict:
        out = {"first_frame_fidelity": _mean([r["first_frame_fidelity"] for r in rs])}
        if classifier is not None:
            out["motion_accuracy"] = float(np.mean([r["motion_correct"] for r in rs]))
        return out

    for motion, summary in per_motion.items():
        summary.update(motion_scores([r for r in rows if r["motion"] == motion]))
    overall.update(motion_scores(rows))
    overall["diversity"] = overall["diversity_mean_per_motion"]  # the paper's sense: within a prompt set
    if classifier is not None:
        overall["motion_chance"] = 1 / len(classifier.motions)
        known = [r for r in rows if r["motion"] in classifier.motions]
        confusion = confusion_matrix([r["motion"] for r in known], [r["predicted_motion"] for r in known],
                                     classifier.motions)
        overall["confusion"] = confusion
        overall["motion_none_share"] = float(np.mean([r["predicted_motion"] == NONE for r in rows]))
        for motion, summary in per_motion.items():
            pr = confusion["per_motion"].get(motion, {})
            summary.update({"motion_precision": pr.get("precision"), "motion_recall": pr.get("recall")})
    return rows, per_motion, overall


def videos_to_score(layout: Layout, motion: str, rows: list[dict],
                    method: str = "lamp") -> list[tuple[VideoToScore, dict]]:
    """A motion's generated videos (the rows of `read_generated`) as VideoToScore, each with its row."""
    folder = layout.generated(motion, method)
    return [(VideoToScore(folder / row["mp4"], row["prompt"], motion,
                          folder / row["first_frame"] if row["first_frame"] else None),  # none: nothing to be faithful to
             row) for row in rows]


# ------------------------------------------------------------------ writing

def _clean(x):
    """Rounded floats, NaN -> None: valid JSON and the same bytes on a rerun."""
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, bool) or x is None:
        return x
    if isinstance(x, (float, np.floating)):
        return None if math.isnan(x) else round(float(x), DECIMALS)
    return x


def _summary(d: dict, keys) -> dict:
    return {k: _clean(d[k]) for k in keys if k in d}


def run(params: Params, root: Path, run_dir: str = "") -> dict:
    """Score the generated videos of every motion; write metrics.json, per_video.csv, motion_centroids.json."""
    layout = Layout(Path(root), run_dir)
    generated = {m: read_generated(layout, m) for m in params.motions}  # fail fast, before the CLIP loads
    classifier = fit_classifier(params, layout)
    scorer = load_scorer(params, layout.root)
    videos, meta = [], []
    for motion, rows in generated.items():
        for video, row in videos_to_score(layout, motion, rows):
            videos.append(video)
            meta.append({"prompt_index": row["prompt_index"], "seed": row["seed"],
                         "mp4": os.path.relpath(video.mp4, layout.out).replace(os.sep, "/")})
    rows, per_motion, overall = score_videos(videos, scorer, classifier)

    overall_keys = ("n_videos", *METRIC_KEYS, "diversity_all_videos", "diversity_mean_per_motion", "motion_chance",
                    "motion_none_share")
    per_motion_keys = ("n_videos", *METRIC_KEYS, "motion_precision", "motion_recall")
    metrics = {"overall": _summary(overall, overall_keys),
               "per_motion": {m: _summary(per_motion[m], per_motion_keys) for m in params.motions}}
    confusion = {k: overall["confusion"][k] for k in ("labels", "counts")}
    reports = layout.reports
    with atomic_write(reports / "metrics.json") as tmp:
        tmp.write_text(json.dumps(metrics, indent=2) + "\n")
    with atomic_write(reports / "per_video.csv") as tmp:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=PER_VIDEO_COLUMNS, lineterminator="\n")
            writer.writeheader()
            for row, m in zip(rows, meta):
                writer.writerow({k: _clean(v) for k, v in {**row, **m}.items() if k in PER_VIDEO_COLUMNS})
    with atomic_write(reports / "confusion.json") as tmp:
        tmp.write_text(json.dumps(confusion, indent=2) + "\n")
    with atomic_write(reports / "motion_centroids.json") as tmp:
        tmp.write_text(classifier.to_json() + "\n")

    flat = {k: v for k, v in metrics["overall"].items() if v is not None}  # MLflow: numbers only
    flat.update({f"{m}/{k}": v for m, s in metrics["per_motion"].items() for k, v in s.items() if v is not None})
    log.info("scored %d videos: alignment %.2f, consistency %.2f, diversity %.2f, motion accuracy %.2f",
             overall["n_videos"], overall["alignment"], overall["consistency"], overall["diversity"],
             overall["motion_accuracy"])
    outputs = [str(reports / n) for n in ("metrics.json", "per_video.csv", "confusion.json", "motion_centroids.json")]
    return {"outputs": outputs, "metrics": flat, "artifacts": outputs[:2], "n_videos": overall["n_videos"],
            "clip_model": params.metrics.clip_model}


if __name__ == "__main__":
    stage_main(run, per_motion=False)
