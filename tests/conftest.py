"""Test-wide settings: never reach for a hub, keep CPU threads fixed."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")

import torch  # noqa: E402

# Under pytest-xdist (`make test`: one worker per core) each worker and every stage it starts uses
# one thread: two workers at 2 threads each on 2 cores oversubscribe and slow each other down ~4x.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
else:
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


import pytest  # noqa: E402


@pytest.fixture
def assert_same_motion():
    """Assert two motion.safetensors files hold the same weights and metadata.

    Compares tensors, not bytes: safetensors' header order differs between two saves of the same weights.
    """
    from lamp_model.unet import read_motion_file

    def check(path_a, path_b):
        (a, meta_a), (b, meta_b) = read_motion_file(path_a), read_motion_file(path_b)
        assert meta_a == meta_b, (path_a, path_b)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), (path_a, path_b)

    return check


# The longest test files (end-to-end runs of the pipeline, ~2-8 min each on 2 cores) first: with
# `--dist loadfile` pytest-xdist hands out files in collection order, and a long file started last
# leaves the other worker idle at the end.
LONGEST_FIRST = ("test_orchestration.py", "test_world_learning.py", "test_real_path.py", "test_baselines.py",
                 "test_cli.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: order within a file kept
