"""Stages `metrics` and `report` end to end on a tiny project of world-rendered videos.

The project has 4 motions. helicopter's "generated" videos are one static frame
repeated, twice the same (consistency 100, diversity 100, nothing moves); the
other motions get real world renders of held-out content, which the motion
classifier must recognise. horse_run's second video is given a black first-frame
PNG, so its first-frame fidelity is computable by hand.
"""
import csv
import json
import os
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from safetensors.numpy import save_file

from lamp_model.config import load_params
from lamp_model.errors import ModelUnavailableError
from lamp_model.metrics import ClipScorer, alignment
from lamp_model.motion_score import MotionClassifier
from lamp_model.video import make_contact_sheet, read_video, write_gif, write_mp4
from lamp_model.world import contents, render_video, training_contents
from tasks import metrics as metrics_stage
from tasks import report as report_stage
from tasks.common import GENERATED_COLUMNS, METRIC_KEYS, Layout, StageError, read_generated, stage_main

MOTIONS = ["helicopter", "rain", "firework", "horse_run"]


def write_params(root: Path, clip_dir: Path, **metrics) -> None:
    params = {"motions": MOTIONS, "clips": {"frames": 16, "height": 64, "width": 96},
              "metrics": {"clip_model": str(clip_dir), **metrics}, "model": {"device": "cpu"},
              "tracking": {"enabled": False}}  # MLflow logging is tested elsewhere
    (root / "params.yaml").write_text(yaml.safe_dump(params))


def write_clips(layout: Layout) -> None:
    for m in MOTIONS:
        clips = np.stack([render_video(m, c, frames=16, seed=i) for i, c in enumerate(training_contents(m, 6))])
        layout.clips(m).mkdir(parents=True)
        save_file({"frames": clips}, str(layout.clips(m) / "clips.safetensors"))
        (layout.clips(m) / "manifest.json").write_text("{}")


