"""Stable Diffusion components built offline from configs.

Small widths for tests and the motion world; the FULL SD v1.4 / SD-XL UNet
configs (random init) for speed and memory benchmarks. The components are the
same diffusers classes as the real weights, and `SDComponents.save_pretrained`
writes the same folder layout as a Hugging Face SD checkpoint, so everything
downstream loads them with `from_pretrained` exactly like real weights.
"""
from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import (AutoencoderKL, DDIMScheduler, DDPMScheduler, StableDiffusionPipeline,
                       StableDiffusionXLPipeline, UNet2DConditionModel)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

CLIP_VOCAB_SIZE = 49408
CLIP_BOS, CLIP_EOS = 49406, 49407
MAX_TOKENS = 77

# SD v1.x training schedule (spec "Training"); DDIM for sampling uses the same betas.
SD_SCHEDULE = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                   clip_sample=False, set_alpha_to_one=False, steps_offset=1, prediction_type="epsilon")


@dataclass
class SDComponents:
    """The parts of an SD v1.x model that LAMP uses."""

    unet: UNet2DConditionModel
    vae: AutoencoderKL
    text_encoder: CLIPTextModel
    tokenizer: CLIPTokenizer
    scheduler: DDIMScheduler

    def pipeline(self) -> StableDiffusionPipeline:
        """The plain text-to-image pipeline (used for base-model first frames)."""
        return StableDiffusionPipeline(vae=self.vae, text_encoder=self.text_encoder, tokenizer=self.tokenizer,
                                       unet=self.unet, scheduler=self.scheduler, safety_checker=None,
                                       feature_extractor=None, requires_safety_checker=False)

    def save_pretrained(self, folder: str | Path) -> None:
        """Same layout as a Hugging Face SD v1.x folder (model_index.json + subfolders)."""
        self.pipeline().save_pretrained(str(folder), safe_serialization=True)

    def train_scheduler(self) -> DDPMScheduler:
        return DDPMScheduler.from_config(self.scheduler.config)


def build_tokenizer(folder: str | Path) -> CLIPTokenizer:
    """OpenAI CLIP's BPE tokenizer, built offline from the vocab open_clip ships.

    transformers' CLIPTokenizer needs vocab.json/merges.txt files (passing them as
    arguments silently yields a 2-token vocab), so write them and load the folder.
    Token ids match OpenAI CLIP's.
    """
    from open_clip.tokenizer import bytes_to_unicode, default_bpe

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    n_merges = CLIP_VOCAB_SIZE - 2 * 256 - 2  # vocab = bytes, bytes + "</w>", merges, 2 specials
    merges = gzip.open(default_bpe()).read().decode("utf-8").split("\n")[1:n_merges + 1]
    byte_tokens = list(bytes_to_unicode().values())
    vocab = byte_tokens + [t + "</w>" for t in byte_tokens] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    tokenizer = CLIPTokenizer.from_pretrained(str(folder), model_max_length=MAX_TOKENS)
    tokenizer.save_pretrained(str(folder))
    return tokenizer


def small_unet_config(channels=(32, 64), cross_attention_dim=32, heads=1, layers_per_block=1,
                      sample_size=16, norm_groups: int | None = None) -> dict:
    """A UNet of the SD v1.x shape at tiny width (1-2 heads: many small heads are slow on CPU).

    `norm_groups` (default: SD's 32, capped at the width) sets the GroupNorm groups. At SD's
    width a group holds 10+ channels; at 32 channels 32 groups normalise each channel on its
    own, which erases every channel's per-frame mean and scale (the motion world's base uses 8).
    """
    n = len(channels)
    groups = norm_groups or min(32, channels[0])
    if channels[0] % groups or any(c % groups for c in channels):
        raise ValueError(f"norm_groups={groups} must divide every UNet width {tuple(channels)}")
    return dict(sample_size=sample_size, in_channels=4, out_channels=4, block_out_channels=tuple(channels),
                layers_per_block=layers_per_block, cross_attention_dim=cross_attention_dim,
                attention_head_dim=heads, norm_num_groups=groups,
                down_block_types=("CrossAttnDownBlock2D",) * (n - 1) + ("DownBlock2D",),
                up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (n - 1))


