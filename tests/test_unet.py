"""The spec's model invariants, on a small SD v1.x-shaped UNet."""
import copy
import json

import pytest
import torch
from diffusers import UNet2DConditionModel
from safetensors.torch import save_file

from lamp_model import LampUNet
from lamp_model.animate import motion_switches
from lamp_model.layers import FrameContext, TemporalAttention, TSMConv2d
from lamp_model.small import small_unet_config
from lamp_model.unet import MotionCheckpointError, read_motion_file

B, C, F, H, W, D = 1, 4, 5, 8, 8, 32
ATOL = 1e-5


@pytest.fixture(scope="module")
def unet2d():
    torch.manual_seed(0)
    return UNet2DConditionModel(**small_unet_config()).eval()


def inflate(unet2d, **switches):
    return LampUNet.from_unet2d(copy.deepcopy(unet2d), **switches).eval()


def randomise_new_layers(model: LampUNet, seed=1):
    """Give the zero-initialised layers non-zero weights, as after tuning."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in model.trainable_parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))


def run_2d(unet2d, x, t, text):
    with torch.no_grad():
        return unet2d(x, t, encoder_hidden_states=text).sample


def test_equal_frames_reproduce_2d_unet(unet2d):
    lamp = inflate(unet2d)
    x = torch.randn(B, C, 1, H, W).expand(B, C, F, H, W).contiguous()
    text = torch.randn(B, 7, D)
    with torch.no_grad():
        out = lamp(x, 500, text).sample
    ref = run_2d(unet2d, x[:, :, 0], torch.tensor([500]), text)
    assert out.shape == (B, C, F, H, W)
    for f in range(F):
        torch.testing.assert_close(out[:, :, f], ref, atol=ATOL, rtol=0)


def test_frame0_is_2d_unet_whatever_other_frames_hold(unet2d):
    lamp = inflate(unet2d)
    x = torch.randn(B, C, F, H, W)
    text = torch.randn(B, 7, D)
    with torch.no_grad():
        out = lamp(x, 300, text).sample
    torch.testing.assert_close(out[:, :, 0], run_2d(unet2d, x[:, :, 0], torch.tensor([300]), text),
                               atol=ATOL, rtol=0)


@pytest.mark.parametrize("causal", [True, False])
def test_tsm_sees_only_past_frames_when_prediction_based(causal):
    torch.manual_seed(0)
    ctx = FrameContext(num_frames=F)
    layer = TSMConv2d(torch.nn.Conv2d(4, 8, 3, padding=1), ctx, causal=causal)
    with torch.no_grad():
        for p in (layer.temporal.weight, layer.temporal.bias, layer.gate.weight):
            p.normal_()
    x = torch.randn(F, 4, H, W)
    x2 = x.clone()
    x2[3:] += torch.randn_like(x2[3:])  # change frames > 2
    with torch.no_grad():
        y, y2 = layer(x), layer(x2)
    assert torch.equal(y[:3], y2[:3]) == causal
    assert not torch.equal(y[3:], y2[3:])


def test_tsm_zero_init_is_the_2d_conv():
    conv = torch.nn.Conv2d(4, 8, 3, padding=1)
    layer = TSMConv2d(conv, FrameContext(num_frames=F))
    x = torch.randn(F, 4, H, W)
    torch.testing.assert_close(layer(x), conv(x), atol=0, rtol=0)


def test_spatial_attention_ignores_other_frames_except_first(unet2d):
    lamp = inflate(unet2d, tsm=False, temporal_attention=False)
    randomise_new_layers(lamp)
    x = torch.randn(B, C, F, H, W)
    text = torch.randn(B, 7, D)
    changed = x.clone()
    changed[:, :, 3] += 1.0  # frame s=3 changes
    with torch.no_grad():
        a, b = lamp(x, 200, text).sample, lamp(changed, 200, text).sample
    for t in (0, 1, 2, 4):
        torch.testing.assert_close(a[:, :, t], b[:, :, t], atol=ATOL, rtol=0)
    assert not torch.allclose(a[:, :, 3], b[:, :, 3])
    changed0 = x.clone()
    changed0[:, :, 0] += 1.0  # the first frame drives every frame
    with torch.no_grad():
        c = lamp(changed0, 200, text).sample
    assert not torch.allclose(a[:, :, 2], c[:, :, 2])


def test_trainable_set(unet2d):
    lamp = inflate(unet2d)
    names = [n for n, _ in lamp.trainable_parameters()]
    assert names and all(p.requires_grad for _, p in lamp.trainable_parameters())
    assert any(".temporal." in n for n in names) and any(".gate." in n for n in names)
    assert any("temporal_attn" in n for n in names) and any("attn1.to_q" in n for n in names)
    frozen = [n for n, p in lamp.named_parameters() if not p.requires_grad]
    assert not any("attn1.to_q" in n or ".temporal." in n for n in frozen)
    assert any("attn1.to_k" in n for n in frozen) and any("attn2.to_q" in n for n in frozen)
    assert "unet.conv_in.conv.weight" in frozen


@pytest.mark.parametrize("switches", [dict(tsm=False), dict(prediction_conv1d=False),
                                      dict(first_frame_attention=False), dict(temporal_attention=False),
                                      dict(temporal_positions=True)])
def test_ablation_switches_still_reproduce_2d_at_init(unet2d, switches):
    lamp = inflate(unet2d, **switches)
    x = torch.randn(B, C, 1, H, W).expand(B, C, 3, H, W).contiguous()
    text = torch.randn(B, 7, D)
    with torch.no_grad():
        out = lamp(x, 10, text).sample
    torch.testing.assert_close(out[:, :, 2], run_2d(unet2d, x[:, :, 0], torch.tensor([10]), text),
                               atol=ATOL, rtol=0)
    names = [n for n, _ in lamp.trainable_parameters()]
    assert any(".temporal." in n for n in names) == switches.get("tsm", True)
    assert any("temporal_attn" in n for n in names) == switches.get("temporal_attention", True)


def test_motion_checkpoint_round_trip_and_incompatible_base(unet2d, tmp_path):
    lamp = inflate(unet2d)
    randomise_new_layers(lamp)
    path = lamp.save_motion(tmp_path / "motion.safetensors")
    n_trainable = sum(p.numel() for _, p in lamp.trainable_parameters())
    n_total = sum(p.numel() for p in lamp.parameters())
    assert n_trainable < n_total / 2
    fresh = inflate(unet2d)
    fresh.load_motion(path)
    for (n, p), (_, q) in zip(lamp.trainable_parameters(), fresh.trainable_parameters()):
        assert torch.equal(p, q), n

    other = LampUNet.from_unet2d(UNet2DConditionModel(**small_unet_config(channels=(32, 32))))
    with pytest.raises(MotionCheckpointError, match="another base model"):
        other.load_motion(path)
    with pytest.raises(MotionCheckpointError, match="switches"):
        inflate(unet2d, tsm=False).load_motion(path)
    bad = tmp_path / "motion.ckpt"
    bad.write_bytes(b"not a safetensors file at all")
    with pytest.raises(MotionCheckpointError, match="not a safetensors"):
        fresh.load_motion(bad)


def test_motion_checkpoint_bytes_are_reproducible(unet2d, tmp_path):
    """Same weights and metadata -> same file (DVC tracks its md5; safetensors alone writes its
    metadata in a per-process random order, so every fresh run changed dvc.lock and reran generate)."""
    lamp = inflate(unet2d)
    randomise_new_layers(lamp)
    extra = {"motion": "m", "base": "b", "steps": 3}
    paths = [lamp.save_motion(tmp_path / f"motion{i}.safetensors", extra) for i in range(4)]
    assert len({p.read_bytes() for p in paths}) == 1
    assert read_motion_file(paths[0])[1] == {"format": "lamp-motion", "motion": "m", "base": "b", "steps": "3",
                                             "lamp_switches": json.dumps(lamp.lamp_switches())}


@pytest.mark.parametrize("positions", [False, True])
def test_temporal_positions_let_attention_tell_equal_frames_apart(positions):
    """Without positions attention over frames is permutation-equivariant: frames with equal
    content get equal outputs whatever the weights. The frame index breaks that tie."""
    torch.manual_seed(0)
    layer = TemporalAttention(16, 2, FrameContext(num_frames=F), positions=positions)
    x = torch.randn(1, 6, 16).expand(F, 6, 16).contiguous()  # [(b f), tokens, c], every frame the same
    with torch.no_grad():
        torch.testing.assert_close(layer(x), x, atol=0, rtol=0)  # zero-init output: identity
        layer.attn.to_out[0].weight.normal_()  # as after tuning
        y = layer(x)
    assert torch.allclose(y[1:], y[:1].expand_as(y[1:]), atol=1e-6) != positions


def test_checkpoint_from_before_a_switch_existed_loads_at_its_default(unet2d, tmp_path):
    lamp = inflate(unet2d)
    randomise_new_layers(lamp)
    old = tmp_path / "old.safetensors"  # written before temporal_positions existed
    recorded = {k: v for k, v in lamp.lamp_switches().items() if k != "temporal_positions"}
    save_file(lamp.motion_state_dict(), str(old),
              metadata={"format": "lamp-motion", "lamp_switches": json.dumps(recorded)})
    assert motion_switches(old) == {**recorded, "temporal_positions": False}
    inflate(unet2d).load_motion(old)
    with pytest.raises(MotionCheckpointError, match="switches"):
        inflate(unet2d, temporal_positions=True).load_motion(old)

    positioned = inflate(unet2d, temporal_positions=True)
    randomise_new_layers(positioned)
    path = positioned.save_motion(tmp_path / "positions.safetensors")
    assert motion_switches(path)["temporal_positions"] is True
    with pytest.raises(MotionCheckpointError, match="switches"):
        inflate(unet2d).load_motion(path)


def test_save_and_from_pretrained_round_trip(unet2d, tmp_path):
    lamp = inflate(unet2d, prediction_conv1d=False, temporal_positions=True)
    randomise_new_layers(lamp)
    lamp.save_pretrained(tmp_path / "lamp_unet")
    loaded = LampUNet.from_pretrained(tmp_path / "lamp_unet").eval()
    assert loaded.config.prediction_conv1d is False and loaded.config.temporal_positions is True
    x, text = torch.randn(B, C, 3, H, W), torch.randn(B, 7, D)
    with torch.no_grad():
        torch.testing.assert_close(lamp(x, 5, text).sample, loaded(x, 5, text).sample, atol=0, rtol=0)


def test_regional_compile_keeps_outputs_gradients_and_parameter_names(unet2d, tmp_path):
    """`compile_repeated_blocks` (torch.compile per ResnetBlock2D / LampTransformerBlock; the aot_eager
    backend traces the same graphs as inductor without generating code) changes no number beyond float
    order and no parameter name, so motion checkpoints of a compiled UNet load into an eager one."""
    eager = inflate(unet2d)
    randomise_new_layers(eager)
    compiled = copy.deepcopy(eager)
    compiled.compile_repeated_blocks(backend="aot_eager", dynamic=False)
    g = torch.Generator().manual_seed(0)
    x, text = torch.randn(2, C, F, H, W, generator=g), torch.randn(2, 7, D, generator=g)
    t = torch.tensor([10, 900])
    outs, grads = [], []
    for model in (eager, compiled):
        model.zero_grad(set_to_none=True)
        for _, p in model.trainable_parameters():
            p.requires_grad_(True)
        out = model(x, t, text).sample
        (out ** 2).mean().backward()
        outs.append(out.detach())
        grads.append({n: p.grad for n, p in model.trainable_parameters()})
    assert torch.allclose(outs[0], outs[1], atol=ATOL)
    assert grads[0].keys() == grads[1].keys()
    assert all(torch.allclose(grads[0][n], grads[1][n], atol=ATOL) for n in grads[0])
    assert compiled.state_dict().keys() == eager.state_dict().keys()
    compiled.save_motion(tmp_path / "motion.safetensors")
    reloaded = inflate(unet2d)
    reloaded.load_motion(tmp_path / "motion.safetensors")
    assert all(torch.equal(a, b) for a, b in zip(reloaded.motion_state_dict().values(),
                                                 eager.motion_state_dict().values()))
