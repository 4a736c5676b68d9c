"""The "motion world": seeded synthetic videos for LAMP's 8 motions.

Pretrained weights cannot be downloaded here, so the default pipeline learns
and scores motions in this world instead: every paper motion has a synthetic
analogue whose optical flow has its own signature (direction, speed, spatial
spread, divergence, periodicity), while the content (shape, colour, size,
background) varies independently of the motion. Validation and test prompts
show looks never seen with that motion in training, from random draws no
training video uses (see "splits"), which is what LAMP's "generation freedom"
claim is about.

Frames are uint8 RGB arrays [f, h, w, 3]. Shapes are drawn on a 2x canvas and
box-downsampled, so motion is sub-pixel smooth (good for optical flow) at the
default 64x96. Every moving part is at least ~1/16 of the frame height thick
(2 latent pixels of an 8x VAE at 64x96): a tiny VAE cannot keep finer detail,
and what the frozen VAE loses, LAMP can neither learn nor be scored on
(benchmarks/world_vae.py measures this). Motions are designed for clips of up to ~24 frames; objects
may leave the frame in longer ones.
"""
from __future__ import annotations

import csv
import math
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .io import atomic_write

MOTIONS: tuple[str, ...] = (
    "helicopter",
    "waterfall",
    "rain",
    "firework",
    "horse_run",
    "birds_fly",
    "turn_to_smile",
    "play_the_guitar",
)

MOTION_PHRASES: dict[str, str] = {
    "helicopter": "gliding like a helicopter",
    "waterfall": "flowing down like a waterfall",
    "rain": "falling like rain",
    "firework": "bursting like a firework",
    "horse_run": "running across like a horse",
    "birds_fly": "flapping like flying birds",
    "turn_to_smile": "turning to smile",
    "play_the_guitar": "strumming like playing the guitar",
}

SHAPES = ("circle", "square", "triangle", "star", "diamond")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 190, 60),
    "blue": (50, 90, 230),
    "yellow": (240, 220, 40),
    "white": (245, 245, 245),
    "orange": (245, 140, 30),
    "purple": (150, 60, 200),
    "cyan": (40, 210, 220),
}
SIZES = ("small", "large")
BACKGROUND_PHRASES: dict[str, str] = {
    "plain": "on a plain background",
    "gradient": "on a gradient background",
    "sky": "in a blue sky",
    "night": "in a night sky",
    "grass": "above green grass",
}
BACKGROUNDS = tuple(BACKGROUND_PHRASES)

# Words of free-form prompts (the paper's eval prompts included) that pick a
# motion; checked in this order so "a man plays the guitar" is a guitar video.
_MOTION_WORDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("play_the_guitar", ("guitar", "strum", "strumming")),
    ("waterfall", ("waterfall", "waterfalls")),
    ("firework", ("firework", "fireworks", "bursting")),
    ("rain", ("rain", "rainy", "raining")),
    ("turn_to_smile", ("smile", "smiling", "face", "head", "lady", "man", "woman", "girl")),
    ("horse_run", ("horse", "horses", "run", "runs", "running", "rides")),
    ("helicopter", ("helicopter", "apache", "gliding")),
    ("birds_fly", ("bird", "birds", "flapping")),
)


@dataclass(frozen=True)
class Content:
    """What a video shows, independent of how it moves.

    rain, waterfall and firework draw no shape: the colour goes to the
    streaks, texture or particles and the size to their thickness.
    """

    shape: str = "circle"
    colour: str = "white"
    size: str = "large"
    background: str = "plain"

    def __post_init__(self):
        for field, value, allowed in (
            ("shape", self.shape, SHAPES),
            ("colour", self.colour, tuple(COLOURS)),
            ("size", self.size, SIZES),
            ("background", self.background, BACKGROUNDS),
        ):
            if value not in allowed:
                raise ValueError(f"Content.{field}={value!r}; expected one of {allowed}")

    def caption(self, motion: str) -> str:
        """E.g. "a large red star in a night sky, falling like rain"."""
        _check_motion(motion)
        return (
            f"a {self.size} {self.colour} {self.shape} "
            f"{BACKGROUND_PHRASES[self.background]}, {MOTION_PHRASES[motion]}"
        )


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def parse_caption(text: str) -> Content:
    """Content named in any prompt; words the world does not know give defaults."""
    words = _words(text)
    default = Content()

    def first(options, fallback):
        return next((w for w in words if w in options), fallback)

    if "night" in words:
        background = "night"
    else:
        background = first(("grass", "gradient", "sky"), default.background)
    return Content(
        shape=first(SHAPES, default.shape),
        colour=first(COLOURS, default.colour),
        size=first(SIZES, default.size),
        background=background,
    )


