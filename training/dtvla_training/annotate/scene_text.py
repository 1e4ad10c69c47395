"""Words for simulator state: object names a person would use and coarse locations on the table.

Coarse locations are taken in the robot's frame, as a person standing at the robot's base and facing the table
would say them. LIBERO's world frame (robosuite) has its origin at the table top's centre, the robot base on the -x
side facing +x, and z up, so +y is the robot's left:

    lateral: y > +band -> "left", y < -band -> "right", else "center"
    depth:   x > +band -> "back" (far from the robot), x < -band -> "front" (near it), else nothing is added

`band` defaults to 0.10 m (a LIBERO table is about 1 m wide). A location reads "center", "left", "right, back",
and so on. Note that the agentview camera faces the robot, so the robot's left is the image's right.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dtvla_sim_bridge.sim.scene import Vector3

# Words in LIBERO object ids that name a brand or model, not the object ("akita_black_bowl_1" -> "black bowl").
BRAND_WORDS = frozenset({"akita"})
# Places an object goes *into* rather than *onto*.
CONTAINER_WORDS = frozenset({"basket", "bowl", "box", "drawer", "tray", "bin", "caddy"})


@dataclass(frozen=True)
class LocationFrame:
    """Where "center" is and how wide it is (see the module docstring)."""

    origin_x: float = 0.0
    origin_y: float = 0.0
    band: float = 0.10  # metres

    def __post_init__(self) -> None:
        if not self.band > 0:
            raise ValueError(f"band must be > 0 metres, got {self.band}")

    def describe(self, position: Vector3) -> str:
        """"left", "center", "right", with ", back" or ", front" when the position is off the centre line."""
        dx, dy = position[0] - self.origin_x, position[1] - self.origin_y
        lateral = "left" if dy > self.band else "right" if dy < -self.band else "center"
        depth = "back" if dx > self.band else "front" if dx < -self.band else ""
        return f"{lateral}, {depth}" if depth else lateral


def humanise_name(object_id: str) -> str:
    """A LIBERO object id as words: instance numbers and brand words dropped, underscores to spaces.

    "akita_black_bowl_1" -> "black bowl", "plate_1" -> "plate", "wooden_cabinet_1_top_region" -> "wooden cabinet
    top region". An id with no word left is returned as given.
    """
    words = [w for w in re.split(r"[_\s]+", object_id.lower()) if w and not w.isdigit() and w not in BRAND_WORDS]
    return " ".join(words) or object_id


def is_container(place_name: str) -> bool:
    """Whether objects go into `place_name` (a humanised name) rather than onto it."""
    return any(word in CONTAINER_WORDS for word in place_name.split())
