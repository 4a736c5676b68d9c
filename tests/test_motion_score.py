"""Optical-flow motion scoring: the world's motions told apart, broken videos rejected."""
from collections import Counter

import cv2
import numpy as np
import pytest

from lamp_model.config import load_params
from lamp_model.motion_score import (
    FEATURES,
    NONE,
    MotionClassifier,
    confusion_matrix,
    first_frame_fidelity,
    motion_descriptor,
    motion_evidence,
)
from lamp_model.video import sample_clips
from lamp_model.world import MOTIONS, Content, contents, render_video, training_videos

F = {name: i for i, name in enumerate(FEATURES)}


@pytest.fixture(scope="module")
def classifier():
    """Fit as the metrics stage fits it: the clips the extract stage cuts from the world's training
    videos (params.yaml's world and clips settings)."""
    w, c = load_params().world, load_params().clips
    clips = {}
    for m in MOTIONS:
        videos = [v for _, _, v in training_videos(m, w.videos_per_motion, frames=w.frames)]
        clips[m] = [v[idx] for v in videos for idx in sample_clips(w.frames, c.frames, c.stride, c.clips_per_video)]
    return MotionClassifier().fit_clips(clips)


def _held_out(split: str, per_motion: int = 6, seed: int = 0) -> list[tuple[np.ndarray, str]]:
    """Clean held-out renders: looks and random draws no training video has."""
    return [(render_video(m, c, frames=16, seed=seed * 100 + i, split=split), m)
            for m in MOTIONS for i, c in enumerate(contents(m, split, per_motion, seed))]


@pytest.fixture(scope="module")
def held_out():
    return _held_out("validation") + _held_out("test")


def test_descriptor_shape_and_dtype():
    d = motion_descriptor(render_video("rain", Content(), frames=5))
    assert d.shape == (len(FEATURES),) and d.dtype == np.float32 and np.isfinite(d).all()


def test_static_video_has_no_motion():
    frame = render_video("helicopter", Content("star", "red", "large", "night"), frames=1)[0]
    d = motion_descriptor(np.repeat(frame[None], 8, axis=0))
    assert np.abs(d).max() < 1e-6


def test_direction_features_have_the_right_sign():
    heli = motion_descriptor(render_video("helicopter", Content(), frames=12, seed=1))
    assert heli[F["mean_dx"]] > 0.5 and heli[F["mean_dy"]] < -0.5  # up-right
    rain = motion_descriptor(render_video("rain", Content(), frames=12, seed=1))
    assert rain[F["mean_dy"]] > 2 and abs(rain[F["mean_dx"]]) < 0.5  # falls down
    horse = motion_descriptor(render_video("horse_run", Content(), frames=12, seed=1))
    assert horse[F["mean_dx"]] < -0.5
    fire = motion_descriptor(render_video("firework", Content(), frames=12, seed=1))
    assert fire[F["divergence"]] > 0.5


def test_works_on_large_real_sized_frames():
    d = motion_descriptor(render_video("rain", Content(), frames=4, height=320, width=512))
    assert d[F["mean_dy"]] > 2


def test_clean_held_out_videos_are_classified_and_rarely_rejected(classifier, held_out):
    """The score's ceiling on clean renders of held-out looks. The reject option must not cost it:
    it may only reject what the plain nearest centroid gets wrong anyway, within a few videos."""
    seen = [classifier.classify(v) for v, _ in held_out]
    truth = [m for _, m in held_out]
    plain = [classifier.predict(motion_descriptor(v)) for v, _ in held_out]
    accuracy = np.mean([s == m for s, m in zip(seen, truth)])
    plain_accuracy = np.mean([p == m for p, m in zip(plain, truth)])
    rejected = np.mean([s == NONE for s in seen])
    errors = Counter((m, s) for s, m in zip(seen, truth) if s != m)
    print(f"clean held-out: accuracy {accuracy:.3f} (no reject option: {plain_accuracy:.3f}), "
          f"rejected {rejected:.3f}; errors {dict(errors)}")
    assert rejected <= 0.05
    assert accuracy >= 0.85
    assert accuracy >= plain_accuracy - 0.03


