"""The params.yaml schema: every setting of the pipeline, validated once on load.

An invalid value stops with the field's dotted name, the value and what is
allowed (pydantic's range/choice checks), e.g.
`params.yaml: train.lr = -1.0: Input should be greater than 0`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

MOTIONS = ("helicopter", "waterfall", "rain", "firework", "horse_run", "birds_fly", "turn_to_smile",
           "play_the_guitar")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataParams(_Section):
    source: Literal["world", "folder"] = "world"  # world: the motion world renders the videos
    videos_dir: str = "data/world/videos"  # <videos_dir>/<motion>/*.mp4
    eval_prompts: str = "data/prompts/world_eval.csv"  # csv with columns motion,prompt
    min_videos: int = Field(4, ge=1)  # a motion with fewer usable videos stops the stage
    use_captions: bool = True  # a captions.csv beside the videos gives one caption per video


class WorldParams(_Section):
    videos_per_motion: int = Field(12, ge=1, le=64)
    frames: int = Field(24, ge=2)
    height: int = Field(64, ge=16)
    width: int = Field(96, ge=16)
    seed: int = 0


class ClipParams(_Section):
    frames: int = Field(16, ge=2, le=64)
    stride: int = Field(1, ge=1)
    clips_per_video: int = Field(2, ge=1)
    height: int = Field(320, ge=16)
    width: int = Field(512, ge=16)
    resize_policy: Literal["crop", "pad", "resize"] = "crop"  # crop never distorts


class ModelParams(_Section):
    base: str = "models/world/base"  # diffusers SD v1.x folder, or a hub id (CompVis/stable-diffusion-v1-4)
    first_frame: Literal["world", "sdxl", "base", "image"] = "world"
    sdxl: str = "stabilityai/stable-diffusion-xl-base-1.0"
    first_frame_steps: int = Field(30, ge=1)
    first_frame_guidance: float = Field(7.5, ge=0)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"


class BaseTrainParams(_Section):
    """Training of the motion world's own base model (unused with real weights)."""

    vae_steps: int = Field(1500, ge=0)
    vae_detail_weight: float = Field(10.0, ge=0)  # weigh objects/edges in the VAE loss (train_vae)
    unet_steps: int = Field(3000, ge=0)
    clip_steps: int = Field(600, ge=0)
    batch_size: int = Field(16, ge=1)  # VAE (compute-bound at full resolution)
    unet_batch_size: int = Field(32, ge=1)  # UNet + text encoder (latents: a batch costs little more)
    lr: float = Field(1e-3, gt=0)
    vae_channels: list[int] = [32, 32, 64, 64]  # n blocks downsample by 2^(n-1): [32, 64, 64] = 4x
    unet_channels: list[int] = [32, 64]
    unet_norm_groups: int = Field(8, ge=1)
    text_dim: int = Field(32, ge=8)
    heads: int = Field(1, ge=1)
    seed: int = 0


class ControlNetParams(_Section):
    """The motion world's canny ControlNet for `lamp edit` (stage `controlnet`; unused with real weights)."""

    steps: int = Field(600, ge=1)
    batch_size: int = Field(16, ge=1)
    lr: float = Field(1e-3, gt=0, le=1)
    caption_dropout: float = Field(0.5, ge=0, le=1)  # share of steps with an empty prompt (ControlNet paper: 0.5)
    canny_low: int = Field(100, ge=1)  # cv2.Canny hysteresis thresholds, the same in training and editing
    canny_high: int = Field(200, ge=1)
    loss: Literal["x0", "eps"] = "x0"  # x0: the noise error weighted by 1/SNR (the clean latents' error)
    seed: int = 0


class EditParams(_Section):
    """`lamp edit` (spec "Applications"): how the first frame is redrawn."""

    controlnet_scale: float = Field(1.0, ge=0)  # ControlNet conditioning scale of the first-frame edit


class LampParams(_Section):
    """Architecture switches (the paper's ablations 4 and 5 and two more), and one option."""

    tsm: bool = True
    prediction_conv1d: bool = True
    first_frame_attention: bool = True
    temporal_attention: bool = True
    temporal_positions: bool = False  # frame index in temporal attention; not in the paper


class TrainParams(_Section):
    steps: int = Field(300, ge=1)
    lr: float = Field(1e-3, gt=0, le=1)
    batch_size: int = Field(1, ge=1, le=64)
    weight_decay: float = Field(1e-2, ge=0)
    grad_clip: float = Field(1.0, gt=0)
    first_frame_conditioning: bool = True
    hflip: bool = False
    checkpoint_every: int = Field(50, ge=1)
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"  # autocast on CPU and CUDA; fp16 adds loss scaling
    gradient_checkpointing: bool = False
    use_8bit_adam: bool = False
    lr_schedule: Literal["constant", "cosine"] = "constant"  # after warm-up; cosine ends at 0
    warmup_steps: int = Field(0, ge=0)
    seed: int = 0

    @field_validator("mixed_precision", mode="before")
    @classmethod
    def _unquoted_no(cls, value):
        """`mixed_precision: no` unquoted is YAML 1.1's boolean false: take it as "no"."""
        return "no" if value is False else value


