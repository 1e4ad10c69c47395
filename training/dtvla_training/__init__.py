"""DeepThinkVLA training: CoT datasets in the LeRobot v2.1 layout, SFT, and GRPO against the LIBERO simulator.

Real code comes later; this package exists so `make setup` installs it next to dtvla_policy.
"""
