import numpy as np
import pytest

from benchmark.train.batching import collate, global_batches, rank_micro_batches
from tasks.encoding import EncodedSplit


def _lengths(n=1000, seed=0):
    return np.random.default_rng(seed).integers(5, 128, n)


@pytest.mark.parametrize("group", [True, False])
def test_an_epoch_sees_every_example_once(group):
    lengths = _lengths()
    batches = global_batches(lengths, 32, seed=1, epoch=0, group_by_length=group)
    seen = np.concatenate(batches)
    assert sorted(seen.tolist()) == list(range(len(lengths)))
    sizes = sorted(len(b) for b in batches)
    assert sizes[1:] == [32] * (len(batches) - 1) and sizes[0] == len(lengths) % 32


def test_schedule_is_deterministic_per_seed_and_epoch():
    lengths = _lengths()
    a = global_batches(lengths, 32, 1, 0, True)
    assert all((x == y).all() for x, y in zip(a, global_batches(lengths, 32, 1, 0, True)))
    assert any((x != y).any() for x, y in zip(a, global_batches(lengths, 32, 1, 1, True)))
    assert any((x != y).any() for x, y in zip(a, global_batches(lengths, 32, 2, 0, True)))


def test_length_grouping_cuts_padding():
    lengths = _lengths(5000)

    def padded(batches):
        return sum(len(b) * lengths[b].max() for b in batches)

    grouped = padded(global_batches(lengths, 32, 1, 0, True))
    random = padded(global_batches(lengths, 32, 1, 0, False))
    assert grouped < 0.75 * random
    first = global_batches(lengths, 32, 1, 0, True)[0]
    assert lengths[first].max() == lengths.max()  # the longest batch comes first, so memory fails fast


def test_a_batch_too_small_to_share_is_dropped():
    batches = global_batches(np.full(65, 10), 32, 1, 0, False, min_size=4)
    assert [len(b) for b in batches] == [32, 32]


def test_ranks_and_accumulation_steps_partition_a_global_batch():
    lengths = _lengths(64)
    batch = np.arange(32)
    parts = [rank_micro_batches(batch, lengths, r, world_size=2, accumulation=2) for r in range(2)]
    flat = np.concatenate([m for rank in parts for m in rank])
    assert sorted(flat.tolist()) == list(range(32))
    assert all(len(m) == 8 for rank in parts for m in rank)
    assert all(len(rank) == 2 for rank in parts)


def test_collate_pads_dynamically():
    split = EncodedSplit(
        ids=np.array([5, 6, 7, 8, 9, 10], np.int32),
        offsets=np.array([0, 2, 6]),
        labels=np.array([0, 1]),
        type_ids=np.array([0, 1, 0, 0, 1, 1], np.int8),
    )
    batch = collate(split, np.array([1, 0]), pad_id=0)
    assert batch["input_ids"].tolist() == [[7, 8, 9, 10], [5, 6, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    assert batch["token_type_ids"].tolist() == [[0, 0, 1, 1], [0, 1, 0, 0]]
    assert collate(split, np.array([0]), 0, pad_to_multiple_of=8)["input_ids"].shape == (1, 8)
