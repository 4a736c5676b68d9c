"""`compare`: the ablation comparison, built from MLflow runs (or their per-seed record, below).

Takes the latest finished `metrics` stage run of each ablation variant and seed (tags.stage =
metrics, tags.variant != main; optionally only those of one `lamp-ablations` run) via
mlflow.search_runs, averages over the seeds, and writes, in reports/ablations/:
  comparison.csv   one row per variant: n_seeds, overall metrics (mean over seeds, then
                   <metric>_std), then <motion>/<metric> columns (mean)
  comparison.md    Markdown tables: overall (mean ± std over seeds), and one per motion
  comparison.png   bar plots, one panel per metric (overall + per motion)
  per_seed.csv     the rows averaged: one per variant and seed, with its MLflow run id and start time

per_seed.csv keeps the table's inputs beyond the MLflow store they came from: `--per-seed` builds the
table from such files instead (several: e.g. seeds run on different machines; the latest run of a
variant and seed wins).

    python -m flows.compare [--ablation-run-id ID] [--seeds 0 1]
    python -m flows.compare --per-seed reports/ablations/per_seed.csv other/per_seed.csv
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
from prefect import flow

from lamp_model.config import load_params
from lamp_model.io import atomic_write
from tasks import tracking

PER_SEED_FILE = "per_seed.csv"
MAIN_METRICS = ("alignment", "consistency", "diversity", "motion_accuracy", "first_frame_fidelity")
SKIP = {"duration_s"}


def variant_order() -> list[str]:
    from flows.ablations import VARIANTS

    return list(VARIANTS)


def _variant_rank(variant: str) -> tuple[int, str]:
    """The flow's variant order first, any other variant after them by name."""
    order = variant_order()
    return (order.index(variant), "") if variant in order else (len(order), variant)


def _metric_columns(columns) -> tuple[list[str], list[str]]:
    """(overall metrics, MAIN_METRICS first; <motion>/<metric> by motion) among `columns`."""
    overall = [c for c in columns if "/" not in c and not c.endswith("_std")
               and c not in ("n_seeds", "run_id", "start_time")]
    overall = [c for c in MAIN_METRICS if c in overall] + sorted(c for c in overall if c not in MAIN_METRICS)
    per_motion = sorted((c for c in columns if "/" in c),
                        key=lambda c: (c.split("/")[0], _metric_rank(c.split("/", 1)[1])))
    return overall, per_motion


def _in_table_order(table: pd.DataFrame) -> pd.DataFrame:
    """Rows in variant order; columns: n_seeds, overall metrics, their _std, then <motion>/<metric>."""
    overall, per_motion = _metric_columns(table.columns)
    spread = [f"{c}_std" for c in overall if f"{c}_std" in table.columns]
    table = table.loc[sorted(table.index, key=_variant_rank), ["n_seeds", *overall, *spread, *per_motion]]
    table.index.name = "variant"
    return table


def search_metric_runs(root: str | Path, ablation_run_id: str | None = None) -> pd.DataFrame:
    import mlflow

    params = load_params(Path(root) / "params.yaml")
    uri = tracking.tracking_uri(params, root)
    mlflow.set_tracking_uri(uri)
    exp = mlflow.get_experiment_by_name(params.tracking.experiment)
    if exp is None:
        raise RuntimeError(f"MLflow experiment {params.tracking.experiment!r} not found at {uri}; "
                           "run the ablations first (flows/ablations.py)")
    flt = "tags.stage = 'metrics' AND tags.variant != 'main' AND attributes.status = 'FINISHED'"
    if ablation_run_id:
        flt += f" AND tags.ablation_run = '{ablation_run_id}'"
    runs = mlflow.search_runs(experiment_ids=[exp.experiment_id], filter_string=flt,
                              order_by=["attributes.start_time DESC"])
    return runs


