"""The checks reject broken annotations, and the report and review queue list every rejected frame."""

import json
from dataclasses import replace

import pytest

from dtvla_policy.model.tiny_checkpoint import build_tokenizer
from dtvla_training.annotate.annotator import Annotation
from dtvla_training.annotate.checks import CheckConfig, LengthCounter, check_episode, final_verb, schema_failures
from dtvla_training.annotate.key_frames import KeyFrame, Segment, Segmentation
from dtvla_training.annotate.report import REPORT_JSON, REPORT_MARKDOWN, REVIEW_QUEUE, AnnotationReport, ReviewPolicy

GOOD = Annotation(scene="The gripper is open above the black bowl (center); the plate (right) is empty.",
                  progress="Sub-goal 1 of 4: reach the black bowl.", next_step="Grasp the black bowl.",
                  phase="grasp", source="test")


def with_text(next_step: str = GOOD.next_step, scene: str = GOOD.scene, phase: str | None = "grasp") -> Annotation:
    return Annotation(scene=scene, progress=GOOD.progress, next_step=next_step, phase=phase, source="test")


@pytest.mark.parametrize(("annotation", "max_length", "check"), [
    (Annotation(scene="", progress="", next_step="", phase="grasp", source="test"), 512, "empty"),
    (Annotation(scene="  ", progress="\n", next_step=" ", phase="grasp", source="test"), 512, "empty"),
    (with_text(next_step="The bowl is on the plate."), 512, "no_imperative"),
    (with_text(next_step="Dance with the bowl."), 512, "no_imperative"),
    (with_text(next_step="Grasp the black bowl"), 512, "no_imperative"),  # no full stop: a cut sentence
    (with_text(scene="The gripper <action> is open."), 512, "special_tokens"),
    (GOOD, 50, "too_long"),
    (Annotation.failed("vlm", "answer is not JSON"), 512, "annotator_error"),
])
def test_broken_annotations_fail_schema(annotation, max_length, check):
    config = CheckConfig(max_length=max_length)
    assert check in [f.check for f in schema_failures(annotation, config.counter(annotation.text), config)]


def test_a_good_annotation_passes():
    config = CheckConfig()
    assert schema_failures(GOOD, config.counter(GOOD.text), config) == []
    assert final_verb("Done. Finish: the task is complete.") == "finish"


def test_length_is_measured_with_the_tokenizer_when_given():
    tokens, units = LengthCounter(build_tokenizer()), LengthCounter()
    assert (tokens.unit, units.unit) == ("tokens", "bytes")
    assert 0 < tokens(GOOD.text) < units(GOOD.text) == len(GOOD.text.encode())
    config = CheckConfig(max_length=tokens(GOOD.text) - 1, counter=tokens)
    assert [f.check for f in schema_failures(GOOD, tokens(GOOD.text), config)] == ["too_long"]


def test_phase_regressions_and_missing_phases_fail_temporal():
    phases = ["approach", "descend", "approach", "grasp", None, "lift", "carry", "lift"]
    annotations = [with_text(phase=p) for p in phases]
    failures, lengths = check_episode(annotations, CheckConfig())
    assert {frame: [f.check for f in fs] for frame, fs in enumerate(failures) if fs} == {
        2: ["phase_regression"], 4: ["phase_missing"], 7: ["phase_regression"]}
    assert failures[2][0].detail == "approach after descend"
    assert lengths == [len(a.text.encode()) for a in annotations]


def test_report_and_review_queue_list_every_failing_frame(tmp_path):
    annotations = [GOOD, with_text(next_step="The bowl is on the plate."), with_text(next_step="Nothing."),
                   with_text(phase="approach"), Annotation.failed("vlm", "answer is not JSON"),
                   replace(GOOD, confidence=0.2)]
    failures, lengths = check_episode(annotations, CheckConfig())
    segmentation = Segmentation((KeyFrame(0, ("start",)), KeyFrame(3, ("pause",))),
                                (Segment(0, 0, 3), Segment(1, 3, 6)))
    report = AnnotationReport(settings={"dataset": "d", "annotator": "test", "length_unit": "bytes"},
                              review=ReviewPolicy(min_confidence=0.5, review_key_frames=True))
    report.add_episode(7, segmentation, annotations, failures, lengths)
    report.write(tmp_path)

    written = json.loads((tmp_path / REPORT_JSON).read_text())
    assert [(f["episode_index"], f["frame_index"], f["checks"]) for f in written["failing_frames"]] == [
        (7, 1, ["no_imperative"]), (7, 2, ["no_imperative"]), (7, 3, ["phase_regression"]),
        (7, 4, ["annotator_error"])]
    summary = written["summary"]
    assert (summary["frames"], summary["frames_failed"], summary["frames_kept"]) == (6, 4, 2)
    assert summary["failures_by_check"]["no_imperative"] == 2
    assert summary["final_verbs"] == {"grasp": 2}
    markdown = (tmp_path / REPORT_MARKDOWN).read_text()
    assert "| 7 | 1-2 | no_imperative |" in markdown and "| 7 | 4 | annotator_error |" in markdown
    queue = [json.loads(line) for line in (tmp_path / REVIEW_QUEUE).read_text().splitlines()]
    assert [row["frame_index"] for row in queue] == [0, 1, 2, 3, 4, 5]  # key frames 0 and 3, failures, confidence
    assert queue[0]["why"] == ["key frame"]
    assert queue[5]["why"] == ["confidence 0.2 < 0.5"]
    assert queue[4]["error"] == "answer is not JSON"
