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
