"""The README's Python snippet runs as written (end to end on a small model)."""
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def snippet(name: str) -> str:
    text = README.read_text()
    block = re.search(rf"<!-- snippet:{name} -->\s*```python\n(.*?)```\s*<!-- /snippet:{name} -->", text, re.S)
    assert block, f"README has no snippet {name!r}"
    return block.group(1)


def test_model_snippet_runs(tmp_path):
    code = snippet("model").replace("/tmp/", f"{tmp_path}/")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "5 (1, 8, 32, 48, 3)"
    assert (tmp_path / "lamp-rain.safetensors").stat().st_size > 0


def test_setup_stops_early_with_a_clear_message_when_the_disk_is_too_small(tmp_path):
    """`make run` / `make test` install a ~7 GB venv: on a nearly full disk, say so before pip starts."""
    venv = tmp_path / "venv"
    out = subprocess.run(["make", "setup", f"VENV={venv}", "SETUP_MIN_FREE_GB=1000000"],
                         cwd=README.parent, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "GB free on the disk of" in out.stderr and "SETUP_MIN_FREE_GB=0" in out.stderr, out.stderr
    assert not venv.exists(), "nothing may be installed when the check fails"


FIGURES = README.parent / "scripts" / "readme_figures.py"


def figures(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(FIGURES), *args], capture_output=True, text=True, timeout=60)


def test_readme_figure_table_matches_its_sources():
    """The README's figures are generated from reports/ and benchmarks/results/, never a drifting copy."""
    out = figures("--check")
    assert out.returncode == 0, out.stderr


def _copy_sources(dst: Path) -> None:
    import shutil
    for rel in ["README.md", "reports/metrics.json", "reports/run_time.json", "reports/examples/index.csv",
                "reports/baselines/metrics.json", "reports/baselines/run_time.json"]:
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(README.parent / rel, dst / rel)
    shutil.copytree(README.parent / "benchmarks" / "results", dst / "benchmarks" / "results")


def test_a_changed_source_value_makes_the_check_fail_and_a_rewrite_fixes_it(tmp_path):
    import json
    _copy_sources(tmp_path)
    assert figures("--check", "--root", str(tmp_path)).returncode == 0
    metrics = tmp_path / "reports" / "metrics.json"
    data = json.loads(metrics.read_text())
    data["overall"]["motion_accuracy"] = 0.9
    metrics.write_text(json.dumps(data))

    out = figures("--check", "--root", str(tmp_path))
    assert out.returncode == 1
    assert "the main job" in out.stderr and "what it reaches" in out.stderr and "90.0 %" in out.stderr, out.stderr
    assert "default over 3 tuning seeds" not in out.stderr, "only the changed figure is named"

    assert figures("--root", str(tmp_path)).returncode == 0
    assert "motion accuracy **90.0 %**" in (tmp_path / "README.md").read_text()
    assert figures("--check", "--root", str(tmp_path)).returncode == 0


BASELINE_SEEDS = "benchmarks/results/baselines_seeds.json"  # scripts/readme_figures.py's source, when present


def test_a_changed_baseline_score_makes_the_check_fail_and_a_rewrite_fixes_it(tmp_path):
    """The baselines table's source is the seeds result when there is one, else reports/baselines/metrics.json."""
    import json
    _copy_sources(tmp_path)
    seeds = tmp_path / BASELINE_SEEDS
    path = seeds if seeds.is_file() else tmp_path / "reports" / "baselines" / "metrics.json"
    data = json.loads(path.read_text())
    data["methods"]["animatediff"]["motion_accuracy"] = 0.75
    path.write_text(json.dumps(data))
    out = figures("--check", "--root", str(tmp_path))
    assert out.returncode == 1 and "baselines table" in out.stderr, out.stderr
    assert figures("--root", str(tmp_path)).returncode == 0
    assert "| AnimateDiff | " in (readme := (tmp_path / "README.md").read_text()) and "**75.0 %" in readme
    assert figures("--check", "--root", str(tmp_path)).returncode == 0


def test_without_a_seeds_result_the_baselines_table_is_make_baselines_own(tmp_path):
    import json
    _copy_sources(tmp_path)
    (tmp_path / BASELINE_SEEDS).unlink(missing_ok=True)
    assert figures("--root", str(tmp_path)).returncode == 0
    block = (tmp_path / "README.md").read_text().split("<!-- baselines:start -->")[1].split("<!-- baselines:end -->")[0]
    metrics = json.loads((tmp_path / "reports/baselines/metrics.json").read_text())
    lamp = metrics["methods"]["lamp"]["motion_accuracy"]
    assert block.startswith("\n`make baselines` after `make run`") and f"{100 * lamp:.1f} %" in block
    assert figures("--check", "--root", str(tmp_path)).returncode == 0


def test_a_changed_benchmark_result_makes_the_check_fail(tmp_path):
    import json
    _copy_sources(tmp_path)
    path = tmp_path / "benchmarks" / "results" / "make_run_seeds_world_16x24_cpu.json"
    data = json.loads(path.read_text())
    data["runs"][0]["test_motion_accuracy"] = 1.0
    path.write_text(json.dumps(data))
    out = figures("--check", "--root", str(tmp_path))
    assert out.returncode == 1
    assert "configs/world_16x24.yaml" in out.stderr, out.stderr


def test_a_changed_lever_result_makes_the_check_fail_and_a_rewrite_fixes_it(tmp_path):
    """The accuracy-vs-minutes table is benchmarks.world_levers' result, with the row its rule chose."""
    import json
    _copy_sources(tmp_path)
    path = tmp_path / "benchmarks" / "results" / "world_levers_cpu.json"
    data = json.loads(path.read_text())
    data["rows"][0]["validation"] = 0.99
    path.write_text(json.dumps(data))
    out = figures("--check", "--root", str(tmp_path))
    assert out.returncode == 1 and "levers table" in out.stderr, out.stderr
    assert figures("--root", str(tmp_path)).returncode == 0
    block = (tmp_path / "README.md").read_text().split("<!-- levers:start -->")[1].split("<!-- levers:end -->")[0]
    assert "| 99.0 % |" in block and f"**{data['chosen']['lever']}, " in block
    assert figures("--check", "--root", str(tmp_path)).returncode == 0
