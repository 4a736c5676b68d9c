"""Run LAMP or a baseline with changed settings into its own folder, and score it as the pipeline does.

Shared by benchmarks/baseline_lr.py (settings chosen on the validation prompts) and
benchmarks/baseline_seeds.py (the test table over several seeds). A run calls the DVC stages'
own `run()` (tasks/tune.py + generate.py for LAMP, tasks/baseline_*.py) with params overrides and
a run_dir (tasks.common.Layout), so it never touches the pipeline's outputs; its videos are scored
by tasks/baselines.py's `score_method` (the metrics stage's CLIP and motion classifier).
"""
from __future__ import annotations

import time
from pathlib import Path

from tasks.baselines import METHODS, method_videos, score_method
from tasks.common import Layout
from tasks.metrics import fit_classifier, load_scorer


def finished(layout: Layout, params, method: str) -> bool:
    return all((layout.generated(m, method) / "index.csv").is_file() for m in params.motions)


def make_videos(root: Path, params, method: str, run_dir: str, reuse: bool = False) -> float:
    """`method`'s videos for params' eval prompts and sample.seeds under root/run_dir; returns the seconds
    taken (0 when `reuse` finds them made)."""
    from tasks import baseline_animatediff, baseline_text2video_zero, baseline_tune_a_video, generate, tune

    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {METHODS}")
    if reuse and finished(Layout(root, run_dir), params, method):
        return 0.0
    t0 = time.perf_counter()
    if method == "lamp":
        for motion in params.motions:  # tune finds a finished checkpoint of the same settings and skips
            tune.run(params, root, motion=motion, run_dir=run_dir)
            generate.run(params, root, motion=motion, run_dir=run_dir)
    elif method == "tune_a_video":
        for motion in params.motions:
            baseline_tune_a_video.run(params, root, motion=motion, run_dir=run_dir)
    elif method == "text2video_zero":
        baseline_text2video_zero.run(params, root, run_dir=run_dir)
    else:
        baseline_animatediff.run(params, root, run_dir=run_dir)
    return time.perf_counter() - t0


class Scorer:
    """The metrics stage's motion classifier (fit on the training clips) and CLIP, loaded once."""

    def __init__(self, params, root: Path):
        self.classifier = fit_classifier(params, Layout(root))
        self.clip = load_scorer(params, root)

    def __call__(self, params, layout: Layout, method: str) -> dict:
        return score_method(method_videos(layout, params, method), self.clip, self.classifier)
