"""Generate the README's figure table (and its example videos) from the files that hold them.

The README states no figure of its own: the table between `<!-- figures:start -->` and
`<!-- figures:end -->` is built from reports/metrics.json, reports/run_time.json and the committed
benchmark results, so it cannot drift from them; the levers table between `<!-- levers:start -->` and
`<!-- levers:end -->` from benchmarks/results/world_levers_cpu.json; the baselines table between `<!-- baselines:start -->`
and `<!-- baselines:end -->` from benchmarks/results/baselines_seeds.json (Table 1 over seeds) or, before
there is one, reports/baselines/metrics.json, with reports/baselines/run_time.json. The examples
between `<!-- examples:start -->` and `<!-- examples:end -->` follow a fixed rule: the first test prompt of every motion, first
seed, with what the motion score sees in it (reports/examples/index.csv, written by the report
stage), whatever it scores.

    python scripts/readme_figures.py            # rewrite the table in README.md
    python scripts/readme_figures.py --check    # exit 1, naming each stale figure, if it differs

After a new `make run` (new reports/metrics.json) or a new benchmark result, regenerate the table;
which file feeds which row is the ROWS list below, the only place that says so.
"""
from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
START, END = "<!-- figures:start -->", "<!-- figures:end -->"
HEADER = ("| what | command | how long | what it reaches | evidence |\n"
          "|---|---|---|---|---|")


def load(root: Path, rel: str) -> dict:
    path = root / rel
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        sys.exit(f"readme_figures: {rel} is missing (a source of the README's figure table)")


def pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def minutes_range(values: list[float]) -> str:
    lo, hi = min(values), max(values)
    return f"{lo:.1f} min" if lo == hi else f"{lo:.1f}-{hi:.1f} min"


def seeds_tuned(root: Path, files: list[str]) -> tuple[dict[int, float], dict[int, float]]:
    """Motion accuracy and tuning seconds per tuning seed over benchmark results; a seed may be
    split over several files (disjoint motions), which combine because each motion is tuned alone."""
    per_motion: dict[int, dict[str, float]] = {}
    tune_s: dict[int, float] = {}
    for rel in files:
        for t in load(root, rel)["tuned"]:
            per_motion.setdefault(t["seed"], {}).update(t["per_motion"])
            tune_s[t["seed"]] = tune_s.get(t["seed"], 0.0) + t.get("tune_s", 0.0)
    acc = {}
    for seed, motions in per_motion.items():
        if len(motions) != 8:
            sys.exit(f"readme_figures: seed {seed} of {files} covers {len(motions)} motions, not 8")
        acc[seed] = statistics.fmean(motions.values())  # 6 videos per motion: equal weights
    return acc, tune_s


def mean_std(acc: dict[int, float]) -> str:
    vals = [acc[s] for s in sorted(acc)]
    if len(vals) == 1:
        return f"{pct(vals[0])} (seed {next(iter(acc))} only)"
    return (f"{pct(statistics.fmean(vals))} ± {100 * statistics.pstdev(vals):.1f}"
            f" ({' / '.join(pct(v) for v in vals)}; seeds {', '.join(map(str, sorted(acc)))})")


# ---- the rows: each one's cells are read from the files it names ------------------------------

def main_job(root: Path) -> tuple[str, str]:
    m = load(root, "reports/metrics.json")["overall"]
    t = load(root, "reports/run_time.json")
    runs = f"{len(t['minutes'])} fresh-clone run" + ("s" if len(t["minutes"]) > 1 else "")
    how_long = (f"{minutes_range(t['minutes'])} ({runs}, {t['machine']},"
                f" measured {t['measured']}) + {minutes_range(t['setup_minutes'])} set-up")
    reaches = (f"motion accuracy **{pct(m['motion_accuracy'])}** on {m['n_videos']} test videos "
               f"(chance {pct(m['motion_chance'])}; rejected as `none`: {pct(m['motion_none_share'])}); "
               f"CLIP alignment {m['alignment']:.1f}, consistency {m['consistency']:.1f}")
    return how_long, reaches


MAKE_RUN_SEEDS = "benchmarks/results/make_run_seeds_cpu.json"
PRESET_SEEDS = "benchmarks/results/make_run_seeds_world_16x24_cpu.json"
SEEDS = (0, 1, 2)  # the seeds a figure over seeds is measured on


