"""Motion scoring from dense optical flow: does a video move like a motion?

CLIP scores see content, not motion, so the project also scores motion
directly: a fixed-length descriptor of Farneback flow, and a nearest-centroid
classifier fit on the training videos of every motion. Frames are resized to
a fixed working height first, so the descriptor means the same for a 64x96
world video and a 320x512 real one.

Generated videos flicker: pixel texture (the VAE's grid, an object's inner
shading) changes from frame to frame while the object moves. On the raw
frames the flow of that flicker covered a third of the frame and diluted the
motion (reports/world_motion.md, measured 2026-12-02). So the frames are
blurred (`BLUR_SIGMA`: flow of object-scale structure), a temporal median of 3
frames removes one-frame flicker, and only flow above `MOVING_PX` counts; and
two flow-free features follow the foreground (what differs from the video's
static background, its temporal median) as a whole.

Descriptor components (`FEATURES`, in this order). Flow is normalised per
frame pair: dx in % of frame width, dy in % of frame height (+ = down).

0  mean_dx            mean dx of moving pixels (+ = right)
1  mean_dy            mean dy of moving pixels (+ = down)
2  speed              mean flow magnitude of moving pixels
3  moving_fraction    fraction of pixels moving
4  x_spread           std of moving pixels' x (fraction of width): wide = rain
5  y_spread           std of moving pixels' y (fraction of height)
6  divergence         mean outward (from the moving pixels' centroid) flow / speed: firework
7  coherence          |mean flow| / speed: 1 = rigid translation, ~0 = radial/oscillating
8  dx_oscillation     mean |change of a pair's mean dx| between pairs / speed: periodic motion
9  dy_oscillation     same for dy: gait bounce, flapping
10 speed_variation    std over pairs of a pair's speed / speed: bursts, onsets
11 divergence_osc     mean |change of a pair's divergence|: flapping size change
12 foreground_dx      slope of the foreground centroid's x over the frames (% of width per frame)
13 foreground_dy      same for y (% of height per frame)

A static video has no moving pixels and gives the zero vector.

A broken video must never pass for a motion, so the classifier has a reject
class, `NONE`. Two pieces of evidence (`motion_evidence`) say whether a video
moves the way a motion does at all, whatever its class:

- sustained change: the share of 4-frame windows in which something visibly
  changes. A motion lasts; a one-off event (the object vanishes after frame 0,
  one jump then frozen) changes one window, flicker and fades none visibly.
- explained change: how much of the frame-to-frame change the optical flow
  explains (1 - warp residual / raw change). Moving content is explained by its
  flow; noise, flicker and fades are not.

`MotionClassifier.fit_clips` fits the thresholds on the training clips alone:
`REJECT_MARGIN` below the lowest training value, per motion for explained change
(fast thin rain streaks are hard to track, a rigid glide is not), but never above
what failures built from the same training clips reach (`failure_videos`: grain,
noise, a fade, brightness flicker). Without that cap a generated waterfall, whose
VAE-decoded texture flickers, was rejected although it flowed down: clean
renders set the bar, generated video never reaches it. So a held-out clip of a
motion passes and a broken one does not (tests/test_motion_score.py builds each
kind of broken video from held-out renders). Known limit: a large object that
slowly fades into the background is still called turn_to_smile (a face's small,
slow changes) in about 1 video in 8.
"""
from __future__ import annotations

import json

import cv2
import numpy as np

FEATURES: tuple[str, ...] = (
    "mean_dx", "mean_dy", "speed", "moving_fraction", "x_spread", "y_spread", "divergence",
    "coherence", "dx_oscillation", "dy_oscillation", "speed_variation", "divergence_osc",
    "foreground_dx", "foreground_dy",
)
WORK_HEIGHT = 96  # 128 scored the same on the world's held-out videos at 2.4x the cost
BLUR_SIGMA = 3.0  # working-resolution pixels; 5 loses the held-out clips' small objects
MOVING_PX = 1.0  # flow below this (working pixels per frame) is jitter, not motion
FOREGROUND_LEVEL = 10  # grey levels away from the static background
FOREGROUND_MIN = 0.005  # fraction of the frame: less is scattered flicker, not an object
NONE = "none"  # the reject class: no motion of the kind the training clips show
EVIDENCE: tuple[str, ...] = ("sustained_change", "explained_change")
CHANGE_WINDOW = 4  # frames: a slow motion (a face turning) changes visibly over 4 frames, not over 1
# Thresholds sit this far below the training clips' values: held-out content moves a little
# differently (measured on the world's validation renders, see tests/test_motion_score.py).
REJECT_MARGIN = {"sustained_change": 0.5, "explained_change": 0.8}


