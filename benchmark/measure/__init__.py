"""Measurements that print figures: parity with Hugging Face Trainer, throughput, overhead. Never timed tests."""
