"""Merge a params overlay (e.g. configs/real.yaml) into params.yaml, keeping its comments.

    python scripts/merge_params.py configs/real.yaml [--params params.yaml]

The result is validated like every params.yaml (lamp_model.config.load_params) before it
is written, so a typo in the overlay stops here with the field name, not mid-pipeline.
"""
from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

from ruamel.yaml import YAML

from lamp_model.config import ParamsError, load_params
from lamp_model.io import atomic_write


def merge(base, overlay) -> None:
    """Overlay mappings key by key (in place); any other value replaces the old one."""
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge(base[key], value)
        else:
            base[key] = value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overlay", type=Path)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)
    yaml = YAML()
    yaml.width = 4096  # keep long lines (the motions list) as they are
    yaml.preserve_quotes = True  # "no" stays a string for YAML 1.1 readers (unquoted, PyYAML reads False)
    # an unset value stays a written `null` (ruamel would write nothing after the colon)
    yaml.representer.add_representer(type(None), lambda r, _: r.represent_scalar("tag:yaml.org,2002:null", "null"))
    for path in (args.overlay, args.params):
        if not path.is_file():
            print(f"error: {path}: not found", file=sys.stderr)
            return 1
    params = yaml.load(args.params.read_text())
    merge(params, yaml.load(args.overlay.read_text()) or {})
    text = io.StringIO()
    yaml.dump(params, text)
    with atomic_write(args.params) as tmp:
        tmp.write_text(text.getvalue())
        try:
            load_params(tmp)
        except ParamsError as e:
            print(f"error: merging {args.overlay} gives an invalid params file, nothing written:\n{e}",
                  file=sys.stderr)
            raise SystemExit(1) from None  # leaves atomic_write before it replaces params.yaml
    print(f"merged {args.overlay} into {args.params}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