def baseline_table(root: str | Path) -> pd.DataFrame:
    """method x metric of the latest finished `baselines` stage run (Table 1 on our data; its metrics
    are logged as <method>/<metric>). Baseline runs never enter the ablation table: that one reads
    `metrics` stage runs only."""
    import mlflow

    params = load_params(Path(root) / "params.yaml")
    uri = tracking.tracking_uri(params, root)
    mlflow.set_tracking_uri(uri)
    exp = mlflow.get_experiment_by_name(params.tracking.experiment)
    runs = pd.DataFrame() if exp is None else mlflow.search_runs(
        experiment_ids=[exp.experiment_id], max_results=1, order_by=["attributes.start_time DESC"],
        filter_string="tags.stage = 'baselines' AND attributes.status = 'FINISHED'")
    if runs.empty:
        raise RuntimeError(f"no finished `baselines` stage run in MLflow experiment "
                           f"{params.tracking.experiment!r} at {uri}")
    from tasks.baselines import METHODS

    latest = runs.iloc[0]
    rows = {m: {c.split("/", 1)[1]: latest[c] for c in runs.columns if c.startswith(f"metrics.{m}/")}
            for m in METHODS}
    table = pd.DataFrame.from_dict(rows, orient="index")
    keys = [k for k in ("alignment", "consistency", "diversity", "motion_accuracy", "motion_none_share", "n_videos")
            if k in table.columns]
    stds = [f"{k}_std" for k in keys if f"{k}_std" in table.columns]
    table = table[keys + stds]
    table.index.name = "method"
    return table


def per_seed_table(runs: pd.DataFrame, seeds: list[int] | None = None) -> pd.DataFrame:
    """(variant, seed) x metric: the latest finished run of each variant and seed, with its MLflow
    run id and start time. The table's inputs as a file of their own (per_seed.csv), so the mean and
    spread can be checked, and read again, without the MLflow store they came from.

    `seeds`: only these seeds (e.g. the ones every variant has finished while another seed still runs)."""
    if runs.empty:
        return pd.DataFrame()
    runs = runs.copy()
    runs["seed"] = runs["tags.seed"].fillna("") if "tags.seed" in runs.columns else ""
    if seeds is not None:
        runs = runs[runs["seed"].isin([str(s) for s in seeds])]
        if runs.empty:
            return pd.DataFrame()
    runs = runs.drop_duplicates(subset=["tags.variant", "seed"], keep="first")
    cols = [c for c in runs.columns if c.startswith("metrics.") and c.removeprefix("metrics.") not in SKIP]
    table = runs[cols].rename(columns=lambda c: c.removeprefix("metrics."))
    table = table[[c for part in _metric_columns(table.columns) for c in part]]  # the same order every run
    table.insert(0, "start_time", runs["start_time"].astype(str) if "start_time" in runs.columns else "")
    table.insert(0, "run_id", runs["run_id"] if "run_id" in runs.columns else "")
    table.index = pd.MultiIndex.from_arrays([runs["tags.variant"], runs["seed"]], names=["variant", "seed"])
    keys = sorted(table.index, key=lambda k: (_variant_rank(k[0]), str(k[1])))
    return table.loc[keys].dropna(axis=1, how="all")


def comparison_table(runs: pd.DataFrame, seeds: list[int] | None = None) -> pd.DataFrame:
    """variant x metric, the mean over seeds (the latest run of each variant and seed): n_seeds, the
    overall columns, their <metric>_std over seeds (population std; 0 for one seed), then <motion>/<metric>.

    `seeds`: only these seeds."""
    return aggregate_seeds(per_seed_table(runs, seeds))


def aggregate_seeds(per_seed: pd.DataFrame) -> pd.DataFrame:
    """per_seed_table's rows -> one row per variant (mean, population std over its seeds)."""
    if per_seed.empty:
        return pd.DataFrame()
    per_seed = per_seed.drop(columns=[c for c in ("run_id", "start_time") if c in per_seed.columns])
    per_seed = per_seed.droplevel("seed")
    grouped = per_seed.groupby(level=0, sort=False)
    overall = [c for c in per_seed.columns if "/" not in c]
    return _in_table_order(pd.concat([grouped.size().rename("n_seeds"), grouped.mean(),
                                      grouped[overall].std(ddof=0).add_suffix("_std")], axis=1))


