"""GRPO of DeepThinkVLA against LIBERO on the DeepSpeed engine: rollouts, rewards, the clipped loss, the loop."""
