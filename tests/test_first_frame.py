"""First frames from a text-to-image model: the base SD v1.x model (ablation 1, model.first_frame: base)
and SD-XL (model.first_frame: sdxl), on tiny pipelines built offline through the same functions."""
from __future__ import annotations

import numpy as np
import pytest

from lamp_model import first_frame as ff
from lamp_model.small import build_sd, build_sdxl

PROMPTS = ["a red circle on a night sky", "a blue star above green grass"]


@pytest.fixture(scope="module")
def pipes(tmp_path_factory):
    tok = tmp_path_factory.mktemp("tok")
    base = build_sd(tok, seed=0).pipeline()
    sdxl = build_sdxl(tok, seed=0)
    for p in (base, sdxl):
        p.set_progress_bar_config(disable=True)
    return {"base": (base, ff.from_base_model), "sdxl": (sdxl, ff.from_sdxl)}


@pytest.mark.parametrize("source", ["base", "sdxl"])
def test_first_frames_have_the_asked_size_and_do_not_depend_on_the_batch(pipes, source):
    pipe, render = pipes[source]
    images = render(pipe, PROMPTS, 32, 48, seed=3, steps=2, guidance=7.5)
    assert len(images) == 2
    assert all(im.shape == (32, 48, 3) and im.dtype == np.uint8 for im in images)
    # prompt i uses seed + i: rendering the second prompt alone with seed + 1 gives the same image
    alone = render(pipe, PROMPTS[1:], 32, 48, seed=4, steps=2, guidance=7.5)[0]
    np.testing.assert_array_equal(images[1], alone)
