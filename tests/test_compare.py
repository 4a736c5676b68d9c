"""The ablation table: latest run per variant and seed, mean ± std over seeds."""
import pandas as pd
import pytest

from flows.compare import (aggregate_seeds, build_comparison, comparison_table, per_seed_table, pool_tables,
                           read_per_seed, write_outputs)


def _runs(rows, day: int = 7):
    """A frame shaped like mlflow.search_runs (newest first)."""
    return pd.DataFrame([{"run_id": f"r{day}{k}", "start_time": pd.Timestamp(2026, 12, day, 23 - k, tz="UTC"),
                          "tags.variant": v, "tags.seed": s, "metrics.motion_accuracy": acc,
                          "metrics.alignment": 50.0, "metrics.rain/motion_accuracy": acc,
                          "metrics.duration_s": 9.0} for k, (v, s, acc) in enumerate(rows)])


def test_mean_and_spread_over_seeds_from_the_latest_run_of_each_seed(tmp_path):
    runs = _runs([("full", "1", 0.6), ("full", "0", 0.4), ("full", "0", 0.1),  # the last: an older rerun
                  ("no_tsm", "0", 0.3)])
    table = comparison_table(runs)
    assert list(table.index) == ["full", "no_tsm"]  # the flow's variant order
    assert table.loc["full", "n_seeds"] == 2 and table.loc["no_tsm", "n_seeds"] == 1
    assert table.loc["full", "motion_accuracy"] == pytest.approx(0.5)
    assert table.loc["full", "motion_accuracy_std"] == pytest.approx(0.1)
    assert table.loc["no_tsm", "motion_accuracy_std"] == 0
    assert table.loc["full", "rain/motion_accuracy"] == pytest.approx(0.5)
    assert "duration_s" not in table.columns
    md = write_outputs(table, tmp_path)["md"].read_text()
    assert "| variant | alignment | motion_accuracy |" in md and "| full | 50.00 ± 0.00 | 0.50 ± 0.10 |" in md
    assert "full 2, no_tsm 1" in md


def test_a_seed_filter_leaves_out_the_other_seeds():
    """While seed 2 still runs, the table over the seeds every variant has finished."""
    runs = _runs([("full", "2", 0.9), ("full", "1", 0.6), ("full", "0", 0.4), ("no_tsm", "0", 0.3),
                  ("no_tsm", "1", 0.1)])
    table = comparison_table(runs, seeds=[0, 1])
    assert table.loc["full", "n_seeds"] == 2 and table.loc["full", "motion_accuracy"] == pytest.approx(0.5)
    assert table.loc["no_tsm", "motion_accuracy"] == pytest.approx(0.2)
    assert comparison_table(runs, seeds=[5]).empty


def test_runs_without_a_seed_tag_count_as_one_seed():
    runs = _runs([("full", None, 0.6), ("full", None, 0.2)]).drop(columns=["tags.seed"])
    table = comparison_table(runs)
    assert table.loc["full", "n_seeds"] == 1 and table.loc["full", "motion_accuracy"] == pytest.approx(0.6)


def test_the_per_seed_record_rebuilds_the_same_table_without_mlflow(tmp_path):
    """per_seed.csv holds the rows the table averages; read back, it gives the same table."""
    runs = _runs([("full", "1", 0.6), ("full", "0", 0.4), ("full", "0", 0.1), ("no_tsm", "0", 0.3)])
    per_seed = per_seed_table(runs)
    assert list(per_seed.index) == [("full", "0"), ("full", "1"), ("no_tsm", "0")]
    assert per_seed.loc[("full", "0"), "run_id"] == "r71"  # the latest of seed 0's two runs
    table = comparison_table(runs)
    written = write_outputs(table, tmp_path, per_seed)
    again = build_comparison(tmp_path, out_dir=tmp_path / "again", per_seed_files=[written["per_seed"]])
    pd.testing.assert_frame_equal(again, table, check_dtype=False)
    assert (tmp_path / "again/per_seed.csv").is_file()


