"""Training options and crash safety on a tiny SD v1.x-shaped model (CPU).

* a tune process killed with SIGKILL between checkpoints resumes to the weights of an uninterrupted run;
* fp16's loss scale is part of the checkpoint (a resumed fp16 run takes the same steps);
* gradient checkpointing and bf16/fp16 autocast train the same parameters as the plain fp32 path,
  with the same loss within the rounding of the format (tolerances stated at each test);
* the trainable set, derived here from the spec and the 2D UNet's structure alone.
"""
from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from diffusers.models.resnet import Downsample2D, ResnetBlock2D, Upsample2D
from safetensors.torch import save_file
from torch import nn

import lamp_model.training as training
from lamp_model import LampUNet
from lamp_model.config import load_params
from lamp_model.layers import TSMConv2d
from lamp_model.small import build_sd
from lamp_model.training import STATE_FILE, TrainSettings, train_motion
from tasks import tune
from tasks.common import Layout, StageError

REPO = Path(__file__).resolve().parents[1]
FRAMES, LH, LW = 4, 4, 6  # latent clips [n, 4, f, h, w]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread, in the stage processes of the crash test and in-process alike: another
    thread count may sum in another order and round the last bit differently (and two threads
    on a shared 2-core machine wait on each other)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def sd(tmp_path_factory):
    return build_sd(tmp_path_factory.mktemp("tok"))


def make_lamp(sd, **switches) -> LampUNet:
    return LampUNet.from_unet2d(copy.deepcopy(sd.unet), **switches)


def clips(n=3, seed=0):
    return torch.randn((n, 4, FRAMES, LH, LW), generator=torch.Generator().manual_seed(seed))


def text_emb(sd, prompt="horse run"):
    ids = sd.tokenizer([prompt], padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        return sd.text_encoder(ids)[0]


# -- resume after a real crash --------------------------------------------------------------------
KILL_RUNNER = """
import sys, time
from pathlib import Path
import torch
torch.set_num_threads(1)
from tasks import tune
from tasks.common import stage_main
ready, kill_at = Path(sys.argv[1]), int(sys.argv[2])
train_motion = tune.train_motion

def hold_at_step(*args, **kwargs):
    def on_step(step, loss):
        if step + 1 == kill_at:  # this step is done, its checkpoint (if any) not yet written
            ready.write_text(str(step + 1))
            time.sleep(600)  # killed here
    return train_motion(*args, on_step=on_step, **kwargs)

tune.train_motion = hold_at_step
stage_main(tune.run, per_motion=True, argv=sys.argv[3:])
"""


def _tiny_project(root: Path, sd) -> None:
    """What `base` and `cache` leave for one motion: a base model folder, latents, params.yaml."""
    sd.save_pretrained(root / "models/world/base")
    out = Layout(root).latents("rain")
    out.mkdir(parents=True)
    save_file({"latents": clips(3).contiguous()}, str(out / "latents.safetensors"))
    (out / "captions.json").write_text(json.dumps(["rain on a car", "rain in a street", "rain on a lake"]))
    params = load_params(REPO / "params.yaml", {
        "motions": ["rain"], "model.device": "cpu", "tracking.enabled": False,
        "train.steps": 8, "train.checkpoint_every": 3, "train.batch_size": 2, "train.lr": 1e-3})
    (root / "params.yaml").write_text(yaml.safe_dump(params.model_dump()))


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}


