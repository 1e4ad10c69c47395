"""Seeded object-position jitter: every movable object displaced in x and y after the init state is set.

LIBERO's 50 fixed init states per task are easy to memorise (blind replay of one demonstration solves about half of
libero_spatial); displacing the objects measures whether a policy looks. Each movable object (a body with a free
joint in the task's `objects_dict`; fixtures such as cabinets and stoves stay put) moves by a uniform offset of up to
`max_offset_m` in x and in y. The draw comes from its own generator seeded with (env seed, init state), so an
episode's jitter does not depend on which episodes ran before it and leaves LIBERO's global numpy draws alone. A draw
that pushes two things into each other deeper than `MAX_NEW_PENETRATION_M` is redrawn; the settle steps that follow
resolve the small overlaps left.
"""

from __future__ import annotations

from typing import Any

import numpy as np

MAX_OBJECT_JITTER_M = 0.1  # beyond this objects leave their regions and the task changes
MAX_NEW_PENETRATION_M = 0.005  # deeper overlaps than this between named bodies are redrawn
MAX_DRAWS = 100
FREE_JOINT_QPOS = 7  # x, y, z, quaternion


class JitterError(RuntimeError):
    """No draw within MAX_DRAWS avoided a deep overlap: the magnitude is too large for this scene."""


def jitter_rng(env_seed: int, init_state_index: int) -> np.random.Generator:
    """The generator of one episode's jitter: depends on the env seed and init state only."""
    return np.random.default_rng([env_seed, init_state_index])


def movable_joints(env: Any) -> dict[str, str]:
    """{object name: its free joint} of the task's movable objects (LIBERO `OffScreenRenderEnv`)."""
    inner = env.env
    joints = {}
    for name, obj in inner.objects_dict.items():
        for joint in obj.joints:
            start, end = inner.sim.model.get_joint_qpos_addr(joint)
            if end - start == FREE_JOINT_QPOS:
                joints[name] = joint
    return joints


def jitter_objects(env: Any, max_offset_m: float, rng: np.random.Generator) -> dict[str, Any]:
    """Displace every movable object of `env` (after `set_init_state`); returns the fresh observation dict."""
    inner = env.env
    data = inner.sim.data
    joints = movable_joints(env)
    rest = {name: np.array(data.get_joint_qpos(joint)) for name, joint in joints.items()}
    allowed = _deep_overlaps(inner)  # overlaps the init state already has are not the jitter's doing
    for _ in range(MAX_DRAWS):
        for name, joint in joints.items():
            qpos = rest[name].copy()
            qpos[:2] += rng.uniform(-max_offset_m, max_offset_m, 2)
            data.set_joint_qpos(joint, qpos)
        inner.sim.forward()
        if _deep_overlaps(inner) <= allowed:
            break
    else:
        raise JitterError(f"no jitter of up to {max_offset_m} m in {MAX_DRAWS} draws keeps the objects apart")
    env.check_success()
    env._post_process()
    env._update_observables(force=True)
    return inner._get_observations()


def _deep_overlaps(inner: Any) -> set[tuple[str, str]]:
    """Pairs of named objects/fixtures whose geoms interpenetrate deeper than MAX_NEW_PENETRATION_M."""
    model, data = inner.sim.model, inner.sim.data
    owner = _body_owners(inner)
    pairs = set()
    for contact in data.contact[: data.ncon]:
        if contact.dist >= -MAX_NEW_PENETRATION_M:
            continue
        a, b = owner.get(model.geom_bodyid[contact.geom1]), owner.get(model.geom_bodyid[contact.geom2])
        if a and b and a != b:
            pairs.add((min(a, b), max(a, b)))
    return pairs


def _body_owners(inner: Any) -> dict[int, str]:
    """MuJoCo body id -> name of the object or fixture it belongs to (the robot and the table belong to none)."""
    model = inner.sim.model
    roots = {inner.obj_body_id[name]: name for name in (*inner.objects_dict, *inner.fixtures_dict)}
    owners = {}
    for body in range(model.nbody):
        ancestor = body
        while ancestor and ancestor not in roots:
            ancestor = model.body_parentid[ancestor]
        if ancestor:
            owners[body] = roots[ancestor]
    return owners
