"""Train the motion world's own small text-to-image base model, the stand-in for SD v1.4.

LAMP starts from a pretrained text-to-image model; none can be downloaded here,
so the motion world trains one of the same shape (AutoencoderKL, CLIP text
encoder, UNet2DConditionModel) on single frames and captions of its videos:
  1. the VAE, as an autoencoder (reconstruction + a small KL term, as SD's);
  2. the UNet and text encoder together, with the SD noise-prediction loss on
     the frozen VAE's latents.
The result is saved with `SDComponents.save_pretrained` and loaded downstream
through `from_pretrained`, exactly like real weights.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .small import SDComponents


def _pixels(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def random_crops(x: torch.Tensor, size: tuple[int, int], g: torch.Generator) -> torch.Tensor:
    """One random crop of `size` (multiples of 8) per image of x [n,c,h,w]; the VAE is fully
    convolutional, so training on crops costs less per step and sees the same content."""
    ch, cw = size
    h, w = x.shape[-2:]
    if ch >= h and cw >= w:
        return x
    ys = torch.randint(0, h - ch + 1, (len(x),), generator=g) // 8 * 8
    xs = torch.randint(0, w - cw + 1, (len(x),), generator=g) // 8 * 8
    return torch.stack([img[:, y:y + ch, x0:x0 + cw] for img, y, x0 in zip(x, ys.tolist(), xs.tolist())])


def detail_map(x: torch.Tensor, size: int = 9) -> torch.Tensor:
    """[n,1,h,w] local contrast of images x [n,3,h,w] in [-1,1]: |x - its size x size local mean|,
    summed over channels. ~0 on flat or smoothly graded background, high on objects and their edges."""
    local_mean = F.avg_pool2d(F.pad(x, (size // 2,) * 4, mode="replicate"), size, stride=1)
    return (x - local_mean).abs().sum(1, keepdim=True)


def train_vae(comps: SDComponents, images: np.ndarray, *, steps: int, batch_size: int, lr: float, seed: int,
              kl_weight: float = 1e-6, crop: tuple[int, int] | None = None, detail_weight: float = 0.0
              ) -> list[float]:
    """Fit the VAE to uint8 images [n,h,w,3]; then set its scaling factor to 1/std of the latents.

    Cosine-decayed learning rate (the last steps at low lr sharpen the reconstructions);
    `crop` trains on random crops of that size (cheaper steps on a CPU). `detail_weight` > 0
    weighs every pixel's error by 1 + detail_weight * `detail_map`: the world's objects cover
    a few percent of a frame, and an unweighted loss learns the background and blurs them away.
    """
    vae = comps.vae.train().requires_grad_(True)
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(steps, 1), pct_start=0.02)
    x_all = _pixels(images)
    losses = []
    for _ in tqdm(range(steps), desc="base: vae", leave=False):
        x = x_all[torch.randint(0, len(x_all), (batch_size,), generator=g)]
        if crop:
            x = random_crops(x, crop, g)
        x = x.to(vae.device)
        posterior = vae.encode(x).latent_dist
        z = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=g).to(x.device)
        recon = vae.decode(z).sample
        err = (recon - x).abs()
        weight = 1.0 + detail_weight * detail_map(x) if detail_weight else torch.ones_like(err[:, :1])
        loss = (weight * (err + err ** 2)).mean() / weight.mean() + kl_weight * posterior.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    vae.eval().requires_grad_(False)
    with torch.no_grad():
        latents = torch.cat([vae.encode(c.to(vae.device)).latent_dist.mean for c in x_all[:256].split(32)])
    vae.register_to_config(scaling_factor=float(1.0 / latents.std()))
    return losses


@torch.no_grad()
def encode_images(comps: SDComponents, images: np.ndarray) -> torch.Tensor:
    """Scaled VAE latents (distribution mean) of uint8 images, batched."""
    x = _pixels(images)
    vae = comps.vae
    return torch.cat([vae.encode(c.to(vae.device)).latent_dist.mean for c in x.split(32)]) * vae.config.scaling_factor


def train_text_to_image(comps: SDComponents, images: np.ndarray, captions: list[str], *, steps: int,
                        batch_size: int, lr: float, seed: int, uncond_prob: float = 0.1) -> list[float]:
    """Train UNet + text encoder with SD's epsilon loss; captions are dropped 10% of the time for CFG."""
    latents = encode_images(comps, images).cpu()
    device = comps.unet.device
    ids = comps.tokenizer(captions, padding="max_length", max_length=comps.tokenizer.model_max_length,
                          truncation=True, return_tensors="pt").input_ids
    empty = comps.tokenizer([""], padding="max_length", max_length=comps.tokenizer.model_max_length,
                            return_tensors="pt").input_ids
    unet, text_encoder = comps.unet.train().requires_grad_(True), comps.text_encoder.train().requires_grad_(True)
    scheduler = comps.train_scheduler()
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(list(unet.parameters()) + list(text_encoder.parameters()), lr=lr, weight_decay=1e-2)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(steps, 1), pct_start=0.05)
    losses = []
    for _ in tqdm(range(steps), desc="base: unet+text", leave=False):
        idx = torch.randint(0, len(latents), (batch_size,), generator=g)
        z = latents[idx]
        tok = ids[idx].clone()
        drop = torch.rand(batch_size, generator=g) < uncond_prob
        tok[drop] = empty
        noise = torch.randn(z.shape, generator=g)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (batch_size,), generator=g)
        z, noise, t, tok = z.to(device), noise.to(device), t.to(device), tok.to(device)
        pred = unet(scheduler.add_noise(z, noise, t), t, encoder_hidden_states=text_encoder(tok)[0]).sample
        loss = F.mse_loss(pred, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
    unet.eval().requires_grad_(False)
    text_encoder.eval().requires_grad_(False)
    return losses
