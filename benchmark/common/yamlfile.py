"""A YAML file from the user or a run directory: read with the safe loader, every failure one line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from benchmark.common.errors import InputError


def read_yaml(path: Path, what: str = "suite") -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(str(path), f"{what} file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(str(path), f"cannot read {what} file: {e}") from None
    try:
        return yaml.safe_load(text)  # safe loader only: no tags that build Python objects
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise InputError(str(path), f"invalid YAML{at}: {problem}") from None
    except RecursionError:
        raise InputError(str(path), "invalid YAML: nested too deeply") from None
