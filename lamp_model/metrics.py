"""CLIP metrics of the LAMP paper (Table 1), all scaled x100, and the CLIP scorer.

The metric functions work on embeddings only, so they are testable by hand and
independent of which CLIP produced them. `ClipScorer` turns frames and prompts
into embeddings: ViT-L-14 (OpenAI) for real runs, or a small CLIP built from a
config (random init, or trained on motion-world captions with
`train_contrastive`) where no pretrained weights can be downloaded.
"""
from __future__ import annotations

import json
import math
import warnings
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from open_clip.model import CLIP
from open_clip.transform import PreprocessCfg
from safetensors.torch import load_file, save_file

from .errors import ModelUnavailableError

CONFIG_NAME = "open_clip_config.json"
WEIGHTS_NAME = "model.safetensors"


def _as_float64(x) -> torch.Tensor:
    """float64 on CPU, so that metric values do not depend on the device or input dtype."""
    t = x.detach() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    return t.to("cpu", torch.float64)


def _as_matrix(x, name: str) -> torch.Tensor:
    t = _as_float64(x)
    if t.ndim != 2:
        raise ValueError(f"{name} must be a [frames, dim] array, got shape {tuple(t.shape)}")
    return t


def alignment(frame_embs, text_emb) -> float:
    """Mean over frames of 100 * cos(frame, prompt)."""
    frames = _as_matrix(frame_embs, "frame_embs")
    text = _as_float64(text_emb).reshape(1, -1)
    if text.shape[1] != frames.shape[1]:
        raise ValueError(f"embedding sizes differ: frames {frames.shape[1]}, text {text.shape[1]}")
    return float(100 * (F.normalize(frames, dim=1) @ F.normalize(text, dim=1)[0]).mean())


def consistency(frame_embs) -> float:
    """Mean over all frame pairs i < j of 100 * cos(frame_i, frame_j)."""
    frames = F.normalize(_as_matrix(frame_embs, "frame_embs"), dim=1)
    f = frames.shape[0]
    if f < 2:
        raise ValueError(f"consistency needs at least 2 frames, got {f}")
    i, j = torch.triu_indices(f, f, offset=1)
    return float(100 * (frames[i] * frames[j]).sum(1).mean())


def diversity(videos) -> float:
    """100 * dot product of video embeddings averaged over all pairs of videos (lower = more diverse).

    A video's embedding is the mean of its L2-normalised frame embeddings, NOT
    renormalised (spec): a video whose frames disagree counts as less similar.
    """
    if len(videos) < 2:
        raise ValueError(f"diversity needs at least 2 videos, got {len(videos)}")
    means = torch.stack([F.normalize(_as_matrix(v, "video"), dim=1).mean(0) for v in videos])
    n = means.shape[0]
    i, j = torch.triu_indices(n, n, offset=1)
    return float(100 * (means[i] * means[j]).sum(1).mean())


def _one_line(err: Exception) -> str:
    return f"{type(err).__name__}: {' '.join(str(err).split())[:400]}"


def _small_config(embed_dim: int, image_size: int) -> dict:
    """A tiny CLIP (ViT 2x64, patch 8; text 2x64 with the real 77-token context and
    49408-token vocab, so the OpenAI BPE tokenizer works unchanged). Fast on CPU."""
    return {
        "embed_dim": embed_dim,
        "vision_cfg": {"image_size": image_size, "patch_size": 8, "width": 64, "head_width": 32, "layers": 2},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
    }


def _build_clip(model_cfg: dict, preprocess_cfg: dict) -> CLIP:
    model = CLIP(**model_cfg)
    open_clip.model.set_model_preprocess_cfg(model, preprocess_cfg)
    return model