def parse_motion(text: str) -> str | None:
    """The motion a prompt asks for, or None when no motion word is in it."""
    words = set(_words(text))
    return next((m for m, keys in _MOTION_WORDS if words & set(keys)), None)


def _check_motion(motion: str) -> None:
    if motion not in MOTIONS:
        raise ValueError(f"unknown motion {motion!r}; expected one of {MOTIONS}")


# ---------------------------------------------------------------- drawing

Rgba = tuple[int, int, int, int]
Drawer = Callable[[Image.Image, int], None]


def _rgba(colour: str, alpha: float = 1.0, scale: float = 1.0) -> Rgba:
    r, g, b = (min(255, int(c * scale)) for c in COLOURS[colour])
    return (r, g, b, int(255 * alpha))


def _outline(fill: Rgba) -> Rgba:
    """Dark edge so every colour has luminance contrast (flow runs on grey)."""
    return (fill[0] // 4, fill[1] // 4, fill[2] // 4, fill[3])


_UNIT_POLYGONS = {
    "square": [(-0.85, -0.85), (0.85, -0.85), (0.85, 0.85), (-0.85, 0.85)],
    "triangle": [(1.1 * math.cos(a), 1.1 * math.sin(a)) for a in np.radians([-90, 30, 150])],
    "diamond": [(0, -1.15), (0.95, 0), (0, 1.15), (-0.95, 0)],
    "star": [
        ((1.2 if i % 2 == 0 else 0.5) * math.cos(a), (1.2 if i % 2 == 0 else 0.5) * math.sin(a))
        for i, a in enumerate(np.radians(np.arange(10) * 36 - 90))
    ],
}


def _draw_shape(d: ImageDraw.ImageDraw, shape, cx, cy, r, fill: Rgba, sx=1.0, sy=1.0) -> None:
    width = max(1, round(r * 0.1))
    if shape == "circle":
        box = [cx - r * sx, cy - r * sy, cx + r * sx, cy + r * sy]
        d.ellipse(box, fill=fill, outline=_outline(fill), width=width)
    else:
        pts = [(cx + x * r * sx, cy + y * r * sy) for x, y in _UNIT_POLYGONS[shape]]
        d.polygon(pts, fill=fill, outline=_outline(fill), width=width)


def _background(name: str, H: int, W: int, rng: np.random.Generator) -> np.ndarray:
    """Static backgrounds: they add texture but no flow."""
    y = np.linspace(0, 1, H)[:, None, None]
    x = np.linspace(0, 1, W)[None, :, None]

    def lerp(a, b, s):
        """Colour a -> b as s goes 0 -> 1, as a full (H, W, 3) image."""
        img = np.asarray(a, float) * (1 - s) + np.asarray(b, float) * s
        return np.array(np.broadcast_to(img, (H, W, 3)))

    if name == "plain":
        img = lerp((120, 120, 125), (120, 120, 125), y)
    elif name == "gradient":
        img = lerp((70, 40, 110), (230, 150, 90), (x + y) / 2)
    elif name == "sky":
        img = lerp((60, 120, 200), (170, 210, 240), y)
    elif name == "night":
        img = lerp((8, 10, 35), (35, 35, 75), y)
        n = max(4, H * W // 600)
        img[rng.integers(0, H, n), rng.integers(0, W, n)] = 230  # stars
    else:  # grass: sky above a noisy green field
        horizon = int(0.62 * H)
        img = lerp((110, 170, 225), (190, 220, 240), y / 0.62)
        img[horizon:] = lerp((70, 150, 60), (30, 90, 30), (y - 0.62) / 0.38)[horizon:]
        img[horizon:] *= 1 + 0.12 * rng.standard_normal((H - horizon, W, 1))
    return np.clip(img, 0, 255).astype(np.uint8)


# Each renderer draws the seeded parameters of one video on a transparent
# RGBA layer at frame t. Positions are in canvas pixels; u = min(H, W).

def _radius(content: Content, u: float) -> float:
    return (0.14 if content.size == "small" else 0.2) * u


def _helicopter(rng, c: Content, H, W) -> Drawer:
    """Rigid glide, diagonally up and to the right at constant speed."""
    s = rng.uniform(0.8, 1.2)
    x0, y0 = rng.uniform(0.1, 0.25) * W, rng.uniform(0.7, 0.85) * H
    vx, vy = 0.02 * s * W, -0.018 * s * H
    r = _radius(c, min(H, W))

    def draw(layer, t):
        _draw_shape(ImageDraw.Draw(layer), c.shape, x0 + vx * t, y0 + vy * t, r, _rgba(c.colour))

    return draw


def _waterfall(rng, c: Content, H, W) -> Drawer:
    """Streaky texture flowing down inside a vertical band (still elsewhere)."""
    bw = int((0.3 if c.size == "small" else 0.42) * W)
    x0 = int(rng.uniform(0.3, 0.7) * W - bw / 2)
    speed = rng.uniform(0.035, 0.05)  # band heights per frame
    wavelength = 0.4
    phase = np.cumsum(rng.normal(0, 0.12, bw))  # varies slowly across the band: 2D texture
    edge = np.minimum(np.arange(bw), np.arange(bw)[::-1]) / (0.12 * bw)
    alpha = np.clip(edge, 0, 1)[None, :]
    ys = np.arange(H)[:, None] / H
    rgb = np.array(COLOURS[c.colour], float)

    def draw(layer, t):
        s = 0.5 + 0.5 * np.sin(2 * np.pi * (ys - speed * t) / wavelength + phase[None, :])
        shade = (0.3 + 0.7 * s)[..., None] * rgb + (s > 0.85)[..., None] * 80.0
        band = np.dstack([np.clip(shade, 0, 255), 255 * np.broadcast_to(alpha, s.shape)])
        layer.paste(Image.fromarray(band.astype(np.uint8), "RGBA"), (x0, 0))

    return draw


def _rain(rng, c: Content, H, W) -> Drawer:
    """Many thin streaks falling fast over the whole frame, wrapping round."""
    n = 12 if c.size == "small" else 9
    width = max(1, round((0.05 if c.size == "small" else 0.07) * min(H, W)))
    length = 0.25 * H
    xs, ys = rng.uniform(0, W, n), rng.uniform(0, H + length, n)
    vy = rng.uniform(0.055, 0.075) * H * rng.uniform(0.9, 1.1, n)
    slant = rng.uniform(-0.05, 0.05)
    fill = _rgba(c.colour)

    def draw(layer, t):
        d = ImageDraw.Draw(layer)
        for x, y0, v in zip(xs, ys, vy):
            y = (y0 + v * t) % (H + length) - length
            x_t = x + slant * v * t
            seg = [(x_t, y), (x_t + slant * length, y + length)]
            d.line(seg, fill=_outline(fill), width=width + 2)
            d.line(seg, fill=fill, width=width)

    return draw


def _firework(rng, c: Content, H, W) -> Drawer:
    """Particles bursting radially out of one point and fading."""
    u = min(H, W)
    cx, cy = rng.uniform(0.35, 0.65) * W, rng.uniform(0.3, 0.5) * H
    n = 10
    angles = np.arange(n) * 2 * np.pi / n + rng.uniform(0, 2 * np.pi) + rng.normal(0, 0.06, n)
    speeds = rng.uniform(0.016, 0.022) * u * rng.uniform(0.85, 1.15, n)
    pr = (0.05 if c.size == "small" else 0.065) * u

    def draw(layer, t):
        d = ImageDraw.Draw(layer)
        fill = _rgba(c.colour, alpha=max(0.35, 1 - t / 30), scale=1.15)
        for a, v in zip(angles, speeds):
            r = v * (t + 1)
            x, y = cx + r * np.cos(a), cy + r * np.sin(a)
            tail = max(0.0, r - 2.5 * v)
            trail = [(cx + tail * np.cos(a), cy + tail * np.sin(a)), (x, y)]
            # a dark rim as wide as rain's: a red or green spark on a mid-grey background
            # has no luminance contrast of its own, and flow runs on grey
            d.line(trail, fill=_outline(fill), width=max(1, round(pr)) + 2)
            _draw_shape(d, "circle", x, y, pr + 1, _outline(fill))
            d.line(trail, fill=fill, width=max(1, round(pr)))
            _draw_shape(d, "circle", x, y, pr, fill)

    return draw


def _horse_run(rng, c: Content, H, W) -> Drawer:
    """Runs right-to-left (the only motion whose mean flow points left) with a
    periodic gait bounce."""
    s = rng.uniform(0.85, 1.15)
    x0, y0 = rng.uniform(0.75, 0.9) * W, rng.uniform(0.6, 0.72) * H
    vx = -0.025 * s * W
    period, phase = rng.uniform(5, 7), rng.uniform(0, np.pi)
    bounce = 0.1 * H
    r = _radius(c, min(H, W))

    def draw(layer, t):
        y = y0 - bounce * abs(np.sin(np.pi * t / period + phase))
        _draw_shape(ImageDraw.Draw(layer), c.shape, x0 + vx * t, y, r, _rgba(c.colour))

    return draw


def _birds_fly(rng, c: Content, H, W) -> Drawer:
    """A small flock drifting right and slightly up, wings flapping."""
    u = min(H, W)
    k = int(rng.integers(2, 4))
    offsets = rng.uniform((-0.12, -0.15), (0.12, 0.15), (k, 2)) * (W, H)
    x0, y0 = rng.uniform(0.15, 0.3) * W, rng.uniform(0.45, 0.65) * H
    s = rng.uniform(0.85, 1.15)
    vx, vy = 0.022 * s * W, -0.003 * s * H
    period = rng.uniform(4, 6)
    phases = rng.uniform(0, 2 * np.pi, k)
    r = 0.6 * _radius(c, u)
    fill = _rgba(c.colour)

    def draw(layer, t):
        d = ImageDraw.Draw(layer)
        for (ox, oy), ph in zip(offsets, phases):
            x, y = x0 + ox + vx * t, y0 + oy + vy * t
            lift = 1.6 * r * np.sin(2 * np.pi * t / period + ph)
            wings = [(x - 2.4 * r, y - lift), (x, y), (x + 2.4 * r, y - lift)]
            d.line(wings, fill=_outline(fill), width=max(2, round(0.7 * r)))
            d.line(wings, fill=fill, width=max(1, round(0.4 * r)))
            _draw_shape(d, c.shape, x, y, r, fill, sy=1 + 0.25 * np.sin(2 * np.pi * t / period + ph))

    return draw


def _turn_to_smile(rng, c: Content, H, W) -> Drawer:
    """A face turns towards the viewer and its mouth bends into a smile."""
    u = min(H, W)
    R = (0.3 if c.size == "small" else 0.38) * u
    cx, cy = rng.uniform(0.42, 0.58) * W, rng.uniform(0.45, 0.55) * H
    turn = rng.choice([-1, 1]) * 0.3 * R
    start, duration = rng.uniform(0, 2), rng.uniform(10, 14)
    fill = _rgba(c.colour)
    ink = (20, 20, 20, 255)

    def draw(layer, t):
        p = np.clip((t - start) / duration, 0, 1)
        p = p * p * (3 - 2 * p)  # smoothstep: starts and ends gently
        d = ImageDraw.Draw(layer)
        _draw_shape(d, c.shape, cx, cy, R, fill)
        fx = cx + turn * (1 - p)
        for ex in (-0.35, 0.35):
            d.ellipse([fx + ex * R - 0.13 * R, cy - 0.36 * R, fx + ex * R + 0.13 * R, cy - 0.1 * R],
                      fill=ink)
        xs = np.linspace(-0.42, 0.42, 15)
        mouth = [(fx + x * R, cy + (0.3 + 0.35 * p * (1 - (x / 0.42) ** 2)) * R) for x in xs]
        d.line(mouth, fill=ink, width=max(2, round(0.14 * R)), joint="curve")

    return draw


def _play_the_guitar(rng, c: Content, H, W) -> Drawer:
    """A limb strumming back and forth about a pivot in front of a still body."""
    u = min(H, W)
    px, py = rng.uniform(0.4, 0.6) * W, rng.uniform(0.35, 0.5) * H
    length = (0.32 if c.size == "small" else 0.42) * u
    base, amp = np.radians(rng.uniform(50, 70)), np.radians(rng.uniform(24, 32))
    period, phase = rng.uniform(5, 7), rng.uniform(0, 2 * np.pi)
    body_r = 1.3 * _radius(c, u)
    limb = _rgba(c.colour, scale=1.2)

    def draw(layer, t):
        d = ImageDraw.Draw(layer)
        _draw_shape(d, c.shape, px - 0.2 * length, py + 0.55 * length, body_r, _rgba(c.colour, scale=0.7))
        a = base + amp * np.sin(2 * np.pi * t / period + phase)
        hand = (px + length * np.cos(a), py + length * np.sin(a))
        d.line([(px, py), hand], fill=_outline(limb), width=max(3, round(0.13 * u)))
        d.line([(px, py), hand], fill=limb, width=max(1, round(0.09 * u)))
        _draw_shape(d, "circle", *hand, 0.08 * u, limb)

    return draw


_RENDERERS: dict[str, Callable[..., Drawer]] = {
    "helicopter": _helicopter,
    "waterfall": _waterfall,
    "rain": _rain,
    "firework": _firework,
    "horse_run": _horse_run,
    "birds_fly": _birds_fly,
    "turn_to_smile": _turn_to_smile,
    "play_the_guitar": _play_the_guitar,
}


def render_video(
    motion: str, content: Content, *, frames: int = 16, height: int = 64, width: int = 96, seed: int = 0,
    split: str = "train",
) -> np.ndarray:
    """uint8 [frames, height, width, 3]; (seed, motion, split) pick start, speed and phase.

    The split is part of the seed: no validation or test render shares a random draw with
    a training video (see "splits" below).
    """
    _check_motion(motion)
    if frames < 1 or height < 8 or width < 8:
        raise ValueError(f"need frames >= 1 and a size of at least 8x8, got {frames}x{height}x{width}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    rng = np.random.default_rng([seed, MOTIONS.index(motion), SPLITS.index(split)])
    H, W = 2 * height, 2 * width
    bg = Image.fromarray(_background(content.background, H, W, rng)).convert("RGBA")
    draw = _RENDERERS[motion](rng, content, H, W)
    out = np.empty((frames, height, width, 3), np.uint8)
    for t in range(frames):
        layer = Image.new("RGBA", (W, H), (0, 0, 0, 0))
        draw(layer, t)
        frame = Image.alpha_composite(bg, layer).convert("RGB")
        out[t] = np.asarray(frame.resize((width, height), Image.Resampling.BOX))
    return out


def render_first_frame(prompt: str, *, height: int = 64, width: int = 96, seed: int = 0,
                       split: str = "test") -> np.ndarray:
    """The world's SD-XL: frame 0 of a video of the content the prompt names
    (motion from its words, helicopter's plain object when none), drawn from the
    test split's random draws (split="validation" when choosing settings)."""
    motion = parse_motion(prompt) or "helicopter"
    return render_video(motion, parse_caption(prompt), frames=1, height=height, width=width, seed=seed,
                        split=split)[0]


# ---------------------------------------------------------------- splits
#
# Three disjoint sets per motion, so that a reported figure is held out in what the
# model can see, not only in its caption:
#   train       the videos LAMP is tuned on (and the world's base model is trained on),
#   validation  prompts + first frames for every choice of settings (benchmarks/world_motion.py),
#   test        the 48 prompts + first frames that are reported (`make run`), never tuned on.
# (a) Content: a motion's visible look is split, not its caption. Renderers that draw the
#     shape are split on (shape, colour, size, background); rain, waterfall and firework draw
#     no shape, so they are split on (colour, size, background) and a held-out item can never
#     look like a training video that differs only in an undrawn word.
# (b) Random draws: `render_video`'s generator is seeded with (seed, motion, split), so a
#     test or validation first frame never shares start position, speed, phase or particle
#     layout with a training video, whatever seeds the two use.

SPLITS: tuple[str, ...] = ("train", "validation", "test")
SHAPELESS: frozenset[str] = frozenset({"rain", "waterfall", "firework"})


def visible_content(motion: str, content: Content) -> tuple[str, ...]:
    """The attributes of `content` that the motion's renderer actually draws."""
    _check_motion(motion)
    seen = (content.colour, content.size, content.background)
    return seen if motion in SHAPELESS else (content.shape, *seen)


def split_of(motion: str, content: Content) -> str:
    """Which set a (motion, content) pair belongs to: one fifth test, one fifth validation.

    A linear key over the visible attributes' indices: with all but one attribute fixed,
    the held-out value of the remaining one changes with the others, so every single
    attribute value is seen in training; only its combination (with this motion) is new.
    """
    _check_motion(motion)
    key = (2 * list(COLOURS).index(content.colour) + 3 * BACKGROUNDS.index(content.background)
           + 4 * SIZES.index(content.size) + MOTIONS.index(motion))
    if motion not in SHAPELESS:
        key += SHAPES.index(content.shape)
    return {0: "test", 1: "validation"}.get(key % 5, "train")


def _pool(motion: str, split: str) -> list[Content]:
    """Every content of `split` for `motion`, one per distinct visible look."""
    _check_motion(motion)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    shapes = ("circle",) if motion in SHAPELESS else SHAPES  # the shape of a shapeless motion: drawn below
    return [Content(s, c, z, b) for s in shapes for c in COLOURS for z in SIZES for b in BACKGROUNDS
            if split_of(motion, Content(s, c, z, b)) == split]


def contents(motion: str, split: str, n: int, seed: int = 0) -> list[Content]:
    """n distinct contents of `split` for `motion` (distinct in what is drawn), seeded."""
    pool = _pool(motion, split)
    if not 0 <= n <= len(pool):
        raise ValueError(f"n={n}: {motion} has {len(pool)} distinct {split} contents")
    rng = np.random.default_rng([seed, MOTIONS.index(motion), SPLITS.index(split)])
    picks = [pool[i] for i in rng.choice(len(pool), n, replace=False)]
    if motion in SHAPELESS:  # the shape is only a word of the caption: any shape
        picks = [Content(str(rng.choice(SHAPES)), c.colour, c.size, c.background) for c in picks]
    return picks


def training_contents(motion: str, n: int, seed: int = 0) -> list[Content]:
    """n distinct training contents for `motion` (never a validation or test look)."""
    return contents(motion, "train", n, seed)


def training_videos(motion: str, n: int, *, frames: int = 24, height: int = 64, width: int = 96,
                    seed: int = 0) -> list[tuple[Content, int, np.ndarray]]:
    """(content, video seed, frames) of the n training videos of `motion`, exactly as `make_dataset`
    writes them (video i is rendered with seed * 1000 + i on the train split)."""
    return [(c, seed * 1000 + i, render_video(motion, c, frames=frames, height=height, width=width,
                                               seed=seed * 1000 + i, split="train"))
            for i, c in enumerate(training_contents(motion, n, seed))]


def eval_prompts(seed: int = 0, split: str = "test") -> list[tuple[str, str]]:
    """48 (motion, prompt) rows, 6 per motion like the paper's eval set: the test set,
    or the validation set with split="validation"."""
    if split not in ("validation", "test"):
        raise ValueError(f"eval prompts come from the validation or test split, not {split!r}")
    return [(m, c.caption(m)) for m in MOTIONS for c in contents(m, split, 6, seed)]


def make_dataset(
    out_dir: str | Path,
    *,
    videos_per_motion: int = 12,
    frames: int = 24,
    height: int = 64,
    width: int = 96,
    seed: int = 0,
    write_video: Callable[[np.ndarray, Path], object],
    motions: tuple[str, ...] | list[str] = MOTIONS,
) -> list[dict]:
    """Write out_dir/<motion>/<i:02d>.mp4 and out_dir/<motion>/captions.csv.

    `write_video(frames, path)` does the encoding (injected so this module
    needs no ffmpeg). Returns one row per video; `file` is relative to out_dir.
    """
    out_dir = Path(out_dir)
    rows = []
    for motion in motions:
        _check_motion(motion)
        folder = out_dir / motion
        folder.mkdir(parents=True, exist_ok=True)
        captions = []
        videos = training_videos(motion, videos_per_motion, frames=frames, height=height, width=width, seed=seed)
        for i, (content, video_seed, video) in enumerate(videos):
            name = f"{i:02d}.mp4"
            write_video(video, folder / name)
            caption = content.caption(motion)
            captions.append((name, caption))
            rows.append({"motion": motion, "file": f"{motion}/{name}", "caption": caption,
                         "seed": video_seed, **asdict(content)})
        with atomic_write(folder / "captions.csv") as tmp, open(tmp, "w", newline="") as f:
            csv.writer(f).writerows([("file", "caption"), *captions])
    return rows
