"""Chunk health on recorded-style CoT sequences and injected timings: what counts, what warns, the percentiles."""

from __future__ import annotations

import pytest

from dtvla_policy.inference.chunk_health import (
    ChunkHealth,
    ChunkRecord,
    HealthThresholds,
    most_repeated_ngram,
    percentile,
)

# An episode's CoTs in the privileged annotator's style: the scene changes, so the thought does.
EPISODE = (
    "The gripper (center) is open; the black bowl (left) is away from the plate (right). Sub-goal 1 of 4: reach "
    "the black bowl. Move the gripper above the black bowl.",
    "The gripper is open above the black bowl (left); the plate (right) is empty. Sub-goal 1 of 4: reach the black "
    "bowl. Lower the gripper to the black bowl.",
    "The gripper (left) is closed; the black bowl (left) is away from the plate (right). Sub-goal 2 of 4: pick up "
    "the black bowl. Lift the black bowl.",
    "The gripper (center) holds the black bowl; the plate (right) is empty. Sub-goal 3 of 4: bring the black bowl "
    "to the plate. Carry the black bowl above the plate.",
    "The black bowl is on the plate (right); the gripper (right) is open. Sub-goal 4 of 4: let go of the black "
    "bowl on the plate. Move the gripper up and away from the plate.",
)
# A looping decode, as small or broken checkpoints produce: the same clause again and again until the cap.
LOOPING = ("The gripper is open above the black bowl. Lower the gripper to the black bowl. Lower the gripper to the "
           "black bowl. Lower the gripper to the black bowl. Lower the gripper to the")


def chunk(cot: str, chunk_ms: float = 100.0, budget_ms: float = 500.0, truncated: bool = False,
          thinking: bool = True, **stages: float) -> ChunkRecord:
    return ChunkRecord({"chunk_ms": chunk_ms, **stages}, budget_ms, cot, truncated, thinking)


def test_a_healthy_episode_raises_nothing():
    health = ChunkHealth()
    for cot in EPISODE * 3:  # the same phases again in a later attempt are not "stuck"
        assert health.record(chunk(cot)) == []
    values = health.values()
    assert {key: values[key] for key in health.counts} == dict.fromkeys(health.counts, 0)
    assert values["cot_identical_streak"] == 1


def test_a_looping_cot_that_hits_the_cap_is_flagged_with_counts():
    health = ChunkHealth(HealthThresholds(ngram_size=4, ngram_max_repeats=2))
    health.record(chunk(EPISODE[0]))
    problems = health.record(chunk(LOOPING, truncated=True))
    assert problems == ["CoT hit the token cap (1 of 2 chunks)",
                        "CoT repeats 'the black bowl lower' 4 times (1 of 2 chunks)"]
    assert health.counts["cot_truncated"] == health.counts["cot_repeated_ngrams"] == 1
    assert health.record(chunk(EPISODE[1])) == []  # the next healthy chunk clears the newest problems, not counts
    assert health.counts["cot_repeated_ngrams"] == 1


def test_a_cot_repeating_an_object_name_is_not_a_loop():
    gram, count = most_repeated_ngram(EPISODE[3], 4)
    assert count == 1, gram  # "the black bowl" is a 3-gram: three times is normal, a 4-gram once
    assert most_repeated_ngram(LOOPING, 4) == ("the black bowl lower", 4)  # ties: the first seen
    assert most_repeated_ngram("too short", 4) == ("", 0)


def test_empty_thinking_counts_only_where_thinking_was_asked_for():
    health = ChunkHealth()
    assert health.record(chunk("", thinking=False)) == []  # masked mode: empty by design
    assert health.record(chunk("  ", thinking=True)) == ["empty thinking (1 of 2 chunks)"]


def test_the_same_cot_for_n_chunks_is_flagged_until_it_changes():
    health = ChunkHealth(HealthThresholds(identical_cot_chunks=3))
    assert health.record(chunk(EPISODE[0])) == []
    assert health.record(chunk(EPISODE[0])) == []
    assert health.record(chunk(EPISODE[0])) == ["same CoT for 3 chunks (1 of 3 chunks)"]
    assert health.record(chunk(EPISODE[0])) == ["same CoT for 4 chunks (2 of 4 chunks)"]
    assert health.record(chunk(EPISODE[1])) == []
    assert health.counts["cot_identical"] == 2 and health.values()["cot_identical_streak"] == 1
    empty = ChunkHealth(HealthThresholds(identical_cot_chunks=2))
    assert [empty.record(chunk("", thinking=False)) for _ in range(3)] == [[], [], []]  # masked: nothing to repeat


def test_deadline_misses_are_held_against_the_budget_in_force():
    health = ChunkHealth()
    assert health.record(chunk(EPISODE[0], chunk_ms=499.0)) == []
    assert health.record(chunk(EPISODE[1], chunk_ms=612.4)) == [
        "deadline miss: chunk took 612 ms, budget 500 ms (1 of 2 chunks)"]
    assert health.record(chunk(EPISODE[2], chunk_ms=612.4, budget_ms=1000.0)) == []  # a chunk of more steps
    assert health.counts["deadline_misses"] == 1 and health.values()["budget_ms"] == 1000.0


def test_percentiles_per_stage_over_the_window():
    health = ChunkHealth(HealthThresholds(window=100))
    for ms in range(1, 201):  # the window keeps the newest 100: 101..200
        health.record(chunk(EPISODE[ms % 5], chunk_ms=float(ms), budget_ms=400.0, cot_ms=float(ms) / 2))
    values = health.values()
    assert (values["chunk_ms_p50"], values["chunk_ms_p95"], values["chunk_ms_p99"]) == (150.0, 195.0, 199.0)
    assert (values["cot_ms_p50"], values["cot_ms_p99"]) == (75.0, 99.5)
    assert values["budget_used_p95_pct"] == pytest.approx(100 * 195 / 400)
    assert percentile([7.0], 99) == 7.0 and percentile([3.0, 1.0, 2.0], 50) == 2.0


def test_stages_missing_from_some_chunks_use_the_chunks_that_have_them():
    health = ChunkHealth()
    health.record(chunk("", thinking=False, action_ms=10.0))  # masked: no cot_ms
    health.record(chunk(EPISODE[0], action_ms=30.0, cot_ms=300.0))
    values = health.values()
    assert values["cot_ms_p50"] == values["cot_ms_p99"] == 300.0 and values["action_ms_p50"] == 10.0


@pytest.mark.parametrize("bad", [{"window": 0}, {"ngram_size": 0}, {"ngram_max_repeats": 0},
                                 {"identical_cot_chunks": 1}])
def test_nonsense_thresholds_are_refused(bad):
    name = next(iter(bad))
    with pytest.raises(ValueError, match=name):
        HealthThresholds(**bad)
