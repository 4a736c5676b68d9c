"""Training-step and sampling invariants, end to end on a small SD v1.x-shaped model."""
import copy

import numpy as np
import pytest
import torch

from lamp_model import LampUNet
from lamp_model.pipeline import LampPipeline
from lamp_model.postprocess import adain_latents, match_histograms
from lamp_model.small import build_sd
from lamp_model.training import TrainSettings, _lr_scheduler, lamp_loss, train_motion

FRAMES, H, W = 4, 32, 48  # pixels; latents are 4x6


@pytest.fixture(scope="module")
def sd(tmp_path_factory):
    return build_sd(tmp_path_factory.mktemp("tok"))


def make_lamp(sd, **switches):
    return LampUNet.from_unet2d(copy.deepcopy(sd.unet), **switches)


def clips(n=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn((n, 4, FRAMES, H // 8, W // 8), generator=g)


def text_emb(sd, prompt="horse run"):
    ids = sd.tokenizer([prompt], padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        return sd.text_encoder(ids)[0]


def test_one_step_changes_only_the_trainable_set(sd):
    unet = make_lamp(sd)
    with torch.no_grad():  # leave zero-init so gradients reach every new layer
        for _, p in unet.trainable_parameters():
            p.add_(0.01)
    before = {n: p.detach().clone() for n, p in unet.named_parameters()}
    train_motion(unet, sd.train_scheduler(), clips(), text_emb(sd), TrainSettings(steps=1, lr=1e-3))
    trainable = {n for n, _ in unet.trainable_parameters()}
    for n, p in unet.named_parameters():
        changed = not torch.equal(before[n], p.detach())
        assert changed == (n in trainable), n


def test_loss_ignores_prediction_of_frame0(sd, monkeypatch):
    unet = make_lamp(sd)
    real_forward = unet.forward

    def perturbed(sample, t, text, return_dict=True):
        out = real_forward(sample, t, text)
        out.sample = out.sample.clone()
        out.sample[:, :, 0] += 1000.0  # a wild frame-0 prediction must not matter
        return out

    latents = clips(1)
    base = lamp_loss(unet, sd.train_scheduler(), latents, text_emb(sd), torch.Generator().manual_seed(3))
    monkeypatch.setattr(unet, "forward", perturbed)
    hit = lamp_loss(unet, sd.train_scheduler(), latents, text_emb(sd), torch.Generator().manual_seed(3))
    torch.testing.assert_close(base, hit)
    ablation = lamp_loss(unet, sd.train_scheduler(), latents, text_emb(sd), torch.Generator().manual_seed(3),
                         first_frame_conditioning=False)
    assert ablation > 100 * base  # without first-frame conditioning, frame 0 is in the loss


def test_training_is_deterministic_and_resumes_exactly(sd, tmp_path):
    settings = TrainSettings(steps=6, lr=1e-3, checkpoint_every=2, seed=7)
    full = make_lamp(sd)
    losses_full = train_motion(full, sd.train_scheduler(), clips(), text_emb(sd), settings)

    resumed = make_lamp(sd)
    ckpt = tmp_path / "ckpt"
    first = train_motion(resumed, sd.train_scheduler(), clips(), text_emb(sd), settings, ckpt, stop_after=3)
    assert len(first) == 3
    resumed = make_lamp(sd)  # a new process: fresh weights, state comes from the checkpoint
    losses_resumed = train_motion(resumed, sd.train_scheduler(), clips(), text_emb(sd), settings, ckpt)
    assert losses_resumed == losses_full
    for (n, p), (_, q) in zip(full.trainable_parameters(), resumed.trainable_parameters()):
        assert torch.equal(p, q), n


def test_cosine_schedule_warms_up_decays_to_zero_and_resumes_exactly(sd, tmp_path):
    """train.lr_schedule cosine: linear warm-up to lr, half cosine down to 0 at the last step; the
    schedule's position is part of the checkpoint, so a resumed run takes the same steps."""
    settings = TrainSettings(steps=8, lr=1e-3, checkpoint_every=3, seed=5, lr_schedule="cosine", warmup_steps=2)
    probe = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=settings.lr)
    schedule = _lr_scheduler(probe, settings)
    rates = []
    for _ in range(settings.steps):
        rates.append(probe.param_groups[0]["lr"])
        probe.step()
        schedule.step()
    assert rates[0] == 0 and rates[1] == pytest.approx(settings.lr / 2) and rates[2] == pytest.approx(settings.lr)
    assert all(a > b for a, b in zip(rates[2:], rates[3:]))  # decays after the warm-up
    assert probe.param_groups[0]["lr"] == pytest.approx(0, abs=1e-12)  # reaches 0 at `steps`

    full = make_lamp(sd)
    losses_full = train_motion(full, sd.train_scheduler(), clips(), text_emb(sd), settings)
    resumed = make_lamp(sd)
    ckpt = tmp_path / "ckpt"
    train_motion(resumed, sd.train_scheduler(), clips(), text_emb(sd), settings, ckpt, stop_after=4)
    resumed = make_lamp(sd)
    assert train_motion(resumed, sd.train_scheduler(), clips(), text_emb(sd), settings, ckpt) == losses_full
    for (n, p), (_, q) in zip(full.trainable_parameters(), resumed.trainable_parameters()):
        assert torch.equal(p, q), n
    constant = make_lamp(sd)
    train_motion(constant, sd.train_scheduler(), clips(), text_emb(sd),
                 TrainSettings(steps=8, lr=1e-3, seed=5))
    assert any(not torch.equal(p, q) for (_, p), (_, q) in zip(full.trainable_parameters(),
                                                                constant.trainable_parameters()))


def test_batched_training_is_deterministic_and_resumes_exactly(sd, tmp_path):
    """train.batch_size > 1: several clips per step, each with its own timestep; resume still exact."""
    settings = TrainSettings(steps=4, lr=1e-3, checkpoint_every=2, seed=3, batch_size=3, hflip=True)
    full = make_lamp(sd)
    losses_full = train_motion(full, sd.train_scheduler(), clips(4), text_emb(sd), settings)
    resumed = make_lamp(sd)
    ckpt = tmp_path / "ckpt"
    train_motion(resumed, sd.train_scheduler(), clips(4), text_emb(sd), settings, ckpt, stop_after=2)
    resumed = make_lamp(sd)
    assert train_motion(resumed, sd.train_scheduler(), clips(4), text_emb(sd), settings, ckpt) == losses_full
    single = make_lamp(sd)
    losses_single = train_motion(single, sd.train_scheduler(), clips(4), text_emb(sd),
                                 TrainSettings(steps=4, lr=1e-3, seed=3, hflip=True))
    assert losses_single != losses_full  # the batch is really used


def pipe_for(sd, unet):
    return LampPipeline(vae=sd.vae, text_encoder=sd.text_encoder, tokenizer=sd.tokenizer, unet=unet,
                        scheduler=sd.scheduler)


def moved_lamp(sd):
    """A LampUNet whose new layers are no longer identities (as after tuning)."""
    unet = make_lamp(sd)
    with torch.no_grad():
        for _, p in unet.trainable_parameters():
            p.add_(0.05)
    return unet


def first_frame(seed=0):
    return np.random.default_rng(seed).integers(0, 256, (50, 70, 3), dtype=np.uint8)


def test_frame0_latent_is_bit_identical_to_z0_at_every_step(sd):
    pipe = pipe_for(sd, moved_lamp(sd))
    seen = []
    out = pipe("a red star, helicopter", first_frame(), num_frames=FRAMES, height=H, width=W,
               num_inference_steps=4, generator=torch.Generator().manual_seed(0),
               callback=lambda i, lat: seen.append(lat[:, :, 0].clone()), progress=False)
    from lamp_model.video import fit_frames
    z0 = pipe.encode_frames(fit_frames(first_frame()[None], H, W))
    assert len(seen) == 4
    for lat in seen:
        assert torch.equal(lat, z0)
    assert out.frames.shape == (1, FRAMES, H, W, 3) and out.frames.dtype == np.uint8


def test_without_a_first_frame_every_frame_is_denoised_from_noise(sd):
    """The ablation "no first-frame conditioning" at sampling: no pinned z0, no shared noise tied to
    frame 0; frame 0 moves like every other frame, and the video depends on the seed and prompt only."""
    pipe = pipe_for(sd, moved_lamp(sd))
    seen = []
    kwargs = dict(num_frames=FRAMES, height=H, width=W, num_inference_steps=4, progress=False)
    out = pipe("a red star, helicopter", None, generator=torch.Generator().manual_seed(0),
               callback=lambda i, lat: seen.append(lat[:, :, 0].clone()), **kwargs)
    assert out.frames.shape == (1, FRAMES, H, W, 3)
    assert not torch.equal(seen[0], seen[-1])  # frame 0 is denoised too
    again = pipe("a red star, helicopter", None, generator=torch.Generator().manual_seed(0), **kwargs)
    assert np.array_equal(out.frames, again.frames)
    other = pipe("a red star, helicopter", None, generator=torch.Generator().manual_seed(1), **kwargs)
    assert not np.array_equal(out.frames, other.frames)
    # alpha has nothing to share without a given frame 0: it does not change the video
    mixed = pipe("a red star, helicopter", None, generator=torch.Generator().manual_seed(0), alpha=0.9, **kwargs)
    assert np.array_equal(out.frames, mixed.frames)


def test_same_seed_same_video_and_checkpoint_reload_is_bit_identical(sd, tmp_path):
    unet = make_lamp(sd)
    train_motion(unet, sd.train_scheduler(), clips(), text_emb(sd), TrainSettings(steps=2, lr=1e-3))
    path = unet.save_motion(tmp_path / "m.safetensors")
    kwargs = dict(num_frames=FRAMES, height=H, width=W, num_inference_steps=3, progress=False)
    a = pipe_for(sd, unet)("rain", first_frame(), generator=torch.Generator().manual_seed(1), **kwargs)
    reloaded = make_lamp(sd)
    reloaded.load_motion(path)
    b = pipe_for(sd, reloaded)("rain", first_frame(), generator=torch.Generator().manual_seed(1), **kwargs)
    c = pipe_for(sd, reloaded)("rain", first_frame(), generator=torch.Generator().manual_seed(2), **kwargs)
    assert np.array_equal(a.frames, b.frames)
    assert not np.array_equal(b.frames, c.frames)


def test_batched_videos_equal_videos_generated_alone(sd):
    """A generator per video: the generate stage's batches change speed, not the videos. Compared
    before post-processing: batching changes the float summation order (one grey level at most),
    and histogram matching's lookup can stretch that one level into two."""
    pipe = pipe_for(sd, moved_lamp(sd))
    kwargs = dict(num_frames=FRAMES, height=H, width=W, num_inference_steps=3, progress=False, adain=False,
                  histogram_matching=False)
    prompts, firsts, seeds = ["rain", "a red star, helicopter"], [first_frame(0), first_frame(1)], [4, 9]
    batch = pipe(prompts, firsts, generator=[torch.Generator().manual_seed(s) for s in seeds], **kwargs).frames
    for k in range(2):
        alone = pipe(prompts[k], firsts[k], generator=torch.Generator().manual_seed(seeds[k]), **kwargs).frames[0]
        assert np.abs(batch[k].astype(int) - alone.astype(int)).max() <= 1  # float order only
    assert not np.array_equal(batch[0], batch[1])
    with pytest.raises(ValueError, match="2 generators for 1 videos"):
        pipe("rain", firsts[0], generator=[torch.Generator(), torch.Generator()], **kwargs)


def test_shared_noise_alpha(sd):
    pipe = pipe_for(sd, make_lamp(sd))
    shape = (1, 4, 6, 8, 8)
    independent = pipe.shared_noise(shape, 0.0, torch.Generator().manual_seed(0))
    shared = pipe.shared_noise(shape, 0.2, torch.Generator().manual_seed(0))
    torch.testing.assert_close(shared, 0.2 * independent[:, :, :1] + 0.8 * independent)
    torch.testing.assert_close(shared[:, :, 0], independent[:, :, 0])  # eps_s is frame 0's own noise


def test_overlong_prompt_warns_and_truncates(sd):
    pipe = pipe_for(sd, make_lamp(sd))
    with pytest.warns(UserWarning, match="truncated"):
        emb = pipe.encode_prompt(["horse " * 200])
    assert emb.shape[1] == 77


def test_adain_matches_frame0_statistics():
    lat = torch.randn(2, 4, 5, 6, 6) * torch.arange(1, 6).view(1, 1, 5, 1, 1) + 3
    out = adain_latents(lat)
    assert torch.equal(out[:, :, 0], lat[:, :, 0])
    torch.testing.assert_close(out.mean((-2, -1)), lat[:, :, :1].mean((-2, -1)).expand(-1, -1, 5))
    torch.testing.assert_close(out.std((-2, -1)), lat[:, :, :1].std((-2, -1)).expand(-1, -1, 5), rtol=1e-4,
                               atol=1e-4)


def test_histogram_matching_maps_colours_onto_frame0():
    rng = np.random.default_rng(0)
    ref = rng.integers(0, 128, (1, 16, 16, 3), dtype=np.uint8)
    bright = np.clip(ref.astype(int) + 100, 0, 255).astype(np.uint8)
    out = match_histograms(np.concatenate([ref, bright]))
    assert np.array_equal(out[0], ref[0])
    assert abs(out[1].mean() - ref.mean()) < 2 < abs(bright.mean() - ref.mean())
