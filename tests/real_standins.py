"""Tiny local stand-ins for every hub repo the real preset (configs/real.yaml) names.

Each stand-in has the real repo's layout, classes, file names and scheduler class
(model_index.json entries, subfolders, safety checker and feature extractor of SD v1.4,
PNDM / Euler scheduler configs, fp16 variant files, SD-XL's two text encoders and
text_time conditioning, AnimateDiff's original single-file motion module), only at tiny widths, and is put into a Hugging Face hub cache
under the real repo id. With HF_HUB_CACHE pointing there and HF_HUB_OFFLINE=1, the
real ids of configs/real.yaml resolve exactly as they do on a GPU machine that
downloaded them once, so the rehearsal runs the real code path by name.

What a stand-in cannot carry: open_clip's built-in name ViT-L-14 fixes the architecture
(428 M parameters), so the CLIP stand-in is the same model's hf-hub repo
(`hf-hub:timm/vit_large_patch14_clip_224.openai`, open_clip_config.json +
open_clip_model.safetensors) with a tiny model_cfg; the ViT-L-14/openai name lookup
itself is not rehearsed.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from diffusers import (AutoencoderKL, ControlNetModel, EulerDiscreteScheduler, MotionAdapter, PNDMScheduler,
                       StableDiffusionPipeline, StableDiffusionXLPipeline, UNet2DConditionModel)
from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
from transformers import CLIPConfig, CLIPImageProcessor, CLIPTextModel, CLIPTextModelWithProjection

from lamp_model.metrics import ClipScorer
from lamp_model.small import build_tokenizer, small_text_config, small_unet_config, small_vae_config

SD14 = "CompVis/stable-diffusion-v1-4"
SDXL = "stabilityai/stable-diffusion-xl-base-1.0"
SDXL_CANNY = "diffusers/controlnet-canny-sdxl-1.0"
ANIMATEDIFF = "guoyww/animatediff"  # mm_sd_v14.ckpt: the original AnimateDiff v1 motion module (the paper's baseline)
ANIMATEDIFF_V1_CONFIG = "guoyww/animatediff-motion-adapter-v1-5"  # where from_single_file reads a v1 module's config
OPEN_CLIP_VIT_L14 = "timm/vit_large_patch14_clip_224.openai"  # where open_clip's ViT-L-14 "openai" weights live

# The scheduler configs as the real repos ship them (scheduler/scheduler_config.json; from_config
# keeps the keys the class knows, as loading the real file does).
SD14_SCHEDULER = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
                      set_alpha_to_one=False, skip_prk_steps=True, steps_offset=1, trained_betas=None)
SDXL_SCHEDULER = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
                      interpolation_type="linear", prediction_type="epsilon", sample_max_value=1.0,
                      set_alpha_to_one=False, skip_prk_steps=True, steps_offset=1, timestep_spacing="leading",
                      trained_betas=None, use_karras_sigmas=False)


def snapshot_dir(cache: Path, repo_id: str) -> Path:
    """The folder of `repo_id`'s main revision in a hub cache (models--org--name/snapshots/<commit>)."""
    repo = Path(cache) / f"models--{repo_id.replace('/', '--')}"
    commit = hashlib.sha1(repo_id.encode()).hexdigest()
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    return snapshot


def _save_fp16_variants(folder: Path, **modules) -> None:
    """The real repos also hold `*.fp16.safetensors` beside the fp32 weights."""
    for name, module in modules.items():
        module.to(torch.float16).save_pretrained(folder / name, variant="fp16", safe_serialization=True)
        module.to(torch.float32)


SD14_UNET_CHANNELS = (32, 64, 64)


def build_sd14(folder: Path, seed: int = 0) -> None:
    """CompVis/stable-diffusion-v1-4's layout: 7 model_index entries incl. safety checker, PNDM scheduler.
    Three UNet blocks: AnimateDiff's single-file loader reads up_blocks.2 of a motion module."""
    torch.manual_seed(seed)
    tokenizer = build_tokenizer(folder / "tokenizer")
    unet = UNet2DConditionModel(**small_unet_config(SD14_UNET_CHANNELS, cross_attention_dim=32, norm_groups=8))
    vae = AutoencoderKL(**small_vae_config((32, 32, 64, 64)))
    text_encoder = CLIPTextModel(small_text_config(32))
    clip_cfg = CLIPConfig(text_config=small_text_config(32).to_dict(),
                          vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                             num_attention_heads=2, image_size=32, patch_size=8),
                          projection_dim=32)
    safety_checker = StableDiffusionSafetyChecker(clip_cfg)
    feature_extractor = CLIPImageProcessor(crop_size=32, size={"shortest_edge": 32})
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=PNDMScheduler.from_config(SD14_SCHEDULER), safety_checker=safety_checker,
                                   feature_extractor=feature_extractor)
    pipe.save_pretrained(folder, safe_serialization=True)
    _save_fp16_variants(folder, unet=unet, vae=vae, text_encoder=text_encoder)