class SampleParams(_Section):
    ddim_steps: int = Field(25, ge=1, le=1000)
    guidance_scale: float = Field(7.5, ge=0)
    alpha: float = Field(0.2, ge=0, le=1)  # shared-noise weight; 0 = ablation "no shared noise"
    adain: bool = True
    histogram_matching: bool = True
    seeds: list[int] = [0]
    batch_size: int = Field(1, ge=1, le=64)  # videos per pipeline call; each keeps its own seed's noise
    fps: int = Field(8, ge=1)


class TuneAVideoParams(_Section):
    """Tune-A-Video: one-shot tuning on one training video per motion (lamp_model/baselines/tune_a_video.py)."""

    steps: int = Field(300, ge=1)  # default: LAMP's budget per motion (train.steps x train.batch_size clips)
    batch_size: int = Field(4, ge=1, le=64)
    lr: float = Field(1e-3, gt=0, le=1)
    template_seed: int = 0  # draws the one training video per motion
    start_from_noise: bool = False  # false: sample from the template's DDIM inversion (the authors' default)


class AnimateDiffParams(_Section):
    """AnimateDiff: a motion adapter trained on every motion's videos, or real motion modules."""

    adapter: str = ""  # "": train one on the training videos; else a .ckpt path/URL or a diffusers adapter folder/id
    steps: int = Field(2400, ge=1)  # default: LAMP's budget for all 8 motions (8 x 300 steps of 4 clips)
    batch_size: int = Field(4, ge=1, le=64)
    lr: float = Field(1e-3, gt=0, le=1)
    heads: int = Field(1, ge=1)
    seed: int = 0


class Text2VideoZeroParams(_Section):
    """Text2Video-Zero: training-free; the global motion of its latent warp."""

    motion_px: list[float] | None = None  # [x, y] pixels per frame of the clip; null: the paper's 12 of 512


class BaselinesParams(_Section):
    """The paper's baselines, sampled with LAMP's sample.* settings on the same test prompts and seeds."""

    tune_a_video: TuneAVideoParams = TuneAVideoParams()
    animatediff: AnimateDiffParams = AnimateDiffParams()
    text2video_zero: Text2VideoZeroParams = Text2VideoZeroParams()


class MetricsParams(_Section):
    clip_model: str = "models/world/clip"  # a folder (small CLIP), an open_clip name like ViT-L-14, or hf-hub:/local-dir:
    clip_pretrained: str = ""  # open_clip pretrained tag (openai) or checkpoint file, for a named model only


class TrackingParams(_Section):
    """MLflow: where runs go. A relative sqlite path is taken from the project root."""

    uri: str = "sqlite:///mlflow.db"  # or http://127.0.0.1:5000 for an `mlflow server`
    experiment: str = "lamp"
    enabled: bool = True


class RunnerParams(_Section):
    """`make run` / `lamp repro`: how DVC's stages share the machine (not an input of any stage)."""

    # per-motion stages of different motions side by side, each with cores // jobs torch threads;
    # "auto": 2 on a CPU with >= 2 cores, 1 with a GPU (one GPU, one stage); 1 = plain `dvc repro`
    jobs: int | str = "auto"

    @field_validator("jobs")
    @classmethod
    def _jobs(cls, v):
        if v != "auto" and not (isinstance(v, int) and v >= 1):
            raise ValueError(f"{v!r}: give a number of stages at a time (>= 1) or auto")
        return v


class Params(_Section):
    seed: int = 0
    motions: list[str] = list(MOTIONS)
    motion_prompts: dict[str, str] = {}  # override the "folder name with _ -> space" prompt
    data: DataParams = DataParams()
    world: WorldParams = WorldParams()
    clips: ClipParams = ClipParams()
    model: ModelParams = ModelParams()
    base_train: BaseTrainParams = BaseTrainParams()
    controlnet: ControlNetParams = ControlNetParams()
    edit: EditParams = EditParams()
    lamp: LampParams = LampParams()
    train: TrainParams = TrainParams()
    sample: SampleParams = SampleParams()
    baselines: BaselinesParams = BaselinesParams()
    metrics: MetricsParams = MetricsParams()
    tracking: TrackingParams = TrackingParams()
    runner: RunnerParams = RunnerParams()

    @model_validator(mode="after")
    def _check(self) -> "Params":
        if not self.motions:
            raise ValueError("motions: list at least one motion")
        bad = [m for m in self.motions if not m or "/" in m or m != m.strip()]
        if bad:
            raise ValueError(f"motions: invalid motion names {bad} (use folder names like horse_run)")
        for name in ("height", "width"):
            if getattr(self.clips, name) % 8:
                raise ValueError(f"clips.{name} = {getattr(self.clips, name)}: must be a multiple of 8 "
                                 "(the VAE downsamples by 8)")
        bt = self.base_train
        if not 2 <= len(bt.vae_channels) <= 4 or min(bt.vae_channels) < 1:
            raise ValueError(f"base_train.vae_channels = {bt.vae_channels}: give 2-4 positive block widths "
                             "(4 blocks downsample by 8 like SD's VAE, 3 by 4)")
        if any(c % bt.unet_norm_groups for c in bt.unet_channels):
            raise ValueError(f"base_train.unet_norm_groups = {bt.unet_norm_groups}: must divide every "
                             f"base_train.unet_channels {bt.unet_channels} (GroupNorm groups)")
        motion_px = self.baselines.text2video_zero.motion_px
        if motion_px is not None and len(motion_px) != 2:
            raise ValueError(f"baselines.text2video_zero.motion_px = {motion_px}: give [x, y] pixels per frame, "
                             "or null for the paper's default")
        if self.train.warmup_steps >= self.train.steps:
            raise ValueError(f"train.warmup_steps = {self.train.warmup_steps}: must be below train.steps "
                             f"= {self.train.steps} (the warm-up is part of the run)")
        if self.controlnet.canny_low >= self.controlnet.canny_high:
            raise ValueError(f"controlnet.canny_low = {self.controlnet.canny_low}: must be below controlnet.canny_high "
                             f"= {self.controlnet.canny_high} (cv2.Canny's hysteresis thresholds)")
        return self

    def motion_prompt(self, motion: str) -> str:
        return self.motion_prompts.get(motion, motion.replace("_", " "))