class ClipScorer:
    """Embeds frames and prompts with an open_clip model and computes the paper's metrics."""

    def __init__(self, model: torch.nn.Module, tokenizer, device: str | torch.device = "cpu",
                 model_cfg: dict | None = None):
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.model_cfg = model_cfg  # kept so a config-built model can be saved and rebuilt
        self.preprocess_cfg = PreprocessCfg(**model.visual.preprocess_cfg)
        if self.preprocess_cfg.resize_mode != "shortest":
            raise ValueError(f"only resize_mode='shortest' preprocessing is implemented, "
                             f"got {self.preprocess_cfg.resize_mode!r}")

    # --- constructors -------------------------------------------------------------------------

    @classmethod
    def from_open_clip(cls, model_name: str, pretrained: str = "", device: str = "cpu") -> ClipScorer:
        """Real weights: a built-in name with a tag or checkpoint file, e.g. ("ViT-L-14", "openai"), or
        an open_clip repo that carries its own config and weights ("hf-hub:org/name", "local-dir:PATH";
        `pretrained` is not used for these).

        Weights are fetched first, on their own, so that a missing download is
        reported as a short ModelUnavailableError instead of a hub traceback.
        """
        fix = ("To fix: run once with network access and HF_HUB_OFFLINE unset to cache them; or pass a local "
               "checkpoint file as `pretrained` (or an open_clip folder as local-dir:PATH); or use a small CLIP "
               "(ClipScorer.from_pretrained(folder) / ClipScorer.small())")
        schema = model_name.split(":", 1)[0] if model_name.startswith(("hf-hub:", "local-dir:")) else None
        if schema:
            pretrained = None
        else:
            tag_cfg = open_clip.get_pretrained_cfg(model_name, pretrained)
            if tag_cfg:
                try:
                    open_clip.download_pretrained(tag_cfg)
                except Exception as e:  # hub/URL errors of many types; all mean "weights not here"
                    source = tag_cfg.get("hf_hub") or tag_cfg.get("url")
                    raise ModelUnavailableError(
                        f"CLIP weights {model_name}/{pretrained} ({source}) are not available on this machine "
                        f"(offline or not cached). {fix}. Cause: {_one_line(e)}") from None
            elif not Path(pretrained).is_file():
                tags = open_clip.list_pretrained_tags_by_model(model_name)
                raise ModelUnavailableError(
                    f"{pretrained!r} is neither an open_clip tag of {model_name!r} (known: {tags}) "
                    f"nor an existing checkpoint file")
        try:
            model, _, _ = open_clip.create_model_and_transforms(model_name, pretrained=pretrained, device=device)
            tokenizer = open_clip.get_tokenizer(model_name)
        except (OSError, RuntimeError, ValueError) as e:
            if not schema:
                raise
            raise ModelUnavailableError(f"the open_clip model {model_name} cannot be loaded: not on this machine "
                                        f"(offline or not cached) or not an open_clip repo. {fix}. "
                                        f"Cause: {_one_line(e)}") from None
        return cls(model, tokenizer, device)

    @classmethod
    def small(cls, embed_dim: int = 64, image_size: int = 64, seed: int = 0, device: str = "cpu") -> ClipScorer:
        """A tiny random-init CLIP from a custom config (tests, and the motion world before training)."""
        cfg = _small_config(embed_dim, image_size)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = _build_clip(cfg, asdict(PreprocessCfg(size=image_size)))
        return cls(model, open_clip.SimpleTokenizer(context_length=77), device, model_cfg=cfg)

    def save_pretrained(self, folder: str | Path) -> None:
        """Writes open_clip's local-folder layout: open_clip_config.json + model.safetensors.

        open_clip itself can load the folder too (`create_model("local-dir:<folder>")`).
        """
        if self.model_cfg is None:
            raise ValueError("only config-built CLIPs (small / from_pretrained) can be saved")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        config = {"model_cfg": self.model_cfg, "preprocess_cfg": self.model.visual.preprocess_cfg}
        (folder / CONFIG_NAME).write_text(json.dumps(config, indent=2))
        state = {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
        save_file(state, str(folder / WEIGHTS_NAME))

    @classmethod
    def from_pretrained(cls, folder: str | Path, device: str = "cpu") -> ClipScorer:
        """Loads a CLIP written by `save_pretrained`."""
        folder = Path(folder)
        missing = [n for n in (CONFIG_NAME, WEIGHTS_NAME) if not (folder / n).is_file()]
        if missing:
            raise ModelUnavailableError(f"no CLIP in {folder}: missing {', '.join(missing)} "
                                        f"(write one with ClipScorer.save_pretrained)")
        config = json.loads((folder / CONFIG_NAME).read_text())
        model = _build_clip(config["model_cfg"], config["preprocess_cfg"])
        model.load_state_dict(load_file(str(folder / WEIGHTS_NAME)))
        context_length = config["model_cfg"]["text_cfg"]["context_length"]
        return cls(model, open_clip.SimpleTokenizer(context_length=context_length), device,
                   model_cfg=config["model_cfg"])

    # --- embeddings ---------------------------------------------------------------------------

    def preprocess(self, frames) -> torch.Tensor:
        """uint8 [f, h, w, 3] -> normalised [f, 3, s, s], as open_clip's transform (resize the
        shortest side, centre-crop, mean/std) but with batched torch ops instead of PIL per frame."""
        x = frames if isinstance(frames, torch.Tensor) else torch.tensor(np.asarray(frames))  # copy: may be read-only
        if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"frames must be uint8 [f, h, w, 3], got {x.dtype} {tuple(x.shape)}")
        x = x.to(self.device).permute(0, 3, 1, 2).float().div_(255)
        cfg = self.preprocess_cfg
        th, tw = (cfg.size, cfg.size) if isinstance(cfg.size, int) else cfg.size
        h, w = x.shape[-2:]
        scale = max(th / h, tw / w)
        nh, nw = max(th, round(h * scale)), max(tw, round(w * scale))
        if (nh, nw) != (h, w):
            x = F.interpolate(x, size=(nh, nw), mode=cfg.interpolation, align_corners=False, antialias=True)
            x = x.clamp_(0, 1)  # bicubic overshoots; PIL clamps to uint8 range
        top, left = round((nh - th) / 2), round((nw - tw) / 2)
        x = x[:, :, top:top + th, left:left + tw]
        mean = torch.tensor(cfg.mean, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(cfg.std, device=self.device).view(1, 3, 1, 1)
        return (x - mean) / std

    @torch.no_grad()
    def image_embeddings(self, frames, batch_size: int = 64) -> torch.Tensor:
        """L2-normalised image embeddings [f, d] of uint8 frames [f, h, w, 3]."""
        out = [self.model.encode_image(self.preprocess(frames[i:i + batch_size]), normalize=True)
               for i in range(0, len(frames), batch_size)]
        return torch.cat(out).float().cpu()

    def tokenize(self, prompts: list[str]) -> torch.Tensor:
        """Token ids [n, context]; prompts that do not fit are truncated, with a warning naming them."""
        context = self.tokenizer.context_length
        for p in prompts:
            if isinstance(self.tokenizer, open_clip.SimpleTokenizer) and len(self.tokenizer.encode(p)) + 2 > context:
                warnings.warn(f"prompt longer than CLIP's {context} tokens, truncated: {p!r}", stacklevel=3)
        return self.tokenizer(prompts)

    @torch.no_grad()
    def text_embeddings(self, prompts: list[str]) -> torch.Tensor:
        """L2-normalised text embeddings [n, d]."""
        tokens = self.tokenize(list(prompts)).to(self.device)
        return self.model.encode_text(tokens, normalize=True).float().cpu()

    # --- scores -------------------------------------------------------------------------------

    def score_video(self, frames, prompt: str) -> dict:
        """{"alignment", "consistency"} of one video (x100)."""
        embs = self.image_embeddings(frames)
        return {"alignment": alignment(embs, self.text_embeddings([prompt])[0]), "consistency": consistency(embs)}

    def score_set(self, videos) -> tuple[list[dict], dict, dict]:
        """Scores videos given as (frames, prompt, motion) tuples.

        Returns (rows, per_motion, overall). rows: one dict per video. per_motion:
        mean alignment/consistency and the diversity among that motion's videos
        (NaN for a motion with a single video). overall: mean alignment/consistency,
        `diversity_all_videos` (all pairs across motions; lower mostly because
        motions differ) and `diversity_mean_per_motion` (mean of the per-motion
        values: diversity within a prompt set, the paper's sense) - the two differ.
        """
        if not videos:
            raise ValueError("score_set needs at least one video")
        prompts = sorted({p for _, p, _ in videos})
        text = dict(zip(prompts, self.text_embeddings(prompts)))
        rows, embs_by_motion = [], defaultdict(list)
        for index, (frames, prompt, motion) in enumerate(videos):
            embs = self.image_embeddings(frames)
            rows.append({"index": index, "motion": motion, "prompt": prompt,
                         "alignment": alignment(embs, text[prompt]), "consistency": consistency(embs)})
            embs_by_motion[motion].append(embs)

        def means(rs):
            return {k: float(np.mean([r[k] for r in rs])) for k in ("alignment", "consistency")}

        per_motion = {}
        for motion, embs in embs_by_motion.items():
            per_motion[motion] = {"n_videos": len(embs), **means([r for r in rows if r["motion"] == motion]),
                                  "diversity": diversity(embs) if len(embs) > 1 else math.nan}
        motion_div = [m["diversity"] for m in per_motion.values() if not math.isnan(m["diversity"])]
        all_embs = [e for embs in embs_by_motion.values() for e in embs]
        overall = {"n_videos": len(rows), **means(rows),
                   "diversity_all_videos": diversity(all_embs) if len(all_embs) > 1 else math.nan,
                   "diversity_mean_per_motion": float(np.mean(motion_div)) if motion_div else math.nan}
        return rows, per_motion, overall


def retrieval_accuracy(scorer: ClipScorer, images, captions: list[str]) -> float:
    """Fraction of images whose nearest caption (among the distinct captions given) is their own:
    a quick check that a trained small CLIP understands its captions."""
    choices = sorted(set(captions))
    sims = scorer.image_embeddings(images) @ scorer.text_embeddings(choices).T
    predicted = [choices[i] for i in sims.argmax(1).tolist()]
    return float(np.mean([p == c for p, c in zip(predicted, captions)]))


def train_contrastive(scorer: ClipScorer, images, captions: list[str], steps: int, lr: float = 1e-3,
                      batch_size: int = 32, seed: int = 0) -> list[float]:
    """Trains the scorer's CLIP with the symmetric InfoNCE loss (learnable logit scale); returns losses.

    Synthetic captions repeat, so images sharing a caption in a batch are all
    counted as positives (soft targets); with unique captions this is exactly
    the standard CLIP loss. Without it, identical captions would be pushed apart.
    """
    if len(images) != len(captions):
        raise ValueError(f"{len(images)} images but {len(captions)} captions")
    pixels = torch.cat([scorer.preprocess(images[i:i + 256]) for i in range(0, len(images), 256)])
    distinct_captions, caption_ids = np.unique(list(captions), return_inverse=True)
    tokens = scorer.tokenize(list(distinct_captions)).to(scorer.device)
    caption_ids = torch.as_tensor(caption_ids, device=scorer.device)
    model = scorer.model.train()
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    generator = torch.Generator().manual_seed(seed)
    losses = []
    try:
        for _ in range(steps):
            idx = torch.randperm(len(pixels), generator=generator)[:batch_size].to(scorer.device)
            ids = caption_ids[idx]
            distinct, inverse = ids.unique(return_inverse=True)  # encode each caption once per batch
            image = model.encode_image(pixels[idx], normalize=True)
            text = model.encode_text(tokens[distinct], normalize=True)[inverse]
            logits = model.logit_scale.exp() * image @ text.T
            same = (ids[:, None] == ids[None, :]).float()
            targets = same / same.sum(1, keepdim=True)
            loss = (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            with torch.no_grad():  # CLIP's clamp: a temperature below 1/100 destabilises training
                model.logit_scale.clamp_(0, math.log(100))
            losses.append(loss.item())
    finally:
        model.eval()
    return losses