def pool_tables(table: pd.DataFrame, earlier: pd.DataFrame) -> pd.DataFrame:
    """Two comparison tables over disjoint seeds -> the table over all their seeds, exactly as if
    aggregated from every per-seed row: means weighted by n_seeds, population variances pooled
    (E[x^2] - mean^2). For an earlier table whose per-seed rows were not kept (e.g. its MLflow store
    is gone); per-motion columns carry means only, as in the table."""
    variants = list(dict.fromkeys([*earlier.index, *table.index]))
    cols = list(dict.fromkeys([*table.columns, *earlier.columns]))
    n_a = table["n_seeds"].reindex(variants).fillna(0)
    n_b = earlier["n_seeds"].reindex(variants).fillna(0)
    out = pd.DataFrame(index=pd.Index(variants, name="variant"))
    out["n_seeds"] = n_a + n_b
    for c in cols:
        if c == "n_seeds" or c.endswith("_std"):
            continue
        a, b = (t[c].reindex(variants) if c in t.columns else pd.Series(float("nan"), index=variants)
                for t in (table, earlier))
        w_a, w_b = n_a.where(a.notna(), 0), n_b.where(b.notna(), 0)
        n = (w_a + w_b).where(lambda x: x > 0)
        mean = (a.fillna(0) * w_a + b.fillna(0) * w_b) / n
        out[c] = mean
        if f"{c}_std" in table.columns or f"{c}_std" in earlier.columns:
            s_a, s_b = (t[f"{c}_std"].reindex(variants).fillna(0) if f"{c}_std" in t.columns
                        else pd.Series(0.0, index=variants) for t in (table, earlier))
            second = ((s_a ** 2 + a.fillna(0) ** 2) * w_a + (s_b ** 2 + b.fillna(0) ** 2) * w_b) / n
            out[f"{c}_std"] = (second - mean ** 2).clip(lower=0) ** 0.5
    return _in_table_order(out)


def _metric_rank(name: str):
    return (MAIN_METRICS.index(name), name) if name in MAIN_METRICS else (len(MAIN_METRICS), name)


def _md_table(df: pd.DataFrame, std: pd.DataFrame | None = None) -> str:
    """Values to 2 decimals; with `std` (same shape), "mean ± std"."""
    head = "| " + " | ".join([df.index.name or "", *df.columns]) + " |"
    sep = "|" + "---|" * (len(df.columns) + 1)

    def cell(v, s) -> str:
        if pd.isna(v):
            return ""
        return f"{v:.2f}" if s is None or pd.isna(s) else f"{v:.2f} ± {s:.2f}"

    rows = []
    for k, (i, row) in enumerate(zip(df.index, df.itertuples(index=False))):
        spread = [None] * len(row) if std is None else list(std.iloc[k])
        rows.append("| " + " | ".join([str(i), *(cell(v, s) for v, s in zip(row, spread))]) + " |")
    return "\n".join([head, sep, *rows])