def write_generated(layout: Layout) -> None:
    for m in MOTIONS:
        folder = layout.generated(m)
        folder.mkdir(parents=True)
        videos, rows = [], []
        for i, content in enumerate(contents(m, "test", 2)):
            if m == "helicopter":  # static and identical
                video = np.repeat(render_video(m, contents(m, "test", 1)[0], frames=1, split="test")[0][None], 16,
                                  axis=0)
            else:
                video = render_video(m, content, frames=16, seed=i, split="test")
            name = f"p{i}_s0"
            write_mp4(video, folder / f"{name}.mp4")
            write_gif(video, folder / f"{name}.gif")
            first = np.zeros_like(video[0]) if (m, i) == ("horse_run", 1) else video[0]
            Image.fromarray(first).save(folder / f"{name}_first.png")
            rows.append((i, 0, content.caption(m), f"{name}.mp4", f"{name}.gif", f"{name}_first.png"))
            videos.append(video)
        with open(folder / "index.csv", "w", newline="") as f:
            csv.writer(f).writerows([GENERATED_COLUMNS, *rows])
        Image.fromarray(make_contact_sheet(videos)).save(folder / "contact_sheet.png")


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A project with clips and generated videos, scored and reported once."""
    root = tmp_path_factory.mktemp("project")
    clip_dir = tmp_path_factory.mktemp("clip")
    ClipScorer.small().save_pretrained(clip_dir)
    write_params(root, clip_dir)
    layout = Layout(root)
    write_clips(layout)
    write_generated(layout)
    params = load_params(root / "params.yaml")
    summary = metrics_stage.run(params, root)
    report_stage.run(params, root)
    files = {p.relative_to(root): p.read_bytes() for p in sorted(layout.reports.rglob("*")) if p.is_file()}
    return {"root": root, "layout": layout, "params": params, "clip": clip_dir, "summary": summary, "files": files}


def read_metrics(project):
    return json.loads((project["layout"].reports / "metrics.json").read_text())


def read_rows(project):
    with open(project["layout"].reports / "per_video.csv", newline="") as f:
        return list(csv.DictReader(f))


# ------------------------------------------------------------------ metrics

def test_metrics_json_layout(project):
    m = read_metrics(project)
    assert set(m) == {"overall", "per_motion"}
    assert list(m["per_motion"]) == MOTIONS
    for s in m["per_motion"].values():
        assert set(s) == {"n_videos", "alignment", "consistency", "diversity", "motion_accuracy",
                          "first_frame_fidelity", "motion_precision", "motion_recall"}
        assert s["n_videos"] == 2
    assert m["overall"]["n_videos"] == 8
    assert m["overall"]["motion_chance"] == 0.25
    assert project["summary"]["metrics"]["rain/motion_accuracy"] == 1.0


def test_identical_static_videos_consistency_and_diversity_are_100(project):
    heli = read_metrics(project)["per_motion"]["helicopter"]
    assert heli["consistency"] == pytest.approx(100, abs=1e-3)
    assert heli["diversity"] == pytest.approx(100, abs=1e-3)
    moving = read_metrics(project)["per_motion"]["rain"]
    assert moving["consistency"] < 100 and moving["diversity"] < 100


def test_motion_accuracy(project):
    rows = read_rows(project)
    for r in rows:
        if r["motion"] == "helicopter":  # nothing moves: rejected (none), never correct
            assert (r["predicted_motion"], r["motion_correct"]) == ("none", "False")
        else:  # world renders of the right motion are recognised
            assert (r["predicted_motion"], r["motion_correct"]) == (r["motion"], "True")
    m = read_metrics(project)
    assert m["per_motion"]["helicopter"]["motion_accuracy"] == 0
    assert m["per_motion"]["rain"]["motion_accuracy"] == 1
    assert m["overall"]["motion_accuracy"] == 0.75  # 6 of 8
    assert m["overall"]["motion_none_share"] == 0.25  # helicopter's 2
    assert m["per_motion"]["rain"]["motion_precision"] == 1 and m["per_motion"]["rain"]["motion_recall"] == 1
    assert m["per_motion"]["helicopter"]["motion_recall"] == 0
    assert m["per_motion"]["helicopter"]["motion_precision"] is None  # nothing was called helicopter


def test_confusion_matrix_file_and_report(project):
    reports = project["layout"].reports
    confusion = json.loads((reports / "confusion.json").read_text())
    assert confusion["labels"] == [*MOTIONS, "none"]
    assert confusion["counts"]["helicopter"]["none"] == 2
    assert all(confusion["counts"][m][m] == 2 for m in MOTIONS[1:])
    assert sum(sum(row.values()) for row in confusion["counts"].values()) == 8
    summary = (reports / "summary.md").read_text()
    assert "## Confusion matrix" in summary and "| helicopter | **0** | 0 | 0 | 0 | 2 |" in summary
    assert (reports / "plots" / "confusion.png").stat().st_size > 0


def test_per_video_csv_and_aggregates(project):
    rows = read_rows(project)
    assert tuple(rows[0]) == metrics_stage.PER_VIDEO_COLUMNS
    assert [r["motion"] for r in rows] == [m for m in MOTIONS for _ in range(2)]
    root = project["layout"].out
    assert all((root / r["mp4"]).is_file() for r in rows)
    m = read_metrics(project)
    for motion in MOTIONS:
        mine = [r for r in rows if r["motion"] == motion]
        for key in ("alignment", "consistency", "first_frame_fidelity"):
            assert m["per_motion"][motion][key] == pytest.approx(np.mean([float(r[key]) for r in mine]), abs=1e-3)
    assert m["overall"]["diversity"] == pytest.approx(
        np.mean([s["diversity"] for s in m["per_motion"].values()]), abs=1e-3)
    assert m["overall"]["diversity_all_videos"] is not None
    classifier = MotionClassifier.from_json((project["layout"].reports / "motion_centroids.json").read_text())
    assert sorted(classifier.motions) == sorted(MOTIONS)


def test_alignment_is_with_the_videos_own_prompt(project):
    rows = read_rows(project)
    scorer = ClipScorer.from_pretrained(project["clip"])
    r = next(r for r in rows if r["motion"] == "rain")
    frames, _ = read_video(project["layout"].out / r["mp4"])
    embs = scorer.image_embeddings(frames)
    assert float(r["alignment"]) == pytest.approx(alignment(embs, scorer.text_embeddings([r["prompt"]])[0]), abs=1e-3)
    # same video, another prompt: alignment changes, consistency does not
    video = metrics_stage.VideoToScore(project["layout"].out / r["mp4"], r["prompt"], "rain")
    other = metrics_stage.VideoToScore(video.mp4, "a small green square above green grass, running", "rain")
    (a, b), _, _ = metrics_stage.score_videos([video, other], scorer)
    assert a["alignment"] != pytest.approx(b["alignment"], abs=1e-3)
    assert a["consistency"] == b["consistency"]
    assert a["predicted_motion"] is None and np.isnan(a["first_frame_fidelity"])  # no centroids, no first frame


def test_first_frame_fidelity(project):
    rows = [r for r in read_rows(project) if r["motion"] == "horse_run"]
    assert float(rows[0]["first_frame_fidelity"]) > 97  # mp4 frame 0 vs the exact render
    frames, _ = read_video(project["layout"].out / rows[1]["mp4"])  # vs a black PNG
    assert float(rows[1]["first_frame_fidelity"]) == pytest.approx(100 * (1 - frames[0].mean() / 255), abs=1e-3)


def test_missing_inputs_are_stage_errors(tmp_path, project):
    write_params(tmp_path, project["clip"])
    params = load_params(tmp_path / "params.yaml")
    with pytest.raises(StageError, match=r"outputs/videos/helicopter.*generate"):
        metrics_stage.run(params, tmp_path)
    write_generated(Layout(tmp_path))
    with pytest.raises(StageError, match=r"clips/helicopter/clips.safetensors.*extract"):
        metrics_stage.run(params, tmp_path)
    with pytest.raises(StageError, match=r"metrics.json.*metrics"):
        report_stage.run(params, tmp_path)


def test_cli_reports_a_missing_stage_in_one_line(tmp_path, project, capsys):
    """`python -m tasks.metrics` goes through stage_main: one 'error:' line, exit code 1."""
    write_params(tmp_path, project["clip"])
    with pytest.raises(SystemExit) as exit_info:
        stage_main(metrics_stage.run, per_motion=False, argv=["--root", str(tmp_path)])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("error:") and "generate" in err and "Traceback" not in err


def test_clip_choice(tmp_path, project):
    def params(**m):
        write_params(tmp_path, project["clip"], **m)
        return load_params(tmp_path / "params.yaml")

    with pytest.raises(StageError, match="base"):
        metrics_stage.load_scorer(params(clip_model="models/world/clip"), tmp_path)
    with pytest.raises(StageError, match="clip_pretrained"):
        metrics_stage.load_scorer(params(clip_model="ViT-L-14"), tmp_path)
    with pytest.raises(ModelUnavailableError):  # offline in tests
        metrics_stage.load_scorer(params(clip_model="ViT-L-14", clip_pretrained="openai"), tmp_path)


# ------------------------------------------------------------------ report

def test_summary_table(project):
    text = (project["layout"].reports / "summary.md").read_text(encoding="utf-8")
    for row in ("| Tune-A-Video | paper, Table 1 | 27.22 | 94.87 | 84.72 |",
                "| Text2Video-Zero | paper, Table 1 | 26.94 | 91.47 | 73.01 |",
                "| AnimateDiff | paper, Table 1 | 28.88 | 97.81 | 73.47 |",
                "| LAMP | paper, Table 1 | 31.35 | 98.31 | 71.65 |"):
        assert row in text
    o = read_metrics(project)["overall"]
    assert (f"| **LAMP (this run)** | this run (small CLIP, not comparable) | {o['alignment']:.2f} | "
            f"{o['consistency']:.2f} | {o['diversity']:.2f} |") in text
    assert "NOT comparable" in text and str(project["clip"]) in text
    assert "averaged over motions" in text  # the diversity variant is named
    assert "| helicopter | 2 |" in text and "| 0.0 |" in text and "| 100.0 |" in text
    assert "chance = 25.0%" in text


def test_examples_are_each_motions_first_gif_with_its_prompt(project):
    """reports/examples/<motion>.gif = a byte copy of the motion's first generated gif, listed in
    summary.md with that video's prompt (what the README shows)."""
    layout = project["layout"]
    text = (layout.reports / "summary.md").read_text(encoding="utf-8")
    rows = {r["mp4"]: r for r in csv.DictReader(open(layout.reports / "per_video.csv", newline=""))}
    gifs = sorted((layout.reports / "examples").glob("*.gif"))
    assert [g.stem for g in gifs] == sorted(MOTIONS)
    with open(layout.reports / "examples" / "index.csv", newline="") as f:
        listed = list(csv.DictReader(f))
    assert [r["motion"] for r in listed] == MOTIONS  # the README's example table comes from it
    for gif in gifs:
        motion = gif.stem
        first = read_generated(layout, motion)[0]
        assert gif.read_bytes() == (layout.generated(motion) / first["gif"]).read_bytes()
        mp4 = os.path.relpath(layout.generated(motion) / first["mp4"], layout.out).replace(os.sep, "/")
        assert f"| {motion} | ![{motion}](examples/{motion}.gif) | {rows[mp4]['prompt']} (seed" in text
        entry = next(r for r in listed if r["motion"] == motion)
        assert (entry["gif"], entry["prompt"], entry["predicted_motion"]) == (
            gif.name, rows[mp4]["prompt"], rows[mp4]["predicted_motion"])


