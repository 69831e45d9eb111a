"""The suite's `tracking:` section: an MLflow URI and experiment, checked at validation (a local store that can
be written, or a server that answers)."""

from __future__ import annotations

import importlib.util
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

from benchmark.common.errors import InputError

SCHEMES = ("file", "sqlite", "http", "https")
REACH_TIMEOUT_S = 5


@dataclass
class TrackingConfig:
    mlflow_uri: str | None = None  # null: no tracking
    experiment: str | None = None  # null: the suite's name


@dataclass(frozen=True)
class TrackingSettings:
    mlflow_uri: str
    experiment: str


def check_tracking(config: TrackingConfig, suite_name: str) -> TrackingSettings | None:
    """At validation: mlflow installed, a URI of a known scheme, and a store that can be reached (a server answers;
    a local store's folder exists or can be made)."""
    if not config.mlflow_uri:
        if config.experiment:
            raise InputError("tracking.experiment", "needs tracking.mlflow_uri")
        return None
    uri = config.mlflow_uri
    if not _installed("mlflow"):
        raise InputError("tracking.mlflow_uri", 'MLflow is not installed; pip install -e ".[mlflow]"')
    scheme = urlparse(uri).scheme or "file"
    if scheme not in SCHEMES:
        raise InputError("tracking.mlflow_uri", f"scheme '{scheme}:' is not supported; use {', '.join(SCHEMES)}")
    if scheme == "sqlite" and not (_installed("sqlalchemy") and _installed("alembic")):
        # MLflow's client alone (mlflow-skinny) has no SQLAlchemy; without it the store fails at trial start.
        raise InputError("tracking.mlflow_uri", "an sqlite: store needs SQLAlchemy and Alembic; pip install mlflow")
    if scheme in ("http", "https"):
        _check_server(uri)
    else:
        _check_local(local_store_path(uri))
    return TrackingSettings(uri, config.experiment or suite_name)


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ValueError:  # a module in sys.modules without a spec
        return False


def local_store_path(uri: str) -> Path:
    """The folder (file:) or database file (sqlite:) a local URI names."""
    parsed = urlparse(uri)
    if parsed.scheme == "sqlite":  # sqlite:///relative.db, sqlite:////absolute.db
        return Path(uri.removeprefix("sqlite:///")).expanduser()
    if parsed.scheme == "file":
        return Path(url2pathname(parsed.path)).expanduser()
    return Path(uri).expanduser()


def _check_local(path: Path) -> None:
    existing = path if path.exists() else next((p for p in path.absolute().parents if p.exists()), None)
    if existing is None or (existing != path and not existing.is_dir()):
        raise InputError("tracking.mlflow_uri", f"cannot create {path}: {existing} is not a folder")
    if not os.access(existing, os.W_OK):
        raise InputError("tracking.mlflow_uri", f"cannot write to {existing}")


def _check_server(uri: str) -> None:
    """Any HTTP answer counts (even an error status): the server is there. No answer in time does not."""
    try:
        urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=REACH_TIMEOUT_S).close()
    except urllib.error.HTTPError:
        return
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise InputError("tracking.mlflow_uri", f"cannot reach {uri}: {reason}") from None