def _grey(frames: np.ndarray) -> list[np.ndarray]:
    """Working-height, blurred grey frames."""
    h, w = frames.shape[1:3]
    size = (max(1, round(w * WORK_HEIGHT / h)), WORK_HEIGHT)
    interp = cv2.INTER_AREA if h > WORK_HEIGHT else cv2.INTER_LINEAR
    return [cv2.GaussianBlur(cv2.cvtColor(cv2.resize(f, size, interpolation=interp), cv2.COLOR_RGB2GRAY),
                             (0, 0), BLUR_SIGMA) for f in frames]


def _median3(grey: list[np.ndarray]) -> list[np.ndarray]:
    """Per-pixel median of each frame and its two neighbours: a change that lasts one frame is dropped."""
    stack = np.stack(grey)
    return [np.median(stack[max(0, i - 1):i + 2], axis=0).astype(np.uint8) for i in range(len(stack))]


def _foreground_slopes(grey: list[np.ndarray], xs: np.ndarray, ys: np.ndarray) -> tuple[float, float]:
    """Slope (% per frame) of the x and y of the centroid of what differs from the static background."""
    stack = np.stack(grey).astype(np.float32)
    diff = np.abs(stack - np.median(stack, axis=0))
    weight = np.where(diff > FOREGROUND_LEVEL, diff, 0).reshape(len(stack), -1)
    total = weight.sum(1)
    seen = (weight > 0).mean(1) >= FOREGROUND_MIN
    if seen.sum() < 2:
        return 0.0, 0.0
    cx, cy = (weight[seen] @ xs.ravel()) / total[seen], (weight[seen] @ ys.ravel()) / total[seen]
    t = np.nonzero(seen)[0]
    return 100 * float(np.polyfit(t, cx, 1)[0]), 100 * float(np.polyfit(t, cy, 1)[0])


def _checked_grey(frames: np.ndarray) -> list[np.ndarray]:
    """`_grey` of uint8 RGB frames [f>=2, h, w, 3], which both the descriptor and the evidence read."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) < 2:
        raise ValueError(f"need RGB frames [f>=2, h, w, 3], got shape {frames.shape}")
    return _grey(frames.astype(np.uint8))


def motion_descriptor(frames: np.ndarray) -> np.ndarray:
    """float32 vector of len(FEATURES) for uint8 RGB frames [f, h, w, 3], f >= 2."""
    return _descriptor(_checked_grey(frames))


def _descriptor(blurred: list[np.ndarray]) -> np.ndarray:
    grey = _median3(blurred)
    h, w = grey[0].shape
    ys, xs = np.mgrid[0:h, 0:w]
    xs, ys = xs / w, ys / h
    # per frame pair: moving-pixel count, mean dx, mean dy, speed, x/y spread, divergence
    stats = np.zeros((len(grey) - 1, 7))
    for i, (a, b) in enumerate(zip(grey[:-1], grey[1:])):
        flow = cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0)
        moving = np.hypot(flow[..., 0], flow[..., 1]) > MOVING_PX
        if not moving.any():
            continue
        dx, dy = 100 * flow[..., 0][moving] / w, 100 * flow[..., 1][moving] / h
        px, py = xs[moving], ys[moving]
        rx, ry = px - px.mean(), py - py.mean()
        speed = np.hypot(dx, dy)
        outward = (rx * dx + ry * dy) / (np.hypot(rx, ry) + 1e-6)
        stats[i] = (moving.sum(), dx.mean(), dy.mean(), speed.mean(), px.std(), py.std(),
                    outward.mean() / speed.mean())
    count, mdx, mdy, spd, xsd, ysd, div = stats.T
    if count.sum() == 0:
        return np.zeros(len(FEATURES), np.float32)
    wt = count / count.sum()
    mean_dx, mean_dy, speed = wt @ mdx, wt @ mdy, wt @ spd

    def oscillation(series):
        return np.abs(np.diff(series)).mean() if len(series) > 1 else 0.0

    return np.array([
        mean_dx, mean_dy, speed, count.mean() / (h * w), wt @ xsd, wt @ ysd, wt @ div,
        np.hypot(mean_dx, mean_dy) / speed, oscillation(mdx) / speed, oscillation(mdy) / speed,
        spd.std() / speed, oscillation(div), *_foreground_slopes(blurred, xs, ys),
    ], np.float32)


FAILURES: tuple[str, ...] = ("grain", "noise", "fade", "brightness_flicker")


def failure_videos(clip: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Failures built from one clip: frame 0 held with heavy per-pixel grain, pure noise, frame 0
    fading into the clip's static part, frame 0 with flickering brightness (none of them moves)."""
    f0, n = clip[0].astype(np.float32), len(clip)
    still = np.median(clip, axis=0)
    fade = np.linspace(1, 0, n)[:, None, None, None]
    made = {"grain": f0[None] + rng.normal(0, 40, (n, *f0.shape[:2], 1)),
            "noise": rng.uniform(0, 255, clip.shape),
            "fade": fade * f0[None] + (1 - fade) * still[None],
            "brightness_flicker": f0[None] + rng.normal(0, 25, (n, 1, 1, 1))}
    return {k: np.clip(v, 0, 255).round().astype(np.uint8) for k, v in made.items()}