def test_plots_are_pngs(project):
    for key in METRIC_KEYS:
        assert (project["layout"].reports / "plots" / f"{key}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links, self.tags = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.links += [v for k, v in attrs if k in ("src", "href")]


def test_gallery_references_existing_files(project):
    reports = project["layout"].reports
    parser = _Links()
    parser.feed((reports / "gallery.html").read_text(encoding="utf-8"))
    assert "script" not in parser.tags
    gifs = [s for s in parser.links if s.endswith(".gif")]
    assert len(gifs) == 8 and len([s for s in parser.links if s.endswith("contact_sheet.png")]) == 4
    for link in parser.links:
        assert "://" not in link and (reports / link).resolve().is_file(), link
    assert "a large" in (reports / "gallery.html").read_text(encoding="utf-8")  # prompts shown


def test_rerun_is_byte_identical(project):
    root, params, layout = project["root"], project["params"], project["layout"]
    metrics_stage.run(params, root)
    report_stage.run(params, root)
    files = {p.relative_to(root): p.read_bytes() for p in sorted(layout.reports.rglob("*")) if p.is_file()}
    assert files.keys() == project["files"].keys() and len(files) == 4 + 2 + 6 + 1 + len(params.motions)  # + examples/index.csv, <motion>.gif
    assert [k for k in files if files[k] != project["files"][k]] == []
