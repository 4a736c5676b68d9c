"""Outputs are replaced whole or not at all: a model folder swapped in by the base stage, and the
ablation comparison files (a failure half-way leaves the previous files, and no temporary ones)."""
from __future__ import annotations

import matplotlib
import pandas as pd
import pytest

from flows.compare import write_outputs
from tasks.base import _save_folder

matplotlib.use("Agg")


def _model(folder, text):
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(text)
    (folder / "weights.bin").write_bytes(text.encode() * 100)


def _files(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_save_folder_keeps_the_old_model_in_place_until_the_new_one_is_complete(tmp_path):
    target = tmp_path / "models/base"
    _model(target, "old")
    old = _files(target)
    seen_during_save = []

    def save(folder):
        seen_during_save.append(_files(target))  # readers see the whole old model while the new one is written
        _model(folder, "new")

    _save_folder(save, target)
    assert seen_during_save == [old]
    assert _files(target)["config.json"] == b"new"
    assert sorted(p.name for p in target.parent.iterdir()) == ["base"]  # no .tmp / .old left


def test_save_folder_failing_leaves_the_old_model(tmp_path):
    target = tmp_path / "base"
    _model(target, "old")
    old = _files(target)

    def half_a_model(folder):
        folder.mkdir()
        (folder / "config.json").write_text("new")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        _save_folder(half_a_model, target)
    assert _files(target) == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base"]


def test_save_folder_recovers_a_swap_cut_between_its_two_renames(tmp_path):
    """A crash after the old model was renamed away and before the new one came in: the next call
    puts the old model back first, so a failing save then still leaves a model at the path."""
    target = tmp_path / "base"
    _model(tmp_path / ".base.old", "old")
    old = _files(tmp_path / ".base.old")

    def fails(folder):
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        _save_folder(fails, target)
    assert _files(target) == old
    _save_folder(lambda folder: _model(folder, "new"), target)
    assert _files(target)["config.json"] == b"new" and sorted(p.name for p in tmp_path.iterdir()) == ["base"]


def _table(value):
    return pd.DataFrame({"alignment": [value, value + 1], "rain/alignment": [value, value + 2]},
                        index=pd.Index(["full", "no_tsm"], name="variant"))


@pytest.mark.parametrize("broken", ["csv", "png"])
def test_comparison_failing_while_writing_keeps_the_previous_file(tmp_path, monkeypatch, broken):
    out = tmp_path / "ablations"
    paths = write_outputs(_table(1.0), out)
    before = {k: p.read_bytes() for k, p in paths.items()}

    def writes_half_then_fails(self, path, *args, **kwargs):
        with open(path, "wb") as f:
            f.write(b"half")
        raise OSError(28, "No space left on device")

    target = pd.DataFrame if broken == "csv" else matplotlib.figure.Figure
    monkeypatch.setattr(target, "to_csv" if broken == "csv" else "savefig", writes_half_then_fails)
    with pytest.raises(OSError, match="No space"):
        write_outputs(_table(5.0), out)
    assert paths[broken].read_bytes() == before[broken]
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in paths.values())
