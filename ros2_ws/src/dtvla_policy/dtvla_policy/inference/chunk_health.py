"""Health of the policy's chunk stream: latency against the chunk's time budget, and signs of degenerate thinking.

A chunk must be ready before the robot has executed the previous one (steps per chunk x control period); each stage's
p50/p95/p99 over a window of recent chunks shows where that budget goes. Random or looping CoTs cost success rate
(upstream's random-CoT ablation drops LIBERO-Goal from 96.4 to 60.2), so each CoT is checked for hitting the cap,
being empty where thinking was asked for, repeating a word n-gram, and being identical to the N before it (a CoT
that no longer follows the scene). Pure Python, no ROS, no torch: the policy node feeds it one `ChunkRecord` per
chunk and puts `ChunkHealth.values()` on /diagnostics; anything else (an evaluation, a replay) can do the same.
"""

from __future__ import annotations

import math
import re
from collections import Counter, deque
from dataclasses import dataclass

PERCENTILES = (50, 95, 99)
PROBLEMS = ("deadline_misses", "cot_truncated", "cot_empty", "cot_repeated_ngrams", "cot_identical")
_WORD = re.compile(r"[\w']+")


@dataclass(frozen=True)
class HealthThresholds:
    """When a chunk counts as unhealthy; the policy node's `health.*` parameters (docs/topics.md)."""

    window: int = 200  # recent chunks the latency percentiles are taken over
    ngram_size: int = 4  # words per n-gram of the repetition check
    ngram_max_repeats: int = 2  # an n-gram occurring more often than this in one CoT flags it repetitive
    identical_cot_chunks: int = 10  # a non-empty CoT equal to the previous N-1 ones flags the stream stuck

    def __post_init__(self) -> None:
        for name in ("window", "ngram_size", "ngram_max_repeats"):
            if getattr(self, name) < 1:
                raise ValueError(f"health threshold {name} must be >= 1, got {getattr(self, name)}")
        if self.identical_cot_chunks < 2:
            raise ValueError(f"health threshold identical_cot_chunks must be >= 2, got {self.identical_cot_chunks}")


@dataclass(frozen=True)
class ChunkRecord:
    """One chunk as the node saw it. `timings_ms`: the engine's per-stage ms plus the node's `chunk_ms`
    (observation taken to chunk published), which is what the budget is held against."""

    timings_ms: dict[str, float]
    budget_ms: float  # steps executed per chunk x control period
    cot: str
    cot_truncated: bool  # the CoT hit `max_cot_tokens` and was closed by force
    thinking_expected: bool  # full mode: an empty CoT is a problem; masked mode: it is the point


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (an observed value, never an interpolation): q in (0, 100]."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def most_repeated_ngram(text: str, n: int) -> tuple[str, int]:
    """The word n-gram (lowercased, punctuation dropped) occurring most often in `text`, and its count."""
    words = _WORD.findall(text.lower())
    grams = Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))
    if not grams:
        return "", 0
    gram, count = grams.most_common(1)[0]
    return " ".join(gram), count


class ChunkHealth:
    """Counts since start, the newest chunk's problems and a window of stage timings."""

    def __init__(self, thresholds: HealthThresholds | None = None) -> None:
        self.thresholds = thresholds or HealthThresholds()
        self.chunks = 0
        self.counts = dict.fromkeys(PROBLEMS, 0)
        self.problems: list[str] = []  # the newest chunk's, as text; empty when it was healthy
        self.budget_ms = float("nan")
        self.identical_streak = 0
        self._timings: deque[dict[str, float]] = deque(maxlen=self.thresholds.window)
        self._previous_cot: str | None = None

    def record(self, chunk: ChunkRecord) -> list[str]:
        """Add one chunk; returns (and keeps in `problems`) what was wrong with it, each with its running count."""
        found: list[tuple[str, str]] = []
        self.chunks += 1
        self.budget_ms = chunk.budget_ms
        self._timings.append(dict(chunk.timings_ms))
        chunk_ms = chunk.timings_ms.get("chunk_ms")
        if chunk_ms is not None and chunk_ms > chunk.budget_ms:
            found.append(("deadline_misses", f"deadline miss: chunk took {chunk_ms:.0f} ms, budget "
                                             f"{chunk.budget_ms:.0f} ms"))
        if chunk.cot_truncated:
            found.append(("cot_truncated", "CoT hit the token cap"))
        thought = chunk.cot.strip()
        if chunk.thinking_expected and not thought:
            found.append(("cot_empty", "empty thinking"))
        gram, repeats = most_repeated_ngram(thought, self.thresholds.ngram_size)
        if repeats > self.thresholds.ngram_max_repeats:
            found.append(("cot_repeated_ngrams", f"CoT repeats {gram!r} {repeats} times"))
        self.identical_streak = self.identical_streak + 1 if thought and thought == self._previous_cot else 1
        self._previous_cot = thought
        if thought and self.identical_streak >= self.thresholds.identical_cot_chunks:
            found.append(("cot_identical", f"same CoT for {self.identical_streak} chunks"))
        for key, _ in found:
            self.counts[key] += 1
        self.problems = [f"{text} ({self.counts[key]} of {self.chunks} chunks)" for key, text in found]
        return self.problems

    def latency_percentiles(self) -> dict[str, float]:
        """`<stage>_p50` / `_p95` / `_p99` in ms for every stage seen in the window."""
        stages = sorted({stage for timings in self._timings for stage in timings})
        out = {}
        for stage in stages:
            values = [t[stage] for t in self._timings if stage in t]
            out.update({f"{stage}_p{q}": percentile(values, q) for q in PERCENTILES})
        return out

    def values(self) -> dict[str, float | int]:
        """Everything for /diagnostics: counts, budget, streak, percentiles, and the p95 chunk time as % of budget."""
        out: dict[str, float | int] = {**self.counts, "budget_ms": self.budget_ms,
                                       "cot_identical_streak": self.identical_streak, **self.latency_percentiles()}
        if "chunk_ms_p95" in out and self.budget_ms > 0:
            out["budget_used_p95_pct"] = 100 * out["chunk_ms_p95"] / self.budget_ms
        return out