def seed_runs(root: Path, rel: str) -> tuple[str, str]:
    """A benchmarks.make_run_seeds table: minutes per run and test accuracy over its seeds, and which
    of SEEDS are still to run."""
    d = load(root, rel)
    acc = {r["seed"]: r["test_motion_accuracy"] for r in d["runs"]}
    low = d["lowest_motion"]
    machines = ", ".join(sorted({r["machine"] for r in d["runs"]}))
    if len(acc) > 1:
        how_long = f"{minutes_range(d['minutes'])} per run (median {d['median_minutes']:.1f} min; {machines})"
    else:
        how_long = f"{minutes_range(d['minutes'])} (one run; {machines})"
    reaches = (f"motion accuracy **{mean_std(acc)}**; lowest motion {low.replace('_', ' ')} "
               f"{pct(d['per_motion_mean'][low])}" + (" (mean over seeds)" if len(acc) > 1 else ""))
    missing = [s for s in SEEDS if s not in acc]
    if missing:
        reaches += f"; seed{'s' if len(missing) > 1 else ''} {', '.join(map(str, missing))} not yet run"
    return how_long, reaches


def main_job_seeds(root: Path) -> tuple[str, str]:
    return seed_runs(root, MAKE_RUN_SEEDS)


def preset_seeds(root: Path) -> tuple[str, str]:
    return seed_runs(root, PRESET_SEEDS)


DEFAULT_SEEDS = "benchmarks/results/world_motion_cpu_3seeds_test.json"


def default_seeds(root: Path) -> tuple[str, str]:
    rel = DEFAULT_SEEDS
    d = load(root, rel)
    acc, tune_s = seeds_tuned(root, [rel])
    how_long = f"tuning {sum(tune_s.values()) / 60:.0f} min for {len(acc)} seeds x 8 motions (2 CPU cores)"
    reaches = (f"motion accuracy {mean_std(acc)}; untuned {pct(d['untuned']['motion_accuracy'])}, "
               f"VAE ceiling {pct(d['vae']['round_trip_motion_accuracy'])}")
    return how_long, reaches


def real_weights(root: Path) -> tuple[str, str]:
    d = load(root, "benchmarks/results/sd14_gpu_bf16_ckpt.json")
    s = d["settings"]
    how_long = f"{d['train_step']['median']['total_s']:.2f} s per tuning step on an {d['machine']['gpu_name']}"
    reaches = (f"{d['memory']['train_step']['cuda_max_memory_allocated_gib']:.1f} GiB peak GPU memory "
               f"tuning {s['frames']} x {s['height']} x {s['width']} (bf16 autocast + gradient checkpointing)")
    return how_long, reaches


@dataclass(frozen=True)
class Row:
    what: str
    command: str
    cells: Callable[[Path], tuple[str, str]]  # -> (how long, what it reaches)
    evidence: str                              # links to the files `cells` reads


ROWS = [
    Row("the main job: the default motion world, all 8 motions, 48 test prompts", "`make run`",
        main_job, "[reports/summary.md](reports/summary.md), [reports/metrics.json](reports/metrics.json), "
                  "[reports/run_time.json](reports/run_time.json)"),
    Row("the main job over 3 seeds: fresh clones whose base, tuning and sampling seeds are all N, test prompts",
        "`python -m benchmarks.make_run_seeds run --seed N` (N = 0, 1, 2), then `... table`", main_job_seeds,
        "[make_run_seeds_cpu.json](benchmarks/results/make_run_seeds_cpu.json)"),
    Row("the default over 3 seeds of tuning and sampling (the main job's base), test prompts",
        "`python -m benchmarks.world_motion --base models/world/base --split test --seeds 0,1,2`", default_seeds,
        "[world_motion_cpu_3seeds_test.json](benchmarks/results/world_motion_cpu_3seeds_test.json)"),
    Row("the preset `configs/world_16x24.yaml` (16x24 latents, frame index, 900 tuning steps) through `make run`, "
        "seeds as above, test prompts",
        "`python -m benchmarks.make_run_seeds run --seed N --preset configs/world_16x24.yaml`, then "
        "`... table --preset configs/world_16x24.yaml`", preset_seeds,
        "[make_run_seeds_world_16x24_cpu.json](benchmarks/results/make_run_seeds_world_16x24_cpu.json), "
        "[reports/world_motion.md](reports/world_motion.md#results-under-the-clean-protocol)"),
    Row("real weights: SD v1.4-sized LAMP UNet (random init, same compute)",
        "`python -m benchmarks.bench_model --config sd14 --device cuda --bf16 --grad-ckpt`", real_weights,
        "[sd14_gpu_bf16_ckpt.json](benchmarks/results/sd14_gpu_bf16_ckpt.json), "
        "[results.md](benchmarks/results/results.md)"),
]


def table(root: Path) -> str:
    lines = [HEADER]
    for row in ROWS:
        how_long, reaches = row.cells(root)
        lines.append(f"| {row.what} | {row.command} | {how_long} | {reaches} | {row.evidence} |")
    return "\n".join(lines)