def _broken(kind: str, video: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A failed generation built from a clean render: frame 0 is right, what follows is not motion."""
    f0, n = video[0].astype(np.float32), len(video)
    still = np.median(video, axis=0)  # the video's static part: the object gone
    if kind == "static":
        out = np.repeat(f0[None], n, 0)
    elif kind == "static_flicker":  # per-pixel grain that changes every frame
        out = f0[None] + rng.normal(0, 12, (n, *f0.shape[:2], 1))
    elif kind == "static_heavy_flicker":
        out = f0[None] + rng.normal(0, 40, (n, *f0.shape[:2], 1))
    elif kind == "brightness_flicker":
        out = f0[None] + rng.normal(0, 25, (n, 1, 1, 1))
    elif kind == "object_vanishes":
        out = np.concatenate([f0[None], np.repeat(still[None], n - 1, 0)])
    elif kind == "everything_vanishes":
        out = np.concatenate([f0[None], np.full((n - 1, *f0.shape), f0.mean())])
    elif kind == "fades_out":
        a = np.linspace(1, 0, n)[:, None, None, None]
        out = a * f0[None] + (1 - a) * still[None]
    elif kind == "one_jump_then_frozen":
        out = np.concatenate([f0[None], np.repeat(video[n // 2][None].astype(np.float32), n - 1, 0)])
    elif kind == "pure_noise":
        out = rng.uniform(0, 255, video.shape)
    elif kind == "noise_over_frame0":
        out = f0[None] + rng.normal(0, 60, video.shape)
    else:
        raise ValueError(kind)
    return np.clip(out, 0, 255).round().astype(np.uint8)


# A slow fade to the background ("fades_out" above) is the one failure kind not held to 90 %: a large
# fading object is still called turn_to_smile in about 1 video in 8 (lamp_model/motion_score.py).
BROKEN = ("static", "static_flicker", "static_heavy_flicker", "brightness_flicker", "object_vanishes",
          "everything_vanishes", "one_jump_then_frozen", "pure_noise", "noise_over_frame0")


@pytest.mark.parametrize("kind", BROKEN)
def test_broken_videos_are_rejected_not_called_a_motion(classifier, kind):
    """A score must not reward broken output: each kind of failure, built from held-out renders of
    every motion, is classified `none` in >= 90 % of cases (not merely as another motion)."""
    rng = np.random.default_rng(BROKEN.index(kind))
    videos = _held_out("validation", per_motion=3, seed=1)
    seen = [classifier.classify(_broken(kind, v, rng)) for v, _ in videos]
    rejected = np.mean([s == NONE for s in seen])
    print(f"{kind}: rejected {rejected:.2f}; otherwise {dict(Counter(s for s in seen if s != NONE))}")
    assert rejected >= 0.9


def _texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A smooth random colour texture (a stand-in for a real scene's structure)."""
    small = rng.uniform(0, 255, (h // 8, w // 8, 3)).astype(np.float32)
    return cv2.GaussianBlur(cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC), (0, 0), 2)


def _real_like(kind: str, rng: np.random.Generator, frames: int = 16, h: int = 64, w: int = 96) -> np.ndarray:
    """Camera pans (pan_right: the camera turns right, the scene flows left) and an object moving over
    a textured scene, at speeds of real clips (1-3 % of the width per frame)."""
    scene = _texture(rng, 2 * h, 4 * w)
    speed = rng.uniform(1.0, 3.0)
    x0, y0 = int(rng.integers(0, w // 2)), int(rng.integers(0, h))
    out = []
    for t in range(frames):
        if kind in ("pan_left", "pan_right"):
            dx = speed * t if kind == "pan_right" else -speed * t
            frame = scene[y0:y0 + h, int(w + x0 + dx):int(w + x0 + dx) + w]
        else:  # a textured ball falling over a still textured background
            frame = scene[y0:y0 + h, x0:x0 + w].copy()
            cy, cx = int(0.15 * h + speed * t), w // 2
            cv2.circle(frame, (cx, cy), h // 6, (230.0, 60.0, 40.0), -1)
        out.append(frame)
    return np.clip(np.stack(out), 0, 255).astype(np.uint8)


def test_real_looking_motion_is_not_rejected():
    """On real-like content (textured scenes, camera pans) the reject rule fit on training clips
    keeps ordinary motion: no held-out clip of any kind is rejected, while a still shot is."""
    kinds = ("pan_left", "pan_right", "falling_ball")
    rng = np.random.default_rng(0)
    clf = MotionClassifier().fit_clips({k: [_real_like(k, rng) for _ in range(8)] for k in kinds})
    held = [(k, _real_like(k, rng)) for k in kinds for _ in range(6)]
    seen = [clf.classify(v) for _, v in held]
    assert NONE not in seen, seen
    for kind, video in held:  # and the flow reads the direction of each
        d = motion_descriptor(video)
        axis, sign = {"pan_left": ("mean_dx", 1), "pan_right": ("mean_dx", -1), "falling_ball": ("mean_dy", 1)}[kind]
        assert sign * d[F[axis]] > 0.5, (kind, d)
    static = np.repeat(_real_like("pan_left", rng)[:1], 16, axis=0)
    assert clf.classify(static) == NONE


def test_flicker_alone_is_not_motion():
    static = render_video("helicopter", Content("star", "red", "large", "night"), frames=1)
    d = motion_descriptor(_broken("static_flicker", np.repeat(static, 16, axis=0), np.random.default_rng(0)))
    assert d[F["moving_fraction"]] < 0.02  # a few stray pixels at most (a moving object: 0.05-0.15)
    assert abs(d[F["foreground_dx"]]) < 0.3 and abs(d[F["foreground_dy"]]) < 0.3


def test_evidence_of_a_motion_and_of_a_one_off_event():
    video = render_video("horse_run", Content(), frames=16, seed=3)
    sustained, explained = motion_evidence(video)
    assert sustained == 1.0 and explained > 0.5  # a rigid run: changes throughout, the flow explains it
    jump = _broken("one_jump_then_frozen", video, np.random.default_rng(0))
    assert motion_evidence(jump)[0] < 0.1  # one window of 12 changes


def test_foreground_follows_the_object():
    heli = motion_descriptor(render_video("helicopter", Content(), frames=12, seed=1))
    assert heli[F["foreground_dx"]] > 0.5 and heli[F["foreground_dy"]] < -0.5  # up-right
    horse = motion_descriptor(render_video("horse_run", Content(), frames=12, seed=1))
    assert horse[F["foreground_dx"]] < -0.5


def test_classifier_json_round_trip(classifier, held_out):
    loaded = MotionClassifier.from_json(classifier.to_json())
    videos = [v for v, _ in held_out[::6]]
    assert [loaded.classify(v) for v in videos] == [classifier.classify(v) for v in videos]
    assert loaded.min_explained == classifier.min_explained and loaded.min_sustained == classifier.min_sustained


def test_unfitted_classifier_refuses():
    with pytest.raises(RuntimeError):
        MotionClassifier().predict(np.zeros(len(FEATURES)))


def test_confusion_matrix_counts_precision_recall():
    truth = ["rain", "rain", "rain", "firework"]
    seen = ["rain", NONE, "firework", "firework"]
    c = confusion_matrix(truth, seen, ["rain", "firework"])
    assert c["labels"] == ["rain", "firework", NONE]
    assert c["counts"]["rain"] == {"rain": 1, "firework": 1, NONE: 1}
    assert c["per_motion"]["rain"] == {"recall": 1 / 3, "precision": 1.0}
    assert c["per_motion"]["firework"] == {"recall": 1.0, "precision": 0.5}
    assert c["none_share"] == 0.25


def test_first_frame_fidelity():
    frame = render_video("firework", Content(background="night"), frames=1)[0]
    assert first_frame_fidelity(frame, frame) == 100
    brighter = np.clip(frame.astype(int) + 10, 0, 255).astype(np.uint8)
    assert 95 < first_frame_fidelity(brighter, frame) < 100
    assert first_frame_fidelity(255 - frame, frame) < 30
    big = render_video("firework", Content(background="night"), frames=1, height=128, width=192)[0]
    assert first_frame_fidelity(big, frame) > 95  # resized to the reference
