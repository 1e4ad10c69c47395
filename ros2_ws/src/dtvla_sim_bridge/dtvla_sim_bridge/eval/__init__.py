"""LIBERO evaluation harness (`dtvla-eval`): the DeepThinkVLA protocol over many parallel episodes, resumable.

Mirrors DeepThinkVLA `src/experiments/run_libero_eval.py`. Worker processes each own one `LiberoSim` (one render
context per process); the main process owns the policy and batches the workers' observations. Importing this
package needs neither torch nor ROS: the engine is imported only when an evaluation starts.
"""
