"""Pipeline stages. Each `tasks.<stage>` module has a plain `run(...)` function (what DVC and
Prefect both call), and `python -m tasks.<stage>` is its DVC entry point. See tasks/common.py."""
