"""bench: a benchmark suite for fine-tuning BERT-family encoders."""

__version__ = "0.1.0"
