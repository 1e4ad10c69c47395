"""A scripted pick-and-place expert acting on privileged simulator state, for demonstrations and baselines.

It reads what no policy sees: object and fixture poses and collision geometry from MuJoCo, and the task's goal from
its BDDL file (`bddl_goal`). Then it runs the phases of `scene.PHASES` with a proportional controller in LIBERO's
action units (OSC_POSE deltas in [-1, 1], gripper -1 open / +1 close): hover above the grasp point, descend, close,
lift, carry the object (closed loop on the object's own position) over the place, lower it until it is just above
the place's surface or stops moving, open, retreat. Grasps are top-down; the gripper turns about the vertical to
the object's narrowest horizontal width, and an object wider than the open fingers everywhere (a bowl) is taken by
its rim. After every `act` the expert's `scene` is the `SceneState` of the frame it acted on.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.spatial.transform import Rotation

from dtvla_policy.model.conventions import ACTION_DIM, GRIPPER_DIM
from dtvla_sim_bridge.sim.bddl_goal import PickPlaceGoal, pick_place_goal
from dtvla_sim_bridge.sim.libero_env import Frame, LiberoSim
from dtvla_sim_bridge.sim.scene import PHASES, SceneState

OPEN, CLOSE = -1.0, 1.0
FINGER_SPAN_M = 0.07  # widest object the open Panda fingers (about 8 cm apart) take with some margin
RIM_INSET_M = 0.012  # a rim grasp closes this far inside the object's outer edge
FINGER_REACH_M = 0.02  # a finger's outer face from the grasp point when open around a wall
ENOUGH_ROOM_M = 0.01  # grasps whose hand has this much room from taller objects are all fine
ENOUGH_RIM_ROOM_M = 0.04  # rim points whose outer finger has this much room from other objects are all fine
HAND_HALF_LENGTH_M = 0.105  # the Panda hand's collision box, along the finger axis ...
HAND_HALF_WIDTH_M = 0.035  # ... and across it
HAND_ABOVE_M = 0.024  # the hand's bottom above the grasp point (the fingertips are about 1.3 cm below it)
HAND_CLEARANCE_M = 0.005  # the hand passes this far above what is under it, when the object allows
MIN_GRIP_DEPTH_M = 0.01  # the grasp point stays at least this far under the object's top
GRASP_DEPTH_M = 0.025  # the fingertips go this far below the object's top ...
GRASP_CLEARANCE_M = 0.012  # ... but stay this far above its bottom (the table)
HOVER_M = 0.10  # approach height above the grasp point
LIFT_M = 0.10  # clearance of the carried object above the place's top
PLACE_CLEARANCE_M = {"on": 0.015, "in": 0.04}  # object bottom above the place's top ("on") or bottom ("in")
RETREAT_M = 0.08
LOWER_SPEED = 0.5  # action units: the carried object goes down at half speed
LOST_M = 0.1  # an object this far from the hand (horizontally) while carried has been dropped or never grasped
POSITION_GAIN = 25.0  # action units per metre of error: full speed (about 1.3 cm per step) beyond 4 cm
INTEGRAL_GAIN = 3.0  # action units per metre-step of summed error: the OSC alone stops about 1 cm short
INTEGRAL_LIMIT = 0.5  # action units the integral term may add (anti-windup) ...
INTEGRATE_WITHIN_M = 0.02  # ... and it sums only errors this small (no overshoot after long moves)
ROTATION_GAIN = 2.0  # action units per radian of error
REACHED_M = 0.01
REACHED_RAD = 0.08
GRIPPER_STEPS = 12  # steps for the fingers to close on the object or open fully
STALL_STEPS = 6  # a descent that moved less than STALL_M over this many steps has hit something
STALL_M = 0.002
PHASE_STEP_LIMIT = 60  # a phase that takes longer than this moves on (the episode cap decides the outcome)
YAW_CANDIDATES = np.radians(np.arange(-85, 91, 5))  # gripper yaw about world z; 0 = fingers along world y
DOWN = Rotation.from_quat([1.0, 0.0, 0.0, 0.0])  # LIBERO's start orientation: the hand pointing straight down


@dataclass(frozen=True)
class Grasp:
    """Where the fingertips close (world metres) and the gripper's yaw (rad) there."""

    position: np.ndarray
    yaw: float


