"""The model package imports without the video packages; video I/O then fails with one clear line."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Runs in a fresh interpreter in which the named modules cannot be imported, as on a machine
# where they are not installed; prints what importing the package and calling video I/O gave.
PROBE = textwrap.dedent("""
    import importlib, json, sys

    BLOCKED = set(sys.argv[1].split(","))

    class Block:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"No module named {name!r}")

    sys.meta_path.insert(0, Block())
    for name in ("lamp_model", "lamp_model.unet", "lamp_model.pipeline", "lamp_model.training",
                 "lamp_model.editing", "lamp_model.first_frame", "lamp_model.animate", "lamp_model.video"):
        importlib.import_module(name)
    import lamp_model
    lamp_model.LampUNet  # the lazily imported UNet

    import numpy as np
    from lamp_model import video
    video.fit_frames(np.zeros((2, 8, 8, 3), np.uint8), 4, 4)  # no video package needed
    leaked = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    calls = {"write_mp4": lambda: video.write_mp4(np.zeros((2, 8, 8, 3), np.uint8), sys.argv[2]),
             "read_video": lambda: video.read_video(sys.argv[2])}
    errors = {}
    for name, call in calls.items():
        try:
            call()
            errors[name] = None
        except Exception as e:
            errors[name] = {"type": type(e).__name__, "message": str(e),
                            "is_video_error": isinstance(e, video.VideoError),
                            "chained": e.__cause__ is not None or not e.__suppress_context__}
    print(json.dumps({"leaked": leaked, "errors": errors}))
""")


def run_without(blocked: list[str], tmp_path) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", PROBE, ",".join(blocked), str(tmp_path / "a.mp4")],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("blocked, packages", [
    (["ffmpeg", "imageio_ffmpeg"], ["ffmpeg-python", "imageio-ffmpeg"]),
    (["ffmpeg"], ["ffmpeg-python"]),
    (["imageio_ffmpeg"], ["imageio-ffmpeg"]),
])
def test_model_package_imports_without_video_packages_and_io_names_what_to_install(tmp_path, blocked, packages):
    result = run_without(blocked, tmp_path)
    assert result["leaked"] == []
    for call, err in result["errors"].items():
        assert err is not None, f"{call} worked without {blocked}"
        assert err["type"] == "VideoBackendMissing" and err["is_video_error"]
        assert "\n" not in err["message"].strip()
        assert f"pip install {' '.join(packages)}" in err["message"]
        for package in {"ffmpeg-python", "imageio-ffmpeg"} - set(packages):
            assert package not in err["message"]
        assert not err["chained"]  # no traceback from inside the import machinery
    assert not (tmp_path / "a.mp4").exists()


def test_video_io_works_when_the_packages_are_there(tmp_path):
    import numpy as np

    from lamp_model import video

    frames = np.random.default_rng(0).integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    video.write_mp4(frames, tmp_path / "a.mp4")
    assert video.read_video(tmp_path / "a.mp4")[0].shape == (3, 16, 16, 3)
    assert Path(video.FFMPEG).name.startswith("ffmpeg") and video.FFMPEG == video.ffmpeg_exe()
