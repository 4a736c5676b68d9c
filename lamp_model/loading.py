"""Load base models by local folder or Hugging Face id, with clear errors offline.

Both the motion world's own base model and real SD v1.4 / SD-XL weights go
through these functions: a diffusers folder layout loaded with `from_pretrained`.
When weights are neither a local folder nor in the local hub cache and the hub
cannot be reached, the user gets one `ModelUnavailableError` saying what to do,
never a traceback from deep inside a hub client.
"""
from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlparse

import torch
from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTokenizer

from .config import ParamsError
from .errors import ModelUnavailableError
from .small import SDComponents


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():  # a params value this machine cannot honour
        raise ParamsError("params.yaml: model.device = 'cuda', but no CUDA GPU is visible; "
                          "set model.device: cpu or auto")
    return torch.device(name)


def resolve_dtype(name: str = "float32") -> torch.dtype:
    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[name]


def _hub_kwargs(source: str) -> dict:
    """Local folders load as they are; a hub id loads from the local cache when the hub is out of reach.

    Checking reachability first (one 3 s connection) avoids the hub client's minute of
    retries before it fails offline.
    """
    if Path(source).is_dir():
        return {}
    offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
    return {"local_files_only": offline or not _hub_reachable()}


def _hub_reachable(timeout: float = 3.0) -> bool:
    from huggingface_hub import constants

    host = urlparse(constants.ENDPOINT).hostname
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _unavailable(source: str, what: str, err: Exception) -> ModelUnavailableError:
    reason = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
    if Path(source).exists():
        hint = (f"the folder does not hold a diffusers {what}; check the path in params.yaml "
                "(for the motion world, run `dvc repro base` first)")
    else:
        hint = ("it is neither a local folder nor in the local Hugging Face cache, and the hub cannot be "
                f"reached. With internet, run `huggingface-cli download {source}` once (or let the first "
                "run download it), or set the path in params.yaml to a local copy of the folder; without "
                "weights, use the motion-world default (params.yaml as shipped, base built by `dvc repro base`)")
    return ModelUnavailableError(f"cannot load the {what} '{source}': {hint}. [{type(err).__name__}: {reason}]")


def load_sd_components(source: str, device: torch.device | str = "cpu",
                       dtype: torch.dtype = torch.float32) -> SDComponents:
    """SD v1.x parts (UNet, VAE, text encoder, tokenizer, DDIM scheduler) from a folder or hub id."""
    kw = _hub_kwargs(source)
    try:
        comps = SDComponents(
            unet=UNet2DConditionModel.from_pretrained(source, subfolder="unet", dtype=dtype, **kw),
            vae=AutoencoderKL.from_pretrained(source, subfolder="vae", dtype=dtype, **kw),
            text_encoder=CLIPTextModel.from_pretrained(source, subfolder="text_encoder", dtype=dtype,
                                                       **kw),
            tokenizer=CLIPTokenizer.from_pretrained(source, subfolder="tokenizer", **kw),
            scheduler=DDIMScheduler.from_pretrained(source, subfolder="scheduler", **kw),
        )
    except (OSError, ValueError, EnvironmentError) as e:
        raise _unavailable(source, "Stable Diffusion v1.x model", e) from None
    for module in (comps.unet, comps.vae, comps.text_encoder):
        module.to(device).eval().requires_grad_(False)
    return comps


def load_vae(source: str, device: torch.device | str = "cpu",
             dtype: torch.dtype = torch.float32) -> AutoencoderKL:
    """Only the VAE of an SD v1.x folder or hub id (the latent cache needs nothing else)."""
    try:
        vae = AutoencoderKL.from_pretrained(source, subfolder="vae", dtype=dtype, **_hub_kwargs(source))
    except (OSError, ValueError, EnvironmentError) as e:
        raise _unavailable(source, "Stable Diffusion v1.x VAE", e) from None
    return vae.to(device).eval().requires_grad_(False)


def load_sdxl(source: str, device: torch.device | str = "cpu",
              dtype: torch.dtype = torch.float32) -> StableDiffusionXLPipeline:
    """The SD-XL pipeline used for first frames, from a folder or hub id."""
    try:
        pipe = StableDiffusionXLPipeline.from_pretrained(source, dtype=dtype, **_hub_kwargs(source))
    except (OSError, ValueError, EnvironmentError) as e:
        raise _unavailable(source, "SD-XL pipeline", e) from None
    return pipe.to(device)
