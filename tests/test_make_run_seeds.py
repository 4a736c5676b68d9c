"""benchmarks/make_run_seeds.py: seed records pool across days and machines, presets keep their own table."""
import json
import shutil
from pathlib import Path

import numpy as np

from benchmarks import make_run_seeds as mrs

ROOT = Path(__file__).resolve().parent.parent
MOTIONS = ("rain", "firework")


def record(seed: int, acc: float, machine: str = "2-core CPU (test)") -> dict:
    return {"seed": seed, "minutes": 10.0 + seed, "machine": machine, "test_motion_accuracy": acc,
            "per_motion": {m: acc for m in MOTIONS}}


def test_table_pools_earlier_seeds_with_new_records_and_a_rerun_seed_replaces_its_record(tmp_path):
    result = tmp_path / "result.json"
    result.write_text(json.dumps({"runs": [record(0, 0.5, "elsewhere"), record(1, 0.1, "elsewhere")]}))
    records = tmp_path / "records"
    records.mkdir()
    for r in (record(1, 0.3), record(2, 0.7)):
        (records / f"seed{r['seed']}.json").write_text(json.dumps(r))
    out = mrs.table(records, result)
    assert out["seeds"] == [0, 1, 2]
    assert out["test_motion_accuracy"]["runs"] == [0.5, 0.3, 0.7]  # seed 1's newer record, not 0.1
    assert np.isclose(out["test_motion_accuracy"]["mean"], 0.5)
    assert np.isclose(out["test_motion_accuracy"]["std"], np.std([0.5, 0.3, 0.7]))
    assert [r["machine"] for r in out["runs"]] == ["elsewhere", "2-core CPU (test)", "2-core CPU (test)"]
    assert json.loads(result.read_text()) == out  # the table file holds the pooled runs for the next seed


def test_rebuilding_the_committed_table_from_its_own_runs_gives_its_figures(tmp_path):
    committed = ROOT / "benchmarks/results/make_run_seeds_cpu.json"
    copy = tmp_path / committed.name
    shutil.copy(committed, copy)
    before = json.loads(committed.read_text())
    after = mrs.table(tmp_path / "no_new_records", copy)
    assert after["test_motion_accuracy"] == before["test_motion_accuracy"]
    assert after["per_motion_mean"] == before["per_motion_mean"]


def test_a_preset_run_is_recorded_with_its_overlay_in_a_table_of_its_own(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    preset = ROOT / "configs/world_16x24.yaml"
    clone = tmp_path / "clone"
    (clone / "reports").mkdir(parents=True)
    (clone / "reports/metrics.json").write_text(json.dumps(
        {"overall": {"motion_accuracy": 0.6, "motion_none_share": 0.1},
         "per_motion": {m: {"motion_accuracy": 0.6} for m in MOTIONS}}))
    path = mrs.collect(clone, 1, 80.0, None, "test", preset=preset)
    assert path == mrs.records_dir(preset) / "seed1.json"
    assert mrs.records_dir(preset) != mrs.records_dir() and mrs.result_file(preset) != mrs.result_file()
    rec = json.loads(path.read_text())
    assert rec["preset"] == {"file": preset.as_posix(), "overlay": preset.read_text()}
    out = mrs.table(mrs.records_dir(preset), mrs.result_file(preset))
    assert out["preset"] == preset.as_posix() and out["seeds"] == [1]
    assert mrs.result_file(preset).name == "make_run_seeds_world_16x24_cpu.json"
