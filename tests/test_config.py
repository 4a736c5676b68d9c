"""params.yaml validation: the shipped file is valid, bad values name the field, value and range."""
from pathlib import Path

import pytest

from lamp_model.config import MOTIONS, ParamsError, flatten, load_params

REPO = Path(__file__).resolve().parents[1]


def test_repo_params_validate():
    params = load_params(REPO / "params.yaml")
    assert tuple(params.motions) == MOTIONS
    assert params.clips.height % 8 == 0 and params.clips.width % 8 == 0
    assert params.motion_prompt("horse_run") == "horse run"
    assert flatten(params)["train.lr"] == params.train.lr


def test_overrides_and_motion_prompts():
    params = load_params(REPO / "params.yaml", {"train.lr": 0.5, "motion_prompts": {"rain": "heavy rain"}})
    assert params.train.lr == 0.5 and params.motion_prompt("rain") == "heavy rain"


@pytest.mark.parametrize("key, value, words", [
    ("train.lr", -1, ["train.lr = -1", "greater than 0"]),
    ("sample.alpha", 2, ["sample.alpha = 2", "less than or equal to 1"]),
    ("clips.height", 100, ["clips.height = 100", "multiple of 8"]),
    ("clips.frames", 1, ["clips.frames = 1", "greater than or equal to 2"]),
    ("clips.resize_policy", "stretch", ["clips.resize_policy = 'stretch'", "'crop'", "'pad'", "'resize'"]),
    ("data.source", "web", ["data.source = 'web'", "'world'", "'folder'"]),
    ("data.min_videos", 0, ["data.min_videos = 0", "greater than or equal to 1"]),
    ("model.dtype", "float8", ["model.dtype = 'float8'", "'float16'"]),
    ("motions", [], ["motions", "at least one motion"]),
    ("base_train.unet_norm_groups", 5, ["base_train.unet_norm_groups = 5", "must divide", "[32, 64]"]),
    ("base_train.vae_channels", [32], ["base_train.vae_channels = [32]", "2-4 positive block widths"]),
    ("sample.batch_size", 0, ["sample.batch_size = 0", "greater than or equal to 1"]),
    ("train.batch_size", 0, ["train.batch_size = 0", "greater than or equal to 1"]),
    ("train.warmup_steps", 300, ["train.warmup_steps = 300", "below train.steps = 300"]),
    ("train.lr_schedule", "linear", ["train.lr_schedule = 'linear'", "'constant'", "'cosine'"]),
])
def test_out_of_range_values_name_field_value_and_range(key, value, words):
    with pytest.raises(ParamsError) as err:
        load_params(REPO / "params.yaml", {key: value})
    msg = str(err.value)
    assert msg.startswith(str(REPO / "params.yaml"))
    for word in words:
        assert word in msg, msg


@pytest.mark.parametrize("key", ["train.learning_rate", "bogus", "clips.fps"])
def test_unknown_keys_are_rejected_by_name(key):
    with pytest.raises(ParamsError, match=rf"{key} = 1: Extra inputs are not permitted"):
        load_params(REPO / "params.yaml", {key: 1})


def test_missing_params_file(tmp_path):
    with pytest.raises(ParamsError, match="not found"):
        load_params(tmp_path / "params.yaml")


def test_mixed_precision_no_may_be_unquoted(tmp_path):
    """`no` unquoted is YAML 1.1's false; it means "no mixed precision", and `yes` stays an error."""
    path = tmp_path / "params.yaml"
    path.write_text("train:\n  mixed_precision: no\n")
    assert load_params(path).train.mixed_precision == "no"
    path.write_text("train:\n  mixed_precision: yes\n")
    with pytest.raises(ParamsError, match="train.mixed_precision = True"):
        load_params(path)
