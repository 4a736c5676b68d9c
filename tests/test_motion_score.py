"""Optical-flow motion scoring: the world's motions must be told apart."""
from collections import Counter

import cv2
import numpy as np
import pytest

from lamp_model.motion_score import FEATURES, MotionCentroids, first_frame_fidelity, motion_descriptor
from lamp_model.world import MOTIONS, Content, eval_contents, render_video, training_contents

F = {name: i for i, name in enumerate(FEATURES)}


@pytest.fixture(scope="module")
def classifier_and_heldout():
    """Fit on 8 training videos per motion; score 6 held-out-content videos
    per motion rendered with seeds the fit never saw."""
    train = {
        m: [motion_descriptor(render_video(m, c, frames=16, seed=i))
            for i, c in enumerate(training_contents(m, 8, seed=0))]
        for m in MOTIONS
    }
    heldout = [
        (motion_descriptor(render_video(m, c, frames=16, seed=500 + i)), m)
        for m in MOTIONS
        for i, c in enumerate(eval_contents(m, 6, seed=0))
    ]
    return MotionCentroids().fit(train), heldout


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


def test_heldout_motion_accuracy(classifier_and_heldout):
    clf, heldout = classifier_and_heldout
    accuracy = clf.accuracy(heldout)
    errors = Counter((m, clf.predict(d)) for d, m in heldout if clf.predict(d) != m)
    print(f"held-out motion accuracy {accuracy:.3f}; confusions {dict(errors)}")
    assert accuracy >= 0.9, errors


def _flicker(video: np.ndarray, rng: np.random.Generator, level: float = 12.0) -> np.ndarray:
    """Independent texture noise in every frame (2 px grain): what a generated video's VAE grid and
    shading do while its content moves."""
    noise = [cv2.GaussianBlur(rng.normal(0, level, video.shape[1:3]).astype(np.float32), (0, 0), 1.0)
             for _ in video]
    return np.clip(video + np.stack(noise)[..., None] * 2, 0, 255).astype(np.uint8)


def test_flicker_does_not_hide_the_motion(classifier_and_heldout):
    """Per-frame texture noise must not change what the score sees (the generated videos flicker)."""
    clf, _ = classifier_and_heldout
    rng = np.random.default_rng(0)
    flickered = [(motion_descriptor(_flicker(render_video(m, c, frames=16, seed=500 + i), rng)), m)
                 for m in MOTIONS for i, c in enumerate(eval_contents(m, 3, seed=0))]
    accuracy = clf.accuracy(flickered)
    print(f"held-out motion accuracy with flicker {accuracy:.3f}")
    assert accuracy >= 0.8

def test_flicker_alone_is_not_motion():
    static = render_video("helicopter", Content("star", "red", "large", "night"), frames=1)
    d = motion_descriptor(_flicker(np.repeat(static, 16, axis=0), np.random.default_rng(0)))
    assert d[F["moving_fraction"]] < 0.02  # a few stray pixels at most (a moving object: 0.05-0.15)
    assert abs(d[F["foreground_dx"]]) < 0.3 and abs(d[F["foreground_dy"]]) < 0.3


def test_foreground_follows_the_object():
    heli = motion_descriptor(render_video("helicopter", Content(), frames=12, seed=1))
    assert heli[F["foreground_dx"]] > 0.5 and heli[F["foreground_dy"]] < -0.5  # up-right
    horse = motion_descriptor(render_video("horse_run", Content(), frames=12, seed=1))
    assert horse[F["foreground_dx"]] < -0.5


def test_centroids_json_round_trip(classifier_and_heldout):
    clf, heldout = classifier_and_heldout
    loaded = MotionCentroids.from_json(clf.to_json())
    assert [loaded.predict(d) for d, _ in heldout] == [clf.predict(d) for d, _ in heldout]


def test_unfitted_classifier_refuses():
    with pytest.raises(RuntimeError):
        MotionCentroids().predict(np.zeros(len(FEATURES)))


def test_first_frame_fidelity():
    frame = render_video("firework", Content(background="night"), frames=1)[0]
    assert first_frame_fidelity(frame, frame) == 100
    brighter = np.clip(frame.astype(int) + 10, 0, 255).astype(np.uint8)
    assert 95 < first_frame_fidelity(brighter, frame) < 100
    assert first_frame_fidelity(255 - frame, frame) < 30
    big = render_video("firework", Content(background="night"), frames=1, height=128, width=192)[0]
    assert first_frame_fidelity(big, frame) > 95  # resized to the reference
