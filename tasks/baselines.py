"""Stage `baselines`: the paper's Table 1 on our data: LAMP beside its three baselines.

Scores LAMP's videos (outputs/videos, stage `generate`) and the baselines' (outputs/baselines/
<method>/, stages `baseline_*`) with the metrics stage's own scorer (the CLIP of metrics.*) and
motion classifier (fit on the training clips), each video once, per method and seed of sample.seeds
(a method's row is the mean over seeds, with their std), and writes reports/baselines/:
  * metrics.json: {"methods": {method: {name, alignment, consistency, diversity, motion_accuracy,
    motion_none_share, n_videos, per_motion, per_seed, *_std, starts_from}}, "seeds", "prompts",
    "clip_model"};
  * table.md: this run's four rows (mean ± std over seeds) beside the paper's four, labelled;
  * gallery.html: the first test prompt of each motion, one row per prompt, one column per method.
"""
from __future__ import annotations

import html
import json
import logging
import math
import os
from pathlib import Path

import numpy as np

from lamp_model.config import Params
from lamp_model.io import atomic_write
from tasks.common import Layout, read_generated, stage_main
from tasks.metrics import VideoToScore, _clean, fit_classifier, load_scorer, score_videos, videos_to_score
from tasks.report import PAPER_TABLE1, _clip_description

log = logging.getLogger("lamp")

METHODS = ("lamp", "tune_a_video", "text2video_zero", "animatediff")
NAMES = {"lamp": "LAMP", "tune_a_video": "Tune-A-Video", "text2video_zero": "Text2Video-Zero",
         "animatediff": "AnimateDiff"}
STARTS_FROM = {"lamp": "a given first frame", "tune_a_video": "its template video's inverted latents",
               "text2video_zero": "the prompt alone", "animatediff": "the prompt alone"}
KEYS = ("alignment", "consistency", "diversity", "motion_accuracy", "motion_none_share")
PER_MOTION_KEYS = ("alignment", "consistency", "diversity", "motion_accuracy")


def method_videos(layout: Layout, params: Params, method: str) -> list[tuple[VideoToScore, dict]]:
    """Every generated video of `method` (all motions of params.yaml) with its index.csv row."""
    return [pair for motion in params.motions
            for pair in videos_to_score(layout, motion, read_generated(layout, motion, method), method)]


def score_method(videos, scorer, classifier) -> dict:
    """One method's scores on its videos (pairs of `method_videos`): the row of the table, per motion too."""
    _, per_motion, overall = score_videos([v for v, _ in videos], scorer, classifier)
    summary = {k: overall.get(k) for k in ("n_videos", *KEYS, "first_frame_fidelity")}
    summary["per_motion"] = {m: {k: s.get(k) for k in ("n_videos", *PER_MOTION_KEYS)} for m, s in per_motion.items()}
    return summary


def over_seeds(per_seed: dict[str, dict]) -> dict:
    """A method's row: the mean over seeds of each seed's scores (every video decoded and embedded once),
    with the population std over seeds (ddof 0, as every other spread over seeds here: the ablation
    table, make_run_seeds, world_motion; None for one seed); per-motion values averaged the same way."""
    def mean(values):
        values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
        return float(np.mean(values)) if values else None

    rows = list(per_seed.values())
    summary = {"n_videos": sum(r["n_videos"] for r in rows),
               "first_frame_fidelity": mean([r["first_frame_fidelity"] for r in rows])}
    for k in KEYS:
        values = [r[k] for r in rows if r.get(k) is not None]
        summary[k] = mean(values)
        summary[f"{k}_std"] = float(np.std(values)) if len(values) > 1 else None
    motions = rows[0]["per_motion"]
    summary["per_motion"] = {m: {"n_videos": sum(r["per_motion"][m]["n_videos"] for r in rows),
                                 **{k: mean([r["per_motion"][m][k] for r in rows]) for k in PER_MOTION_KEYS}}
                             for m in motions}
    summary["per_seed"] = {s: {k: r[k] for k in KEYS} for s, r in per_seed.items()} if len(rows) > 1 else {}
    return summary


