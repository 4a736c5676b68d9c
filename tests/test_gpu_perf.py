"""benchmarks/gpu_perf.py runs end to end in --tiny mode on CPU, so the GPU script cannot rot unnoticed."""
import json

from benchmarks import gpu_perf


def test_tiny_run_writes_every_part(tmp_path):
    out = tmp_path / "perf.json"
    gpu_perf.main(["--tiny", "--device", "cpu", "--out", str(out)])
    r = json.loads(out.read_text())
    assert r["settings"]["tiny"] and r["machine"]["device"] == "cpu"
    assert r["flops"]["lamp"]["train_step"] > r["flops"]["plain"]["train_step"] > 0
    for key in ("lamp_bf16", "lamp_bf16_ckpt", "plain_bf16", "plain_bf16_ckpt",
                "lamp_sampling_step_cfg_bf16", "plain_sampling_step_cfg_bf16"):
        step = r["train"][key]
        assert step["flops"] > 0 and step.get("fwd_bwd_s", step.get("s")) > 0
        assert step["mfu"] is None  # no GPU peak for a CPU
    ratios = r["train"]["lamp_over_plain"]["lamp_bf16"]
    assert ratios["gap"] == ratios["time_ratio"] / ratios["flop_ratio"]
    for layer in ("tsm", "first_frame_attention"):
        assert r["layouts"][layer]["forward_backward"]["new_s"] > 0
    assert r["sdxl"]["s"] > 0 and r["sdxl"]["native_size"] == 128
    for dtype in ("float16", "bfloat16"):
        assert r["sample"][dtype]["s_per_video"] > 0
    assert r["edit"]["invert_s"] > 0 and r["edit"]["generate_s"] > 0
    compiled = r["compile"]
    assert compiled["backend"] == "aot_eager" and compiled["train_compiled_s"] > 0
    # bf16 autocast in both: the compiled blocks compute the same numbers up to bf16 rounding order
    assert compiled["rel_diff_grad"] < 0.05 and compiled["max_abs_diff_sample"] < 0.05
