"""`privileged`: deterministic reasoning from the simulator state recorded with each frame (`observation.scene`).

Every frame is described from its own `SceneState`, in upstream's style: the gripper and the two objects of the
pick-and-place (the one to move, the place it goes) with coarse locations (`scene_text.LocationFrame`), the sub-goal
progress, then ONE imperative next step for the phase the expert is in, e.g.
"The gripper is open above the black bowl (center); the plate (right) is empty. Sub-goal 1 of 4: reach the black
bowl. Lower the gripper to the black bowl."
"""

from __future__ import annotations

import math

from dtvla_policy.lerobot_layout import SCENE_KEY
from dtvla_sim_bridge.sim.scene import SceneState, Vector3
from dtvla_training.annotate.annotator import Annotation, Annotator
from dtvla_training.annotate.episode_data import Episode
from dtvla_training.annotate.key_frames import Segmentation
from dtvla_training.annotate.scene_text import LocationFrame, humanise_name, is_container

NEAR_XY = 0.05  # metres: the gripper is "above" an object or place within this horizontal distance
ON_XY = 0.08  # metres: a released object this close (horizontally) to the place is "on" / "in" it

# Sub-goals of a pick-and-place and the phases (scene.PHASES) each one spans; "done" follows the last.
SUBGOALS = (
    ("reach the {obj}", ("approach", "descend")),
    ("pick up the {obj}", ("grasp", "lift")),
    ("bring the {obj} to the {place}", ("carry", "lower")),
    ("let go of the {obj} {prep} the {place}", ("release", "retreat")),
)
# The imperative next step of each phase; every verb is in checks.IMPERATIVE_VERBS.
NEXT_STEPS = {
    "approach": "Move the gripper above the {obj}.",
    "descend": "Lower the gripper to the {obj}.",
    "grasp": "Grasp the {obj}.",
    "lift": "Lift the {obj}.",
    "carry": "Carry the {obj} above the {place}.",
    "lower": "Lower the {obj} {prep_to} the {place}.",
    "release": "Release the {obj} {prep} the {place}.",
    "retreat": "Move the gripper up and away from the {place}.",
    "done": "Finish: the {obj} is {prep} the {place}.",
}


class PrivilegedAnnotator(Annotator):
    """Describes each frame from its scene state; needs the `observation.scene` column."""

    name = "privileged"

    def __init__(self, locations: LocationFrame | None = None) -> None:
        self.locations = locations or LocationFrame()

    def annotate_frame(self, episode: Episode, frame: int, segmentation: Segmentation) -> Annotation:
        if not episode.has_scene:
            raise ValueError(
                f"the privileged annotator needs the {SCENE_KEY!r} column (SceneState JSON per frame, written by "
                f"dtvla-collect-demos), which episode {episode.index} lacks; use --annotator vlm (or propagate "
                "with --key-frame-annotator vlm) for data recorded without simulator state"
            )
        return describe_scene(episode.scenes[frame], self.locations, self.name)


def describe_scene(scene: SceneState, locations: LocationFrame, source: str = PrivilegedAnnotator.name) -> Annotation:
    """The annotation of one scene state (see the module docstring)."""
    words = _words(scene)
    subgoal = next((i for i, (_, phases) in enumerate(SUBGOALS) if scene.phase in phases), len(SUBGOALS))
    if subgoal < len(SUBGOALS):
        progress = f"Sub-goal {subgoal + 1} of {len(SUBGOALS)}: {SUBGOALS[subgoal][0].format(**words)}."
    else:
        progress = f"All {len(SUBGOALS)} sub-goals are done."
    return Annotation(scene=_scene_sentence(scene, locations, words), progress=progress,
                      next_step=NEXT_STEPS[scene.phase].format(**words), phase=scene.phase, source=source)


def _words(scene: SceneState) -> dict[str, str]:
    place = humanise_name(scene.target_place)
    inside = is_container(place)
    return {"obj": humanise_name(scene.target_object), "place": place,
            "prep": "in" if inside else "on", "prep_to": "into" if inside else "onto"}


def _scene_sentence(scene: SceneState, locations: LocationFrame, words: dict[str, str]) -> str:
    gripper = scene.gripper_position
    obj_pos, place_pos = scene.objects[scene.target_object], scene.objects[scene.target_place]
    obj, place = words["obj"], words["place"]
    where = {"gripper": locations.describe(gripper), "obj": locations.describe(obj_pos),
             "place": locations.describe(place_pos)}
    if scene.holding is not None:
        held = humanise_name(scene.holding)
        if _xy_distance(gripper, place_pos) < NEAR_XY:
            return f"The gripper holds the {held} above the {place} ({where['place']})."
        return f"The gripper ({where['gripper']}) holds the {held}; the {place} ({where['place']}) is empty."
    state = "closed" if scene.gripper_closed else "open"
    if _xy_distance(obj_pos, place_pos) < ON_XY:
        return (f"The {obj} is {words['prep']} the {place} ({where['place']}); the gripper ({where['gripper']}) "
                f"is {state}.")
    if _xy_distance(gripper, obj_pos) < NEAR_XY:
        return f"The gripper is {state} above the {obj} ({where['obj']}); the {place} ({where['place']}) is empty."
    return (f"The gripper ({where['gripper']}) is {state}; the {obj} ({where['obj']}) is away from the {place} "
            f"({where['place']}).")


def _xy_distance(a: Vector3, b: Vector3) -> float:
    return math.hypot(a[0] - b[0], a[1] - b[1])
