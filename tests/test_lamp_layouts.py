"""The LAMP layers' current layouts compute what their previous formulations computed (outputs and gradients)."""
import pytest
import torch
from diffusers import UNet2DConditionModel

from benchmarks.lamp_layouts import (first_frame_attention_reference, random_first_frame_attention, random_tsm,
                                     tsm_reference)
from lamp_model import LampUNet
from lamp_model.attention import FirstFrameAttnProcessor
from lamp_model.layers import TSMConv2d
from lamp_model.small import small_unet_config

TOL = 1e-5  # outputs are O(1); gradients (sums over every position) are compared relative to their size


def outputs_and_grads(fn, module, x):
    module.zero_grad(set_to_none=True)
    x = x.detach().clone().requires_grad_(True)
    out = fn(x)
    (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).reshape(out.shape)).sum().backward()
    return out.detach(), x.grad, {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}


def assert_same(a, b):
    out_a, dx_a, dp_a = a
    out_b, dx_b, dp_b = b
    torch.testing.assert_close(out_a, out_b, atol=TOL, rtol=0)
    assert dp_a.keys() == dp_b.keys() and dp_a
    for name, grad_a, grad_b in [("input", dx_a, dx_b)] + [(n, dp_a[n], dp_b[n]) for n in dp_a]:
        scale = grad_b.abs().max().item()
        assert scale > 0, name
        torch.testing.assert_close(grad_a, grad_b, atol=TOL * scale, rtol=0, msg=name)


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("batch", [1, 2])
def test_tsm_matches_the_permute_formulation(causal, batch):
    frames = 5
    layer = random_tsm(8, frames, causal=causal)
    x = torch.randn(batch * frames, 8, 6, 7)
    new = outputs_and_grads(layer, layer, x)
    old = outputs_and_grads(lambda t: tsm_reference(layer, t), layer, x)
    assert new[0].abs().max() > 0.1 and (new[0] - layer.conv(x)).abs().max() > 1e-3  # the temporal path acts
    assert_same(new, old)


def test_tsm_keeps_its_parameter_names_and_shapes():
    """Motion checkpoints store these names: a layout change must not rename or reshape them."""
    layer = TSMConv2d(torch.nn.Conv2d(4, 6, 3, padding=1), random_tsm(6, 2).ctx)
    shapes = {n: tuple(p.shape) for n, p in layer.state_dict().items()}
    assert shapes == {"conv.weight": (6, 4, 3, 3), "conv.bias": (6,), "temporal.weight": (6, 6, 3),
                      "temporal.bias": (6,), "gate.weight": (1, 6, 3, 3), "gate.bias": (1,)}


@pytest.mark.parametrize("batch", [1, 2])
def test_first_frame_attention_matches_repeated_key_values(batch):
    frames, tokens = 4, 12
    attn, _ = random_first_frame_attention(16, 2, frames)
    x = torch.randn(batch * frames, tokens, 16)
    new = outputs_and_grads(attn, attn, x)
    old = outputs_and_grads(lambda t: first_frame_attention_reference(attn, t, frames), attn, x)
    assert_same(new, old)


def test_first_frame_attention_with_a_mask_matches_repeated_key_values():
    frames, tokens, batch = 3, 10, 2
    attn, _ = random_first_frame_attention(16, 2, frames)
    x = torch.randn(batch * frames, tokens, 16)
    mask = torch.zeros(batch * frames, 1, tokens)
    mask[:, :, 7:] = -1e4  # the last keys masked out
    mask[0, :, 2] = -1e4
    new = outputs_and_grads(lambda t: attn(t, attention_mask=mask), attn, x)
    old = outputs_and_grads(lambda t: first_frame_attention_reference(attn, t, frames, mask), attn, x)
    unmasked = attn(x)
    assert (new[0] - unmasked).abs().max() > 1e-3  # the mask is applied
    assert_same(new, old)


def test_whole_unet_matches_the_previous_layouts(monkeypatch):
    """In float64: through a whole UNet, fp32 summation order alone moves small gradients by ~1e-5 of their size."""
    torch.manual_seed(0)
    unet2d = UNet2DConditionModel(**small_unet_config((16, 32), 16, 2, norm_groups=8))
    unet = LampUNet.from_unet2d(unet2d).double()
    with torch.no_grad():
        for _, p in unet.trainable_parameters():
            if not p.any():  # the zero-initialised new layers: make every path act
                p.normal_(std=0.05)
    sample, text = torch.randn(2, 4, 4, 8, 8).double(), torch.randn(2, 5, 16).double()
    new = outputs_and_grads(lambda s: unet(s, 500, text).sample, unet, sample)
    monkeypatch.setattr(TSMConv2d, "forward", tsm_reference)
    monkeypatch.setattr(FirstFrameAttnProcessor, "__call__", lambda self, attn, h, *a, **k:
                        first_frame_attention_reference(attn, h, self.ctx.num_frames))
    old = outputs_and_grads(lambda s: unet(s, 500, text).sample, unet, sample)
    assert_same(new, old)
