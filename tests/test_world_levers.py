"""benchmarks.world_levers: the accuracy-vs-minutes table of `make run`'s levers (issue: the main job in 20 min)."""
import argparse
import json

import pytest

from benchmarks import world_levers, world_motion


def fake_run(tune_s: float, scores: dict[str, tuple[float, float]]) -> dict:
    """A world_motion result: per "split/ddimN" (motion accuracy, sampling seconds) of one seed, 2 motions."""
    per = {"helicopter": 0.0, "rain": 0.0}
    return {"machine": {"cpu_count": 2}, "settings": {}, "threads": 1,
            "tuned": [{"seed": 0, "tune_s": tune_s, "per_motion": per,
                       "scores": {k: {"motion_accuracy": a, "generate_s": g, "per_motion": per}
                                  for k, (a, g) in scores.items()}}]}


def test_table_keeps_validation_and_test_apart_and_prices_each_lever_from_its_time_ratio(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    default = {"validation/ddim20": (0.25, 10.0), "validation/ddim10": (0.20, 5.0),
               "test/ddim20": (0.30, 10.0), "test/ddim10": (0.10, 5.0)}
    slower = {"validation/ddim20": (0.50, 10.0), "validation/ddim10": (0.40, 5.0),
              "test/ddim20": (0.35, 10.0), "test/ddim10": (0.30, 5.0)}
    (runs / "default.json").write_text(json.dumps(fake_run(100.0, default)))
    (runs / "steps600_batch2.json").write_text(json.dumps(fake_run(200.0, slower)))
    out = tmp_path / "levers.json"
    result = world_levers.table(20.0, {"tune": 60.0, "generate": 12.0}, runs, out)
    rows = {(r["lever"], r["ddim_steps"]): r for r in result["rows"]}
    assert rows["default", 20]["make_run_minutes"] == pytest.approx(20.0)
    # half the sampling time: 2 motions x 12 s x (5/10 - 1) = -12 s
    assert rows["default", 10]["make_run_minutes"] == pytest.approx(20.0 - 12 / 60)
    # twice the tuning time: 2 motions x 60 s more
    assert rows["steps600_batch2", 20]["make_run_minutes"] == pytest.approx(22.0)
    assert rows["steps600_batch2", 20]["tune_time_ratio"] == pytest.approx(2.0)
    assert (rows["steps600_batch2", 10]["validation"], rows["steps600_batch2", 10]["test"]) == (0.40, 0.30)
    assert json.loads(out.read_text()) == result
    table_rows = out.with_suffix(".md").read_text().splitlines()[2:]
    assert [line.split(" | ")[2] for line in table_rows] == ["0.500", "0.400", "0.250", "0.200"]  # by validation


def test_table_needs_the_default_run(tmp_path):
    (tmp_path / "cosine.json").write_text(json.dumps(fake_run(1.0, {})))
    with pytest.raises(SystemExit, match="default.json missing"):
        world_levers.table(20.0, {"tune": 1.0, "generate": 1.0}, tmp_path, tmp_path / "out.json")


def test_world_motion_scores_validation_and_test_only():
    assert world_motion._splits("validation,test") == ["validation", "test"]
    for bad in ("train", "test,test", "validation,train"):
        with pytest.raises(argparse.ArgumentTypeError):
            world_motion._splits(bad)
