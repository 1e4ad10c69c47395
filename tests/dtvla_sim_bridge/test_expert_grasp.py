"""The expert's grasp planner on made-up geometry (no simulator): yaw for narrow objects, rims for bowls, room for
the hand next to taller objects."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from dtvla_sim_bridge.sim.expert import FINGER_SPAN_M, GRASP_DEPTH_M, RIM_INSET_M, plan_grasp, rotation_error


def box(centre: tuple[float, float, float], size: tuple[float, float, float], yaw: float = 0.0) -> np.ndarray:
    """(8, 3) corners of a box standing on its bottom face, turned by `yaw` about z."""
    half = np.array(size) / 2
    corners = np.array(list(itertools.product(*[(-h, h) for h in half])))
    c, s = math.cos(yaw), math.sin(yaw)
    corners[:, :2] = corners[:, :2] @ np.array([[c, s], [-s, c]])
    return corners + np.array(centre) + [0, 0, half[2]]


def finger_width(corners: np.ndarray, yaw: float) -> float:
    along = corners[:, :2] @ np.array([-math.sin(yaw), math.cos(yaw)])
    return float(along.max() - along.min())


def test_narrow_box_is_taken_across_its_narrow_side_at_its_centre() -> None:
    butter = box((0.1, -0.2, 0.0), (0.04, 0.08, 0.02))  # long in y: the fingers (along y at yaw 0) must turn
    grasp = plan_grasp(butter, np.array([0.0, 0.0]))
    assert abs(abs(grasp.yaw) - math.pi / 2) < math.radians(6)
    np.testing.assert_allclose(grasp.position[:2], [0.1, -0.2], atol=1e-6)
    assert finger_width(butter, grasp.yaw) <= FINGER_SPAN_M
    assert grasp.position[2] == pytest.approx(0.012)  # short object: above the table, not top - depth


def test_tall_object_is_taken_below_its_top() -> None:
    can = box((0.0, 0.0, 0.0), (0.06, 0.06, 0.12))
    assert plan_grasp(can, np.zeros(2)).position[2] == pytest.approx(0.12 - GRASP_DEPTH_M)


def test_bowl_is_pinched_by_the_rim_on_the_side_with_room() -> None:
    bowl = box((0.0, 0.0, 0.9), (0.11, 0.11, 0.05))
    free = plan_grasp(bowl, np.array([0.0, -0.5]))  # nothing around: the rim point nearest the gripper
    np.testing.assert_allclose(free.position[:2], [0.0, -(0.055 - RIM_INSET_M)], atol=1e-6)
    ramekin = box((0.0, -0.11, 0.9), (0.09, 0.09, 0.04))  # right where that finger would go
    crowded = plan_grasp(bowl, np.array([0.0, -0.5]), [ramekin])
    assert np.linalg.norm(crowded.position[:2]) == pytest.approx(0.055 - RIM_INSET_M)
    assert crowded.position[1] > -0.01  # another side of the rim


def test_hand_turns_away_from_a_taller_neighbour() -> None:
    cheese = box((0.0, 0.0, 0.0), (0.08, 0.043, 0.018))
    sauce = box((0.054, -0.097, 0.0), (0.062, 0.062, 0.076))
    alone, beside = plan_grasp(cheese, np.zeros(2)), plan_grasp(cheese, np.zeros(2), [sauce])
    assert alone.yaw == pytest.approx(0.0, abs=1e-9)
    assert beside.yaw != pytest.approx(0.0, abs=1e-9) and finger_width(cheese, beside.yaw) <= FINGER_SPAN_M


def test_rotation_error_is_zero_pointing_down_at_the_yaw() -> None:
    down = np.array([1.0, 0.0, 0.0, 0.0])  # x, y, z, w: LIBERO's start orientation
    np.testing.assert_allclose(rotation_error(down, 0.0), 0.0, atol=1e-9)
    np.testing.assert_allclose(rotation_error(down, 0.3), [0.0, 0.0, 0.3], atol=1e-9)
