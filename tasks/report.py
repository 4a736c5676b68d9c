"""Stage `report`: turn reports/metrics.json + per_video.csv into files a person reads.

Writes, under `reports/`:
- summary.md: a Table-1-style table (this run beside the paper's published numbers,
  labelled with the CLIP used and the diversity variant) and a per-motion table.
- plots/<metric>.png: one bar chart per metric, a bar per motion; plots/confusion.png:
  the motion classifier's confusion matrix (true motion x predicted motion or `none`).
- gallery.html: every generated gif with its prompt and scores, grouped by motion,
  plus each motion's contact sheet; relative links, no scripts or CDN, so it opens
  offline straight from the folder.
- examples/<motion>.gif: each motion's first generated video (first prompt, first seed: a
  fixed rule, whatever it scores; a copy, small enough to commit), shown with its prompt in
  summary.md and the README; examples/index.csv: their prompts and scores.

Output depends on the inputs only (no timestamps, no software versions in the PNGs),
so an unchanged run gives the same bytes and DVC's cache stays valid.
"""
from __future__ import annotations

import csv
import html
import json
import logging
import math
import os
import shutil
from pathlib import Path
from urllib.parse import quote

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from lamp_model.config import Params
from lamp_model.io import atomic_write
from tasks.common import METRIC_KEYS, Layout, StageError, read_generated, stage_main

log = logging.getLogger("lamp")

# Paper Table 1: (alignment, consistency, diversity), CLIP x100; diversity lower = more diverse.
PAPER_TABLE1 = (
    ("Tune-A-Video", 27.22, 94.87, 84.72),
    ("Text2Video-Zero", 26.94, 91.47, 73.01),
    ("AnimateDiff", 28.88, 97.81, 73.47),
    ("LAMP", 31.35, 98.31, 71.65),
)
LABELS = {"alignment": "CLIP alignment (x100)", "consistency": "CLIP consistency (x100)",
          "diversity": "CLIP diversity (x100, lower = more diverse)",
          "motion_accuracy": "motion accuracy (%)", "first_frame_fidelity": "first-frame fidelity (x100)"}