def write_outputs(table: pd.DataFrame, out_dir: Path, per_seed: pd.DataFrame | None = None,
                  note: str = "") -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, md_path, png_path = out_dir / "comparison.csv", out_dir / "comparison.md", out_dir / "comparison.png"
    with atomic_write(csv_path) as tmp:
        table.to_csv(tmp, float_format="%.4f")
    written = {"csv": csv_path, "md": md_path, "png": png_path}
    if per_seed is not None:
        written["per_seed"] = out_dir / PER_SEED_FILE
        with atomic_write(written["per_seed"]) as tmp:
            per_seed.to_csv(tmp, float_format="%.6f")

    overall = [c for c in table.columns if "/" not in c and not c.endswith("_std") and c != "n_seeds"]
    motions = sorted({c.split("/")[0] for c in table.columns if "/" in c})
    seeds = table["n_seeds"] if "n_seeds" in table.columns else pd.Series(1, index=table.index)
    std = table[[f"{c}_std" for c in overall]] if all(f"{c}_std" in table.columns for c in overall) else None
    parts = ["# Ablations", "", "Values: the latest `metrics` run of each variant and seed (listed in "
             f"[{PER_SEED_FILE}]({PER_SEED_FILE}) with their MLflow run ids); mean ± std "
             f"over seeds: {', '.join(f'{v} {int(n)}' for v, n in seeds.items())}; CLIP metrics x100, "
             "diversity: lower = more diverse; motion accuracy counts `none` as wrong; first-frame fidelity "
             "is empty where no first frame was given)." + (f" {note}" if note else ""), "", "## Overall", "",
             _md_table(table[overall], std)]
    for m in motions:
        cols = [c for c in table.columns if c.startswith(f"{m}/")]
        sub = table[cols].rename(columns=lambda c: c.split("/", 1)[1])
        parts += ["", f"## {m}", "", _md_table(sub)]
    with atomic_write(md_path) as tmp:
        tmp.write_text("\n".join(parts) + "\n")

    metrics = [m for m in MAIN_METRICS if m in overall] or overall[:5]
    groups = ["overall", *motions]
    fig, axes = plt.subplots(len(metrics), 1, figsize=(max(6, 1.2 * len(table) * max(1, len(groups)) / 2),
                                                        2.6 * len(metrics)), squeeze=False)
    width = 0.8 / len(groups)
    for ax, metric in zip(axes[:, 0], metrics):
        for g, group in enumerate(groups):
            col = metric if group == "overall" else f"{group}/{metric}"
            if col not in table.columns:
                continue
            xs = [i + (g - (len(groups) - 1) / 2) * width for i in range(len(table))]
            ax.bar(xs, table[col].fillna(0).to_numpy(), width=width, label=group)
        ax.set_title(metric)
        ax.set_xticks(range(len(table)))
        ax.set_xticklabels(table.index, rotation=20, fontsize=8)
    axes[0, 0].legend(fontsize=7, ncols=min(len(groups), 5))
    fig.tight_layout()
    try:
        with atomic_write(png_path) as tmp:
            fig.savefig(tmp, dpi=80)
    finally:
        plt.close(fig)
    return written


def read_per_seed(files: list[str | Path]) -> pd.DataFrame:
    """per_seed.csv files (e.g. one from each machine that ran some seeds) -> one per_seed_table; a
    (variant, seed) found in several keeps its latest run."""
    frames = []
    for f in files:
        try:
            frame = pd.read_csv(f, dtype={"seed": str, "run_id": str}, keep_default_na=True)
        except (OSError, pd.errors.ParserError, UnicodeDecodeError) as e:
            raise RuntimeError(f"{f}: not a readable {PER_SEED_FILE} ({e}); write one with `python -m flows.compare`")
        missing = {"variant", "seed", "start_time"} - set(frame.columns)
        if missing:
            raise RuntimeError(f"{f}: columns {sorted(missing)} missing; it is not a {PER_SEED_FILE} written by "
                               "`python -m flows.compare`")
        frames.append(frame)
    rows = pd.concat(frames, ignore_index=True)
    rows["seed"] = rows["seed"].fillna("")
    rows = rows.sort_values("start_time", ascending=False, kind="stable")
    rows = rows.drop_duplicates(subset=["variant", "seed"], keep="first")
    rows = rows.set_index(["variant", "seed"])
    return rows.loc[sorted(rows.index, key=lambda k: (_variant_rank(k[0]), k[1]))]


