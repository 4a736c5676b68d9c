"""benchmarks.world_levers: the accuracy-vs-minutes table of `make run`'s levers (issue: the main job in 20 min)."""
import argparse
import json

import pytest

from benchmarks import world_levers, world_motion


def fake_run(tune_s: float, scores: dict[str, tuple[float, float]], base_s: float = 0.0) -> dict:
    """A world_motion result: per "split/ddimN" (motion accuracy, sampling seconds) of one seed, 2 motions."""
    per = {"helicopter": 0.0, "rain": 0.0}
    return {"machine": {"cpu_count": 2}, "settings": {}, "threads": 1, "base_seconds": {"vae": base_s, "unet": 0.0},
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
    (runs / "base_trained_here.json").write_text(json.dumps(fake_run(100.0, default, base_s=300.0)))
    (runs / "base_vae300_unet600.json").write_text(json.dumps(fake_run(100.0, slower, base_s=200.0)))
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
    # a cheaper base: 100 s less base training here x the same 1.2 speed-up; compared with its own reference
    assert rows["base_vae300_unet600", 20]["make_run_minutes"] == pytest.approx(20.0 - 2.0)
    assert rows["base_vae300_unet600", 20]["compare_with"] == "base_trained_here"
    assert rows["steps600_batch2", 20]["compare_with"] == "default"
    assert json.loads(out.read_text()) == result
    assert (result["chosen"]["lever"], result["chosen"]["ddim_steps"]) == ("base_vae300_unet600", 20)
    table_rows = [line for line in out.with_suffix(".md").read_text().splitlines()[2:] if line.startswith("| ")]
    validation = [float(line.split(" | ")[2]) for line in table_rows]
    assert validation == sorted(validation, reverse=True) and len(validation) == 8  # by validation


def test_side_by_side_stages_and_the_base_stage_have_their_own_conversion(tmp_path):
    """With make run's per-motion stages two at a time, extra tuning costs half its seconds in wall time;
    a base lever is priced by how fast make run's base stage ran against the reference base here."""
    default = {"validation/ddim20": (0.25, 10.0), "validation/ddim10": (0.20, 5.0),
               "test/ddim20": (0.30, 10.0), "test/ddim10": (0.10, 5.0)}
    (tmp_path / "default.json").write_text(json.dumps(fake_run(100.0, default)))
    (tmp_path / "steps600_batch2.json").write_text(json.dumps(fake_run(200.0, default)))
    (tmp_path / "base_trained_here.json").write_text(json.dumps(fake_run(100.0, default, base_s=300.0)))
    (tmp_path / "base_vae300_unet600.json").write_text(json.dumps(fake_run(100.0, default, base_s=450.0)))
    result = world_levers.table(20.0, {"base": 200.0, "tune": 50.0, "generate": 5.0}, tmp_path,
                                tmp_path / "out.json", make_run_jobs=2)
    rows = {(r["lever"], r["ddim_steps"]): r for r in result["rows"]}
    # 100 s more tuning here = 2 motions x 50 s more in stage time, side by side: 50 s of wall time
    assert rows["steps600_batch2", 20]["make_run_minutes"] == pytest.approx(20.0 + 50 / 60)
    # 150 s more base here; make run's base took 200 s where the reference took 300 s here: 100 s more
    assert rows["base_vae300_unet600", 20]["make_run_minutes"] == pytest.approx(20.0 + 100 / 60)
    assert result["make_run_jobs"] == 2


def test_a_gain_is_averaged_over_the_seeds_a_lever_and_its_reference_share(tmp_path):
    """Seed 0 alone: +2 of 48 validation videos, chosen; with seed 1 (runs/seeds/) the mean gain is 0: not chosen."""
    base = {"validation/ddim20": (0.25, 10.0), "validation/ddim10": (0.0, 5.0), "test/ddim20": (0.3, 10.0),
            "test/ddim10": (0.0, 5.0)}
    up = {**base, "validation/ddim20": (0.25 + 2 / 48, 10.0)}
    (tmp_path / "default.json").write_text(json.dumps(fake_run(100.0, base)))
    (tmp_path / "frames8_steps600.json").write_text(json.dumps(fake_run(100.0, up)))
    stage = {"tune": 50.0, "generate": 5.0}
    assert world_levers.table(20.0, stage, tmp_path, tmp_path / "seeds_a.out")["chosen"]["lever"] == "frames8_steps600"
    (tmp_path / "seeds").mkdir()
    (tmp_path / "seeds" / "default_seed1.json").write_text(json.dumps(fake_run(100.0, up)))
    (tmp_path / "seeds" / "frames8_steps600_seed1.json").write_text(json.dumps(fake_run(100.0, base)))
    chosen = world_levers.table(20.0, stage, tmp_path, tmp_path / "seeds_b.out")["chosen"]
    assert (chosen["lever"], chosen["ddim_steps"]) == ("default", 20)


def test_table_needs_the_default_run(tmp_path):
    (tmp_path / "cosine.json").write_text(json.dumps(fake_run(1.0, {})))
    with pytest.raises(SystemExit, match="default.json missing"):
        world_levers.table(20.0, {"tune": 1.0, "generate": 1.0}, tmp_path, tmp_path / "out.json")


def test_world_motion_scores_validation_and_test_only():
    assert world_motion._splits("validation,test") == ["validation", "test"]
    for bad in ("train", "test,test", "validation,train"):
        with pytest.raises(argparse.ArgumentTypeError):
            world_motion._splits(bad)


def row(lever, ddim, validation, minutes, compare_with="default"):
    return {"lever": lever, "ddim_steps": ddim, "validation": validation, "make_run_minutes": minutes,
            "compare_with": compare_with}


def test_the_preset_rule_takes_a_cheaper_tie_or_a_clear_gain_within_budget():
    default = [row("default", 20, 0.25, 20.0), row("default", 10, 0.25, 19.0)]
    assert world_levers.choose(default)["ddim_steps"] == 10  # same accuracy, a minute less
    one_video = default + [row("cosine", 20, 0.25 + 1 / 48, 20.0 + 1e-3)]
    assert world_levers.choose(one_video)["lever"] == "default"  # costs more, gains less than 2 videos
    assert world_levers.choose(one_video + [row("steps", 20, 0.25 + 2 / 48, 19.9)])["lever"] == "steps"
    assert world_levers.choose(default + [row("slow", 20, 0.5, 25.0)])["lever"] == "default"  # over budget
    worse = [row("default", 20, 0.25, 20.0), row("default", 10, 0.20, 19.0)]
    assert world_levers.choose(worse)["ddim_steps"] == 20
    # fewer DDIM steps tie on one tuned model but lose on another: judged by the mean paired effect
    tie_then_loss = default + [row("cosine", 20, 0.25, 20.5), row("cosine", 10, 0.15, 19.5)]
    chosen = world_levers.choose(tie_then_loss)
    assert (chosen["lever"], chosen["ddim_steps"]) == ("default", 20)
    assert chosen["sampling_effect"]["ddim10"] == pytest.approx(-0.05)
    # a base lever is judged against its own reference base, which is never a candidate itself
    bases = default + [row("base_trained_here", 20, 0.40, 20.0, "base_trained_here"),
                       row("base_cheap", 20, 0.30, 18.0, "base_trained_here")]
    assert world_levers.choose(bases)["lever"] == "default"
