import numpy as np

import tasks.encoding as encoding
from benchmark.train.modeling import load_tokenizer
from tasks.glue import GLUE_TASKS


def test_tokenisation_is_cached_across_calls(tiny_model, glue_dir, cache_dir, monkeypatch):
    tokenizer = load_tokenizer(str(tiny_model))
    task = GLUE_TASKS["rte"]
    first = encoding.encode_task(task, tokenizer, 64, glue_dir, cache_dir, 50, 20)
    assert len(first.train) == 50 and len(first.splits["validation"]) == 20
    assert first.train.lengths.max() <= 64 and first.train.type_ids is not None

    def must_not_tokenise(*args, **kwargs):
        raise AssertionError("tokenised again although the cache holds this task")

    monkeypatch.setattr(encoding, "encode_split", must_not_tokenise)
    second = encoding.encode_task(task, tokenizer, 64, glue_dir, cache_dir, 50, 20)
    assert second.cache_key == first.cache_key
    for split in first.splits:
        np.testing.assert_array_equal(second.splits[split].ids, first.splits[split].ids)
        np.testing.assert_array_equal(second.splits[split].labels, first.splits[split].labels)


def test_cache_key_follows_what_shapes_the_tokens(tiny_model, glue_dir, cache_dir):
    tokenizer = load_tokenizer(str(tiny_model))
    task = GLUE_TASKS["rte"]
    base = encoding.encode_task(task, tokenizer, 64, glue_dir, cache_dir, 50, 20)
    assert encoding.encode_task(task, tokenizer, 32, glue_dir, cache_dir, 50, 20).cache_key != base.cache_key
    assert encoding.encode_task(task, tokenizer, 64, glue_dir, cache_dir, 60, 20).cache_key != base.cache_key


def test_encoded_example_matches_the_tokenizer(tiny_model, glue_dir, cache_dir):
    tokenizer = load_tokenizer(str(tiny_model))
    task = GLUE_TASKS["mrpc"]
    data = encoding.encode_task(task, tokenizer, 128, glue_dir, cache_dir, None, 10)
    from tasks.loading import load_split

    dev = load_split(task, "validation", glue_dir, cache_dir, 10)
    ids, types = data.splits["validation"].example(3)
    expected = tokenizer(dev[3]["sentence1"], dev[3]["sentence2"], truncation=True, max_length=128)
    assert ids.tolist() == expected["input_ids"] and types.tolist() == expected["token_type_ids"]
    assert data.splits["validation"].labels[3] == dev[3]["label"]


def test_a_stamped_encoding_is_found_again_without_reading_the_data_and_a_changed_file_misses(
    tiny_model, glue_dir, cache_dir, tmp_path, monkeypatch
):
    import shutil

    local = tmp_path / "glue"
    shutil.copytree(glue_dir / "RTE", local / "RTE")
    task, tokenizer = GLUE_TASKS["rte"], load_tokenizer(str(tiny_model))
    stamp = encoding.source_stamp(task, str(tiny_model), 64, local, 50, 20)
    assert encoding.cached_task(task, stamp, cache_dir) is None
    first = encoding.encode_task(task, tokenizer, 64, local, cache_dir, 50, 20, stamp=stamp)

    monkeypatch.setattr(encoding, "load_split", lambda *a, **k: (_ for _ in ()).throw(AssertionError("read")))
    found = encoding.cached_task(task, stamp, cache_dir)
    assert found.cache_key == first.cache_key
    np.testing.assert_array_equal(found.train.ids, first.train.ids)
    np.testing.assert_array_equal(found.splits["validation"].labels, first.splits["validation"].labels)

    # Other settings, another tokenizer folder, or an edited data file: another stamp, so a fresh encoding.
    assert encoding.source_stamp(task, str(tiny_model), 32, local, 50, 20) != stamp
    assert encoding.source_stamp(task, str(tiny_model), 64, local, 50, 20, sample_seed=1) != stamp
    with open(local / "RTE" / "train.tsv", "a") as f:
        f.write("99999\tA new premise.\tA new hypothesis.\tentailment\n")
    changed = encoding.source_stamp(task, str(tiny_model), 64, local, 50, 20)
    assert changed != stamp and encoding.cached_task(task, changed, cache_dir) is None
    # A task read from the hub, or a tokenizer named by a hub id, has no cheap identity: no stamp.
    assert encoding.source_stamp(task, str(tiny_model), 64, None, 50, 20) is None
    assert encoding.source_stamp(task, "bert-base-uncased", 64, local, 50, 20) is None
