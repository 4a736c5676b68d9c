"""CLIP metrics: hand-computed values, the small scorer, offline errors, contrastive training."""
import math
import time

import huggingface_hub.constants
import numpy as np
import open_clip
import pytest
import torch

from lamp_model.errors import ModelUnavailableError
from lamp_model.metrics import (ClipScorer, alignment, consistency, diversity, retrieval_accuracy,
                                train_contrastive)

E = np.eye(4)


def test_identical_frames_are_fully_consistent():
    frames = np.tile([[1.0, 2.0, 3.0, 0.0]], (5, 1))
    assert consistency(frames) == pytest.approx(100)
    assert alignment(frames, frames[0] * 7) == pytest.approx(100)  # scale does not matter


def test_orthogonal_embeddings_score_zero():
    assert consistency(E[:3]) == pytest.approx(0)
    assert alignment(E[:3], E[3]) == pytest.approx(0)


def test_hand_computed_values():
    # frames e0, e0, e1: pairs (0,1)=1, (0,2)=0, (1,2)=0 -> 100/3; alignment with e0: (1+1+0)/3
    frames = torch.tensor(E[[0, 0, 1]], dtype=torch.float32)
    assert consistency(frames) == pytest.approx(100 / 3)
    assert alignment(frames, E[0]) == pytest.approx(200 / 3)


def test_diversity_identical_videos_is_100():
    video = np.tile(E[0] * 3, (4, 1))
    assert diversity([video, video, video]) == pytest.approx(100)


def test_diversity_two_videos_hand_computed():
    # video a: frames e0, e1 -> mean (0.5, 0.5, 0, 0) (not renormalised)
    # video b: frames e0, e0 (scaled; normalised first) -> mean (1, 0, 0, 0)
    a = E[[0, 1]]
    b = np.stack([E[0] * 2, E[0] * 5])
    assert diversity([a, b]) == pytest.approx(50)
    # three videos: pairs (a,b)=0.5, (a,c)=0.5, (b,c)=0 -> mean 1/3
    c = E[[2, 2]]
    assert diversity([a, b, E[[1, 1]]]) == pytest.approx(100 * (0.5 + 0.5 + 0) / 3)
    assert diversity([a, c]) == pytest.approx(0)


def test_edge_cases_raise_clear_errors():
    with pytest.raises(ValueError, match="at least 2 frames"):
        consistency(E[:1])
    with pytest.raises(ValueError, match="at least 2 videos"):
        diversity([E[:2]])
    with pytest.raises(ValueError, match="embedding sizes differ"):
        alignment(E[:2], np.ones(3))


@pytest.fixture(scope="module")
def scorer():
    return ClipScorer.small(seed=0)


def _frames(n=6, h=48, w=80, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def test_small_scorer_embeddings_are_normalised(scorer):
    embs = scorer.image_embeddings(_frames(), batch_size=4)  # non-square frames, 2 batches
    assert embs.shape == (6, 64)
    assert torch.allclose(embs.norm(dim=1), torch.ones(6), atol=1e-5)
    text = scorer.text_embeddings(["a red square", "a blue circle"])
    assert text.shape == (2, 64)
    assert torch.allclose(text.norm(dim=1), torch.ones(2), atol=1e-5)


def test_save_pretrained_round_trip(scorer, tmp_path):
    scorer.save_pretrained(tmp_path)
    loaded = ClipScorer.from_pretrained(tmp_path)
    frames, prompts = _frames(), ["a red square moving left", "x"]
    assert torch.equal(loaded.image_embeddings(frames), scorer.image_embeddings(frames))
    assert torch.equal(loaded.text_embeddings(prompts), scorer.text_embeddings(prompts))
    # The folder is also open_clip's own local-folder format.
    model = open_clip.create_model(f"local-dir:{tmp_path}").eval()
    with torch.no_grad():
        pixels = scorer.preprocess(frames)
        assert torch.allclose(model.encode_image(pixels, normalize=True), scorer.image_embeddings(frames))


def test_from_pretrained_missing_folder(tmp_path):
    with pytest.raises(ModelUnavailableError, match="missing open_clip_config.json"):
        ClipScorer.from_pretrained(tmp_path)


def test_real_clip_offline_fails_fast_with_advice(monkeypatch, tmp_path):
    # Empty hub cache + offline mode: whatever this machine has cached or can reach.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    start = time.perf_counter()
    with pytest.raises(ModelUnavailableError) as info:
        ClipScorer.from_open_clip("ViT-L-14", "openai")
    assert time.perf_counter() - start < 5
    message = str(info.value)
    for needed in ("ViT-L-14/openai", "network", "HF_HUB_OFFLINE", "ClipScorer.small", "Cause:"):
        assert needed in message
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_uncached_open_clip_repo_offline_is_one_clear_line(monkeypatch, tmp_path):
    """An hf-hub: repo (config + weights inside, like the ViT-L-14 'openai' repo) not in the cache."""
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ModelUnavailableError) as info:
        ClipScorer.from_open_clip("hf-hub:timm/vit_large_patch14_clip_224.openai")
    message = str(info.value)
    assert "\n" not in message and "hf-hub:timm/vit_large_patch14_clip_224.openai" in message
    assert "HF_HUB_OFFLINE" in message and "Cause:" in message
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_open_clip_folder_loads_by_local_dir(tmp_path):
    """A folder in open_clip's own layout (as its hub repos are) loads by local-dir: with no pretrained tag,
    and embeds exactly like the scorer that wrote it."""
    small = ClipScorer.small(embed_dim=32, image_size=32, seed=3)
    small.save_pretrained(tmp_path)
    loaded = ClipScorer.from_open_clip(f"local-dir:{tmp_path}")
    frames = _frames()
    assert torch.allclose(loaded.image_embeddings(frames), small.image_embeddings(frames), atol=1e-6)
    assert torch.allclose(loaded.text_embeddings(["a red star"]), small.text_embeddings(["a red star"]), atol=1e-6)


