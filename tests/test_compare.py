"""The ablation table: latest run per variant and seed, mean ± std over seeds."""
import pandas as pd
import pytest

from flows.compare import comparison_table, write_outputs


def _runs(rows):
    """A frame shaped like mlflow.search_runs (newest first)."""
    return pd.DataFrame([{"tags.variant": v, "tags.seed": s, "metrics.motion_accuracy": acc,
                          "metrics.alignment": 50.0, "metrics.rain/motion_accuracy": acc,
                          "metrics.duration_s": 9.0} for v, s, acc in rows])


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
