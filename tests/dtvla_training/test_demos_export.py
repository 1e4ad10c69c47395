"""dtvla-export-checkpoint: a bf16 copy that the node's loader reads back, or nothing at all."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from dtvla_policy.model.checkpoint import load_checkpoint
from dtvla_training.demos.export import main


def test_export_casts_the_weights_and_loads(tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture
                                            ) -> None:
    note = tmp_path / "eval_summary.json"
    note.write_text('{"success_rate": 0.5}')
    out = tmp_path / "export"
    assert main([str(tiny_checkpoint), str(out), "--max-mb", "100", "--include", str(note)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["dtype"] == "bfloat16" and report["megabytes"] > 0
    source, exported = load_file(tiny_checkpoint / "model.safetensors"), load_file(out / "model.safetensors")
    assert source.keys() == exported.keys()
    for name, tensor in exported.items():
        assert tensor.dtype == torch.bfloat16, name
        assert torch.equal(tensor, source[name].to(torch.bfloat16)), name
    assert (out / "eval_summary.json").read_text() == note.read_text()
    assert (out / "norm_stats.json").read_bytes() == (tiny_checkpoint / "norm_stats.json").read_bytes()
    loaded = load_checkpoint(out)
    assert loaded.token_ids == load_checkpoint(tiny_checkpoint).token_ids


def test_an_export_over_budget_is_refused_and_leaves_nothing(tiny_checkpoint: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "export"
    assert main([str(tiny_checkpoint), str(out), "--max-mb", "0.001"]) == 2
    assert "over the 0.001 MB budget" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