def test_tune_killed_between_checkpoints_resumes_to_the_uninterrupted_weights(sd, tmp_path, assert_same_motion):
    crashed, clean = tmp_path / "crashed", tmp_path / "clean"
    _tiny_project(crashed, sd)
    shutil.copytree(crashed, clean)
    params = load_params(clean / "params.yaml")
    assert params.train.mixed_precision == "no"  # the shipped default: fp32 on the CPU
    uninterrupted = tune.run(params, clean, "rain")

    ready, kill_at = tmp_path / "ready", 5  # checkpoints after steps 3 and 6: killed in between
    args = ["--motion", "rain", "--root", str(crashed)]
    proc = subprocess.Popen([sys.executable, "-c", KILL_RUNNER, str(ready), str(kill_at), *args], cwd=REPO,
                            env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert ready.exists(), f"the tune process never reached step {kill_at}: {proc.stderr.read()[-2000:]}"
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()

    [ckpt] = (crashed / "checkpoints/rain").iterdir()
    state = torch.load(ckpt / STATE_FILE, weights_only=True)
    assert state["step"] == 3 and len(state["losses"]) == 3  # the last checkpoint before the kill
    assert not (Layout(crashed).motion_model("rain") / "motion.safetensors").exists()

    rerun = subprocess.run([sys.executable, "-m", "tasks.tune", *args], cwd=REPO, env=_env(),
                           capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    a, b = Layout(clean).motion_model("rain"), Layout(crashed).motion_model("rain")
    assert_same_motion(a / "motion.safetensors", b / "motion.safetensors")
    assert (a / "loss.csv").read_text() == (b / "loss.csv").read_text()
    assert len(uninterrupted["loss"]) == 8


def test_8bit_adam_without_bitsandbytes_is_one_clear_line(sd, tmp_path, monkeypatch):
    _tiny_project(tmp_path, sd)
    real_find_spec = tune.importlib.util.find_spec
    monkeypatch.setattr(tune.importlib.util, "find_spec",
                        lambda name, *a: None if name == "bitsandbytes" else real_find_spec(name, *a))
    params = load_params(tmp_path / "params.yaml", {"train.use_8bit_adam": True})
    with pytest.raises(StageError, match="train.use_8bit_adam is true but bitsandbytes is not installed"):
        tune.run(params, tmp_path, "rain")


# -- fp16 loss scale in the checkpoint ------------------------------------------------------------
@pytest.fixture
def moving_loss_scale(monkeypatch):
    """A GradScaler whose scale moves every step (by default it grows every 2000 steps).

    Starting at 2^17 and doubling after every step without overflow, the scale reaches the level
    where the tiny model's scaled gradients overflow fp16 within the first steps; from then on a
    step is skipped (scale halved) or taken (scale doubled) depending on the scale the run had, so
    a resumed run takes the same steps only if its scale was restored.
    """
    def scaler(device, mixed_precision):
        return torch.amp.GradScaler(device.type, init_scale=2.0 ** 17, growth_interval=1,
                                    enabled=mixed_precision == "fp16")

    monkeypatch.setattr(training, "_grad_scaler", scaler)


def test_fp16_resume_restores_the_loss_scale(sd, tmp_path, moving_loss_scale):
    settings = TrainSettings(steps=6, lr=1e-3, checkpoint_every=3, seed=1, mixed_precision="fp16")
    full = make_lamp(sd)
    losses_full = train_motion(full, sd.train_scheduler(), clips(), text_emb(sd), settings)

    ckpt = tmp_path / "ckpt"
    train_motion(make_lamp(sd), sd.train_scheduler(), clips(), text_emb(sd), settings, ckpt, stop_after=3)
    state = torch.load(ckpt / STATE_FILE, weights_only=True)
    assert state["scaler"]["scale"] > 2.0 ** 17  # the scale has moved: restoring it matters
    shutil.copytree(ckpt, tmp_path / "no_scale")

    resumed = make_lamp(sd)
    assert train_motion(resumed, sd.train_scheduler(), clips(), text_emb(sd), settings, ckpt) == losses_full
    for (n, p), (_, q) in zip(full.trainable_parameters(), resumed.trainable_parameters()):
        assert torch.equal(p, q), n

    # The same resume with the loss scale left out of the checkpoint goes another way.
    torch.save({**state, "scaler": {}}, tmp_path / "no_scale" / STATE_FILE)
    fresh_scale = make_lamp(sd)
    train_motion(fresh_scale, sd.train_scheduler(), clips(), text_emb(sd), settings, tmp_path / "no_scale")
    assert any(not torch.equal(p, q) for (_, p), (_, q) in zip(full.trainable_parameters(),
                                                                 fresh_scale.trainable_parameters()))


# -- the options train the same set, with the same loss -----------------------------------------
def _nudged(sd) -> LampUNet:
    """New layers moved off their zero init, so every trainable parameter gets a gradient."""
    unet = make_lamp(sd)
    with torch.no_grad():
        for _, p in unet.trainable_parameters():
            p.add_(0.01)
    return unet


def _train(sd, steps=3, **options):
    unet = _nudged(sd)
    before = {n: p.detach().clone() for n, p in unet.named_parameters()}
    requires_grad = {n for n, p in unet.named_parameters() if p.requires_grad}
    losses = train_motion(unet, sd.train_scheduler(), clips(), text_emb(sd),
                          TrainSettings(steps=steps, lr=1e-4, seed=5, **options))
    changed = {n for n, p in unet.named_parameters() if not torch.equal(before[n], p.detach())}
    return losses, requires_grad, changed, unet


@pytest.fixture(scope="module")
def plain(sd):
    return _train(sd)


def test_gradient_checkpointing_recomputes_and_matches_the_plain_loss(sd, plain):
    """Checkpointing re-runs each block's forward in the backward pass with the same fp32 ops in the
    same order, so the loss is expected bit for bit; rtol 1e-6 (~8 fp32 ulps) allows only for a kernel
    that sums in another order. The forward count proves the recomputation really happens."""
    calls = []
    hook = None

    def count(*_):
        calls.append(1)

    real_enable = LampUNet.enable_gradient_checkpointing

    def enable_and_hook(self):
        nonlocal hook
        real_enable(self)
        conv = self.unet.down_blocks[0].resnets[0].conv1
        assert isinstance(conv, TSMConv2d)
        hook = conv.register_forward_hook(count)

    LampUNet.enable_gradient_checkpointing = enable_and_hook
    try:
        losses, requires_grad, changed, _ = _train(sd, gradient_checkpointing=True)
    finally:
        LampUNet.enable_gradient_checkpointing = real_enable
        if hook is not None:
            hook.remove()
    assert len(calls) == 2 * 3  # forward + recomputation in backward, 3 steps
    plain_losses, plain_requires_grad, plain_changed, _ = plain
    assert requires_grad == plain_requires_grad and changed == plain_changed == requires_grad
    torch.testing.assert_close(torch.tensor(losses), torch.tensor(plain_losses), rtol=1e-6, atol=0)


@pytest.mark.parametrize("mixed_precision, dtype, unit_roundoff", [
    ("bf16", torch.bfloat16, 2.0 ** -8),   # 8 significant bits
    ("fp16", torch.float16, 2.0 ** -11),  # 11 significant bits
])
def test_mixed_precision_on_cpu_trains_the_same_set_with_the_same_loss(sd, plain, mixed_precision, dtype,
                                                                       unit_roundoff):
    """Autocast runs the convs and matmuls in the low-precision format (checked on a conv's output).

    Tolerance: 4 unit roundoffs of the format, relative, per step. Each output element of the
    prediction carries about one rounding of the format from its last layer plus the rounding
    carried in from the layers before it (a few in series at this depth); the MSE of the prediction's
    error against the noise is within the same relative error, since both enter it linearly at first
    order. At lr 1e-4 the weights of the two runs stay within ~3 Adam steps of each other, which moves
    the loss far less than that."""
    seen = []
    unet_probe = _nudged(sd)
    conv = unet_probe.unet.down_blocks[0].resnets[0].conv1.conv
    conv.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    train_motion(unet_probe, sd.train_scheduler(), clips(), text_emb(sd),
                 TrainSettings(steps=1, lr=1e-4, mixed_precision=mixed_precision))
    assert seen == [dtype]
    assert all(p.dtype == torch.float32 for p in unet_probe.parameters())  # weights stay fp32

    losses, requires_grad, changed, _ = _train(sd, mixed_precision=mixed_precision)
    plain_losses, plain_requires_grad, plain_changed, _ = plain
    assert requires_grad == plain_requires_grad and changed == plain_changed == requires_grad
    assert losses != plain_losses  # really another numeric path
    torch.testing.assert_close(torch.tensor(losses), torch.tensor(plain_losses), rtol=4 * unit_roundoff, atol=0)


def test_unknown_mixed_precision_is_refused(sd):
    with pytest.raises(ValueError, match="mixed_precision = 'fp8': use one of no, bf16, fp16"):
        train_motion(make_lamp(sd), sd.train_scheduler(), clips(), text_emb(sd),
                     TrainSettings(steps=1, mixed_precision="fp8"))


# -- the trainable set, from the spec -------------------------------------------------------------
def _expected_trainable(unet2d: nn.Module, tsm=True, temporal_attention=True) -> dict[str, tuple]:
    """name -> shape of what LAMP tunes, derived from the 2D UNet and the spec ("Model", item 3):
    the TSM conv1d (C->C, kernel 3) and gate (C->1, kernel 3) of every wrapped conv (conv_in,
    conv_out, every resnet conv1/conv2/conv_shortcut, every down/up sampler conv), the temporal
    attention with its LayerNorm after every transformer block, and attn1.to_q."""
    out = {}
    wrapped = []
    for name, module in unet2d.named_modules():
        if isinstance(module, ResnetBlock2D):
            wrapped += [(f"{name}.{c}", getattr(module, c)) for c in ("conv1", "conv2", "conv_shortcut")
                        if getattr(module, c, None) is not None]
        elif isinstance(module, (Downsample2D, Upsample2D)) and getattr(module, "conv", None) is not None:
            wrapped.append((f"{name}.conv", module.conv))
    wrapped += [("conv_in", unet2d.conv_in), ("conv_out", unet2d.conv_out)]
    if tsm:
        for name, conv in wrapped:
            c = conv.out_channels
            out.update({f"unet.{name}.temporal.weight": (c, c, 3), f"unet.{name}.temporal.bias": (c,),
                        f"unet.{name}.gate.weight": (1, c, 3, 3), f"unet.{name}.gate.bias": (1,)})
    for name, module in unet2d.named_modules():
        if type(module).__name__ != "BasicTransformerBlock":
            continue
        dim = module.norm1.normalized_shape[0]
        q = module.attn1.to_q
        block = f"unet.{name}.block" if temporal_attention else f"unet.{name}"
        out[f"{block}.attn1.to_q.weight"] = tuple(q.weight.shape)
        if q.bias is not None:
            out[f"{block}.attn1.to_q.bias"] = tuple(q.bias.shape)
        if temporal_attention:
            t = f"unet.{name}.temporal_attn"
            out.update({f"{t}.norm.weight": (dim,), f"{t}.norm.bias": (dim,),
                        **{f"{t}.attn.{p}.weight": (dim, dim) for p in ("to_q", "to_k", "to_v", "to_out.0")},
                        f"{t}.attn.to_out.0.bias": (dim,)})
    return out, len(wrapped)


@pytest.mark.parametrize("switches", [{}, {"tsm": False}, {"temporal_attention": False}])
def test_trainable_set_is_the_spec_s(sd, switches):
    expected, n_convs = _expected_trainable(sd.unet, **switches)
    unet = make_lamp(sd, **switches)
    trainable = {n: tuple(p.shape) for n, p in unet.named_parameters() if p.requires_grad}
    assert trainable == expected
    assert {n: tuple(p.shape) for n, p in unet.trainable_parameters()} == expected
    # what gets tuned is what a motion checkpoint holds, and the optimizer sees exactly that
    assert set(unet.motion_state_dict()) == set(expected)
    assert sorted(id(p) for p in training._optimizer(unet, TrainSettings()).param_groups[0]["params"]) == \
        sorted(id(p) for n, p in unet.named_parameters() if n in expected)
    if not switches:
        n_blocks = sum(1 for m in sd.unet.modules() if type(m).__name__ == "BasicTransformerBlock")
        assert n_convs == sum(isinstance(m, TSMConv2d) for m in unet.modules()) > 10
        # per wrapped conv: conv1d + gate (weight, bias); per block: LayerNorm (2), q/k/v, out (2), attn1.to_q
        assert len(expected) == 4 * n_convs + 8 * n_blocks and n_blocks > 0
        # nothing of the frozen 2D UNet: no proj_in/out, attn2, to_k/to_v of attn1, norms, time embedding
        frozen = [n for n in dict(unet.named_parameters()) if n not in expected]
        assert any(".attn2." in n for n in frozen) and any("attn1.to_k" in n for n in frozen)
        assert not any(m in n for n in expected for m in ("attn2", "attn1.to_k", "attn1.to_v", "proj_in",
                                                          "time_embedding", "conv_norm_out"))
