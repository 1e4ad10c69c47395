"""Scripted demonstrations: `dtvla-collect-demos` (collect.py) turns the privileged-state expert into a dataset."""
