"""Supervised fine-tuning of DeepThinkVLA with DeepSpeed: collation, config, objective, loop, checkpoints."""
