"""`lamp`: the LAMP command line.

Every command reads its defaults from params.yaml (`--params`, default
ROOT/params.yaml; `--set key=value` overrides any setting, repeatable, values
parsed as YAML), shows progress bars on stderr and prints the files it wrote on
stdout. Model paths in params.yaml are relative to `--root` (default: the
current directory), anything else is a Hugging Face id.

Errors are one line on stderr (`error: ...`) and exit code 1; `--debug` shows
the traceback instead. Heavy libraries are imported inside the commands, so
`--help` is instant.
"""
from __future__ import annotations

import csv
import functools
import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(
    name="lamp", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="LAMP: learn a motion pattern from a few videos, then generate, animate images and edit videos "
         "with it. Every setting defaults to params.yaml (override with --set key=value).")

log = logging.getLogger("lamp")

# -- options every command shares ---------------------------------------------------------
RootOpt = Annotated[Path, typer.Option("--root", help="Project root: model paths in params.yaml are relative "
                                                      "to it, stage outputs go under it.")]
ParamsOpt = Annotated[Optional[Path], typer.Option("--params", help="params.yaml to read (default: ROOT/params.yaml).")]
SetOpt = Annotated[Optional[list[str]], typer.Option(
    "--set", metavar="KEY=VALUE", help="Override a params.yaml setting, e.g. --set sample.ddim_steps=10 "
                                       "(repeatable; VALUE is parsed as YAML).")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show the full traceback on errors.")]

RESIZE_POLICIES = ("crop", "pad", "resize")
VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".gif")


class CliError(Exception):
    """Bad command-line input; the message says what to pass instead."""


def _user_errors() -> tuple[type[BaseException], ...]:
    """The error types whose message is meant for the user (no traceback needed)."""
    from lamp_model.config import ParamsError
    from lamp_model.errors import ModelUnavailableError
    from lamp_model.unet import MotionCheckpointError
    from lamp_model.video import VideoError

    errors: list[type[BaseException]] = [CliError, ParamsError, ModelUnavailableError, MotionCheckpointError,
                                         VideoError, FileNotFoundError, NotADirectoryError, ValueError]
    try:
        from tasks.common import StageError
        errors.append(StageError)
    except ImportError:
        pass
    return tuple(errors)


def _one_line(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    if isinstance(err, (FileNotFoundError, NotADirectoryError)) and err.filename and str(err.filename) not in text:
        text = f"{err.filename}: {text}"
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())


