"""Shared by every stage: errors, atomic writes, paths, hashing, YAML schemas, hardware."""
