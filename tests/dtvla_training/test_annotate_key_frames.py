"""Key frames and segments from gripper transitions and motion pauses, on episodes with known events."""

import numpy as np
import pytest

from dtvla_training.annotate.key_frames import (
    GRIPPER_CLOSE,
    GRIPPER_OPEN,
    PAUSE,
    START,
    KeyFrameConfig,
    segment_episode,
)
from tests.fixtures.demo_episodes import DONE_FRAME, GRASP_FRAME, LENGTH, RELEASE_FRAME, pick_and_place


def moving_episode(n: int = 60) -> np.ndarray:
    """(n, 7): translation 0.5 in x every frame, gripper open."""
    actions = np.zeros((n, 7), dtype=np.float32)
    actions[:, 0] = 0.5
    actions[:, 6] = -1.0
    return actions


def test_gripper_toggles_and_pauses_are_found():
    actions = moving_episode()
    actions[10:30, 6] = 1.0  # closes at 10, opens at 30
    actions[20:27, :3] = 0.01  # a 7-frame pause from 20
    actions[40:43, :3] = 0.0  # 3 still frames: too short to be a pause
    segmentation = segment_episode(actions, KeyFrameConfig(pause_threshold=0.05, pause_min_frames=5))
    assert [(k.frame, k.reasons) for k in segmentation.key_frames] == [
        (0, (START,)), (10, (GRIPPER_CLOSE,)), (20, (PAUSE,)), (30, (GRIPPER_OPEN,))]
    assert [(s.start, s.end) for s in segmentation.segments] == [(0, 10), (10, 20), (20, 30), (30, 60)]
    assert segmentation.segment_of(0).index == 0
    assert segmentation.segment_of(19).index == 1
    assert segmentation.segment_of(59).index == 3


@pytest.mark.parametrize(("min_frames", "expected"), [(3, [0, 40]), (4, [0])])
def test_pause_length_is_a_parameter(min_frames, expected):
    actions = moving_episode()
    actions[40:43, :3] = 0.0
    frames = [k.frame for k in segment_episode(actions, KeyFrameConfig(pause_min_frames=min_frames)).key_frames]
    assert frames == expected


def test_close_events_merge_and_keep_both_reasons():
    actions = moving_episode()
    actions[15:, 6] = 1.0
    actions[16:25, :3] = 0.0  # the pause starts one frame after the close
    (start, merged) = segment_episode(actions, KeyFrameConfig(min_gap=2)).key_frames
    assert (merged.frame, merged.reasons) == (15, (GRIPPER_CLOSE, PAUSE))
    assert [k.frame for k in segment_episode(actions, KeyFrameConfig(min_gap=1)).key_frames] == [0, 15, 16]


def test_a_zero_gripper_command_keeps_the_state():
    actions = moving_episode()
    actions[10:20, 6] = 0.0  # no command: still open
    actions[20:, 6] = 1.0
    assert [k.frame for k in segment_episode(actions).key_frames] == [0, 20]


def test_pick_and_place_demo():
    actions, _ = pick_and_place()
    segmentation = segment_episode(actions)
    assert [(k.frame, k.reasons) for k in segmentation.key_frames] == [
        (0, (START,)), (GRASP_FRAME, (GRIPPER_CLOSE, PAUSE)), (RELEASE_FRAME, (GRIPPER_OPEN, PAUSE)),
        (DONE_FRAME, (PAUSE,))]
    assert sum(s.length for s in segmentation.segments) == LENGTH


def test_detectors_can_be_switched_off():
    actions, _ = pick_and_place()
    assert [k.frame for k in segment_episode(actions, KeyFrameConfig(pauses=False)).key_frames] == [
        0, GRASP_FRAME, RELEASE_FRAME]
    config = KeyFrameConfig(gripper_transitions=False, pauses=False)
    assert [k.frame for k in segment_episode(actions, config).key_frames] == [0]


@pytest.mark.parametrize(("actions", "message"), [
    (np.zeros((0, 7)), "non-empty"),
    (np.zeros((5, 6)), r"\(n, 7\)"),
    (np.full((5, 7), np.nan), "non-finite"),
])
def test_bad_actions_are_refused(actions, message):
    with pytest.raises(ValueError, match=message):
        segment_episode(actions)


@pytest.mark.parametrize(("field", "value"), [("pause_threshold", -1.0), ("pause_min_frames", 0), ("min_gap", 0)])
def test_bad_config_is_refused(field, value):
    with pytest.raises(ValueError, match=field):
        KeyFrameConfig(**{field: value})