def build_sdxl(folder: Path, seed: int = 0) -> UNet2DConditionModel:
    """stabilityai/stable-diffusion-xl-base-1.0's layout: two text encoders + tokenizers, Euler scheduler,
    text_time added conditioning, VAE with force_upcast. Returns the UNet (the ControlNet copies it)."""
    torch.manual_seed(seed)
    text_dim = 32
    unet = UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=2 * text_dim, attention_head_dim=(1, 2), norm_num_groups=8, use_linear_projection=True,
        addition_embed_type="text_time", addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=6 * 8 + text_dim)
    vae = AutoencoderKL(**small_vae_config((32, 32, 64, 64)), force_upcast=True, scaling_factor=0.13025)
    text_encoder = CLIPTextModel(small_text_config(text_dim))
    text_encoder_2 = CLIPTextModelWithProjection(small_text_config(text_dim))
    tokenizer = build_tokenizer(folder / "tokenizer")
    pipe = StableDiffusionXLPipeline(vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2,
                                     tokenizer=tokenizer, tokenizer_2=build_tokenizer(folder / "tokenizer_2"),
                                     unet=unet, scheduler=EulerDiscreteScheduler.from_config(SDXL_SCHEDULER))
    pipe.save_pretrained(folder, safe_serialization=True)
    _save_fp16_variants(folder, unet=unet, vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2)
    return unet


def build_sdxl_canny_controlnet(folder: Path, sdxl_unet: UNet2DConditionModel) -> None:
    """diffusers/controlnet-canny-sdxl-1.0's layout: config.json + weights of a ControlNet of the SD-XL UNet."""
    net = ControlNetModel.from_unet(sdxl_unet)
    net.save_pretrained(folder, safe_serialization=True)
    net.to(torch.float16).save_pretrained(folder, variant="fp16", safe_serialization=True)


def build_open_clip(folder: Path, seed: int = 0) -> None:
    """An open_clip hf-hub repo: open_clip_config.json (model_cfg + preprocess_cfg) + open_clip_model.safetensors."""
    ClipScorer.small(embed_dim=32, image_size=32, seed=seed).save_pretrained(folder)
    (folder / "model.safetensors").rename(folder / "open_clip_model.safetensors")


def build_animatediff_v1(ckpt: Path, config_repo: Path, seed: int = 0) -> MotionAdapter:
    """guoyww/animatediff's mm_sd_v14.ckpt (a torch pickle of original-named tensors: temporal_transformer,
    attention_blocks.N with a 24-position pos_encoder.pe, norms.N, ff_norm; no mid block: v1) for the SD v1.4
    stand-in's UNet, and guoyww/animatediff-motion-adapter-v1-5's diffusers folder (config.json + weights)
    holding the same weights. Returns that adapter."""
    torch.manual_seed(seed)
    adapter = MotionAdapter(block_out_channels=SD14_UNET_CHANNELS, motion_layers_per_block=1,
                            motion_num_attention_heads=1, motion_norm_num_groups=8, motion_max_seq_length=24,
                            use_motion_mid_block=False)
    adapter.save_pretrained(config_repo, safe_serialization=True)
    original = {}
    for key, value in adapter.state_dict().items():
        head, _, tail = key.partition(".motion_modules.")
        index, _, rest = tail.partition(".")
        prefix = f"{head}.motion_modules.{index}.temporal_transformer."
        if ".pos_embed." in rest:  # original: one sinusoidal table per attention block (rebuilt on loading)
            block = rest.split(".pos_embed.")[0]
            for i in (0, 1):
                original[f"{prefix}{block}.attention_blocks.{i}.pos_encoder.pe"] = value.clone()
            continue
        rest = (rest.replace("attn1", "attention_blocks.0").replace("attn2", "attention_blocks.1")
                .replace("norm1", "norms.0").replace("norm2", "norms.1").replace("norm3", "ff_norm"))
        original[prefix + rest] = value.clone()
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    torch.save(original, ckpt)
    return adapter


def build_hub_cache(cache: Path) -> dict[str, str]:
    """Every stand-in under its real repo id in the hub cache at `cache`; returns {role: repo id}."""
    build_sd14(snapshot_dir(cache, SD14))
    sdxl_unet = build_sdxl(snapshot_dir(cache, SDXL))
    build_sdxl_canny_controlnet(snapshot_dir(cache, SDXL_CANNY), sdxl_unet)
    build_open_clip(snapshot_dir(cache, OPEN_CLIP_VIT_L14))
    build_animatediff_v1(snapshot_dir(cache, ANIMATEDIFF) / "mm_sd_v14.ckpt", snapshot_dir(cache, ANIMATEDIFF_V1_CONFIG))
    (Path(cache) / "README.txt").write_text(json.dumps(
        {"note": "tiny stand-ins of the real repos (tests/real_standins.py)",
         "repos": [SD14, SDXL, SDXL_CANNY, OPEN_CLIP_VIT_L14, ANIMATEDIFF, ANIMATEDIFF_V1_CONFIG]}, indent=2))
    return {"base": SD14, "sdxl": SDXL, "controlnet": SDXL_CANNY, "clip": f"hf-hub:{OPEN_CLIP_VIT_L14}",
            "animatediff": f"{ANIMATEDIFF}/mm_sd_v14.ckpt"}
