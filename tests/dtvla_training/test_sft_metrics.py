"""MetricsSink on resume: records past the resumed step dropped, a line torn by a kill mid-append cut."""

import json

from dtvla_training.sft.metrics import METRICS_FILE, MetricsSink, read_metrics


def test_resume_cuts_a_torn_last_line_and_drops_later_steps(tmp_path):
    path = tmp_path / METRICS_FILE
    whole = "".join(json.dumps({"step": step, "loss": 1.0 / step}) + "\n" for step in (1, 2, 3))
    path.write_text(whole + '{"step": 4, "lo')  # killed while appending step 4
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2, 3]  # readers skip the torn line too
    sink = MetricsSink(tmp_path, start_step=2)
    sink.write({"step": 3, "loss": 0.25})
    sink.close()
    assert [(r["step"], r["loss"]) for r in read_metrics(tmp_path)] == [(1, 1.0), (2, 0.5), (3, 0.25)]
    assert path.read_text().endswith("\n") and path.read_text().count("\n") == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == [METRICS_FILE, "tensorboard"]  # no temp file left


def test_a_fresh_run_starts_an_empty_log(tmp_path):
    (tmp_path / METRICS_FILE).write_text('{"step": 9}\n{"st')
    MetricsSink(tmp_path, start_step=0).close()
    assert read_metrics(tmp_path) == []