def test_unknown_tag_is_reported():
    with pytest.raises(ModelUnavailableError, match="neither an open_clip tag"):
        ClipScorer.from_open_clip("ViT-L-14", "no-such-tag")


def test_long_prompt_warns_and_still_scores(scorer):
    prompt = "a very long prompt " + " ".join(["word"] * 100)
    with pytest.warns(UserWarning, match="truncated: 'a very long prompt"):
        scores = scorer.score_video(_frames(), prompt)
    assert set(scores) == {"alignment", "consistency"}
    assert all(math.isfinite(v) for v in scores.values())


def test_score_set_reports_both_diversities(scorer):
    videos = [(_frames(seed=s), f"prompt {s % 2}", "zoom" if s < 3 else "pan") for s in range(5)]
    videos.append((_frames(seed=9), "lonely", "rotate"))
    rows, per_motion, overall = scorer.score_set(videos)
    assert [r["index"] for r in rows] == list(range(6))
    assert rows[0]["alignment"] == pytest.approx(scorer.score_video(*videos[0][:2])["alignment"], abs=1e-4)
    assert per_motion["zoom"]["n_videos"] == 3 and per_motion["pan"]["n_videos"] == 2
    assert math.isnan(per_motion["rotate"]["diversity"])  # one video: no pair
    embs = [scorer.image_embeddings(v[0]) for v in videos]
    assert per_motion["zoom"]["diversity"] == pytest.approx(diversity(embs[:3]), abs=1e-4)
    assert overall["diversity_all_videos"] == pytest.approx(diversity(embs), abs=1e-4)
    expected = (per_motion["zoom"]["diversity"] + per_motion["pan"]["diversity"]) / 2
    assert overall["diversity_mean_per_motion"] == pytest.approx(expected)


COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220), "yellow": (230, 220, 30)}


def _squares(n, seed):
    """Coloured squares of random size and place on grey, captioned by colour."""
    rng = np.random.default_rng(seed)
    images = np.full((n, 64, 64, 3), 128, np.uint8)
    captions = []
    for k in range(n):
        colour = list(COLOURS)[k % len(COLOURS)]
        size = rng.integers(16, 40)
        y, x = rng.integers(0, 64 - size, 2)
        images[k, y:y + size, x:x + size] = COLOURS[colour]
        captions.append(f"a {colour} square")
    return images, captions


@pytest.fixture
def one_thread():
    """These matrices are tiny: a second thread gains nothing and, on shared cores, costs several x."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_contrastive_training_learns_captions(one_thread):
    scorer = ClipScorer.small(seed=0)
    images, captions = _squares(128, seed=0)
    held_out, held_out_captions = _squares(64, seed=1)
    before = retrieval_accuracy(scorer, held_out, held_out_captions)
    losses = train_contrastive(scorer, images, captions, steps=60, lr=2e-3, batch_size=32, seed=0)
    assert len(losses) == 60
    assert np.mean(losses[-10:]) < np.mean(losses[:10]) - 0.5
    after = retrieval_accuracy(scorer, held_out, held_out_captions)
    assert before < 0.5 and after >= 0.8, (before, after)
    assert not scorer.model.training
