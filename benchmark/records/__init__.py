"""The run directory: trial records, checkpoints installed, the lock (stage 4)."""