def motion_evidence(frames: np.ndarray) -> np.ndarray:
    """float32 [sustained change, explained change] (`EVIDENCE`) for uint8 RGB frames [f>=2, h, w, 3]."""
    return _evidence(_checked_grey(frames))


def describe(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(`motion_descriptor`, `motion_evidence`) of a video, from one pass over its frames."""
    grey = _checked_grey(frames)
    return _descriptor(grey), _evidence(grey)


def _evidence(grey: list[np.ndarray]) -> np.ndarray:
    stack = np.stack(grey).astype(np.float32)
    k = min(CHANGE_WINDOW, len(stack) - 1)
    change = np.abs(stack[k:] - stack[:-k]).reshape(len(stack) - k, -1)
    sustained = ((change > FOREGROUND_LEVEL).mean(1) >= FOREGROUND_MIN).mean()
    h, w = grey[0].shape
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    residual = raw = 0.0
    for a, b in zip(grey[:-1], grey[1:]):
        flow = cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0)
        back = cv2.remap(b, gx + flow[..., 0], gy + flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        residual += float(np.abs(a.astype(np.float32) - back).sum())
        raw += float(np.abs(a.astype(np.float32) - b).sum())
    explained = 1 - residual / raw if raw > 0 else 0.0
    return np.array([sustained, explained], np.float32)


class MotionClassifier:
    """Nearest-centroid motion classifier on standardised descriptors, with a reject class.

    Features are centred on the training mean and divided by their std over
    all training descriptors: large-valued features (speed) then do not drown
    the unit-scale ones (coherence, divergence). Not by the within-motion std:
    clean training clips vary so little within a motion that a generated
    video's jitter moved its coherence and oscillation 5-6 of those stds and
    decided its class (reports/world_motion.md).

    `classify(frames)` is the one scoring function (metrics stage, `lamp score`,
    benchmarks): `NONE` for a video without motion evidence (module docstring),
    else the nearest centroid's motion.
    """

    def __init__(self, mean=None, std=None, centroids: dict[str, np.ndarray] | None = None,
                 min_sustained: float = 0.0, min_explained: dict[str, float] | None = None):
        self.mean, self.std = mean, std
        self.centroids = centroids or {}
        self.min_sustained = float(min_sustained)
        self.min_explained = dict(min_explained or {})

    @property
    def motions(self) -> list[str]:
        return list(self.centroids)

    def fit_clips(self, clips_by_motion: dict[str, list[np.ndarray]], seed: int = 0) -> "MotionClassifier":
        """Fit centroids and reject thresholds on training clips (uint8 [f, h, w, 3] each); the cap
        of the explained-change thresholds comes from `failure_videos` of every 4th clip."""
        if not clips_by_motion or any(len(c) == 0 for c in clips_by_motion.values()):
            raise ValueError("fit_clips needs at least one clip for every motion")
        described = {m: [describe(c) for c in clips] for m, clips in clips_by_motion.items()}
        descriptors = {m: [d for d, _ in pairs] for m, pairs in described.items()}
        evidence = {m: np.stack([e for _, e in pairs]) for m, pairs in described.items()}
        rng = np.random.default_rng(seed)
        failed = [motion_evidence(v)[1] for clips in clips_by_motion.values() for c in clips[::4]
                  for v in failure_videos(c, rng).values()]
        return self.fit(descriptors, evidence, max_failure_explained=float(np.max(failed)))

    def fit(self, descriptors_by_motion: dict[str, list[np.ndarray]],
            evidence_by_motion: dict[str, np.ndarray] | None = None,
            max_failure_explained: float = 1.0) -> "MotionClassifier":
        """Centroids from descriptors; reject thresholds from the same clips' `motion_evidence`
        (without evidence, only a video with no moving pixel is rejected). An explained-change
        threshold never exceeds `max_failure_explained` (the most any failure reaches)."""
        if not descriptors_by_motion or any(len(d) == 0 for d in descriptors_by_motion.values()):
            raise ValueError("fit needs at least one descriptor for every motion")
        every = np.vstack([np.vstack(d) for d in descriptors_by_motion.values()]).astype(np.float64)
        self.mean, std = every.mean(0), every.std(0)
        self.std = np.where(std > 1e-8, std, 1.0)
        self.centroids = {m: self._z(np.vstack(d)).mean(0) for m, d in descriptors_by_motion.items()}
        if evidence_by_motion is not None:
            evidence = {m: np.asarray(e, np.float64).reshape(-1, len(EVIDENCE)) for m, e in evidence_by_motion.items()}
            sustained = np.concatenate([e[:, 0] for e in evidence.values()])
            # the 5th percentile: a few training clips show their motion only at the start (a face
            # that has finished turning); the margin then keeps one-off events out
            self.min_sustained = REJECT_MARGIN["sustained_change"] * float(np.percentile(sustained, 5))
            # explained change of the clips that do show sustained change (on a nearly still clip
            # the ratio is noise): the lowest, less the margin
            self.min_explained = {}
            for m, e in evidence.items():
                moving = e[e[:, 0] >= self.min_sustained, 1]
                lowest = REJECT_MARGIN["explained_change"] * float(moving.min()) if len(moving) else 0.0
                self.min_explained[m] = min(lowest, max_failure_explained)
        return self

    def _z(self, x) -> np.ndarray:
        if self.mean is None:
            raise RuntimeError("MotionClassifier is not fitted")
        return (np.asarray(x, np.float64) - self.mean) / self.std

    def predict(self, desc: np.ndarray) -> str:
        """The nearest centroid's motion (no reject): for descriptors alone."""
        z = self._z(desc)
        return min(self.centroids, key=lambda m: np.sum((z - self.centroids[m]) ** 2))

    def decide(self, desc: np.ndarray, evidence: np.ndarray) -> str:
        """`NONE`, or the nearest centroid's motion when the evidence is that of a motion."""
        if not np.any(desc) or evidence[0] < self.min_sustained:
            return NONE
        motion = self.predict(desc)
        return motion if evidence[1] >= self.min_explained.get(motion, 0.0) else NONE

    def classify(self, frames: np.ndarray) -> str:
        """The motion a video shows (uint8 RGB [f>=2, h, w, 3]), or `NONE`."""
        return self.decide(*describe(frames))

    def accuracy(self, labelled: list[tuple[np.ndarray, str]]) -> float:
        """Fraction of (frames, true motion) pairs classified right (`NONE` is always wrong)."""
        if not labelled:
            raise ValueError("accuracy needs at least one (frames, motion) pair")
        return float(np.mean([self.classify(f) == m for f, m in labelled]))

    def to_json(self) -> str:
        return json.dumps({
            "features": list(FEATURES),
            "evidence": list(EVIDENCE),
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "centroids": {m: c.tolist() for m, c in self.centroids.items()},
            "min_sustained": self.min_sustained,
            "min_explained": self.min_explained,
        })

    @classmethod
    def from_json(cls, text: str) -> "MotionClassifier":
        data = json.loads(text)
        if data.get("features") != list(FEATURES) or data.get("evidence") != list(EVIDENCE):
            raise ValueError("saved motion classifier uses a different descriptor; refit it (rerun the metrics stage)")
        return cls(np.array(data["mean"]), np.array(data["std"]),
                   {m: np.array(c) for m, c in data["centroids"].items()},
                   data["min_sustained"], data["min_explained"])


def confusion_matrix(true: list[str], predicted: list[str], motions: list[str]) -> dict:
    """Counts[true][predicted] over `motions` + `NONE`, with per-motion precision and recall.

    recall = right / videos of that motion; precision = right / videos predicted as it
    (None when nothing was predicted as it); none_share = share of videos rejected.
    """
    labels = [*motions, NONE]
    counts = {t: {p: 0 for p in labels} for t in motions}
    for t, p in zip(true, predicted, strict=True):
        counts[t][p if p in labels else NONE] += 1
    per_motion = {}
    for m in motions:
        right = counts[m][m]
        shown = sum(counts[m].values())
        called = sum(counts[t][m] for t in motions)
        per_motion[m] = {"recall": right / shown if shown else None,
                         "precision": right / called if called else None}
    return {"labels": labels, "counts": counts, "per_motion": per_motion,
            "none_share": sum(counts[t][NONE] for t in motions) / max(1, len(true))}


def first_frame_fidelity(generated_frame0: np.ndarray, reference_frame0: np.ndarray) -> float:
    """100 * (1 - mean |difference| / 255): 100 = pixel-identical.

    LAMP pins frame 0 to the given first frame, so after VAE round trip and
    post-processing this should stay close to 100. The generated frame is
    resized to the reference's size if they differ.
    """
    gen, ref = np.asarray(generated_frame0), np.asarray(reference_frame0)
    if gen.shape != ref.shape:
        gen = cv2.resize(gen, (ref.shape[1], ref.shape[0]), interpolation=cv2.INTER_AREA)
    diff = np.abs(gen.astype(np.float64) - ref.astype(np.float64)).mean()
    return float(100 * (1 - diff / 255))
