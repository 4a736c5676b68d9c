"""Editing in the motion world: canny maps, the edge measure, the world's ControlNet and its stage.

The fast tests check the parts on hand-made inputs and tiny models. What a trained ControlNet
does for an edit (the edited first frame keeps the source's edges, inversion reconstructs the
source, the rest of the video follows the edited frame 0) needs a base model that denoises:
the slow tests at the end run the world, base and controlnet stages with the shipped params
(`make test-slow`; ~25 min on 2 CPU cores).
"""
from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from lamp_model import world
from lamp_model.config import load_params
from lamp_model.controlnet_training import (SETTINGS_FILE, ControlNetSettings, canny_conditions, load_controlnet,
                                            save_controlnet, train_controlnet)
from lamp_model.editing import (MIN_COLOUR_CHANGE, build_small_controlnet, canny_edges, colour_distance,
                                colour_follow, edge_f1, motion_kept)
from lamp_model.small import build_sd
from lamp_model.video import write_mp4
from tasks import base, controlnet
from tasks.common import Layout, StageError

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------ canny and F1

def test_canny_edges_of_a_white_square_lie_on_its_border_only():
    """A white square on black: every edge pixel is on the square's border (the pixel inside or outside
    the step), all four sides are found, the map is 3 identical channels of 0/255."""
    image = np.zeros((40, 60, 3), np.uint8)
    top, bottom, left, right = 10, 30, 20, 45  # square = rows 10..29, columns 20..44
    image[top:bottom, left:right] = 255
    edges = canny_edges(image)
    assert edges.shape == image.shape and edges.dtype == np.uint8
    assert set(np.unique(edges)) == {0, 255}
    assert (edges == edges[:, :, :1]).all()
    ys, xs = np.nonzero(edges[:, :, 0])
    on_rows = (np.abs(ys - top + 0.5) <= 1) | (np.abs(ys - bottom + 0.5) <= 1)  # rows 9-10 or 29-30
    on_cols = (np.abs(xs - left + 0.5) <= 1) | (np.abs(xs - right + 0.5) <= 1)
    inside_span = (ys >= top - 1) & (ys <= bottom) & (xs >= left - 1) & (xs <= right)
    assert (inside_span & (on_rows | on_cols)).all(), "an edge pixel away from the border"
    for side in (ys <= top, ys >= bottom - 1, xs <= left, xs >= right - 1):
        assert side.sum() >= 15  # each side of the border is traced (>= 15 of its 20-25 pixels)
    assert canny_edges(np.full((40, 60, 3), 128, np.uint8)).max() == 0  # a flat image has none


def test_edge_f1_forgives_the_tolerance_and_no_more():
    reference = np.zeros((40, 60), np.uint8)
    reference[10, 10:50] = 255
    reference[10:30, 10] = 255

    def shifted(dy, dx):
        return np.roll(reference, (dy, dx), axis=(0, 1))

    assert edge_f1(reference, reference) == 1.0
    assert edge_f1(shifted(2, 0), reference, tolerance=2) == 1.0
    assert edge_f1(shifted(5, 5), reference, tolerance=2) < 0.1
    assert edge_f1(np.zeros_like(reference), reference) == 0.0
    half = reference.copy()
    half[10, 30:] = 0  # half of the top line missing: precision 1, recall ~2/3
    assert 0.7 < edge_f1(half, reference) < 0.9
    assert edge_f1(np.repeat(reference[:, :, None], 3, axis=2), reference) == 1.0  # canny_edges' 3 channels


def test_colour_follow_and_motion_kept_tell_a_carried_edit_from_a_fallback_and_a_frozen_video():
    """A red square moving on grey is the source; its edit is the same video in green. Frames that keep
    the green are nearer the edited frame 0; frames that fall back to red are nearer the source's; a
    video frozen on its frame 0 has no motion left."""
    source = np.full((6, 16, 24, 3), 128, np.uint8)
    for t in range(6):
        source[t, 4:10, 2 + 3 * t:8 + 3 * t] = (220, 30, 30)
    green = source[..., [1, 0, 2]]
    fallback = green.copy()
    fallback[3:] = source[3:]
    to_edit, to_source = colour_follow(green, source[0])
    assert (to_edit < to_source).all() and to_edit.max() < 1e-9
    to_edit, to_source = colour_follow(fallback, source[0])
    assert (to_edit[:2] < to_source[:2]).all() and (to_edit[2:] > to_source[2:]).all()
    assert colour_distance(green[0], source[0]) >= MIN_COLOUR_CHANGE  # an edit that changed the colours
    assert motion_kept(green, source) == pytest.approx(1.0)
    assert motion_kept(np.repeat(green[:1], 6, axis=0), source) == 0.0


