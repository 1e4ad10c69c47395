"""BDDL goal parsing: the single On/In predicate the scripted expert carries out, regions resolved to their owner."""

from __future__ import annotations

import pytest

from dtvla_sim_bridge.sim.bddl_goal import GoalError, PickPlaceGoal, goal_predicates, pick_place_goal

SPATIAL = """(define (problem LIBERO_Tabletop_Manipulation)
  (:domain robosuite)
  (:language Pick the akita black bowl between the plate and the ramekin and place it on the plate)
  (:objects
    akita_black_bowl_1 akita_black_bowl_2 - akita_black_bowl
    plate_1 - plate
  )
  (:init
    (On akita_black_bowl_1 main_table_between_plate_ramekin_region)
  )
  (:goal
    (And (On akita_black_bowl_1 plate_1))
  )
)
"""
OBJECT_GOAL = "(define (problem p) (:goal (And (In butter_1 basket_1_contain_region))) ; a comment (\n)"
NAMES = ("akita_black_bowl_1", "akita_black_bowl_2", "plate_1", "butter_1", "basket_1", "main_table")


def test_goal_predicates_of_a_spatial_task() -> None:
    assert goal_predicates(SPATIAL) == [("on", "akita_black_bowl_1", "plate_1")]


@pytest.mark.parametrize(
    ("text", "goal"),
    [
        (SPATIAL, PickPlaceGoal("akita_black_bowl_1", "plate_1", "on", "plate_1")),
        (OBJECT_GOAL, PickPlaceGoal("butter_1", "basket_1", "in", "basket_1_contain_region")),
    ],
)
def test_pick_place_goal(text: str, goal: PickPlaceGoal) -> None:
    assert pick_place_goal(text, NAMES) == goal


def test_a_goal_without_and_is_one_predicate() -> None:
    assert goal_predicates("(:goal (On a_1 b_1))") == [("on", "a_1", "b_1")]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("(define (problem p))", "no \\(:goal"),
        ("(:goal (And (On akita_black_bowl_1 plate_1)", "never closed"),
        ("(:goal (And (On a b))))", "closes nothing"),
        ("(:goal (And (On akita_black_bowl_1 plate_1) (On butter_1 plate_1)))", "one \\(On a b\\)"),
        ("(:goal (And (Open wooden_cabinet_1_top_region)))", "one \\(On a b\\)"),
        ("(:goal (And (On bowl_9 plate_1)))", "not among the task's objects"),
        ("(:goal (And (On (Not a) b)))", "flat predicate"),
    ],
)
def test_bad_goals_are_refused(text: str, message: str) -> None:
    with pytest.raises(GoalError, match=message):
        pick_place_goal(text, NAMES)