class ObjectGeometry:
    """World-frame bounds of the task's objects and fixtures, from their collision geoms (privileged)."""

    def __init__(self, inner_env: Any) -> None:
        self.env = inner_env  # robosuite's environment inside LIBERO's wrapper; a hard reset replaces it
        model = inner_env.sim.model
        self.names = (*inner_env.objects_dict, *inner_env.fixtures_dict)
        roots = {inner_env.obj_body_id[name]: name for name in self.names}
        self._geoms: dict[str, list[int]] = {name: [] for name in self.names}
        for geom in range(model.ngeom):
            if not (model.geom_contype[geom] or model.geom_conaffinity[geom]):
                continue  # visual-only meshes
            body = model.geom_bodyid[geom]
            while body and body not in roots:
                body = model.body_parentid[body]
            if body:
                self._geoms[roots[body]].append(geom)

    def position(self, name: str) -> np.ndarray:
        """(3,) the body origin, as LIBERO's `<name>_pos` observation gives it."""
        return np.array(self.env.sim.data.body_xpos[self.env.obj_body_id[name]])

    def geom_corners(self, name: str) -> list[np.ndarray]:
        """(8, 3) world corners of each of the object's collision geoms' bounding boxes: a finer outline than the
        whole object's box (a drawer's walls, not the cabinet's block)."""
        model, data = self.env.sim.model, self.env.sim.data
        signs = np.array(list(itertools.product((-1.0, 1.0), repeat=3)))
        boxes = []
        for geom in self._geoms[name]:
            centre, half = model.geom_aabb[geom][:3], model.geom_aabb[geom][3:]
            local = centre + signs * half
            boxes.append(data.geom_xpos[geom] + local @ data.geom_xmat[geom].reshape(3, 3).T)
        if not boxes:
            raise ValueError(f"{name!r} has no collision geometry to grasp or place on")
        return boxes

    def corners(self, name: str) -> np.ndarray:
        """(8 x geoms, 3) all corners of the object's geoms' bounding boxes in world coordinates."""
        return np.concatenate(self.geom_corners(name))

    def bounds(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        corners = self.corners(name)
        return corners.min(axis=0), corners.max(axis=0)


def plan_grasp(corners: np.ndarray, gripper_xy: np.ndarray, obstacles: Sequence[np.ndarray] = ()) -> Grasp:
    """A top-down grasp of an object given its geometry corners and those of the other objects (`obstacles`).

    Among the yaws whose finger axis sees the object narrower than the open fingers, the one whose hand keeps the
    most room from obstacles taller than the hand's bottom (enough room: the narrowest, then the least turning).
    An object wider than the fingers at every yaw (a bowl) is pinched by its rim, at the point where the hand, then the
    outer finger, has the most room, the nearer to the gripper among those with enough.
    """
    bottom, top = corners[:, 2].min(), corners[:, 2].max()
    z = max(bottom + GRASP_CLEARANCE_M, top - GRASP_DEPTH_M)
    tall = [o for o in obstacles if o[:, 2].max() > z + HAND_ABOVE_M]
    options = []  # (too wide, -room up to enough, width and a little turning, centre, yaw)
    for yaw in YAW_CANDIDATES:
        finger_axis = np.array([-math.sin(yaw), math.cos(yaw)])
        palm_axis = np.array([math.cos(yaw), math.sin(yaw)])
        along, across = corners[:, :2] @ finger_axis, corners[:, :2] @ palm_axis
        width = along.max() - along.min()
        centre = finger_axis * (along.max() + along.min()) / 2 + palm_axis * (across.max() + across.min()) / 2
        room = _hand_room(centre, finger_axis, palm_axis, tall)
        options.append((width > FINGER_SPAN_M, -min(room, ENOUGH_ROOM_M), width + 1e-3 * abs(yaw), centre, yaw))
    too_wide, _, _, centre_xy, yaw = min(options, key=lambda option: option[:3])
    if not too_wide:
        return _above_what_the_hand_meets(Grasp(np.array([*centre_xy, z]), float(yaw)), top, obstacles)
    # a bowl: pinch its wall where the finger axis crosses it, on one of four sides
    _, _, width, centre_xy, yaw = min(options, key=lambda option: option[2])
    radius = width / 2 - RIM_INSET_M
    near_fingers = [o[:, :2] for o in obstacles if o[:, 2].max() > z - FINGER_REACH_M]
    rims = []  # (-hand room up to enough, -finger room up to enough, distance from the gripper, rim point, yaw)
    for turn, side in itertools.product((0.0, math.pi / 2), (1.0, -1.0)):
        axis = np.array([-math.sin(yaw + turn), math.cos(yaw + turn)])
        rim = centre_xy + side * radius * axis
        outer_finger = rim + side * FINGER_REACH_M * axis
        finger_room = min((_distance_to_box(outer_finger, o) for o in near_fingers), default=math.inf)
        hand_room = _hand_room(rim, axis, np.array([axis[1], -axis[0]]), tall)
        rims.append((-min(hand_room, ENOUGH_ROOM_M), -min(finger_room, ENOUGH_RIM_ROOM_M),
                     float(np.linalg.norm(rim - gripper_xy)), rim, yaw + turn))
    *_, rim, rim_yaw = min(rims, key=lambda option: option[:3])
    return _above_what_the_hand_meets(Grasp(np.array([*rim, z]), math.remainder(rim_yaw, math.pi)), top, obstacles)


def _above_what_the_hand_meets(grasp: Grasp, top: float, obstacles: Sequence[np.ndarray]) -> Grasp:
    """The grasp raised until the hand passes over every obstacle under its footprint (a drawer's walls around a
    bowl), but no higher than MIN_GRIP_DEPTH_M under the object's top: the fingers must still get hold of it."""
    finger_axis = np.array([-math.sin(grasp.yaw), math.cos(grasp.yaw)])
    palm_axis = np.array([finger_axis[1], -finger_axis[0]])
    under = [o for o in obstacles if _hand_room(grasp.position[:2], finger_axis, palm_axis, [o]) < 0]
    if not under:
        return grasp
    clear = max(o[:, 2].max() for o in under) + HAND_CLEARANCE_M - HAND_ABOVE_M
    z = max(grasp.position[2], min(clear, top - MIN_GRIP_DEPTH_M))
    return Grasp(np.array([*grasp.position[:2], z]), grasp.yaw)


def _hand_room(centre: np.ndarray, finger_axis: np.ndarray, palm_axis: np.ndarray,
               obstacles: Sequence[np.ndarray]) -> float:
    """Horizontal gap (m; negative: overlap) between the hand's footprint at `centre` and the nearest obstacle's
    bounding rectangle in the hand's frame."""
    room = math.inf
    for corners in obstacles:
        along, across = (corners[:, :2] - centre) @ finger_axis, (corners[:, :2] - centre) @ palm_axis
        gap_along = max(along.min() - HAND_HALF_LENGTH_M, -HAND_HALF_LENGTH_M - along.max())
        gap_across = max(across.min() - HAND_HALF_WIDTH_M, -HAND_HALF_WIDTH_M - across.max())
        room = min(room, max(gap_along, gap_across))
    return room


def _distance_to_box(point: np.ndarray, corners_xy: np.ndarray) -> float:
    """Horizontal distance from `point` to the bounding rectangle of `corners_xy` (0 inside)."""
    gap = np.maximum(corners_xy.min(axis=0) - point, 0) + np.maximum(point - corners_xy.max(axis=0), 0)
    return float(np.linalg.norm(gap))


def rotation_error(eef_quat_xyzw: np.ndarray, yaw: float) -> np.ndarray:
    """(3,) world-frame axis-angle taking the hand's orientation to pointing down at `yaw`."""
    target = Rotation.from_euler("z", yaw) * DOWN
    return (target * Rotation.from_quat(eef_quat_xyzw).inv()).as_rotvec()


class ScriptedExpert:
    """Pick-and-place on one `LiberoSim`: `act(frame)` gives the next action; a frame at step 0 starts over."""

    def __init__(self, sim: LiberoSim) -> None:
        self.sim = sim
        self.geometry = ObjectGeometry(sim.env.env)
        self.goal: PickPlaceGoal = pick_place_goal(sim.bddl_file.read_text(), self.geometry.names)
        self.scene: SceneState | None = None
        self._start(None)

    @property
    def phase(self) -> str:
        return PHASES[self._phase]

    def act(self, frame: Frame) -> np.ndarray:
        """(7,) the action for `frame`, the latest frame of `sim`; `scene` then describes this frame."""
        if frame.step == 0 or self._grasp is None:
            if self.sim.env.env is not self.geometry.env:  # a hard reset built a new environment
                self.geometry = ObjectGeometry(self.sim.env.env)
            self._start(frame)
        eef = np.asarray(frame.eef_pos, dtype=np.float64)
        self._heights.append(eef[2])
        for _ in PHASES:  # advance through every phase whose work is already done at this frame
            target, gripper, finished = self._phase_target(eef, frame.eef_quat)
            if not finished and self._phase_steps < PHASE_STEP_LIMIT:
                break
            self._next_phase()
        self.scene = self._scene(frame)
        self._gripper = gripper
        self._phase_steps += 1
        error = target - eef
        near = np.abs(error) < INTEGRATE_WITHIN_M
        self._integral = np.clip(self._integral + INTEGRAL_GAIN * error * near, -INTEGRAL_LIMIT, INTEGRAL_LIMIT)
        action = np.zeros(ACTION_DIM)
        action[:3] = np.clip(POSITION_GAIN * error + self._integral, -1.0, 1.0)
        if self.phase == "lower":  # a fast descent shakes a shallow grasp loose
            action[2] = max(action[2], -LOWER_SPEED)
        action[3:6] = np.clip(ROTATION_GAIN * rotation_error(frame.eef_quat, self._grasp.yaw), -1.0, 1.0)
        action[GRIPPER_DIM] = gripper
        return action

    # --- phases ----------------------------------------------------------------------------------------------
    def _start(self, frame: Frame | None) -> None:
        self._phase = 0
        self._phase_steps = 0
        self._gripper = OPEN
        self._heights: list[float] = []
        self._anchor: np.ndarray | None = None  # a position a phase holds (grasp, release, retreat)
        self._integral = np.zeros(3)  # summed position error of the phase, in action units
        self._grasp: Grasp | None = None
        if frame is not None:
            corners = self.geometry.corners(self.goal.target_object)
            others = [box for name in self.geometry.names if name != self.goal.target_object
                      for box in self.geometry.geom_corners(name)]
            self._grasp = plan_grasp(corners, np.asarray(frame.eef_pos[:2]), others)
            self._rest_bottom = corners[:, 2].min()

    def _next_phase(self) -> None:
        self._phase = min(self._phase + 1, len(PHASES) - 1)
        self._phase_steps = 0
        self._anchor = None
        self._heights = self._heights[-1:]
        self._integral = np.zeros(3)

    def _phase_target(self, eef: np.ndarray, eef_quat: np.ndarray) -> tuple[np.ndarray, float, bool]:
        """(eef target, gripper command, whether the phase is finished) for the current phase."""
        grasp = self._grasp.position
        phase = self.phase
        if phase == "approach":
            target = grasp + [0.0, 0.0, HOVER_M]
            return target, OPEN, self._reached(eef, eef_quat, target)
        if phase == "descend":
            return grasp, OPEN, self._reached(eef, eef_quat, grasp) or self._stalled()
        if phase in ("grasp", "release"):
            if self._anchor is None:  # keep closing in on the grasp point if the descent got near it
                near_grasp = phase == "grasp" and np.linalg.norm(eef - grasp) < REACHED_M
                self._anchor = grasp if near_grasp else eef
            gripper = CLOSE if phase == "grasp" else OPEN
            return self._anchor, gripper, self._phase_steps >= GRIPPER_STEPS
        obj_bottom = self.geometry.corners(self.goal.target_object)[:, 2].min()
        place_low, place_high = self.geometry.bounds(self.goal.place)
        # high enough to leave where the object was and to pass over the place, as if it moved with the hand
        carry_z = grasp[2] + max(LIFT_M, place_high[2] + LIFT_M - self._rest_bottom)
        if phase == "lift":
            self._anchor = eef if self._anchor is None else self._anchor
            target = np.array([*self._anchor[:2], carry_z])
            return target, CLOSE, abs(eef[2] - target[2]) < 2 * REACHED_M
        place_xy = self._place_xy(place_low, place_high)
        object_xy = self._object_xy()
        lost = np.linalg.norm(object_xy - eef[:2]) > LOST_M  # chasing an object left behind would drag the arm off
        if phase == "carry":
            target = np.array([*(eef[:2] + place_xy - object_xy), carry_z])
            return target, CLOSE, lost or bool(np.linalg.norm(place_xy - object_xy) < REACHED_M)
        if phase == "lower":
            floor = place_high[2] if self.goal.relation == "on" else place_low[2]
            drop = obj_bottom - (floor + PLACE_CLEARANCE_M[self.goal.relation])
            target = np.array([*(eef[:2] + place_xy - object_xy), eef[2] - drop])
            return target, CLOSE, lost or drop < STALL_M or self._stalled()
        if phase == "retreat":
            self._anchor = eef + [0.0, 0.0, RETREAT_M] if self._anchor is None else self._anchor
            return self._anchor, OPEN, self._reached(eef, eef_quat, self._anchor)
        return eef, OPEN, False  # done: hold still, open

    def _place_xy(self, low: np.ndarray, high: np.ndarray) -> np.ndarray:
        """Where the object goes: the centre of the goal's region site if MuJoCo has one, else of the place."""
        inner = self.sim.env.env
        if self.goal.region != self.goal.place and self.goal.region in inner.object_sites_dict:
            return np.array(inner.sim.data.get_site_xpos(self.goal.region)[:2])
        return (low[:2] + high[:2]) / 2

    def _object_xy(self) -> np.ndarray:
        """The target object's body position: what LIBERO's On/In predicates test (a bowl hanging by its rim tilts, so
        the centre of its bounds is off by a centimetre or more)."""
        return self.geometry.position(self.goal.target_object)[:2]

    def _reached(self, eef: np.ndarray, eef_quat: np.ndarray, target: np.ndarray) -> bool:
        turned = np.linalg.norm(rotation_error(eef_quat, self._grasp.yaw))
        return bool(np.linalg.norm(eef - target) < REACHED_M and turned < REACHED_RAD)

    def _stalled(self) -> bool:
        recent = self._heights[-STALL_STEPS:]
        return len(recent) == STALL_STEPS and max(recent) - min(recent) < STALL_M

    # --- scene -----------------------------------------------------------------------------------------------
    def _scene(self, frame: Frame) -> SceneState:
        objects = {name: tuple(float(v) for v in self.geometry.position(name)) for name in self.geometry.names}
        return SceneState(
            gripper_position=tuple(float(v) for v in frame.eef_pos),
            gripper_closed=self._gripper == CLOSE,
            holding=self.goal.target_object if self._holding(frame) else None,
            target_object=self.goal.target_object,
            target_place=self.goal.place,
            phase=self.phase,
            objects=objects,
        )

    def _holding(self, frame: Frame) -> bool:
        """The gripper is closed and the target object is off its resting height, near the fingers."""
        if self._gripper != CLOSE:
            return False
        corners = self.geometry.corners(self.goal.target_object)
        lifted = corners[:, 2].min() > self._rest_bottom + 0.01
        near = np.linalg.norm(self._object_xy() - np.asarray(frame.eef_pos[:2])) < 0.08
        return bool(lifted and near)