def _fmt(value, percent: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{100 * value:.1f}" if percent else f"{value:.2f}"


def _clip_description(params: Params, root: Path) -> tuple[str, bool]:
    """(what CLIP scored this run, whether its numbers can be set beside the paper's)."""
    name = params.metrics.clip_model
    if (root / name).is_dir():
        return (f"`{name}`, a local CLIP folder (by default the motion world's small CLIP, trained on the "
                "world's captions). Its numbers are NOT comparable with the paper's: different CLIP, "
                "different videos.", False)
    tag = params.metrics.clip_pretrained
    return (f"open_clip `{name}` (`{tag}`). The paper does not state its CLIP variant (ViT-L/14 OpenAI is the "
            "common choice), so the comparison is indicative only.", True)


def _read_inputs(layout: Layout) -> tuple[dict, list[dict]]:
    reports = layout.reports
    paths = [reports / "metrics.json", reports / "per_video.csv", reports / "confusion.json"]
    for p in paths:
        if not p.is_file():
            raise StageError(f"{p}: not found; run the `metrics` stage first")
    metrics = json.loads(paths[0].read_text())
    if not {"overall", "per_motion"} <= set(metrics):
        raise StageError(f"{paths[0]}: needs the keys overall and per_motion; rerun the `metrics` stage")
    confusion = json.loads(paths[2].read_text())
    if not {"labels", "counts"} <= set(confusion):
        raise StageError(f"{paths[2]}: needs the keys labels and counts; rerun the `metrics` stage")
    metrics["confusion"] = confusion
    with open(paths[1], newline="") as f:
        rows = list(csv.DictReader(f))
    return metrics, rows


def _mp4_key(layout: Layout, mp4: Path) -> str:
    """How per_video.csv names a video: its path relative to the outputs folder, with /."""
    return os.path.relpath(mp4, layout.out).replace(os.sep, "/")


def write_examples(params: Params, layout: Layout, rows: list[dict]) -> list[tuple[str, dict, Path]]:
    """Copy each motion's first generated gif to reports/examples/<motion>.gif; returns
    (motion, its per_video.csv row, the copy) per motion that has videos."""
    by_mp4 = {r["mp4"]: r for r in rows}
    folder = layout.reports / "examples"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    examples = []
    for motion in params.motions:
        entries = read_generated(layout, motion)
        if not entries:
            continue
        gen = layout.generated(motion)
        gif, mp4 = gen / entries[0]["gif"], gen / entries[0]["mp4"]
        row = by_mp4.get(_mp4_key(layout, mp4))
        if not gif.is_file() or row is None:
            raise StageError(f"{gen / 'index.csv'}: {gif.name} or its scores are missing; rerun `generate` and `metrics`")
        shutil.copyfile(gif, folder / f"{motion}.gif")
        examples.append((motion, row, folder / f"{motion}.gif"))
    with atomic_write(folder / "index.csv") as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")  # the README's example table is generated from it
        writer.writerow(("motion", "gif", "prompt", "seed", "predicted_motion", "motion_correct"))
        writer.writerows((m, gif.name, r["prompt"], r["seed"], r["predicted_motion"], r["motion_correct"])
                         for m, r, gif in examples)
    return examples


def summary_markdown(params: Params, layout: Layout, metrics: dict,
                     examples: list[tuple[str, dict, Path]] = ()) -> str:
    overall, per_motion = metrics["overall"], metrics["per_motion"]
    clip, comparable = _clip_description(params, layout.root)
    lines = [
        "# LAMP results",
        "",
        f"{overall['n_videos']} generated videos, {len(per_motion)} motions. "
        "All CLIP scores x100 (spec \"Metrics\"): alignment = mean over frames of cos(frame, prompt); "
        "consistency = mean over frame pairs of cos(frame_i, frame_j); diversity = mean over video pairs "
        "of the dot product of mean frame embeddings (lower = more diverse).",
        "",
        "## Table 1 (paper) beside this run",
        "",
        f"CLIP used for this run: {clip}",
        "",
        "Diversity of this run: computed among the videos of one motion (one prompt set), then averaged "
        f"over motions ({_fmt(overall.get('diversity_mean_per_motion'))}). Over all videos of all motions "
        f"it is {_fmt(overall.get('diversity_all_videos'))} (pairs across motions: mostly measures how the "
        "motions differ). "
        "The paper does not say which; its numbers are the published ones.",
        "",
        "| method | source | alignment ↑ | consistency ↑ | diversity ↓ |",
        "|---|---|---:|---:|---:|",
    ]
    lines += [f"| {name} | paper, Table 1 | {a:.2f} | {c:.2f} | {d:.2f} |" for name, a, c, d in PAPER_TABLE1]
    source = "this run" + ("" if comparable else " (small CLIP, not comparable)")
    lines.append(f"| **LAMP (this run)** | {source} | {_fmt(overall.get('alignment'))} | "
                 f"{_fmt(overall.get('consistency'))} | {_fmt(overall.get('diversity'))} |")
    chance = overall.get("motion_chance")
    lines += [
        "",
        "## Per motion",
        "",
        "Motion accuracy (= recall): share of a motion's videos that the optical-flow motion classifier "
        f"assigns to that motion (chance = {_fmt(chance, percent=True)}%). The classifier is fit on the "
        "training clips; a video without the evidence of a motion (static, flickering, vanishing or frozen "
        "content, noise) is classified `none` and counts as wrong. Precision: share of the videos "
        "classified as a motion that show it. First-frame fidelity: 100 * (1 - mean |frame 0 - given "
        "first frame| / 255).",
        "",
        "| motion | videos | alignment | consistency | diversity | motion accuracy (%) | precision (%) "
        "| first-frame fidelity |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for motion, m in per_motion.items():
        lines.append(f"| {motion} | {m['n_videos']} | {_fmt(m.get('alignment'))} | {_fmt(m.get('consistency'))} | "
                     f"{_fmt(m.get('diversity'))} | {_fmt(m.get('motion_accuracy'), percent=True)} | "
                     f"{_fmt(m.get('motion_precision'), percent=True)} | {_fmt(m.get('first_frame_fidelity'))} |")
    lines.append(f"| **all** | {overall['n_videos']} | {_fmt(overall.get('alignment'))} | "
                 f"{_fmt(overall.get('consistency'))} | {_fmt(overall.get('diversity'))} | "
                 f"{_fmt(overall.get('motion_accuracy'), percent=True)} | | "
                 f"{_fmt(overall.get('first_frame_fidelity'))} |")
    lines += ["", "Plots: " + ", ".join(f"[{k}](plots/{k}.png)" for k in (*METRIC_KEYS, "confusion")) + ".",
              "Videos with prompts and scores: [gallery.html](gallery.html).", ""]
    lines += confusion_markdown(metrics["confusion"], overall.get("motion_none_share"))
    if examples:
        lines += ["## Examples", "", "The first generated video of each motion (its eval prompt, seed) and the "
                  "motion the optical-flow score sees in it.", "",
                  "| motion | video | prompt | motion seen |", "|---|---|---|---|"]
        for motion, row, gif in examples:
            seen = row["predicted_motion"] + ("" if row["motion_correct"] == "True" else " (wrong)")
            lines.append(f"| {motion} | ![{motion}]({_href(gif, layout.reports)}) | {row['prompt']} "
                         f"(seed {row['seed']}) | {seen} |")
        lines.append("")
    return "\n".join(lines)


def confusion_markdown(confusion: dict, none_share: float | None) -> list[str]:
    """The confusion matrix as a table: a row per true motion, a column per predicted label."""
    labels, counts = confusion["labels"], confusion["counts"]
    short = [label.replace("_", " ") for label in labels]
    lines = ["## Confusion matrix", "",
             f"Rows: the motion a video was generated for; columns: what the motion classifier sees in it "
             f"(`none` = no motion of any trained kind: {_fmt(none_share, percent=True)}% of the videos). "
             "[plot](plots/confusion.png)", "",
             "| true \\ seen | " + " | ".join(short) + " |", "|---|" + "---:|" * len(labels)]
    for true, row in counts.items():
        cells = [f"**{row[p]}**" if p == true else str(row[p]) for p in labels]
        lines.append(f"| {true.replace('_', ' ')} | " + " | ".join(cells) + " |")
    return lines + [""]


def plot_confusion(confusion: dict, path: Path) -> None:
    """Heat map of the confusion counts, numbers in the cells."""
    labels, counts = confusion["labels"], confusion["counts"]
    true = list(counts)
    grid = [[counts[t][p] for p in labels] for t in true]
    fig = Figure(figsize=(1.0 + 0.62 * len(labels), 1.0 + 0.5 * len(true)), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.imshow(grid, cmap="Blues", aspect="auto")
    for i, row in enumerate(grid):
        for j, n in enumerate(row):
            ax.text(j, i, str(n), ha="center", va="center", fontsize=8,
                    color="white" if n > 0.6 * max(max(r) for r in grid) else "black")
    ax.set_xticks(range(len(labels)), [x.replace("_", "\n") for x in labels], fontsize=7)
    ax.set_yticks(range(len(true)), [x.replace("_", " ") for x in true], fontsize=7)
    ax.set_xlabel("motion seen by the classifier", fontsize=8)
    ax.set_ylabel("motion generated for", fontsize=8)
    ax.set_title("Motion confusion matrix", fontsize=10)
    fig.tight_layout()
    with atomic_write(path) as tmp:
        fig.savefig(tmp, format="png", metadata={"Software": None})


def plot_metric(per_motion: dict, key: str, path: Path, chance: float | None = None) -> None:
    """Bar chart of one metric, a bar per motion; n/a values drawn as an empty slot, labelled."""
    motions = list(per_motion)
    scale = 100 if key == "motion_accuracy" else 1
    values = [per_motion[m].get(key) for m in motions]
    heights = [0.0 if v is None else scale * v for v in values]
    fig = Figure(figsize=(max(4.0, 0.9 * len(motions) + 1.5), 3.6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    bars = ax.bar(range(len(motions)), heights, color="#4c72b0")
    ax.bar_label(bars, labels=["n/a" if v is None else f"{scale * v:.1f}" for v in values], fontsize=8)
    if chance is not None:
        ax.axhline(100 * chance, color="#c44e52", linestyle="--", linewidth=1, label="chance")
        ax.legend(fontsize=8)
    ax.margins(y=0.12)  # room for the value labels
    ax.set_xticks(range(len(motions)), [m.replace("_", "\n") for m in motions], fontsize=8)
    ax.set_ylabel(LABELS[key], fontsize=8)
    ax.set_title(LABELS[key], fontsize=10)
    fig.tight_layout()
    with atomic_write(path) as tmp:
        fig.savefig(tmp, format="png", metadata={"Software": None})  # no version string: stable bytes


def _href(target: Path, start: Path) -> str:
    return quote(os.path.relpath(target, start).replace(os.sep, "/"))


def gallery_html(params: Params, layout: Layout, metrics: dict, rows: list[dict]) -> str:
    """Static page: per motion its scores, contact sheet and every gif with prompt and scores."""
    reports, esc = layout.reports, html.escape
    by_mp4 = {r["mp4"]: r for r in rows}
    parts = [
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        "<title>LAMP gallery</title>",
        "<style>body{font-family:sans-serif;margin:1.5em}figure{display:inline-block;width:300px;"
        "margin:0 1em 1em 0;vertical-align:top}figure img{max-width:100%}figcaption{font-size:.8em}"
        ".sheet{max-width:100%}.bad{color:#b00}</style>",
        "</head>", "<body>", "<h1>LAMP gallery</h1>",
        f"<p>CLIP: {esc(params.metrics.clip_model)}. Scores x100; motion = motion predicted from optical flow.</p>",
    ]
    for motion in params.motions:
        m = metrics["per_motion"].get(motion, {})
        folder = layout.generated(motion)
        parts += [f'<h2 id="{esc(motion)}">{esc(motion)}</h2>',
                  f"<p>{m.get('n_videos', 0)} videos; alignment {_fmt(m.get('alignment'))}, consistency "
                  f"{_fmt(m.get('consistency'))}, diversity {_fmt(m.get('diversity'))}, motion accuracy "
                  f"{_fmt(m.get('motion_accuracy'), percent=True)}%, first-frame fidelity "
                  f"{_fmt(m.get('first_frame_fidelity'))}</p>"]
        sheet = folder / "contact_sheet.png"
        if sheet.is_file():
            parts.append(f'<p><img class="sheet" src="{_href(sheet, reports)}" alt="{esc(motion)} contact sheet"></p>')
        for entry in read_generated(layout, motion):
            gif, mp4 = folder / entry["gif"], folder / entry["mp4"]
            if not gif.is_file():
                raise StageError(f"{folder / 'index.csv'}: gif file {gif} not found; rerun the `generate` stage")
            score = by_mp4.get(_mp4_key(layout, mp4))
            if score is None:
                raise StageError(f"{reports / 'per_video.csv'}: no scores for {mp4}; rerun the `metrics` stage")
            ok = score["motion_correct"] == "True"
            parts += [
                "<figure>",
                f'<img src="{_href(gif, reports)}" alt="{esc(entry["prompt"])}">',
                f"<figcaption><b>{esc(entry['prompt'])}</b><br>seed {esc(entry['seed'])} · "
                f'<a href="{_href(mp4, reports)}">mp4</a><br>alignment {_fmt(float(score["alignment"]))}, '
                f"consistency {_fmt(float(score['consistency']))}, first frame "
                f"{_fmt(float(score['first_frame_fidelity']) if score['first_frame_fidelity'] else None)}<br>"
                f'motion: <span class="{"" if ok else "bad"}">{esc(score["predicted_motion"])}'
                f"{'' if ok else ' (wrong)'}</span></figcaption>",
                "</figure>",
            ]
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)


def run(params: Params, root: Path, run_dir: str = "") -> dict:
    """Write summary.md, examples/, plots/<metric>.png and gallery.html from the metrics stage's outputs."""
    layout = Layout(Path(root), run_dir)
    metrics, rows = _read_inputs(layout)
    reports = layout.reports
    examples = write_examples(params, layout, rows)
    outputs = [gif for _, _, gif in examples]
    with atomic_write(reports / "summary.md") as tmp:
        tmp.write_text(summary_markdown(params, layout, metrics, examples), encoding="utf-8")
    outputs.append(reports / "summary.md")
    for key in METRIC_KEYS:
        chance = metrics["overall"].get("motion_chance") if key == "motion_accuracy" else None
        plot_metric(metrics["per_motion"], key, reports / "plots" / f"{key}.png", chance)
        outputs.append(reports / "plots" / f"{key}.png")
    plot_confusion(metrics["confusion"], reports / "plots" / "confusion.png")
    outputs.append(reports / "plots" / "confusion.png")
    with atomic_write(reports / "gallery.html") as tmp:
        tmp.write_text(gallery_html(params, layout, metrics, rows), encoding="utf-8")
    outputs.append(reports / "gallery.html")
    outputs = [str(p) for p in outputs]
    log.info("report written to %s", reports)
    return {"outputs": outputs, "artifacts": outputs}


if __name__ == "__main__":
    stage_main(run, per_motion=False)
