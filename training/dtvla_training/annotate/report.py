"""What an annotation run did, for people: `meta/annotation_report.json` and `.md`, and `meta/review_queue.jsonl`.

The report counts frames and key frames, every check's failures, the final verbs and text lengths of the frames
kept, and lists EVERY failing frame with its checks and text (the Markdown groups consecutive frames that fail the
same way). The review queue holds one JSON line per frame a person should look at: every failing frame, every
frame whose annotator confidence is below the threshold (for `propagate`: the key frame, not its copies), and with
`review_key_frames` every key frame.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dtvla_policy.atomic_file import write_json, write_text
from dtvla_training.annotate.annotator import Annotation
from dtvla_training.annotate.checks import CHECK_NAMES, Failure, final_verb
from dtvla_training.annotate.key_frames import Segmentation

REPORT_JSON = "meta/annotation_report.json"
REPORT_MARKDOWN = "meta/annotation_report.md"
REVIEW_QUEUE = "meta/review_queue.jsonl"


@dataclass(frozen=True)
class ReviewPolicy:
    min_confidence: float = 0.5  # annotations less confident than this are queued
    review_key_frames: bool = False  # queue every key frame, passing or not

    def __post_init__(self) -> None:
        if not 0 <= self.min_confidence <= 1:
            raise ValueError(f"min_confidence must be in [0, 1], got {self.min_confidence}")


@dataclass
class AnnotationReport:
    """Filled episode by episode (`add_episode`), then written (`write`)."""

    settings: dict[str, Any]
    review: ReviewPolicy = field(default_factory=ReviewPolicy)
    episodes: list[dict[str, Any]] = field(default_factory=list)
    failing_frames: list[dict[str, Any]] = field(default_factory=list)
    review_queue: list[dict[str, Any]] = field(default_factory=list)
    failures_by_check: Counter = field(default_factory=lambda: Counter(dict.fromkeys(CHECK_NAMES, 0)))
    final_verbs: Counter = field(default_factory=Counter)
    lengths: list[int] = field(default_factory=list)  # of the kept texts, in the checks' unit
    frames: int = 0
    annotator_stats: dict[str, int] = field(default_factory=dict)

    def add_episode(self, episode_index: int, segmentation: Segmentation, annotations: Sequence[Annotation],
                    failures: Sequence[Sequence[Failure]], lengths: Sequence[int]) -> None:
        key_frames = set(segmentation.key_frame_indices)
        failed = 0
        for frame, (annotation, frame_failures) in enumerate(zip(annotations, failures, strict=True)):
            row = {"episode_index": episode_index, "frame_index": frame, "key_frame": frame in key_frames,
                   "phase": annotation.phase, "source": annotation.source, "text": annotation.text}
            why = [f"failed {f.check}: {f.detail}" for f in frame_failures]
            if frame_failures:
                failed += 1
                self.failures_by_check.update(f.check for f in frame_failures)
                self.failing_frames.append({**row, "checks": [f.check for f in frame_failures],
                                            "details": [f.detail for f in frame_failures]})
            else:
                self.final_verbs[final_verb(annotation.text)] += 1
                self.lengths.append(lengths[frame])
            if (annotation.copied_from is None and annotation.confidence is not None
                    and annotation.confidence < self.review.min_confidence):  # copies: reviewed at their key frame
                why.append(f"confidence {annotation.confidence:g} < {self.review.min_confidence:g}")
            if self.review.review_key_frames and frame in key_frames:
                why.append("key frame")
            if why:
                self.review_queue.append({**row, "confidence": annotation.confidence, "error": annotation.error,
                                          "copied_from": annotation.copied_from, "why": why})
        self.frames += len(annotations)
        self.episodes.append({
            "episode_index": episode_index, "frames": len(annotations), "failed_frames": failed,
            "key_frames": [{"frame": k.frame, "reasons": list(k.reasons)} for k in segmentation.key_frames],
            "segments": [[s.start, s.end] for s in segmentation.segments],
        })

    def summary(self) -> dict[str, Any]:
        failed = len(self.failing_frames)
        return {
            "episodes": len(self.episodes),
            "frames": self.frames,
            "key_frames": sum(len(e["key_frames"]) for e in self.episodes),
            "frames_kept": self.frames - failed,
            "frames_failed": failed,
            "episodes_with_failures": sum(1 for e in self.episodes if e["failed_frames"]),
            "review_queue": len(self.review_queue),
            "failures_by_check": dict(self.failures_by_check),
            "final_verbs": dict(self.final_verbs.most_common()),
            "length": {"unit": self.settings.get("length_unit"), "min": min(self.lengths, default=0),
                       "mean": round(sum(self.lengths) / len(self.lengths), 1) if self.lengths else 0,
                       "max": max(self.lengths, default=0)},
            "annotator_stats": self.annotator_stats,
        }

    def as_dict(self) -> dict[str, Any]:
        return {"settings": self.settings, "summary": self.summary(), "failing_frames": self.failing_frames,
                "episodes": self.episodes}

    def write(self, root: Path) -> None:
        """The JSON and Markdown reports and the review queue, under `root`'s meta/."""
        write_json(root / REPORT_JSON, self.as_dict())
        write_text(root / REPORT_MARKDOWN, self.markdown())
        write_text(root / REVIEW_QUEUE, "".join(json.dumps(row) + "\n" for row in self.review_queue))

    def markdown(self) -> str:
        summary = self.summary()
        lines = ["# CoT annotation report", "",
                 f"Dataset `{self.settings.get('dataset')}`, annotator `{self.settings.get('annotator')}`.", "",
                 "| | |", "|---|---|"]
        lines += [f"| {name.replace('_', ' ')} | {summary[name]} |" for name in
                  ("episodes", "frames", "key_frames", "frames_kept", "frames_failed", "episodes_with_failures",
                   "review_queue")]
        length = summary["length"]
        lines += [f"| length of kept texts ({length['unit']}) | min {length['min']}, mean {length['mean']}, "
                  f"max {length['max']} |"]
        lines += [f"| {name.replace('_', ' ')} | {value} |" for name, value in self.annotator_stats.items()]
        lines += ["", "## Failures by check", "", "| check | frames |", "|---|---|"]
        lines += [f"| {check} | {count} |" for check, count in summary["failures_by_check"].items()]
        lines += ["", "## Final verbs of kept texts", "", "| verb | frames |", "|---|---|"]
        lines += [f"| {verb} | {count} |" for verb, count in summary["final_verbs"].items()]
        lines += ["", "## Failing frames", ""]
        if not self.failing_frames:
            lines.append("None.")
        else:
            lines += ["Their `reasoning` is null in the output: the SFT reader skips them.", "",
                      "| episode | frames | checks | first detail | text |", "|---|---|---|---|---|"]
            for run in _runs(self.failing_frames):
                first, last = run[0], run[-1]
                frames = str(first["frame_index"]) if len(run) == 1 else f"{first['frame_index']}-{last['frame_index']}"
                text = first["text"].replace("|", "\\|")[:160]
                lines.append(f"| {first['episode_index']} | {frames} | {', '.join(first['checks'])} | "
                             f"{first['details'][0].replace('|', '/')[:120]} | {text} |")
        return "\n".join(lines) + "\n"


def _runs(rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Consecutive frames of one episode that fail the same checks, grouped."""
    runs: list[list[dict[str, Any]]] = []
    for row in rows:
        previous = runs[-1][-1] if runs else None
        if (previous is not None and previous["episode_index"] == row["episode_index"]
                and previous["frame_index"] + 1 == row["frame_index"] and previous["checks"] == row["checks"]):
            runs[-1].append(row)
        else:
            runs.append([row])
    return runs