# ------------------------------------------------------------------------------ training

@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny random base and a few world frames (32x48) with their captions."""
    comps = build_sd(tmp_path_factory.mktemp("tok"), seed=0)
    frames, captions = [], []
    for m in ("horse_run", "helicopter"):
        for i, content in enumerate(world.training_contents(m, 2)):
            video = world.render_video(m, content, frames=4, height=32, width=48, seed=i)
            frames.append(video)
            captions += [content.caption(m)] * len(video)
    return comps, np.concatenate(frames), captions


def _prediction(comps, net, latents, t, text, cond):
    down, mid = net(latents, t, encoder_hidden_states=text, controlnet_cond=cond, return_dict=False)
    return comps.unet(latents, t, encoder_hidden_states=text, down_block_additional_residuals=down,
                      mid_block_additional_residual=mid).sample


@torch.no_grad()
def test_training_makes_the_controlnet_use_the_edges_and_only_the_controlnet_trains(tiny, tmp_path):
    """Untrained, the ControlNet adds nothing (zero convolutions): the UNet's prediction does not depend
    on the canny map, bit for bit. After a few steps it does; the base UNet's weights are unchanged; the same seed
    gives the same weights; the saved folder loads back with its settings."""
    comps, frames, captions = tiny
    unet_before = copy.deepcopy(comps.unet.state_dict())
    g = torch.Generator().manual_seed(0)
    latents = torch.randn((2, 4, 4, 6), generator=g)
    t = torch.tensor([500, 500])
    text = comps.text_encoder(comps.tokenizer(["a star", "a star"], padding="max_length", max_length=77,
                                              return_tensors="pt").input_ids)[0]
    conds = canny_conditions(frames[[0, 8]], 100, 200)
    assert conds.shape == (2, 3, 32, 48) and set(conds.unique().tolist()) <= {0.0, 1.0}
    swapped = conds.flip(0)

    untrained = build_small_controlnet(comps.unet).eval()
    a, b = (_prediction(comps, untrained, latents, t, text, c) for c in (conds, swapped))
    assert torch.equal(a, b)

    settings = ControlNetSettings(steps=8, batch_size=4, lr=1e-3, seed=3)
    with torch.enable_grad():
        net, losses = train_controlnet(comps, frames, captions, settings, progress=False)
        again, _ = train_controlnet(comps, frames, captions, settings, progress=False)
    assert len(losses) == 8 and all(np.isfinite(losses))
    a, b = (_prediction(comps, net, latents, t, text, c) for c in (conds, swapped))
    assert not torch.equal(a, b)  # small after 8 steps (two zero-initialised layers in a row), but there
    assert all(torch.equal(v, comps.unet.state_dict()[k]) for k, v in unet_before.items())
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in net.state_dict().items())

    save_controlnet(net, tmp_path / "cn", settings, {"frames": len(frames)})
    loaded, loaded_settings = load_controlnet(tmp_path / "cn")
    assert loaded_settings == settings
    assert json.loads((tmp_path / "cn" / SETTINGS_FILE).read_text())["frames"] == len(frames)
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in net.state_dict().items())
    record = json.loads((tmp_path / "cn" / SETTINGS_FILE).read_text())
    del record["settings"]["loss"]  # a ControlNet saved before the loss was a setting: trained on eps
    (tmp_path / "cn" / SETTINGS_FILE).write_text(json.dumps(record))
    assert load_controlnet(tmp_path / "cn")[1] == dataclasses.replace(settings, loss="eps")
    with pytest.raises(FileNotFoundError, match="no trained canny ControlNet"):
        load_controlnet(tmp_path / "nothing")


def test_x0_loss_is_the_error_of_the_clean_latents_the_noise_prediction_implies():
    """`loss="x0"` scores a noise prediction by the clean latents it implies, x0 = (x_t - sqrt(1-a) eps) /
    sqrt(a): the same number as the MSE between the implied and the true x0, per sample, then averaged."""
    from lamp_model.controlnet_training import _loss

    g = torch.Generator().manual_seed(0)
    x0, noise, pred = (torch.randn((3, 4, 4, 6), generator=g) for _ in range(3))
    alpha_bar = torch.tensor([0.9, 0.3, 0.005])  # low, middle, high noise
    a = alpha_bar.view(-1, 1, 1, 1)
    x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
    implied = (x_t - (1 - a).sqrt() * pred) / a.sqrt()
    expected = ((implied - x0) ** 2).mean(dim=(1, 2, 3)).mean()
    assert torch.allclose(_loss(pred, noise, alpha_bar, "x0"), expected, rtol=1e-4)
    assert torch.equal(_loss(pred, noise, alpha_bar, "eps"), torch.nn.functional.mse_loss(pred, noise))
    # the high-noise sample dominates x0, not eps: the step where a sampler lays the image out
    per_sample = ((pred - noise) ** 2).mean(dim=(1, 2, 3))
    weighted = per_sample * (1 - alpha_bar) / alpha_bar
    assert per_sample[2] / per_sample.sum() < 0.5 < weighted[2] / weighted.sum()
    with pytest.raises(ValueError, match="loss = 'l1'"):
        _loss(pred, noise, alpha_bar, "l1")


def test_one_caption_per_image(tiny):
    comps, frames, captions = tiny
    with pytest.raises(ValueError, match="one caption per image"):
        train_controlnet(comps, frames, captions[:-1], ControlNetSettings(steps=1), progress=False)


# ------------------------------------------------------------------------------ stage

MOTIONS = ["helicopter", "rain"]
F, H, W = 4, 32, 48
TINY = {"motions": MOTIONS, "clips.frames": F, "clips.height": H, "clips.width": W,
        "base_train.vae_steps": 2, "base_train.unet_steps": 2, "base_train.clip_steps": 2,
        "base_train.batch_size": 2, "base_train.unet_batch_size": 2, "sample.ddim_steps": 1,
        "controlnet.steps": 3, "controlnet.batch_size": 2, "model.device": "cpu", "tracking.enabled": False}


def test_stage_trains_the_controlnet_beside_the_base_and_only_in_the_world(tmp_path):
    params = load_params(REPO / "params.yaml", TINY)
    with pytest.raises(StageError, match=r"run the base stage first \(`dvc repro base`\)"):
        controlnet.run(params, tmp_path)

    world.make_dataset(Layout(tmp_path).world_videos, videos_per_motion=2, frames=F, height=H, width=W, seed=0,
                       write_video=write_mp4, motions=MOTIONS)
    base.run(params, tmp_path)
    result = controlnet.run(params, tmp_path)
    out = Layout(tmp_path).world_controlnet
    assert result["trained"] and result["outputs"] == [str(out)] and len(result["loss"]) == 3
    assert not out.with_name(".world_controlnet.tmp").exists()
    net, settings = load_controlnet(out)
    assert settings == ControlNetSettings(**params.controlnet.model_dump())
    summary = json.loads((out / SETTINGS_FILE).read_text())
    assert summary["frames"] == len(MOTIONS) * 2 * F and summary["motions"] == MOTIONS
    assert tuple(net.config.block_out_channels) == tuple(params.base_train.unet_channels)

    # real weights: nothing to train, the folder says so (and replaces the trained one whole)
    real = load_params(REPO / "params.yaml", {**TINY, "data.source": "folder", "model.base": "some/sd-v1"})
    result = controlnet.run(real, tmp_path)
    assert not result["trained"] and sorted(p.name for p in out.iterdir()) == ["NOT_USED.txt"]


def test_controlnet_section_is_validated():
    from lamp_model.config import ParamsError

    with pytest.raises(ParamsError, match="controlnet.canny_low = 200: must be below controlnet.canny_high = 100"):
        load_params(REPO / "params.yaml", {"controlnet.canny_low": 200, "controlnet.canny_high": 100})
    with pytest.raises(ParamsError, match=r"controlnet.caption_dropout = 2: .*less than or equal to 1"):
        load_params(REPO / "params.yaml", {"controlnet.caption_dropout": 2})


def test_make_run_does_not_build_the_controlnet_and_builds_everything_the_report_needs():
    """`make run` reproduces the report and what it depends on (DVC's graph); the ControlNet stage and
    the baseline comparison's stages are in dvc.yaml but not among them, and every other stage is."""
    import re
    import subprocess
    import sys

    run_lines = (REPO / "Makefile").read_text().split("\nrun:", 1)[1].split("\n\n", 1)[0]
    assert "lamp.repro report" in run_lines and "controlnet" not in run_lines  # `dvc repro report`'s stages

    def stages(*target: str) -> set[str]:
        dot = subprocess.run([str(Path(sys.executable).parent / "dvc"), "dag", "--dot", *target], cwd=REPO,
                             capture_output=True, text=True, timeout=120, check=True).stdout
        return set(re.findall(r'"([\w@]+)"', dot))

    everything, for_report = stages(), stages("report")
    assert "controlnet" in everything and "report" in for_report
    outside = everything - for_report
    assert "controlnet" in outside and "baselines" in outside
    assert all(s == "controlnet" or s.startswith("baseline") for s in outside), outside


# ------------------------------------------------------------------------------ what an edit does (slow)
#
# The stages `world`, `base` and `controlnet` with the shipped params, in a tmp project: the base and
# ControlNet `lamp edit` gets from `dvc repro controlnet`. (A base trained for fewer steps on fewer
# frames draws frames with almost no canny edges at all, with or without the ControlNet: edge F1 0.05
# vs 0.07.) The sources, the measures and the bars are benchmarks/world_editing.py's (fixed on
# 2026-12-07 before these sources were first scored together), which reports them for a project's own
# base and ControlNet (benchmarks/results/world_editing_cpu.json, the README's table).


@pytest.fixture(scope="module")
def world_editor(tmp_path_factory):
    from benchmarks import world_editing
    from benchmarks.edit_settings import load_editor
    from tasks import world as world_stage

    root = tmp_path_factory.mktemp("world_project")
    (root / "params.yaml").write_text((REPO / "params.yaml").read_text())
    params = load_params(REPO / "params.yaml", {"tracking.enabled": False})
    world_stage.run(params, root)
    base.run(params, root)
    controlnet.run(params, root)
    params, comps, editor, settings = load_editor(root)
    sources = world_editing.editing_sources()
    edits, plain = world_editing.first_frame_edits(editor, settings, sources, params.edit.controlnet_scale)
    return params, comps, settings, sources, edits, plain


@pytest.mark.slow
def test_edited_first_frame_keeps_the_source_edges_far_better_than_an_unconditioned_sample(world_editor):
    """Edge F1 (2 px tolerance, `edge_f1`) between the canny maps of the edited frame 0 and of the source
    frame 0, on 16 test sources (2 per motion), against the same prompt and seed sampled without the
    ControlNet (conditioning scale 0: the plain base model), which shares edges with the source only by
    chance.

    Asserted, a paired sign test that drops ties (a pair where both F1 are equal, mostly both 0 on a
    source with few edges, says nothing about the ControlNet): over the n >= 10 decided sources, the
    edit's wins are improbable for an editor that ignores the edges (each a coin flip: one-sided
    binomial p <= 0.05); and better on average. History: with the ControlNet trained on the plain
    noise-prediction loss (lr 3e-3, whose loss did not fall), scale 1 passed narrowly on a 2-core AMD
    EPYC (10 of 13, p = 0.046) and failed on a 2-core Intel Xeon (9 of 13, p = 0.133; at scale 3 11 of
    16, p = 0.105). The ControlNet's training loss (x0) and the edit's scale were then chosen on
    validation looks (benchmarks/edit_settings.py; params.yaml `controlnet`, `edit`); with them, on the
    Xeon: 0.286 vs 0.177, 12 of 15, p = 0.018 (trained at 1 torch thread: 14 of 16, p = 0.002).
    """
    from benchmarks import world_editing as we

    _, _, settings, sources, edits, plain = world_editor
    r = we.edge_check(settings, sources, edits, plain)
    message = (f"edge F1 edited {r['mean_f1_edited']:.3f} vs unconditioned {r['mean_f1_unconditioned']:.3f}, "
               f"better on {r['wins']} of {r['decided']} decided ({r['ties']} ties), sign test p = {r['p']:.4f}; "
               f"per source {[(s['edited'], s['unconditioned']) for s in r['per_source']]}")
    print(message)
    assert len(sources) == 16 and r["decided"] >= we.MIN_DECIDED and r["p"] <= we.MAX_P, message
    assert r["mean_f1_edited"] > r["mean_f1_unconditioned"], message


@pytest.fixture(scope="module")
def world_pipe(world_editor):
    from lamp_model.animate import pipeline_from_components

    return pipeline_from_components(world_editor[1])  # the editor holds its own copy of the 2D UNet


@pytest.mark.slow
def test_inversion_then_regeneration_with_the_unedited_first_frame_reconstructs_the_source(world_editor,
                                                                                         world_pipe):
    """DDIM inversion (20 steps, empty prompt, guidance 1) then `edit_video` with the source's own frame 0,
    post-processing off: frames >= 1 against the VAE decoding of the source's latents (what an exact
    inversion gives back; the VAE's own loss is not the inversion's).

    Tolerance: PSNR >= 30 dB (RMS error <= 3.2 % of the range, ~8 grey levels), and >= 10 dB better than
    sampling from fresh noise with the same frame 0, so the video comes back from the inversion and not
    from frame 0 alone. Measured with the stage's base on the seed-0 sources (2026-12-06): 37.2-39.2 dB,
    fresh noise 16.1-16.7 dB; on the seed-1 sources (2026-12-07, two VMs): 35.1-42.0 dB vs 12.0-18.1.
    """
    from benchmarks import world_editing as we

    r = we.reconstruction_check(world_pipe, world_editor[3])
    for row in r["per_source"]:
        print(f"{row['motion']}: reconstruction {row['psnr_db']:.1f} dB, fresh noise {row['fresh_noise_db']:.1f} dB")
    for row in r["per_source"]:
        assert row["psnr_db"] >= we.MIN_PSNR and row["psnr_db"] >= row["fresh_noise_db"] + we.MIN_PSNR_GAIN, row


@pytest.mark.slow
def test_the_rest_of_the_edited_video_follows_the_edited_first_frame_without_post_processing(world_editor,
                                                                                            world_pipe):
    """The ControlNet-edited frame 0 regenerated from the source's inversion (untuned LAMP UNet, the
    sampling guidance, AdaIN and histogram matching OFF), on every test source whose edit changed frame
    0's mean colour by >= 20 (one that kept the colours says nothing here). An edit FOLLOWS when every
    frame >= 1 is nearer in mean colour to the edited frame 0 than to the source's (`colour_follow`): the
    model (first-frame attention, the pinned frame 0) carries the edit, not the post-processing.

    Asserted, as for the edges: a one-sided sign test over the n >= 10 counted sources (binomial p <=
    0.05 against a coin flip, generous to an editor that falls back to the source, which would follow
    in none). Criterion fixed on 2026-12-07 before these 16 sources were scored together; what was
    known then: the earlier form (4 sources, every one must follow) failed once per machine on them
    (helicopter's frames 6-7 on a 2-core AMD EPYC, rain on a 2-core Intel Xeon, where the regenerated
    rain left both looks); on validation looks (benchmarks/edit_settings.py guidance) 14 of 14 edits
    follow at guidance 7.5. With the x0 ControlNet (2-core Intel Xeon): 13 of 15, p = 0.004; with the
    same ControlNet trained at 1 torch thread 11 of 15, p = 0.059 (fails: 4 edits regenerate in the
    source's colours from frame 1 on).
    """
    from benchmarks import world_editing as we

    params, _, _, sources, edits, _ = world_editor
    r = we.follow_check(world_pipe, sources, edits, params.sample.guidance_scale)
    message = f"{r['follow']} of {r['counted']} edits follow the edited frame 0 in every frame, sign test " \
              f"p = {r['p']:.4f}\n" + "\n".join(f"{s['motion']}: to the edited frame 0 {s['to_edit']}, to the "
                                                f"source's {s['to_source']}" for s in r["per_source"])
    print(message)
    assert r["counted"] >= we.MIN_DECIDED and r["p"] <= we.MAX_P, message
