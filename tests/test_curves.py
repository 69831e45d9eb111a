"""Training curves: TensorBoard event files, read back with a minimal TFRecord reader and TensorBoard's protobuf."""

import struct
from pathlib import Path

from benchmark.train.hyperparams import TrainingConfig
from benchmark.train.local import run_local_trial
from benchmark.train.modeling import load_tokenizer
from tasks.encoding import encode_task
from tasks.glue import GLUE_TASKS


def read_scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """tag -> [(step, value)] from every event file in `folder` (TFRecord: length, crc, event, crc)."""
    from tensorboardX.proto.event_pb2 import Event

    scalars: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(folder.glob("events.out.tfevents.*")):
        data = path.read_bytes()
        at = 0
        while at < len(data):
            (length,) = struct.unpack("<Q", data[at : at + 8])
            event = Event.FromString(data[at + 12 : at + 12 + length])
            at += 12 + length + 4
            for value in event.summary.value:
                scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return scalars


def test_a_local_trial_writes_loss_learning_rate_and_dev_metrics_per_step(tiny_model, glue_dir, cache_dir, tmp_path):
    rte = encode_task(GLUE_TASKS["rte"], load_tokenizer(str(tiny_model)), 64, glue_dir, cache_dir, 64, 32)
    hp = TrainingConfig(epochs=2, batch_size=16, learning_rate=1e-3, eval_batch_size=32, zero_stage=0)
    result = run_local_trial(hp, str(tiny_model), 1, rte, tmp_path, log=lambda *_: None, log_every_steps=3)
    scalars = read_scalars(tmp_path / "tensorboard" / "rte")
    # 4 optimizer steps per epoch: a point every 3 steps and at each evaluation (steps 4 and 8).
    assert [s for s, _ in scalars["train/loss"]] == [3, 4, 6, 8]
    assert [s for s, _ in scalars["train/learning_rate"]] == [3, 4, 6, 8]
    assert scalars["train/learning_rate"][-1][1] == 0.0
    assert [s for s, _ in scalars["dev/accuracy"]] == [4, 8]
    assert [v for _, v in scalars["dev/score"]] == [float(e["score"]) for e in result.epochs] or [
        round(v, 3) for _, v in scalars["dev/score"]
    ] == [round(e["score"], 3) for e in result.epochs]
    assert all(v > 0 for _, v in scalars["train/loss"])
    assert [v for _, v in scalars["train/trainable_parameters"]] == [result.epochs[0]["trainable_parameters"]] * 2
