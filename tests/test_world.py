"""The synthetic motion world: determinism, shapes, held-out splits, captions."""
import csv

import numpy as np
import pytest

from lamp_model.world import (
    BACKGROUNDS,
    COLOURS,
    MOTION_PHRASES,
    MOTIONS,
    SHAPES,
    SIZES,
    Content,
    eval_contents,
    eval_prompts,
    make_dataset,
    parse_caption,
    parse_motion,
    render_first_frame,
    render_video,
    training_contents,
)


def test_motion_ids_and_phrases():
    assert MOTIONS == ("helicopter", "waterfall", "rain", "firework", "horse_run",
                       "birds_fly", "turn_to_smile", "play_the_guitar")
    assert set(MOTION_PHRASES) == set(MOTIONS)


@pytest.mark.parametrize("motion", MOTIONS)
def test_render_is_deterministic_and_moves(motion):
    content = Content("star", "red", "large", "night")
    a = render_video(motion, content, frames=8, seed=3)
    assert a.shape == (8, 64, 96, 3) and a.dtype == np.uint8
    assert np.array_equal(a, render_video(motion, content, frames=8, seed=3))
    assert not np.array_equal(a, render_video(motion, content, frames=8, seed=4))
    assert np.abs(a[1:].astype(int) - a[:-1]).sum() > 0, "frames must change"


@pytest.mark.parametrize("motion", MOTIONS)
def test_render_at_full_lamp_size(motion):
    video = render_video(motion, Content(), frames=4, height=320, width=512, seed=0)
    assert video.shape == (4, 320, 512, 3) and video.dtype == np.uint8


def test_content_changes_the_look_not_the_motion_id():
    a = render_video("helicopter", Content("circle", "red", "small", "plain"), frames=2)
    b = render_video("helicopter", Content("star", "blue", "large", "sky"), frames=2)
    assert not np.array_equal(a, b)


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="motion"):
        render_video("moonwalk", Content())
    with pytest.raises(ValueError, match="colour"):
        Content(colour="pink")


@pytest.mark.parametrize("motion", MOTIONS)
def test_eval_contents_are_never_trained_with_that_motion(motion):
    def combo(c):
        return c.shape, c.colour, c.background

    train = {combo(c) for seed in range(5) for c in training_contents(motion, 100, seed)}
    held = {combo(c) for seed in range(5) for c in eval_contents(motion, 6, seed)}
    assert held and not train & held
    # every single attribute value still appears in training: only the combination is new
    assert {s for s, _, _ in train} == set(SHAPES)
    assert {c for _, c, _ in train} == set(COLOURS)
    assert {b for _, _, b in train} == set(BACKGROUNDS)


def test_contents_are_distinct_and_seeded():
    a = training_contents("rain", 12, seed=0)
    assert len(set(a)) == 12 and a == training_contents("rain", 12, seed=0)
    assert a != training_contents("rain", 12, seed=1)


def test_caption_round_trip():
    for shape, colour, size, bg in zip(SHAPES * 2, COLOURS, SIZES * 4, BACKGROUNDS * 2):
        content = Content(shape, colour, size, bg)
        for motion in MOTIONS:
            caption = content.caption(motion)
            assert parse_caption(caption) == content
            assert parse_motion(caption) == motion


def test_parse_is_robust_to_free_prompts():
    assert parse_caption("fireworks in desert night") == Content(background="night")
    assert parse_caption("") == Content()
    assert parse_caption("a red horse runs in the sky").colour == "red"
    assert parse_motion("a woman plays the guitar") == "play_the_guitar"
    assert parse_motion("a pond in heavy rain") == "rain"
    assert parse_motion("nothing to see") is None


def test_first_frame_matches_video_frame0():
    prompt = Content("diamond", "cyan", "small", "grass").caption("birds_fly")
    frame = render_first_frame(prompt, height=48, width=80, seed=2)
    assert frame.shape == (48, 80, 3)
    video = render_video("birds_fly", parse_caption(prompt), frames=3, height=48, width=80, seed=2)
    assert np.array_equal(frame, video[0])


def test_eval_prompts_48_six_per_motion():
    rows = eval_prompts()
    assert len(rows) == 48 and rows == eval_prompts(0)
    for motion in MOTIONS:
        prompts = [p for m, p in rows if m == motion]
        assert len(prompts) == 6 and len(set(prompts)) == 6
        assert all(MOTION_PHRASES[motion] in p for p in prompts)


def test_make_dataset_writes_videos_and_captions(tmp_path):
    written = {}

    def write_video(frames, path):
        path.write_bytes(b"video")
        written[path] = frames

    rows = make_dataset(tmp_path, videos_per_motion=2, frames=3, height=16, width=24, write_video=write_video)
    assert len(rows) == 16 and len(written) == 16
    assert all(f.shape == (3, 16, 24, 3) for f in written.values())
    for motion in MOTIONS:
        with open(tmp_path / motion / "captions.csv") as f:
            table = list(csv.DictReader(f))
        assert [r["file"] for r in table] == ["00.mp4", "01.mp4"]
        assert all(parse_motion(r["caption"]) == motion for r in table)
        assert (tmp_path / motion / "00.mp4").exists()
    assert rows[0]["file"] == "helicopter/00.mp4"
