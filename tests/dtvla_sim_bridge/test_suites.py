"""Suite registry: names, step caps of the upstream eval, "did you mean" for typos."""

from __future__ import annotations

import pytest

from dtvla_sim_bridge.sim.suites import SUITE_NAMES, get_suite, parse_index_ranges


@pytest.mark.parametrize(
    ("name", "num_tasks", "max_steps", "openvla_max_steps"),
    [
        ("libero_spatial", 10, 220, 220),
        ("libero_object", 10, 280, 280),
        ("libero_goal", 10, 300, 300),
        ("libero_10", 10, 620, 520),
        ("libero_90", 90, 400, 400),
    ],
)
def test_suite_caps(name: str, num_tasks: int, max_steps: int, openvla_max_steps: int) -> None:
    spec = get_suite(name)
    assert (spec.name, spec.num_tasks, spec.max_steps, spec.openvla_max_steps) == (
        name,
        num_tasks,
        max_steps,
        openvla_max_steps,
    )


def test_names_are_the_five_standard_suites() -> None:
    assert SUITE_NAMES == ("libero_spatial", "libero_object", "libero_goal", "libero_10", "libero_90")


@pytest.mark.parametrize(("typo", "suggestion"), [("libero_spatail", "libero_spatial"), ("libero10", "libero_10")])
def test_unknown_suite_suggests_closest(typo: str, suggestion: str) -> None:
    with pytest.raises(ValueError, match=f"Did you mean '{suggestion}'"):
        get_suite(typo)


def test_unrelated_name_lists_known_suites() -> None:
    with pytest.raises(ValueError, match="Known suites: libero_spatial") as info:
        get_suite("metaworld")
    assert "Did you mean" not in str(info.value)


@pytest.mark.parametrize(("text", "indices"), [("0-9", tuple(range(10))), ("3", (3,)), ("5-7,0,2", (0, 2, 5, 6, 7)),
                                               ("1,1-2", (1, 2))])
def test_index_ranges(text: str, indices: tuple[int, ...]) -> None:
    assert parse_index_ranges(text, 10, "--tasks") == indices


@pytest.mark.parametrize("text", ["", "a", "3-", "5-2", "0-10", "-1"])
def test_bad_index_ranges_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="--tasks"):
        parse_index_ranges(text, 10, "--tasks")
