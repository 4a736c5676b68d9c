"""FLOP counting of LAMP vs the plain 2D UNet (benchmarks/flops.py) and the MFU helper."""
import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from benchmarks.flops import count_config, dense_bf16_peak_tflops, mfu

SHAPE = dict(frames=3, height=64, width=64)  # latents 3 x 8 x 8 of the small config


@pytest.fixture(scope="module")
def counted():
    return count_config("small", **SHAPE)


def test_counts_are_positive_deterministic_and_lamp_costs_more(counted):
    again = count_config("small", **SHAPE)
    for step in ("train_step", "sampling_step_cfg"):
        assert counted["plain"][step] > 0
        assert counted["lamp"][step] > counted["plain"][step]
        assert again["lamp"][step] == counted["lamp"][step] and again["plain"][step] == counted["plain"][step]
    # a training step is a forward + a backward; a sampling step is a forward of 2 videos
    assert counted["lamp"]["train_step"] > counted["lamp"]["sampling_step_cfg"] / 2
    assert any("conv" in op for op in counted["lamp"]["train_per_op"])


def test_attention_flops_are_counted(counted):
    """On meta, SDPA decomposes into matmuls the counter sees (on CPU its fused kernel counts 0)."""
    ops = counted["lamp"]["sampling_per_op"]
    assert ops.get("aten.bmm", 0) > 0


def test_meta_count_equals_a_real_cpu_run_with_math_attention(counted):
    """The shapes-only count is what real tensors give (math attention: the counter sees its matmuls)."""
    with sdpa_kernel(SDPBackend.MATH):
        real = count_config("small", **SHAPE, device="cpu")
    for model in ("lamp", "plain"):
        for step in ("train_step", "sampling_step_cfg"):
            assert real[model][step] == counted[model][step]


def test_plain_cost_is_per_frame_and_lamp_is_not(counted):
    """The plain UNet costs the same per frame; LAMP does not (K/V of frame 0 only, attention over frames)."""
    longer = count_config("small", frames=6, height=64, width=64)
    assert longer["plain"]["sampling_step_cfg"] == 2 * counted["plain"]["sampling_step_cfg"]
    assert longer["lamp"]["sampling_step_cfg"] != 2 * counted["lamp"]["sampling_step_cfg"]
    assert longer["lamp"]["sampling_step_cfg"] > counted["lamp"]["sampling_step_cfg"]


@pytest.mark.parametrize("name, peak", [("NVIDIA H100 80GB HBM3", 989), ("NVIDIA H100 PCIe", 756),
                                        ("NVIDIA H200", 989), ("NVIDIA A100-SXM4-80GB", 312),
                                        ("NVIDIA GeForce RTX 3090", None)])
def test_dense_bf16_peaks(name, peak):
    assert dense_bf16_peak_tflops(name) == peak


def test_mfu_is_flops_over_time_over_peak():
    assert mfu(989e12, 2.0, "NVIDIA H100 80GB HBM3") == pytest.approx(0.5)
    assert mfu(756e12, 1.0, "NVIDIA H100 PCIe") == pytest.approx(1.0)
    assert mfu(1e12, 1.0, "a CPU") is None
