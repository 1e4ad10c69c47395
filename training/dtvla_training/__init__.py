"""DeepThinkVLA training: CoT datasets in the LeRobot v2.1 layout (`data`), supervised fine-tuning with DeepSpeed
(`sft`). Checkpoints are written in the layout `dtvla_policy.model.checkpoint` loads."""