EXAMPLES_START, EXAMPLES_END = "<!-- examples:start -->", "<!-- examples:end -->"


def examples(root: Path, per_row: int = 4) -> str:
    """Each motion's first test prompt (prompt 0, first seed): gif, prompt, what the score sees."""
    path = root / "reports/examples/index.csv"
    if not path.is_file():
        sys.exit("readme_figures: reports/examples/index.csv is missing (the source of the README's examples)")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    cells = []
    for r in rows:
        seen = r["predicted_motion"] + ("" if r["motion_correct"] == "True" else " (wrong)")
        cells.append((f"![{r['motion'].replace('_', ' ')}](reports/examples/{r['gif']})",
                      f"*{r['prompt']}*: seen as {seen}"))
    lines = []
    for k in range(0, len(cells), per_row):
        chunk = cells[k:k + per_row]
        if k == 0:
            lines += ["| " + " | ".join([""] * len(chunk)) + " |", "|" + "---|" * len(chunk)]
        lines += ["| " + " | ".join(g for g, _ in chunk) + " |", "| " + " | ".join(c for _, c in chunk) + " |"]
    return "\n".join(lines)


BASELINES_START, BASELINES_END = "<!-- baselines:start -->", "<!-- baselines:end -->"
BASELINE_COLUMNS = (("alignment", "alignment ↑", False), ("consistency", "consistency ↑", False),
                    ("diversity", "diversity ↓", False), ("motion_accuracy", "motion accuracy ↑", True),
                    ("motion_none_share", "no motion read", True))


BASELINE_SEEDS = "benchmarks/results/baselines_seeds.json"


def baseline_rows(methods: dict) -> list[str]:
    """The table of one row per method (mean ± std where there are several seeds), the best motion accuracy in bold."""
    def cell(s: dict, key: str, percent: bool) -> str:
        value, std = s.get(key), s.get(f"{key}_std")
        if value is None:
            return "n/a"
        text = pct(value) if percent else f"{value:.2f}"
        if std is None:
            return text
        return text + (f" ± {100 * std:.1f}" if percent else f" ± {std:.2f}")

    best = max(methods.values(), key=lambda s: s.get("motion_accuracy") or 0)
    lines = ["| method | " + " | ".join(h for _, h, _ in BASELINE_COLUMNS) + " | starts from |",
             "|---|" + "---:|" * len(BASELINE_COLUMNS) + "---|"]
    for s in methods.values():
        cells = [cell(s, k, p) for k, _, p in BASELINE_COLUMNS]
        if s is best:
            cells[3] = f"**{cells[3]}**"
        lines.append(f"| {s['name']} | " + " | ".join(cells) + f" | {s['starts_from']} |")
    return lines


def baselines(root: Path) -> str:
    """Table 1 in the world: over seeds from benchmarks.baseline_seeds' result when there is one, else
    reports/baselines/metrics.json (stage `baselines`, the seeds of params.yaml); with `make baselines`' time."""
    t = load(root, "reports/baselines/run_time.json")
    timing = (f"`make baselines` after `make run`: {minutes_range(t['minutes'])} ({t['machine']}, measured "
              f"{t['measured']})")
    if (root / BASELINE_SEEDS).is_file():
        m = load(root, BASELINE_SEEDS)
        seeds = m["seeds"]
        head = (f"`make baselines-seeds` (`{m['command']}`, after `make baselines`): every method trained and "
                "sampled once per seed, "
                f"mean ± population std over seeds {seeds}; {m['methods']['lamp']['n_videos']} videos per method; CLIP "
                f"`{m['clip_model']}` ([{BASELINE_SEEDS}]({BASELINE_SEEDS}); {m['machine']['cpu_count']} CPU "
                f"cores, {m['machine']['cpu_model']}). Seed {seeds[0]} alone is {timing} "
                "([reports/baselines/table.md](reports/baselines/table.md)).")
        return "\n".join([head, "", *baseline_rows(m["methods"])])
    m = load(root, "reports/baselines/metrics.json")
    seeds = m["seeds"]
    spread = f"mean ± population std over seeds {seeds}" if len(seeds) > 1 else f"one seed ({seeds[0]})"
    head = (f"{timing}; {spread}; {m['methods']['lamp']['n_videos']} videos per method; CLIP "
            f"`{m['clip_model']}` ([reports/baselines/table.md](reports/baselines/table.md))")
    return "\n".join([head, "", *baseline_rows(m["methods"])])


LEVERS_START, LEVERS_END = "<!-- levers:start -->", "<!-- levers:end -->"
LEVERS_RESULT = "benchmarks/results/world_levers_cpu.json"


