"""The privileged annotator on a scripted pick-and-place episode, its words, and annotators chosen by name."""

from dataclasses import replace

import pyarrow as pa
import pytest

from dtvla_policy.lerobot_layout import SCENE_KEY
from dtvla_sim_bridge.sim.scene import PHASES
from dtvla_training.annotate.checks import CheckConfig, check_episode
from dtvla_training.annotate.episode_data import Episode
from dtvla_training.annotate.key_frames import segment_episode
from dtvla_training.annotate.privileged import NEXT_STEPS, PrivilegedAnnotator
from dtvla_training.annotate.propagate import PropagateAnnotator
from dtvla_training.annotate.registry import ANNOTATORS, AnnotatorOptions, build_annotator
from dtvla_training.annotate.scene_text import LocationFrame, humanise_name
from tests.fixtures.demo_episodes import (
    DONE_FRAME,
    GRASP_FRAME,
    LENGTH,
    PLATE,
    RELEASE_FRAME,
    phase_start,
    pick_and_place,
)

TASK = "pick up the black bowl and place it on the plate"


def demo_episode(with_scene: bool = True) -> Episode:
    actions, scenes = pick_and_place()
    columns = {"action": pa.array(actions.tolist(), pa.list_(pa.float32(), 7))}
    if with_scene:
        columns[SCENE_KEY] = pa.array([s.to_json() for s in scenes])
    return Episode(index=0, task=TASK, table=pa.table(columns))


@pytest.mark.parametrize(("object_id", "words"), [
    ("akita_black_bowl_1", "black bowl"),
    ("plate_1", "plate"),
    ("cream_cheese_2", "cream cheese"),
    ("wooden_cabinet_1_top_region", "wooden cabinet top region"),
    ("basket", "basket"),
])
def test_object_names_are_humanised(object_id, words):
    assert humanise_name(object_id) == words


@pytest.mark.parametrize(("xyz", "where"), [
    ((0.0, 0.0, 0.9), "center"),
    ((0.0, 0.25, 0.9), "left"),  # +y: the robot's left
    ((0.0, -0.25, 0.9), "right"),
    ((0.3, -0.25, 0.9), "right, back"),  # +x: away from the robot
    ((-0.3, 0.05, 0.9), "center, front"),
])
def test_coarse_locations_in_the_robot_frame(xyz, where):
    assert LocationFrame(band=0.1).describe(xyz) == where


def test_every_frame_of_a_pick_and_place_is_described():
    episode = demo_episode()
    segmentation = segment_episode(episode.actions)
    annotations = PrivilegedAnnotator().annotate(episode, segmentation)
    assert len(annotations) == LENGTH
    text = {frame: annotations[frame].text for frame in (0, GRASP_FRAME, phase_start("carry"), RELEASE_FRAME,
                                                          DONE_FRAME)}
    assert text[0] == ("The gripper (center, front) is open; the black bowl (center) is away from the plate (right). "
                       "Sub-goal 1 of 4: reach the black bowl. Move the gripper above the black bowl.")
    assert text[GRASP_FRAME] == ("The gripper is closed above the black bowl (center); the plate (right) is empty. "
                                 "Sub-goal 2 of 4: pick up the black bowl. Grasp the black bowl.")
    assert text[phase_start("carry")].endswith("Sub-goal 3 of 4: bring the black bowl to the plate. "
                                               "Carry the black bowl above the plate.")
    assert "holds the black bowl" in text[phase_start("carry")]
    assert text[RELEASE_FRAME].startswith("The black bowl is on the plate (right)")
    assert text[DONE_FRAME].endswith("All 4 sub-goals are done. Finish: the black bowl is on the plate.")
    assert not any("akita" in a.text or "_1" in a.text for a in annotations)
    failures, _ = check_episode(annotations, CheckConfig())
    assert not any(failures)  # schema and temporal checks pass on a clean demo


def test_containers_take_in_and_into():
    episode = demo_episode()
    scenes = [replace(s, target_place="basket_1",
                      objects={"basket_1": s.objects[PLATE], s.target_object: s.objects[s.target_object]})
              for s in episode.scenes]
    table = episode.table.set_column(1, SCENE_KEY, pa.array([s.to_json() for s in scenes]))
    annotator = PrivilegedAnnotator()
    basket = Episode(0, TASK, table)
    segmentation = segment_episode(basket.actions)
    assert annotator.annotate_frame(basket, phase_start("lower"), segmentation).next_step == (
        "Lower the black bowl into the basket.")
    assert annotator.annotate_frame(basket, DONE_FRAME, segmentation).next_step == (
        "Finish: the black bowl is in the basket.")


def test_every_phase_has_a_next_step():
    assert set(NEXT_STEPS) == set(PHASES)


def test_propagate_copies_key_frames_with_progress():
    episode = demo_episode()
    segmentation = segment_episode(episode.actions)
    annotations = build_annotator("propagate").annotate(episode, segmentation)
    key = annotations[GRASP_FRAME]
    middle = annotations[GRASP_FRAME + 15]
    assert (middle.scene, middle.next_step, middle.phase) == (key.scene, key.next_step, key.phase)
    assert middle.progress == f"{key.progress} This sub-task is about 50% done."
    assert (key.copied_from, middle.copied_from) == (None, GRASP_FRAME)
    assert annotations[DONE_FRAME + 3].text == annotations[DONE_FRAME].text  # nothing left to progress in


def test_privileged_refuses_data_without_scene_state():
    episode = demo_episode(with_scene=False)
    with pytest.raises(ValueError, match=r"needs the 'observation.scene' column.*--annotator vlm"):
        PrivilegedAnnotator().annotate(episode, segment_episode(episode.actions))


def test_a_broken_scene_value_names_its_frame():
    episode = demo_episode()
    texts = episode.table.column(SCENE_KEY).to_pylist()
    texts[7] = '{"phase": "approach"}'
    broken = Episode(3, TASK, episode.table.set_column(1, SCENE_KEY, pa.array(texts)))
    with pytest.raises(ValueError, match="episode 3 frame 7"):
        PrivilegedAnnotator().annotate(broken, segment_episode(broken.actions))


@pytest.mark.parametrize(("name", "options", "message"), [
    ("privilegd", None, "unknown annotator 'privilegd' \\(did you mean 'privileged'\\?\\); known: "
     + ", ".join(ANNOTATORS)),
    ("propagate", AnnotatorOptions(key_frame_annotator="propagate"), "unknown key-frame annotator 'propagate'"),
    ("vlm", None, "needs an endpoint"),
])
def test_annotators_by_name(name, options, message):
    with pytest.raises(ValueError, match=message):
        build_annotator(name, options)


def test_propagate_wraps_a_key_frame_annotator():
    annotator = build_annotator("propagate")
    assert isinstance(annotator, PropagateAnnotator) and isinstance(annotator.source, PrivilegedAnnotator)
    assert annotator.label == "propagate (privileged key frames)"
