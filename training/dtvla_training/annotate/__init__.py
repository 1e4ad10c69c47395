"""The CoT data engine (`dtvla-annotate`): robot demonstrations in, reasoning-annotated LeRobot v2.1 data out.

Upstream describes this engine (README Fig. 1: key frames from gripper changes, a VLM annotates them, the rest is
filled in, then schema and temporal checks) but never released it (OpenBMB/DeepThinkVLA issue #5). Modules, in the
order the pipeline uses them: `episode_data` (read), `key_frames` (segment), `annotator` / `privileged` / `vlm` /
`propagate` (describe), `checks` (validate), `report` (account), `dataset_writer` (write), `pipeline` and `cli`.
"""