def test_per_seed_files_from_two_machines_combine_and_the_latest_run_wins(tmp_path):
    first = per_seed_table(_runs([("full", "0", 0.4), ("full", "1", 0.9)], day=6))
    second = per_seed_table(_runs([("full", "1", 0.6), ("full", "2", 0.5)], day=7))  # seed 1 rerun later
    write_outputs(aggregate_seeds(first), tmp_path / "a", first)
    write_outputs(aggregate_seeds(second), tmp_path / "b", second)
    rows = read_per_seed([tmp_path / "a/per_seed.csv", tmp_path / "b/per_seed.csv"])
    assert list(rows.index) == [("full", "0"), ("full", "1"), ("full", "2")]
    assert rows.loc[("full", "1"), "motion_accuracy"] == pytest.approx(0.6)
    table = aggregate_seeds(rows)
    assert table.loc["full", "n_seeds"] == 3 and table.loc["full", "motion_accuracy"] == pytest.approx(0.5)


def test_a_file_that_is_not_a_per_seed_record_is_refused_in_one_line(tmp_path):
    bad = tmp_path / "comparison.csv"
    bad.write_text("variant,motion_accuracy\nfull,0.5\n")
    with pytest.raises(RuntimeError, match=r"comparison.csv: columns \['seed', 'start_time'\] missing"):
        read_per_seed([bad])


def test_pooling_an_earlier_table_equals_aggregating_every_seed(tmp_path):
    """Seeds 0-1 known only as a table, seed 2 as runs: pooled = the table of all three seeds."""
    rows = [("full", "0", 0.40), ("full", "1", 0.46), ("full", "2", 0.31), ("no_tsm", "0", 0.15),
            ("no_tsm", "1", 0.17), ("no_tsm", "2", 0.10), ("untuned", "0", 0.12), ("untuned", "2", 0.14)]
    runs = _runs(rows)
    runs.loc[runs["tags.variant"] == "no_tsm", "metrics.alignment"] = [40.0, 44.0, 47.0]
    everything = comparison_table(runs)
    earlier = comparison_table(runs[runs["tags.seed"].isin(["0", "1"]) & (runs["tags.variant"] != "untuned")])
    later = comparison_table(runs[(runs["tags.seed"] == "2") | (runs["tags.variant"] == "untuned")])
    pooled = pool_tables(later, earlier)
    pd.testing.assert_frame_equal(pooled, everything, check_dtype=False)

    earlier.to_csv(tmp_path / "seeds01.csv")
    later_runs = runs[(runs["tags.seed"] == "2") | (runs["tags.variant"] == "untuned")]
    per_seed = per_seed_table(later_runs)
    write_outputs(aggregate_seeds(per_seed), tmp_path / "later", per_seed)
    built = build_comparison(tmp_path, out_dir=tmp_path / "out", per_seed_files=[tmp_path / "later/per_seed.csv"],
                             earlier_table=tmp_path / "seeds01.csv", earlier_seeds=[0, 1])
    pd.testing.assert_frame_equal(built, everything, check_dtype=False, atol=1e-9)
    assert "Seeds 0, 1 of the variants in seeds01.csv are pooled in" in (tmp_path / "out/comparison.md").read_text()
    with pytest.raises(RuntimeError, match="already holds seeds"):  # a seed in both
        build_comparison(tmp_path, out_dir=tmp_path / "x", per_seed_files=[tmp_path / "later/per_seed.csv"],
                         earlier_table=tmp_path / "seeds01.csv", earlier_seeds=[0, 2])
    with pytest.raises(RuntimeError, match="n_seeds"):  # the wrong number of seeds named
        build_comparison(tmp_path, out_dir=tmp_path / "x", per_seed_files=[tmp_path / "later/per_seed.csv"],
                         earlier_table=tmp_path / "seeds01.csv", earlier_seeds=[0])
