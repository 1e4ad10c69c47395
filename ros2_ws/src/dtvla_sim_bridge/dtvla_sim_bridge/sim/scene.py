"""What the simulator knows about one frame, as data: the privileged state a scripted expert acts on and the CoT
data engine describes.

Kept free of LIBERO and torch so the annotator (training side) can read it from a dataset column
(`observation.scene`, one JSON string per frame) on a machine without the simulator. Positions are world-frame
metres, as LIBERO's observation dict gives them (`<object>_pos`, `robot0_eef_pos`).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

# Phases of a pick-and-place, in the order a successful episode passes through them. The expert reports the
# phase it is in at each frame; the annotator's temporal check requires phases never to go back in this order.
PHASES = ("approach", "descend", "grasp", "lift", "carry", "lower", "release", "retreat", "done")

Vector3 = tuple[float, float, float]


class SceneFormatError(ValueError):
    """A scene record that is not valid JSON of the documented schema."""


@dataclass(frozen=True)
class SceneState:
    """Privileged state of one frame of a pick-and-place task.

    `target_object` is picked up and put on/in `target_place` (names as in the BDDL goal, e.g. `akita_black_bowl_1`,
    `plate_1`); `objects` holds the position of every named object and fixture the expert tracked, those two
    included. `holding` names the object between the fingers, if any.
    """

    gripper_position: Vector3
    gripper_closed: bool
    holding: str | None
    target_object: str
    target_place: str
    phase: str
    objects: dict[str, Vector3] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.phase not in PHASES:
            raise SceneFormatError(f"unknown phase {self.phase!r}; known: {', '.join(PHASES)}")
        for name in (self.target_object, self.target_place):
            if name not in self.objects:
                raise SceneFormatError(f"{name!r} is a target but has no position in `objects`")
        for name, position in {"gripper": self.gripper_position, **self.objects}.items():
            if len(position) != 3 or not all(math.isfinite(v) for v in position):
                raise SceneFormatError(f"position of {name!r} must be 3 finite numbers, got {position!r}")

    @property
    def phase_index(self) -> int:
        return PHASES.index(self.phase)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> SceneState:
        try:
            raw = json.loads(text)
            return cls(
                gripper_position=_vector(raw["gripper_position"]),
                gripper_closed=bool(raw["gripper_closed"]),
                holding=raw["holding"],
                target_object=str(raw["target_object"]),
                target_place=str(raw["target_place"]),
                phase=str(raw["phase"]),
                objects={str(k): _vector(v) for k, v in raw["objects"].items()},
            )
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            raise SceneFormatError(f"not a scene record: {exc}") from exc


def _vector(value: object) -> Vector3:
    x, y, z = (float(v) for v in value)  # type: ignore[union-attr]
    return (x, y, z)
