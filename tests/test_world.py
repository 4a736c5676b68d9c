"""The synthetic motion world: determinism, shapes, held-out splits, captions."""
import csv
import itertools

import cv2
import numpy as np
import pytest

from lamp_model.config import load_params
from lamp_model.world import (
    BACKGROUNDS,
    COLOURS,
    MOTION_PHRASES,
    MOTIONS,
    SHAPES,
    SIZES,
    SPLITS,
    Content,
    contents,
    eval_prompts,
    make_dataset,
    parse_caption,
    parse_motion,
    render_first_frame,
    render_video,
    training_contents,
    training_videos,
    visible_content,
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
def test_splits_are_disjoint_in_what_is_drawn(motion):
    """Train, validation and test never share a visible look (for rain/waterfall/firework the
    shape is not drawn, so it cannot make an item held out)."""
    looks = {split: {visible_content(motion, c) for seed in range(5)
                     for c in contents(motion, split, 6 if split != "train" else 40, seed)}
             for split in SPLITS}
    for a, b in itertools.combinations(SPLITS, 2):
        assert not looks[a] & looks[b], (a, b)
    # every single attribute value still appears in training: only the combination is new
    train = looks["train"]
    assert {look[-3] for look in train} == set(COLOURS)
    assert {look[-2] for look in train} == set(SIZES)
    assert {look[-1] for look in train} == set(BACKGROUNDS)
    if len(next(iter(train))) == 4:  # the renderer draws the shape
        assert {look[0] for look in train} == set(SHAPES)


@pytest.mark.parametrize("split", ["validation", "test"])
def test_held_out_items_differ_visibly_from_each_other(split):
    for motion in MOTIONS:
        picked = contents(motion, split, 6)
        assert len({visible_content(motion, c) for c in picked}) == 6


def test_split_is_part_of_the_random_draws():
    """The same seed in another split gives other start positions, speeds and phases."""
    content = Content("star", "red", "large", "plain")
    for motion in MOTIONS:
        videos = [render_video(motion, content, frames=4, seed=0, split=s) for s in SPLITS]
        for a, b in itertools.combinations(videos, 2):
            assert not np.array_equal(a, b), motion
    with pytest.raises(ValueError, match="split"):
        render_video("rain", content, split="eval")


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


def test_first_frame_matches_video_frame0_of_its_split():
    prompt = Content("diamond", "cyan", "small", "grass").caption("birds_fly")
    frame = render_first_frame(prompt, height=48, width=80, seed=2)  # the test split by default
    assert frame.shape == (48, 80, 3)
    video = render_video("birds_fly", parse_caption(prompt), frames=3, height=48, width=80, seed=2, split="test")
    assert np.array_equal(frame, video[0])
    valid = render_first_frame(prompt, height=48, width=80, seed=2, split="validation")
    assert not np.array_equal(frame, valid)


def test_eval_prompts_48_six_per_motion_and_validation_apart():
    rows = eval_prompts()
    assert len(rows) == 48 and rows == eval_prompts(0, split="test")
    validation = eval_prompts(split="validation")
    assert len(validation) == 48 and not set(rows) & set(validation)
    for motion in MOTIONS:
        prompts = [p for m, p in rows if m == motion]
        assert len(prompts) == 6 and len(set(prompts)) == 6
        assert all(MOTION_PHRASES[motion] in p for p in prompts)
    with pytest.raises(ValueError, match="validation or test"):
        eval_prompts(split="train")


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


def _blurred(frames: np.ndarray) -> np.ndarray:
    """Frames blurred by 2 px: the codec's error sits on sharp edges; a different look does not."""
    return np.stack([cv2.GaussianBlur(f.astype(np.float32), (0, 0), 2.0) for f in frames])


def _max_difference(frames: np.ndarray, frame: np.ndarray) -> np.ndarray:
    """Per frame of `frames`: the largest difference to `frame` after blurring (grey levels)."""
    return np.abs(_blurred(frames) - _blurred(frame[None])).max(axis=(1, 2, 3))


def test_no_held_out_first_frame_is_a_near_copy_of_a_training_frame(tmp_path):
    """The leak that content held out by caption and shared random draws allowed: a validation or
    test first frame that a training video already shows. "Near copy" is measured against the codec:
    a training frame and its own re-encode (the mp4 the pipeline trains on) differ by at most
    `codec`; every held-out first frame must differ from EVERY frame of every training video of its
    motion (as `make_dataset` renders them) by clearly more than that.
    Measured 2026-12-06 (64x96): codec <= 22 grey levels, nearest held-out frame >= 62."""
    from lamp_model.video import read_video, write_mp4

    w = load_params().world
    codec, nearest = 0.0, {}
    for motion in MOTIONS:
        train = [v for _, _, v in training_videos(motion, w.videos_per_motion, frames=w.frames)]
        for i, video in enumerate(train[:3]):
            write_mp4(video, tmp_path / f"{motion}{i}.mp4", fps=8)
            decoded, _ = read_video(tmp_path / f"{motion}{i}.mp4")
            codec = max(codec, max(_max_difference(decoded[k:k + 1], video[k])[0] for k in range(len(video))))
        frames = np.concatenate(train)
        for split in ("validation", "test"):
            for c in contents(motion, split, 6):
                first = render_first_frame(c.caption(motion), seed=0, split=split)
                nearest[(motion, split, c)] = float(_max_difference(frames, first).min())
    worst = min(nearest, key=nearest.get)
    print(f"codec noise <= {codec:.1f}; nearest held-out first frame {nearest[worst]:.1f} ({worst})")
    assert 0 < codec < 40  # the measure sees the codec, and the codec is not the whole image
    assert nearest[worst] > 2 * codec, worst