def build_comparison(root: str | Path = ".", ablation_run_id: str | None = None,
                     out_dir: str | Path | None = None, seeds: list[int] | None = None,
                     per_seed_files: list[str | Path] | None = None, earlier_table: str | Path | None = None,
                     earlier_seeds: list[int] | None = None) -> pd.DataFrame:
    """The table from MLflow, or (per_seed_files) from per_seed.csv files written earlier.

    `earlier_table` (a comparison.csv over `earlier_seeds`, whose per-seed rows were not kept) is
    pooled in (pool_tables); a variant may not have a seed in both."""
    root = Path(root).resolve()
    if per_seed_files:
        per_seed = read_per_seed(per_seed_files)
        if seeds is not None:
            per_seed = per_seed[per_seed.index.get_level_values("seed").isin([str(s) for s in seeds])]
    else:
        per_seed = per_seed_table(search_metric_runs(root, ablation_run_id), seeds)
    table = aggregate_seeds(per_seed)
    if table.empty:
        raise RuntimeError("no finished ablation `metrics` runs in "
                           + (", ".join(map(str, per_seed_files)) if per_seed_files else "MLflow")
                           + (f" for ablation run {ablation_run_id}" if ablation_run_id else "")
                           + (f" for seeds {seeds}" if seeds is not None else ""))
    note = ""
    if earlier_table:
        earlier = read_earlier_table(earlier_table, earlier_seeds)
        taken = {str(k) for k in earlier_seeds}
        both = [f"{v} seed {k}" for v, k in per_seed.index if v in earlier.index and k in taken]
        if both:
            raise RuntimeError(f"{earlier_table} already holds seeds {earlier_seeds} of these runs: {both}; "
                               "leave those seeds out (--seeds)")
        table = pool_tables(table, earlier)
        note = (f"Seeds {', '.join(map(str, earlier_seeds))} of the variants in {Path(earlier_table).name} are "
                f"pooled in from that earlier table (their per-seed rows were not kept); {PER_SEED_FILE} lists "
                "the other runs.")
    write_outputs(table, Path(out_dir) if out_dir else root / "reports/ablations", per_seed, note)
    return table


def read_earlier_table(path: str | Path, seeds: list[int] | None) -> pd.DataFrame:
    if not seeds:
        raise RuntimeError(f"{path}: name the seeds that table averages (--earlier-seeds 0 1)")
    try:
        earlier = pd.read_csv(path, index_col="variant")
    except (OSError, ValueError, pd.errors.ParserError, UnicodeDecodeError) as e:
        raise RuntimeError(f"{path}: not a comparison.csv written by `python -m flows.compare` ({e})")
    if "n_seeds" not in earlier.columns or (earlier["n_seeds"] != len(seeds)).any():
        raise RuntimeError(f"{path}: its n_seeds column does not say {len(seeds)} seeds for every variant; "
                           f"--earlier-seeds must list the seeds it averages")
    return earlier


@flow(name="lamp-compare")
def compare(root: str = ".", ablation_run_id: str | None = None, seeds: list[int] | None = None) -> str:
    table = build_comparison(root, ablation_run_id, seeds=seeds)
    return table.to_csv()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Ablation comparison from MLflow -> reports/ablations/.")
    ap.add_argument("--root", default=".")
    ap.add_argument("--ablation-run-id", default=None, help="only the variants of this lamp-ablations run")
    ap.add_argument("--seeds", nargs="*", type=int, default=None, help="only these seeds (default: every seed)")
    ap.add_argument("--per-seed", nargs="+", default=None, metavar="CSV",
                    help=f"build the table from {PER_SEED_FILE} files written earlier (e.g. one per machine) "
                         "instead of MLflow")
    ap.add_argument("--earlier-table", default=None, metavar="CSV",
                    help="pool in a comparison.csv of other seeds whose per-seed rows were not kept")
    ap.add_argument("--earlier-seeds", nargs="*", type=int, default=None, help="the seeds --earlier-table averages")
    a = ap.parse_args(argv)
    try:
        table = build_comparison(a.root, a.ablation_run_id, seeds=a.seeds, per_seed_files=a.per_seed,
                                 earlier_table=a.earlier_table, earlier_seeds=a.earlier_seeds)
    except RuntimeError as e:
        raise SystemExit(f"compare: {e}")
    print(table.round(2).to_string())


if __name__ == "__main__":
    main()
