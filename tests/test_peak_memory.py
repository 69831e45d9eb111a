"""A trial's peak memory is its own: a reused Tune actor's earlier trials do not count (steps.reset_peak_memory)."""

import sys

import numpy as np
import pytest
import torch

from benchmark.train.steps import peak_memory_mb, reset_peak_memory


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the resident set's high-water mark is Linux's")
def test_the_peak_starts_afresh_at_each_trial():
    cpu = torch.device("cpu")
    reset_peak_memory()  # what earlier tests in this process held
    before = peak_memory_mb(cpu)
    block = np.ones(300 * 2**20, dtype=np.uint8)  # 300 MiB, touched: resident
    with_block = peak_memory_mb(cpu)
    del block
    reset_peak_memory()
    after = peak_memory_mb(cpu)
    assert with_block > before + 250 and after < with_block - 250, (before, with_block, after)