def levers(root: Path) -> str:
    """Accuracy vs minutes of every `make run` lever measured (benchmarks.world_levers), validation
    (where the default is chosen) beside test (reported), and the row the pre-set rule chose."""
    d = load(root, LEVERS_RESULT)
    m = d["machine"]
    head = (f"`python -m benchmarks.world_levers` ([{LEVERS_RESULT}]({LEVERS_RESULT}); seed 0, one tuned model per "
            f"motion scored on both splits; {m['cpu_count']} CPU cores, {m['cpu_model']}; minutes estimated from the "
            f"default's measured {d['default_make_run_minutes']:.1f} min `make run`):")
    lines = [head, "", "| lever | options | DDIM steps | validation | test | judged against | est. `make run` |",
             "|---|---|---:|---:|---:|---|---:|"]
    for r in sorted(d["rows"], key=lambda r: (-r["validation"], r["make_run_minutes"])):
        options = (" ".join(r["options"]) or "params.yaml") + (
            "; base trained in the benchmark" if r["compare_with"] != "default" else "")
        lines.append(f"| {r['lever']} | `{options}` | {r['ddim_steps']} | {pct(r['validation'])} | {pct(r['test'])} | "
                     f"{r['compare_with']} | {r['make_run_minutes']:.1f} min |")
    c = d["chosen"]
    lines += ["", f"Chosen by the rule fixed in `benchmarks/world_levers.py` (validation only): **{c['lever']}, "
              f"{c['ddim_steps']} DDIM steps**."]
    return "\n".join(lines)


def split(readme: str, start: str = START, end: str = END) -> tuple[str, str, str]:
    if start not in readme or end not in readme:
        sys.exit(f"readme_figures: README.md has no {start} ... {end} block")
    head, rest = readme.split(start, 1)
    body, tail = rest.split(end, 1)
    return head, body.strip("\n"), tail


def stale(current: str, fresh: str) -> list[str]:
    """One line per row (named by its first cell) whose cells differ."""
    def rows(text: str) -> dict[str, list[str]]:
        out = {}
        for line in text.splitlines()[2:]:
            cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
            out[cells[0]] = cells
        return out
    names = ("what", "command", "how long", "what it reaches", "evidence")
    have, want = rows(current), rows(fresh)
    problems = []
    for key, cells in want.items():
        if key not in have:
            problems.append(f"row {key!r} is missing")
            continue
        for name, a, b in zip(names, have[key], cells):
            if a != b:
                problems.append(f"row {key!r}, {name}: README has {a!r}, the sources give {b!r}")
    problems += [f"row {key!r} is not generated from any source" for key in have if key not in want]
    if not problems and current.splitlines()[:2] != fresh.splitlines()[:2]:
        problems.append("the table's header differs")
    return problems


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="do not write; exit 1 naming each stale figure")
    p.add_argument("--root", type=Path, default=ROOT, help="project root (default: this checkout)")
    args = p.parse_args(argv)
    readme_path = args.root / "README.md"
    readme = readme_path.read_text()
    _, body, _ = split(readme)
    _, ex_body, _ = split(readme, EXAMPLES_START, EXAMPLES_END)
    _, bl_body, _ = split(readme, BASELINES_START, BASELINES_END)
    _, lv_body, _ = split(readme, LEVERS_START, LEVERS_END)
    fresh, fresh_examples, fresh_baselines = table(args.root), examples(args.root), baselines(args.root)
    fresh_levers = levers(args.root)
    if args.check:
        problems = stale(body, fresh)
        if ex_body != fresh_examples:
            problems.append("the example videos' prompts or scores differ from reports/examples/index.csv")
        if bl_body != fresh_baselines:
            problems.append(f"the baselines table differs from {BASELINE_SEEDS} or reports/baselines/ "
                            "(metrics.json, run_time.json)")
        if lv_body != fresh_levers:
            problems.append(f"the levers table differs from {LEVERS_RESULT}")
        for line in problems:
            print(f"stale figure in README.md: {line}", file=sys.stderr)
        if problems:
            print("run: python scripts/readme_figures.py", file=sys.stderr)
        return 1 if problems else 0
    for start, end, block in ((START, END, fresh), (EXAMPLES_START, EXAMPLES_END, fresh_examples),
                              (BASELINES_START, BASELINES_END, fresh_baselines),
                              (LEVERS_START, LEVERS_END, fresh_levers)):
        head, _, tail = split(readme, start, end)
        readme = f"{head}{start}\n{block}\n{end}{tail}"
    readme_path.write_text(readme)
    return 0


if __name__ == "__main__":
    sys.exit(main())