class ParamsError(ValueError):
    """params.yaml is missing or holds an invalid value."""


def load_params(path: str | Path = "params.yaml", overrides: dict | None = None) -> Params:
    """Read and validate params.yaml (plus optional nested overrides)."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: not found; run from the project root or pass --params")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as e:
        raise ParamsError(f"{path}: cannot be read ({e.strerror or e}); check the file") from None
    except UnicodeDecodeError as e:
        raise ParamsError(f"{path}: not UTF-8 text (offset {e.start}); save it as UTF-8") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ParamsError(f"{path}: not valid YAML: {' '.join(str(e).split())}") from None
    except (ValueError, OverflowError, RecursionError) as e:  # e.g. a date like 2024-02-30
        raise ParamsError(f"{path}: not valid YAML: {type(e).__name__}: {e}") from None
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: must be a mapping of sections (seed:, data:, train:, ...), "
                          f"not a {type(raw).__name__}; see the shipped params.yaml")
    for key, value in (overrides or {}).items():
        _set_dotted(raw, key, value)
    try:
        return Params.model_validate(raw)
    except ValidationError as e:
        lines = [f"{path}: {err['msg'].removeprefix('Value error, ')}" if not err["loc"] else
                 f"{path}: {'.'.join(map(str, err['loc']))} = {_value_at(raw, err['loc'])!r}: {err['msg']}"
                 for err in e.errors()]
        raise ParamsError("\n".join(lines)) from None


def write_overrides(path: str | Path, overrides: dict) -> dict[str, tuple[object, object]]:
    """Write dotted overrides into a params.yaml file (like `dvc exp run -S key=value`).

    The file keeps its comments and layout (ruamel round trip). The result is validated
    like every params.yaml before it replaces the file, so a bad value raises ParamsError
    and leaves the file untouched. Returns {key: (old value, new value)} of what changed.
    """
    import io

    from ruamel.yaml import YAML

    from .io import atomic_write

    path = Path(path)
    load_params(path, overrides)  # every override valid (field name, value and range on error)
    from ruamel.yaml.comments import CommentedSeq

    ryaml = YAML()
    ryaml.width = 4096  # keep long lines (the motions list) as they are
    ryaml.preserve_quotes = True
    raw = ryaml.load(path.read_text())
    if raw is None:
        raw = {}
    changed = {}
    for key, value in overrides.items():
        old = _value_at(raw, key.split("."))
        if old != value:
            changed[key] = (old, value)
            if isinstance(old, CommentedSeq) and isinstance(value, list) and old.fa.flow_style():
                value = CommentedSeq(value)  # [a, b] stays on one line
                value.fa.set_flow_style()
            _set_dotted(raw, key, value)
    if not changed:
        return changed
    text = io.StringIO()
    ryaml.dump(raw, text)
    with atomic_write(path) as tmp:
        tmp.write_text(text.getvalue())
        load_params(tmp)  # raises before atomic_write replaces the file
    return changed


def _set_dotted(raw: dict, key: str, value) -> None:
    *parents, leaf = key.split(".")
    for p in parents:
        raw = raw.setdefault(p, {})
        if not isinstance(raw, dict):
            raise ParamsError(f"{key}: '{p}' is a value, not a section of params.yaml")
    raw[leaf] = value


def _value_at(raw, loc):
    for part in loc:
        try:
            raw = raw[part]
        except (KeyError, IndexError, TypeError):
            return None
    return raw


def flatten(params: Params) -> dict[str, object]:
    """Dotted key -> value, for MLflow params."""
    out: dict[str, object] = {}

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        else:
            out[prefix] = value

    walk("", params.model_dump())
    return out
