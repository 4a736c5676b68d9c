"""The paper's baselines (lamp_model/baselines) on a small SD v1.x-shaped model."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lamp_model.baselines import text2video_zero
from lamp_model.small import build_sd


@pytest.fixture(scope="module")
def comps(tmp_path_factory):
    return build_sd(tmp_path_factory.mktemp("tok"), unet_channels=(32, 64), vae_channels=(32, 32, 64, 64), seed=0)


def test_text2video_zero_pipeline_is_importable():
    """Deprecated in diffusers: this fails first when a diffusers upgrade removes it."""
    from diffusers import TextToVideoZeroPipeline  # noqa: F401
    from diffusers.pipelines.deprecated.text_to_video_synthesis import pipeline_text_to_video_zero  # noqa: F401


@pytest.mark.parametrize("steps", [2, 3, 20, 50, 100])
def test_text2video_zero_t0_t1_fit_the_step_count(steps):
    t0, t1 = text2video_zero.timesteps_t0_t1(steps)
    assert 0 <= t0 < t1 <= steps - 1
    if steps == 50:
        assert (t0, t1) == (44, 47)  # the paper's


def test_text2video_zero_makes_the_requested_frames_at_a_non_512_size(comps):
    pipe = text2video_zero.pipeline(comps)
    video = text2video_zero.generate(pipe, "a red star in rain", num_frames=5, height=64, width=96,
                                     num_inference_steps=3, guidance_scale=7.5, seed=1)
    assert video.shape == (5, 64, 96, 3) and video.dtype == np.uint8
    again = text2video_zero.generate(pipe, "a red star in rain", num_frames=5, height=64, width=96,
                                     num_inference_steps=3, guidance_scale=7.5, seed=1)
    assert np.array_equal(video, again)  # seeded
    with pytest.raises(ValueError, match="guidance_scale must be > 1"):
        text2video_zero.generate(pipe, "x", num_frames=2, height=64, width=96, num_inference_steps=2,
                                 guidance_scale=1.0)


def test_text2video_zero_motion_field_is_in_frame_pixels(comps, monkeypatch):
    """The strength handed to diffusers is per 512-px canvas: a 96-px-wide frame moving 12 px per
    frame is 64 canvas px; the default moves the paper's share of the frame (12/512)."""
    seen = {}

    def fake_call(self, prompt, **kw):
        seen.update(kw)
        raise StopIteration

    monkeypatch.setattr(type(text2video_zero.pipeline(comps)), "__call__", fake_call)
    pipe = text2video_zero.pipeline(comps)
    with pytest.raises(StopIteration):
        text2video_zero.generate(pipe, "x", num_frames=2, height=64, width=96, motion_px=(12.0, 0.0))
    assert seen["motion_field_strength_x"] == pytest.approx(64.0) and seen["motion_field_strength_y"] == 0
    with pytest.raises(StopIteration):
        text2video_zero.generate(pipe, "x", num_frames=2, height=64, width=96)
    assert seen["motion_field_strength_x"] == pytest.approx(12.0) == seen["motion_field_strength_y"]