def run(params: Params, root: Path) -> dict:
    layout = Layout(Path(root))
    videos = {m: method_videos(layout, params, m) for m in METHODS}  # fail fast, before the models load
    classifier = fit_classifier(params, layout)
    scorer = load_scorer(params, layout.root)
    seeds = list(params.sample.seeds)
    methods = {}
    for method in METHODS:
        log.info("scoring %s: %d videos", method, len(videos[method]))
        per_seed = {str(s): score_method([v for v in videos[method] if int(v[1]["seed"]) == s], scorer, classifier)
                    for s in seeds}
        summary = over_seeds(per_seed)
        summary["name"], summary["starts_from"] = NAMES[method], STARTS_FROM[method]
        methods[method] = _clean(summary)
    clip, comparable = _clip_description(params, layout.root)
    metrics = {"methods": methods, "seeds": seeds, "prompts": params.data.eval_prompts,
               "clip_model": params.metrics.clip_model}
    out = layout.reports / "baselines"
    with atomic_write(out / "metrics.json") as tmp:
        tmp.write_text(json.dumps(metrics, indent=2) + "\n")
    with atomic_write(out / "table.md") as tmp:
        tmp.write_text(table(metrics, params, clip, comparable))
    with atomic_write(out / "gallery.html") as tmp:
        tmp.write_text(gallery(layout, params, out))
    flat = {f"{m}/{k}": v for m, s in methods.items() for k, v in s.items() if isinstance(v, (int, float))
            and not isinstance(v, bool)}
    return {"method": "lamp+baselines",
            "outputs": [str(out / n) for n in ("metrics.json", "table.md", "gallery.html")], "metrics": flat,
            "artifacts": [str(out / "table.md")]}


def _cell(summary: dict, key: str, percent: bool = False) -> str:
    value, std = summary.get(key), summary.get(f"{key}_std")
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    scale = 100 if percent else 1
    text = f"{scale * value:.1f}" if percent else f"{value:.2f}"
    return text + (f" ± {scale * std:.1f}" if percent else f" ± {std:.2f}") if std is not None else text


def table(metrics: dict, params: Params, clip: str, comparable: bool) -> str:
    seeds = metrics["seeds"]
    spread = f"mean ± std over {len(seeds)} seeds {seeds}" if len(seeds) > 1 else f"one seed ({seeds[0]})"
    lines = [
        "# Table 1: LAMP and the paper's baselines on the same prompts",
        "",
        f"Prompts: `{metrics['prompts']}` ({params.sample.ddim_steps} DDIM steps, guidance "
        f"{params.sample.guidance_scale}); this run: {spread}. CLIP: {clip}",
        "",
        "| method | source | alignment ↑ | consistency ↑ | diversity ↓ | motion accuracy (%) ↑ | no motion (%) | starts from |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    source = "this run" + ("" if comparable else " (small CLIP)")
    for method, s in metrics["methods"].items():
        lines.append(f"| {NAMES[method]} | {source} | {_cell(s, 'alignment')} | {_cell(s, 'consistency')} | "
                     f"{_cell(s, 'diversity')} | {_cell(s, 'motion_accuracy', True)} | "
                     f"{_cell(s, 'motion_none_share', True)} | {s['starts_from']} |")
    lines += [f"| {name} | paper, Table 1 | {a:.2f} | {c:.2f} | {d:.2f} | – | – | |" for name, a, c, d in PAPER_TABLE1]
    b = params.baselines
    lines += [
        "",
        "The rows differ in what they start from, as in the paper: LAMP from a given first frame, "
        "Tune-A-Video from its template video's DDIM-inverted latents, AnimateDiff and Text2Video-Zero from "
        "the prompt alone (so Tune-A-Video's videos do not depend on the seed unless "
        "baselines.tune_a_video.start_from_noise is set). Budgets: LAMP tunes "
        f"{params.train.steps} steps x {params.train.batch_size} clips per motion; Tune-A-Video "
        f"{b.tune_a_video.steps} x {b.tune_a_video.batch_size} per motion on one video; AnimateDiff "
        + (f"{b.animatediff.steps} x {b.animatediff.batch_size} on all motions' videos"
           if not b.animatediff.adapter else f"uses the motion modules `{b.animatediff.adapter}`")
        + "; Text2Video-Zero trains nothing. Motion accuracy: the motion classifier of the metrics stage "
        "(`none` = no motion read; a video with no motion scores as wrong).",
        "",
    ]
    return "\n".join(lines)


def gallery(layout: Layout, params: Params, out: Path) -> str:
    """One row per motion (its first test prompt, first seed), one column per method: gifs side by side."""
    esc = html.escape
    head = "".join(f"<th>{esc(NAMES[m])}</th>" for m in METHODS)
    rows = []
    for motion in params.motions:
        cells, prompt = [], ""
        for method in METHODS:
            first = read_generated(layout, motion, method)[0]
            prompt = first["prompt"]
            gif = os.path.relpath(layout.generated(motion, method) / first["gif"], out).replace(os.sep, "/")
            cells.append(f'<td><img src="{esc(gif)}" width="192"></td>')
        rows.append(f"<tr><td>{esc(motion)}<br><small>{esc(prompt)}</small></td>{''.join(cells)}</tr>")
    return ("<!doctype html><meta charset=utf-8><title>LAMP and baselines</title>"
            "<h1>LAMP and the paper's baselines</h1><p>First test prompt of each motion, seed "
            f"{params.sample.seeds[0]}.</p><table><tr><th>motion / prompt</th>{head}</tr>"
            + "".join(rows) + "</table>\n")


if __name__ == "__main__":
    stage_main(run, per_motion=False)