def command(fn):
    """Run a command body: user errors become one line on stderr and exit code 1 (unless --debug)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        debug = bool(kwargs.get("debug"))
        logging.basicConfig(level=logging.DEBUG if debug else logging.INFO, format="%(name)s: %(message)s",
                            stream=sys.stderr)
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except Exception as err:
            if debug or not isinstance(err, _user_errors()):
                raise
            typer.echo(f"error: {_one_line(err)}", err=True)
            raise typer.Exit(1) from None

    return wrapper


def _parse_sets(items: list[str] | None) -> dict:
    import yaml

    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise CliError(f"--set {item!r}: expected KEY=VALUE, e.g. --set train.steps=100")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            out[key.strip()] = value
    return out


def _load(root: Path, params: Path | None, sets: list[str] | None, extra: dict | None = None):
    from lamp_model.config import load_params

    overrides = {**(extra or {}), **_parse_sets(sets)}
    return load_params(params if params is not None else root / "params.yaml", overrides)


def _other_params_file(root: Path, params: Path | None) -> bool:
    return params is not None and Path(params).resolve() != (Path(root) / "params.yaml").resolve()


def _source(root: Path, name: str) -> str:
    """A model path in params.yaml is relative to the root; anything else is a hub id."""
    local = Path(root) / name
    return str(local) if local.exists() else name


def _device(params):
    from lamp_model.loading import resolve_device, resolve_dtype

    device = resolve_device(params.model.device)
    dtype = resolve_dtype(params.model.dtype) if device.type == "cuda" else resolve_dtype("float32")
    return device, dtype


def _wrote(*paths) -> None:
    for p in paths:
        typer.echo(f"wrote {p}")


def _check_policy(policy: str | None) -> None:
    if policy is not None and policy not in RESIZE_POLICIES:
        raise CliError(f"--resize-policy {policy!r}: use one of {', '.join(RESIZE_POLICIES)}")


def _check_file(path: Path, what: str) -> None:
    if not path.exists():
        raise FileNotFoundError(f"{path}: {what} not found")
    if not path.is_file():
        raise CliError(f"{path}: {what} must be a file")


# =========================================================================================
@app.command(epilog="Example: lamp animate photo.jpg --motion models/motions/horse_run/motion.safetensors "
                    "--prompt 'a horse running on the beach' --out outputs/animate")
@command
def animate(
    image: Annotated[Path, typer.Argument(help="Image to animate (any size; it becomes frame 0).")],
    motion: Annotated[Path, typer.Option("--motion", "-m", help="Motion checkpoint (motion.safetensors "
                                                                 "written by `lamp train` / the tune stage).")],
    prompt: Annotated[str, typer.Option("--prompt", "-p", help="What the video shows.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("outputs/animate"),
    name: Annotated[Optional[str], typer.Option(help="Output file stem (default: the image's).")] = None,
    frames: Annotated[Optional[int], typer.Option(min=2, help="Frames (default clips.frames).")] = None,
    height: Annotated[Optional[int], typer.Option(min=8, help="Height (default clips.height).")] = None,
    width: Annotated[Optional[int], typer.Option(min=8, help="Width (default clips.width).")] = None,
    resize_policy: Annotated[Optional[str], typer.Option(
        help="crop (cover + centre-crop, never distorts) | pad (black bars) | resize (stretch); "
             "default clips.resize_policy.")] = None,
    steps: Annotated[Optional[int], typer.Option(min=1, help="DDIM steps (default sample.ddim_steps).")] = None,
    guidance: Annotated[Optional[float], typer.Option(help="CFG scale (default sample.guidance_scale).")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Noise seed (default: first of sample.seeds).")] = None,
    negative_prompt: Annotated[str, typer.Option(help="Negative prompt for guidance.")] = "",
    root: RootOpt = Path("."), params: ParamsOpt = None, set_: SetOpt = None, debug: DebugOpt = False,
):
    """Animate any image with a tuned motion: the image is frame 0, the motion comes from the checkpoint.

    Writes OUT/NAME.mp4, OUT/NAME.gif and OUT/NAME_first_frame.png (the fitted image).
    """
    _check_file(image, "image")
    _check_file(motion, "motion checkpoint")
    _check_policy(resize_policy)
    p = _load(root, params, set_)
    c, s = p.clips, p.sample
    h, w = height or c.height, width or c.width
    if h % 8 or w % 8:
        raise CliError(f"--height/--width {h}x{w}: must be multiples of 8 (the VAE downsamples by 8)")
    from lamp_model.animate import animate_image, load_pipeline, motion_switches, save_image, save_video
    from lamp_model.first_frame import from_image

    policy = resize_policy or c.resize_policy
    first = from_image(image, h, w, policy)  # fails on a bad image before any model loads
    switches = motion_switches(motion)  # fails on a bad checkpoint before the base loads
    device, dtype = _device(p)
    pipe = load_pipeline(_source(root, p.model.base), motion, switches=switches, device=device, dtype=dtype)
    video = animate_image(pipe, first, prompt, num_frames=frames or c.frames, height=h, width=w,
                          resize_policy=policy, num_inference_steps=steps or s.ddim_steps,
                          guidance_scale=s.guidance_scale if guidance is None else guidance, alpha=s.alpha,
                          adain=s.adain, histogram_matching=s.histogram_matching,
                          seed=s.seeds[0] if seed is None else seed, negative_prompt=negative_prompt)
    stem = out / (name or image.stem)
    mp4, gif = save_video(video, stem, s.fps)
    png = save_image(first, stem.with_name(stem.name + "_first_frame.png"))
    _wrote(mp4, gif, png)


# =========================================================================================
@app.command(epilog="Examples:\n\n  lamp edit dance.mp4 --prompt 'a robot dancing, cartoon style'\n\n"
                    "  lamp edit dance.mp4 --prompt 'a robot dancing' --first-frame my_edit.png --tune-steps 300")
@command
def edit(
    video: Annotated[Path, typer.Argument(help="Video to edit (any container ffmpeg reads).")],
    prompt: Annotated[str, typer.Option("--prompt", "-p", help="What the edited video shows.")],
    video_prompt: Annotated[Optional[str], typer.Option(
        help="Caption of the source video, used to tune on it (default: file name, _ and - as spaces).")] = None,
    first_frame: Annotated[Optional[Path], typer.Option(
        help="Use this image as the edited first frame instead of the ControlNet edit.")] = None,
    controlnet: Annotated[str, typer.Option(
        help="First-frame editor: 'auto' (small for the motion world / base first frames, else SD-XL), "
             "'small' (the motion world's canny ControlNet of `dvc repro controlnet`, "
             "models/world_controlnet), or a canny ControlNet id/folder for SD-XL (model.sdxl), "
             "e.g. diffusers/controlnet-canny-sdxl-1.0.")] = "auto",
    frames: Annotated[int, typer.Option(min=2, help="Frames to edit.")] = 24,
    stride: Annotated[int, typer.Option(min=1, help="Take every STRIDE-th frame of the video.")] = 2,
    tune_steps: Annotated[int, typer.Option(min=0, help="LAMP tuning steps on this one video.")] = 500,
    lr: Annotated[Optional[float], typer.Option(help="Tuning learning rate (default train.lr).")] = None,
    steps: Annotated[Optional[int], typer.Option(min=1, help="DDIM steps, inversion and sampling "
                                                             "(default sample.ddim_steps).")] = None,
    guidance: Annotated[Optional[float], typer.Option(help="CFG scale (default sample.guidance_scale).")] = None,
    invert_refine: Annotated[int, typer.Option(min=0, help="Fixed-point refinements per inversion step "
                                                           "(more exact inversion, slower).")] = 0,
    controlnet_scale: Annotated[Optional[float], typer.Option(
        min=0, help="ControlNet conditioning scale of the frame-0 edit (default edit.controlnet_scale).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the first-frame edit.")] = 0,
    resize_policy: Annotated[Optional[str], typer.Option(
        help="crop | pad | resize to clips.height x clips.width (default clips.resize_policy).")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("outputs/edit"),
    root: RootOpt = Path("."), params: ParamsOpt = None, set_: SetOpt = None, debug: DebugOpt = False,
):
    """Edit a video (spec "Applications"): tune on it, DDIM-invert it, edit frame 0, regenerate.

    1. tune a LampUNet on the ONE video (FRAMES frames every STRIDE, TUNE_STEPS steps);
    2. DDIM-invert its latents (empty prompt, no guidance);
    3. edit the first frame with a canny ControlNet (or take --first-frame);
    4. sample from the inverted latents with the edited first frame (no shared-noise mixing).
    Writes OUT/NAME_edited.{mp4,gif}, NAME_source.mp4 (the clip as tuned on), NAME_first_frame.png,
    NAME_motion.safetensors (the weights tuned on this video).
    """
    _check_file(video, "video")
    if first_frame is not None:
        _check_file(first_frame, "first-frame image")
    _check_policy(resize_policy)
    p = _load(root, params, set_)
    c, s = p.clips, p.sample
    h, w, policy = c.height, c.width, resize_policy or c.resize_policy
    import torch

    from lamp_model import editing
    from lamp_model.animate import pipeline_from_components, save_image, save_video
    from lamp_model.controlnet_training import SETTINGS_FILE, load_controlnet
    from lamp_model.first_frame import from_image
    from lamp_model.loading import load_sd_components
    from lamp_model.training import TrainSettings, train_motion
    from lamp_model.video import read_video, write_mp4
    from tasks.common import Layout

    raw, _ = read_video(video)
    clip = editing.prepare_video(raw, frames, stride, h, w, policy)
    edited0 = from_image(first_frame, h, w, policy) if first_frame is not None else None
    kind = controlnet
    if kind == "auto":
        kind = "small" if p.model.first_frame in ("world", "base") else editing.SDXL_CANNY_CONTROLNET
    small_folder = Layout(root).world_controlnet
    if edited0 is None and kind == "small" and not (small_folder / SETTINGS_FILE).is_file():
        raise CliError(f"{small_folder}: no trained canny ControlNet for the motion world's base; build it with "
                       "`dvc repro controlnet` (or pass --first-frame IMAGE)")
    device, _ = _device(p)
    comps = load_sd_components(_source(root, p.model.base), device, torch.float32)  # tuned in fp32

    if edited0 is None:
        typer.echo(f"editing the first frame with the {small_folder if kind == 'small' else kind} "
                   "canny ControlNet", err=True)
        canny = {}
        if kind == "small":
            net, settings = load_controlnet(small_folder, device)
            if tuple(net.config.block_out_channels) != tuple(comps.unet.config.block_out_channels) or \
                    net.config.cross_attention_dim != comps.unet.config.cross_attention_dim:
                raise CliError(f"{small_folder}: trained for another base model than {p.model.base}; "
                               "train it again with `dvc repro controlnet`")
            cn_pipe = editing.small_controlnet_pipeline(comps, net)
            canny = {"canny_low": settings.canny_low, "canny_high": settings.canny_high}
        else:
            cn_pipe = editing.load_sdxl_controlnet_pipeline(_source(root, kind), _source(root, p.model.sdxl),
                                                            device, _device(p)[1])
        cn_pipe.set_progress_bar_config(desc="edit first frame", leave=False)
        edited0 = editing.edit_first_frame(cn_pipe, clip[0], prompt, seed=seed, steps=p.model.first_frame_steps,
                                           guidance=p.model.first_frame_guidance,
                                           conditioning_scale=p.edit.controlnet_scale if controlnet_scale is None
                                           else controlnet_scale, **canny)
        del cn_pipe

    pipe = pipeline_from_components(comps, switches=p.lamp.model_dump()).to(device)
    latents = editing.video_latents(pipe, clip)
    if tune_steps:
        for _, param in pipe.unet.trainable_parameters():
            param.requires_grad_(True)
        caption = video_prompt if video_prompt is not None else video.stem.replace("_", " ").replace("-", " ")
        settings = TrainSettings(**{**p.train.model_dump(), "steps": tune_steps,
                                    **({"lr": lr} if lr is not None else {})})
        train_motion(pipe.unet, comps.train_scheduler(), latents, pipe.encode_prompt([caption]), settings)
        pipe.unet.eval().requires_grad_(False)
    n = steps or s.ddim_steps
    inverted = editing.ddim_invert(pipe, latents, n, refine=invert_refine, progress=True)
    result = editing.edit_video(pipe, clip, prompt, edited0, height=h, width=w, num_inference_steps=n,
                                guidance_scale=s.guidance_scale if guidance is None else guidance,
                                adain=s.adain, histogram_matching=s.histogram_matching, inverted=inverted,
                                progress=True)
    stem = out / video.stem
    mp4, gif = save_video(result, stem.with_name(stem.name + "_edited"), s.fps)
    source = stem.with_name(stem.name + "_source.mp4")
    write_mp4(clip, source, s.fps)
    png = save_image(edited0, stem.with_name(stem.name + "_first_frame.png"))
    weights = pipe.unet.save_motion(stem.with_name(stem.name + "_motion.safetensors"),
                                    {"video": str(video), "steps": tune_steps})
    _wrote(mp4, gif, source, png, weights)


# =========================================================================================
@app.command(epilog="Example: lamp train data/videos/horse_run --steps 3000   "
                    "(then: lamp generate --motion horse_run --prompt 'a zebra running')")
@command
def train(
    videos: Annotated[Path, typer.Argument(help="Folder of 4-16 videos of one motion (+ optional captions.csv "
                                                "with columns file,caption).")],
    motion: Annotated[Optional[str], typer.Option(help="Motion name (default: the folder name).")] = None,
    prompt: Annotated[Optional[str], typer.Option(help="Motion prompt (default: the name, _ as spaces).")] = None,
    steps: Annotated[Optional[int], typer.Option(min=1, help="Tuning steps (default train.steps).")] = None,
    root: RootOpt = Path("."), params: ParamsOpt = None, set_: SetOpt = None, debug: DebugOpt = False,
):
    """Learn one motion from a folder of videos: extract clips -> cache latents -> tune.

    Runs the pipeline's own stages (tasks.extract, tasks.cache, tasks.tune) on this folder; writes
    ROOT/data/clips/MOTION, ROOT/data/latents/MOTION and ROOT/models/motions/MOTION/motion.safetensors.
    """
    if not videos.is_dir():
        raise FileNotFoundError(f"{videos}: no such folder of training videos")
    name = motion or videos.resolve().name
    extra = {"data.source": "folder", "data.videos_dir": str(videos.resolve().parent), "motions": [name]}
    if videos.resolve().name != name:
        raise CliError(f"--motion {name!r}: the folder must be named after the motion (it is "
                       f"{videos.resolve().name!r}); rename it or drop --motion")
    if prompt:
        extra["motion_prompts"] = {name: prompt}
    if steps:
        extra["train.steps"] = steps
    p = _load(root, params, set_, extra)
    from tasks import cache, extract, tune

    results = {}
    for stage in (extract, cache, tune):
        label = stage.__name__.removeprefix("tasks.")
        typer.echo(f"[{label}] {name}", err=True)
        results[label] = stage.run(p, root, motion=name)
    for label, r in results.items():
        for path in r.get("outputs", []):
            typer.echo(f"wrote {path}")
    loss = results["tune"].get("metrics", {}).get("final_loss")
    if loss is not None:
        typer.echo(f"final loss {loss:.4f}", err=True)


# =========================================================================================
@app.command(epilog="Examples:\n\n  lamp generate --motion horse_run --prompt 'a zebra running' "
                    "--prompt 'a dog running'\n\n  lamp generate --motion rain            (its eval prompts)\n\n"
                    "  lamp generate --motion rain --checkpoint my.safetensors --first-frame photo.png "
                    "--prompt 'rain on a street'\n\n"
                    "  lamp generate --motion rain --untuned --prompt 'rain on a street'   (the untuned baseline)")
@command
def generate(
    motion: Annotated[str, typer.Option("--motion", "-m", help="Motion name (its eval prompts and, by default, "
                                                               "ROOT/models/motions/MOTION/motion.safetensors).")],
    prompt: Annotated[Optional[list[str]], typer.Option(
        "--prompt", "-p", help="Prompt (repeatable). Default: the motion's rows of data.eval_prompts.")] = None,
    checkpoint: Annotated[Optional[Path], typer.Option(help="Motion checkpoint (default: the tuned one).")] = None,
    first_frame: Annotated[Optional[Path], typer.Option(
        help="First-frame image for every prompt (default: model.first_frame's source).")] = None,
    untuned: Annotated[bool, typer.Option(help="Use the inflated base UNet as is, LAMP's new layers at their "
                                                "identity init (no checkpoint read): the untuned baseline.")
                       ] = False,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Output folder (default "
                                                                    "ROOT/outputs/cli/MOTION).")] = None,
    root: RootOpt = Path("."), params: ParamsOpt = None, set_: SetOpt = None, debug: DebugOpt = False,
):
    """Generate videos of a motion for prompts, one per prompt and seed (sample.seeds).

    Writes OUT/<prompt index>_s<seed>.{mp4,gif,png} and OUT/index.csv (readable by `lamp score`).
    """
    if untuned and checkpoint is not None:
        raise CliError("--untuned uses no motion checkpoint: drop --checkpoint (or --untuned)")
    if first_frame is not None:
        _check_file(first_frame, "first-frame image")
    p = _load(root, params, set_, {"model.first_frame": "image"} if first_frame is not None else None)
    from tasks.common import GENERATED_COLUMNS, Layout, read_eval_prompts

    layout = Layout(Path(root))
    prompts = list(prompt or [])
    if not prompts:
        prompts = read_eval_prompts(layout.eval_prompts_file(p)).get(motion, [])
        if not prompts:
            raise CliError(f"no --prompt given and {layout.eval_prompts_file(p)} has no prompts for {motion!r}")
    weights = None if untuned else (checkpoint or layout.motion_model(motion) / "motion.safetensors")
    if weights is not None and not weights.is_file():
        raise FileNotFoundError(f"{weights}: motion checkpoint not found; run `lamp train` for {motion} "
                                "or pass --checkpoint")
    import torch
    from tqdm.auto import tqdm

    from lamp_model.animate import motion_switches, pipeline_from_components, save_image, save_video
    from lamp_model.loading import load_sd_components
    from tasks.generate import first_frames

    switches = (motion_switches(weights) if weights is not None else None) or p.lamp.model_dump()
    device, dtype = _device(p)
    comps = load_sd_components(_source(root, p.model.base), device, dtype)
    firsts = first_frames(p, layout.root, comps, prompts, device, first_frame)
    pipe = pipeline_from_components(comps, weights, switches).to(device)
    c, s = p.clips, p.sample
    out = out or layout.root / "outputs/cli" / motion
    rows = []
    for i, text, seed in tqdm([(i, t, sd) for i, t in enumerate(prompts) for sd in s.seeds], desc="generate",
                              unit="video"):
        frames = pipe(text, firsts[(i, seed)], num_frames=c.frames, height=c.height, width=c.width,
                      num_inference_steps=s.ddim_steps, guidance_scale=s.guidance_scale, alpha=s.alpha,
                      adain=s.adain, histogram_matching=s.histogram_matching,
                      generator=torch.Generator().manual_seed(seed), progress=False).frames[0]
        stem = f"{i:02d}_s{seed}"
        mp4, gif = save_video(frames, out / stem, s.fps)
        save_image(firsts[(i, seed)], out / f"{stem}.png")
        rows.append({"prompt_index": i, "seed": seed, "prompt": text, "mp4": mp4.name, "gif": gif.name,
                     "first_frame": f"{stem}.png"})
        _wrote(mp4, gif)
    from lamp_model.io import atomic_write

    with atomic_write(out / "index.csv") as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=GENERATED_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    _wrote(out / "index.csv")


# =========================================================================================
@app.command(epilog="Examples:\n\n  lamp score outputs/cli/horse_run            (prompts from its index.csv)\n\n"
                    "  lamp score my_videos/ --prompt 'a horse running' --motion horse_run")
@command
def score(
    folder: Annotated[Path, typer.Argument(help="Folder of videos. With an index.csv (from `lamp generate` or "
                                                "the generate stage) each video's prompt and first frame come "
                                                "from it.")],
    prompt: Annotated[Optional[str], typer.Option("--prompt", "-p", help="Prompt of every video (without "
                                                                          "index.csv; default: file name).")] = None,
    motion: Annotated[Optional[str], typer.Option(help="Motion the videos should show (default: folder name).")
                      ] = None,
    centroids: Annotated[Optional[Path], typer.Option(
        help="Motion classifier (motion_centroids.json of the metrics stage; default "
             "ROOT/reports/motion_centroids.json if it exists) for motion accuracy.")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Output folder (default FOLDER/scores).")
                   ] = None,
    root: RootOpt = Path("."), params: ParamsOpt = None, set_: SetOpt = None, debug: DebugOpt = False,
):
    """CLIP alignment / consistency / diversity (x100) and motion scores of any folder of videos.

    Writes OUT/per_video.csv (one row per video) and OUT/summary.json (means, diversity, motion accuracy).
    """
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder of videos")
    p = _load(root, params, set_)
    motion = motion or folder.resolve().name
    from tasks.metrics import VideoToScore, _clean, load_scorer, score_videos

    videos = _videos_to_score(folder, prompt, motion, VideoToScore)
    if centroids is None and (root / "reports/motion_centroids.json").is_file():
        centroids = root / "reports/motion_centroids.json"
    classifier = None
    if centroids is not None:
        _check_file(centroids, "motion centroids")
        from lamp_model.motion_score import MotionClassifier

        classifier = MotionClassifier.from_json(centroids.read_text())
    scorer = load_scorer(p, Path(root))
    rows, _, overall = score_videos(videos, scorer, classifier)
    out = out or folder / "scores"
    out.mkdir(parents=True, exist_ok=True)
    columns = ["file", "motion", "prompt", "alignment", "consistency", "predicted_motion", "motion_correct",
               "first_frame_fidelity"]
    from lamp_model.io import atomic_write

    with atomic_write(out / "per_video.csv") as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for v, row in zip(videos, rows):
            writer.writerow({k: _clean(x) for k, x in {**row, "file": v.mp4.name}.items()})
    summary = {k: _clean(v) for k, v in overall.items()}
    summary["clip_model"] = p.metrics.clip_model
    with atomic_write(out / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2) + "\n")
    for k in ("alignment", "consistency", "diversity", "motion_accuracy", "first_frame_fidelity"):
        v = summary.get(k)
        if v is not None:
            typer.echo(f"{k}: {v:.2f}", err=True)
    _wrote(out / "per_video.csv", out / "summary.json")


def _videos_to_score(folder: Path, prompt: str | None, motion: str, make) -> list:
    index = folder / "index.csv"
    if index.is_file() and prompt is None:
        with open(index, newline="") as f:
            rows = list(csv.DictReader(f))
        if not rows or not {"prompt", "mp4"} <= set(rows[0]):
            raise CliError(f"{index}: needs the columns prompt,mp4 (as written by `lamp generate`); "
                           "or pass --prompt")
        videos = []
        for line, row in enumerate(rows, start=2):
            mp4 = folder / row["mp4"]
            if not mp4.is_file():
                raise FileNotFoundError(f"{index}:{line}: video {mp4} not found")
            ff = folder / row["first_frame"] if row.get("first_frame") else None
            videos.append(make(mp4, row["prompt"], motion, ff if ff is not None and ff.is_file() else None))
        return videos
    files = sorted(f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in VIDEO_SUFFIXES
                   and not f.name.startswith("."))
    # a generated folder holds each video as mp4 + gif: score the mp4 only
    stems = {f.stem for f in files if f.suffix.lower() != ".gif"}
    files = [f for f in files if f.suffix.lower() != ".gif" or f.stem not in stems]
    if not files:
        raise CliError(f"{folder}: no videos ({', '.join(VIDEO_SUFFIXES)})")
    return [make(f, prompt if prompt is not None else f.stem.replace("_", " "), motion, None) for f in files]


# =========================================================================================
@app.command(epilog="Examples:\n\n  lamp compare --root .          (after `python -m flows.ablations`)\n\n"
                    "  lamp compare --ablation-run-id 0bd92c54...   (the variants of one ablation run)\n\n"
                    "  lamp compare --seed 0 --seed 1   (only these seeds, e.g. while another still runs)\n\n"
                    "  lamp compare --per-seed a/per_seed.csv --per-seed b/per_seed.csv   (seeds run on two "
                    "machines, without their MLflow stores)\n\n"
                    "  lamp compare --baselines       (after `make baselines`: LAMP beside Tune-A-Video, "
                    "Text2Video-Zero, AnimateDiff)")
@command
def compare(
    ablation_run_id: Annotated[Optional[str], typer.Option(help="Only the variants of this lamp-ablations "
                                                                "MLflow run (default: the latest of each).")] = None,
    baselines: Annotated[bool, typer.Option("--baselines", help="Print the baseline comparison instead (Table 1: "
                                            "LAMP, Tune-A-Video, Text2Video-Zero, AnimateDiff; the latest "
                                            "`baselines` stage run, `make baselines`).")] = False,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Output folder (default "
                                                                    "ROOT/reports/ablations).")] = None,
    seed: Annotated[Optional[list[int]], typer.Option("--seed", help="Only this seed (repeat for several; "
                                                                     "default: every seed).")] = None,
    per_seed: Annotated[Optional[list[Path]], typer.Option("--per-seed", help="Build the table from these "
                        "per_seed.csv files (written beside every comparison) instead of MLflow; repeat for "
                        "several.")] = None,
    root: RootOpt = Path("."), params: ParamsOpt = None, set_: SetOpt = None, debug: DebugOpt = False,
):
    """Ablation table from MLflow: one row per variant of the ablation flow, one column per metric
    (--baselines: LAMP beside the paper's three baselines, from the latest `baselines` stage run).

    Reads the latest finished `metrics` run of each variant and seed from the MLflow store named in
    ROOT/params.yaml (tracking.uri, tracking.experiment), averages over seeds, and writes
    OUT/comparison.csv (n_seeds, overall means and their <metric>_std, <motion>/<metric> columns),
    OUT/comparison.md (overall mean ± std and per-motion tables), OUT/comparison.png (bar
    plots) and OUT/per_seed.csv (the rows averaged, with their run ids); prints the overall means. --params/--set are refused: the
    store is the one ROOT/params.yaml names.
    """
    if set_ or _other_params_file(root, params):
        raise CliError("`lamp compare` reads the MLflow store named in ROOT/params.yaml (tracking.uri, "
                       "tracking.experiment): edit that file (or pass --root) instead of --params/--set")
    _load(root, None, None)  # validates ROOT/params.yaml before MLflow starts
    try:
        from flows.compare import baseline_table, build_comparison
    except ImportError as e:
        raise CliError(f"the ablation comparison is not available ({e}); it needs flows/compare.py") from None
    if baselines:
        try:
            table = baseline_table(root)
        except RuntimeError as e:
            raise CliError(f"{e}; run the comparison first: make baselines (dvc repro baselines)") from None
        typer.echo(table.round(3).to_string())
        return
    out_dir = out or Path(root) / "reports/ablations"
    try:
        table = build_comparison(root, ablation_run_id, out_dir, seeds=seed or None, per_seed_files=per_seed or None)
    except RuntimeError as e:  # no finished ablation runs, or a file that is not a per-seed record
        raise CliError(f"{e}" if per_seed else f"{e}; run the ablations first: python -m flows.ablations") from None
    overall = [c for c in table.columns if "/" not in c and not c.endswith("_std")]
    typer.echo(table[overall].round(2).to_string())
    _wrote(*sorted(p for p in Path(out_dir).glob("*") if p.is_file() and (p.stem == "comparison"
                                                                          or p.name == "per_seed.csv")))


@app.command(epilog="Examples:\n\n  lamp pipeline rain helicopter           (or all motions of params.yaml)\n\n"
                    "  lamp pipeline --set train.steps=300 --set sample.seeds=[0,1]   "
                    "(written into ROOT/params.yaml first)")
@command
def pipeline(
    motions: Annotated[Optional[list[str]], typer.Argument(help="Motions to run (default: all in params.yaml; "
                                                                "metrics and report need all of them).")
                       ] = None,
    root: RootOpt = Path("."), params: ParamsOpt = None, set_: SetOpt = None, debug: DebugOpt = False,
):
    """Run the whole pipeline locally with Prefect (flow lamp-all-motions: world -> base -> per motion
    extract/cache/tune/generate in parallel -> metrics -> report), tracked in MLflow.

    ROOT must be a DVC project (dvc.yaml, .dvc/): every step is `dvc repro -s <stage>`, so DVC skips
    what is up to date. The stages read ROOT/params.yaml, so --set KEY=VALUE is WRITTEN INTO
    ROOT/params.yaml (validated first, comments kept) before the flow starts, like `dvc exp run -S`:
    the change stays, and afterwards `dvc repro` is a no-op. --params (another file) is refused.
    Prints the flow's result and the files in ROOT/reports.
    """
    root = Path(root)
    if _other_params_file(root, params):
        raise CliError(f"`lamp pipeline` runs DVC stages, which read {root / 'params.yaml'}: pass --set "
                       "KEY=VALUE (written into that file) or edit it instead of --params")
    if not (root / "dvc.yaml").is_file():
        raise CliError(f"{root.resolve()}: no dvc.yaml; `lamp pipeline` runs the DVC stages of a LAMP project "
                       "(pass --root PROJECT)")
    if not any((d / ".dvc").is_dir() for d in (root.resolve(), *root.resolve().parents)):
        raise CliError(f"{root.resolve()}: not in a DVC repository (no .dvc/); run `dvc init` there first")
    overrides = _parse_sets(set_)
    p = _load(root, None, set_)  # a bad --set stops here, before params.yaml is written
    unknown = [m for m in motions or [] if m not in p.motions]
    if unknown:
        raise CliError(f"motions {unknown} are not in {root / 'params.yaml'} (motions: {p.motions})")
    if overrides:
        typer.echo(f"writing {', '.join(f'{k}={v!r}' for k, v in overrides.items())} into "
                   f"{root / 'params.yaml'} (the DVC stages read it)", err=True)
    from flows.all_motions import lamp_all_motions

    try:
        result = lamp_all_motions(motions=list(motions) if motions else None, root=str(root.resolve()),
                                  overrides=overrides or None)
    except RuntimeError as e:  # a failed stage or motion: the flow's message names it
        if debug:
            raise
        raise CliError(f"flow lamp-all-motions failed: {e}") from None
    typer.echo(json.dumps(result, indent=1, default=str))
    reports = root / "reports"
    _wrote(*(sorted(f for f in reports.glob("*") if f.is_file()) if reports.is_dir() else []))


def main() -> None:  # pragma: no cover
    app(prog_name="lamp")
