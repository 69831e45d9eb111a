"""One trial's training: the single- and multi-task loops, DeepSpeed engine, model, batches (stage 3)."""
