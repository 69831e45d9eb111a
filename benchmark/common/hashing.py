"""Canonical JSON and the short hashes made of it: trial fingerprints, data keys, saved ensembles' state."""

from __future__ import annotations

import hashlib
import json


def canonical(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def fingerprint(content) -> str:
    return hashlib.sha256(canonical(content).encode()).hexdigest()[:16]