def small_vae_config(channels=(32, 32, 64, 64), latent_channels=4) -> dict:
    """An 8x-downsampling VAE (one block per factor 2, plus the last) like SD's, tiny width.

    SD's VAE has 4 latent channels, and so does the motion world's (`build_sd(latent_channels=...)`
    can try more: `benchmarks/world_motion.py --latent-channels`).
    """
    n = len(channels)
    return dict(in_channels=3, out_channels=3, latent_channels=latent_channels, block_out_channels=tuple(channels),
                down_block_types=("DownEncoderBlock2D",) * n, up_block_types=("UpDecoderBlock2D",) * n,
                layers_per_block=1, norm_num_groups=min(32, channels[0]), mid_block_add_attention=False,
                sample_size=64)


def small_text_config(hidden_size=32, layers=2, heads=2, projection_dim=None) -> CLIPTextConfig:
    return CLIPTextConfig(hidden_size=hidden_size, intermediate_size=hidden_size * 4, num_hidden_layers=layers,
                          num_attention_heads=heads, vocab_size=CLIP_VOCAB_SIZE, max_position_embeddings=MAX_TOKENS,
                          bos_token_id=CLIP_BOS, eos_token_id=CLIP_EOS, pad_token_id=CLIP_EOS,
                          projection_dim=projection_dim or hidden_size)


def build_sd(tokenizer_dir: str | Path, *, unet_channels=(32, 64), text_dim=32, text_layers=2, heads=1,
             vae_channels=(32, 32, 64, 64), latent_channels=4, unet_norm_groups: int | None = None,
             seed: int = 0) -> SDComponents:
    """A randomly initialised SD v1.x-shaped model at small width (offline)."""
    torch.manual_seed(seed)
    unet_config = small_unet_config(unet_channels, text_dim, heads, norm_groups=unet_norm_groups)
    unet_config.update(in_channels=latent_channels, out_channels=latent_channels)
    unet = UNet2DConditionModel(**unet_config)
    vae = AutoencoderKL(**small_vae_config(vae_channels, latent_channels))
    text_encoder = CLIPTextModel(small_text_config(text_dim, text_layers))
    return SDComponents(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=build_tokenizer(tokenizer_dir),
                        scheduler=DDIMScheduler(**SD_SCHEDULE))


def build_sdxl(tokenizer_dir: str | Path, *, channels=(32, 64), text_dim=32, seed: int = 0
               ) -> StableDiffusionXLPipeline:
    """A tiny SD-XL pipeline (two text encoders, text_time conditioning), for first frames."""
    torch.manual_seed(seed)
    n = len(channels)
    unet = UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, block_out_channels=tuple(channels), layers_per_block=1,
        down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (n - 1),
        up_block_types=("CrossAttnUpBlock2D",) * (n - 1) + ("UpBlock2D",),
        cross_attention_dim=2 * text_dim, attention_head_dim=1, norm_num_groups=min(32, channels[0]),
        use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=6 * 8 + text_dim)
    tokenizer = build_tokenizer(tokenizer_dir)
    return StableDiffusionXLPipeline(
        vae=AutoencoderKL(**small_vae_config()), text_encoder=CLIPTextModel(small_text_config(text_dim)),
        text_encoder_2=CLIPTextModelWithProjection(small_text_config(text_dim)), tokenizer=tokenizer,
        tokenizer_2=tokenizer, unet=unet, scheduler=DDIMScheduler(**SD_SCHEDULE))


def sd14_unet_config() -> dict:
    """The full Stable Diffusion v1.4 UNet (860M parameters), for benchmarks with random weights."""
    return dict(sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
                block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768, attention_head_dim=8,
                down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3)


def sdxl_unet_config() -> dict:
    """The full SD-XL base UNet (2.6B parameters), for benchmarks with random weights."""
    return dict(sample_size=128, in_channels=4, out_channels=4, layers_per_block=2,
                block_out_channels=(320, 640, 1280), cross_attention_dim=2048,
                attention_head_dim=(5, 10, 20), transformer_layers_per_block=(1, 2, 10),
                down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=256,
                projection_class_embeddings_input_dim=2816)
