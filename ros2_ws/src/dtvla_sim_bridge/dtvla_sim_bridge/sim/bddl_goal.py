"""The goal of a LIBERO task read from its BDDL file: which object goes on or in which place.

A BDDL goal is an s-expression, `(:goal (And (On akita_black_bowl_1 plate_1)))` or
`(:goal (And (In butter_1 basket_1_contain_region)))`. The scripted expert handles goals of exactly one `On` or `In`
predicate (libero_spatial and libero_object); anything else is refused with the goal quoted. A place given as a
region (`basket_1_contain_region`) belongs to the object or fixture whose name prefixes it (`basket_1`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

PLACE_RELATIONS = ("on", "in")
_TOKEN = re.compile(r"\(|\)|[^\s()]+")

SExpr = str | list["SExpr"]


class GoalError(ValueError):
    """A BDDL text without a goal, or a goal the expert cannot carry out."""


@dataclass(frozen=True)
class PickPlaceGoal:
    """Put `target_object` on / in `place` (`relation`); `region` is the BDDL's place argument as written."""

    target_object: str
    place: str  # an object or fixture name
    relation: str  # "on" or "in"
    region: str


def goal_predicates(bddl_text: str) -> list[tuple[str, ...]]:
    """The predicates the `:goal` conjunction requires, lower-cased names first: [("on", "bowl_1", "plate_1")]."""
    goal = _find_goal(_parse(bddl_text))
    if goal is None:
        raise GoalError("the BDDL text has no (:goal ...) section")
    body = goal[1] if len(goal) == 2 else None
    if not isinstance(body, list) or not body:
        raise GoalError(f"the goal must hold one expression, got {_show(goal)}")
    clauses = body[1:] if isinstance(body[0], str) and body[0].lower() == "and" else [body]
    predicates = []
    for clause in clauses:
        if not isinstance(clause, list) or not clause or not all(isinstance(atom, str) for atom in clause):
            raise GoalError(f"goal clause {_show(clause)} is not a flat predicate such as (On a b)")
        predicates.append((clause[0].lower(), *clause[1:]))
    return predicates


def pick_place_goal(bddl_text: str, names: Iterable[str]) -> PickPlaceGoal:
    """The single On/In goal of a task; `names` are the task's object and fixture names (to resolve regions)."""
    predicates = goal_predicates(bddl_text)
    if len(predicates) != 1 or predicates[0][0] not in PLACE_RELATIONS or len(predicates[0]) != 3:
        raise GoalError(f"the scripted expert handles one (On a b) or (In a b) goal, got {predicates}")
    relation, target, region = predicates[0]
    known = sorted(set(names), key=len, reverse=True)
    place = next((name for name in known if region == name or region.startswith(f"{name}_")), None)
    if target not in known or place is None:
        raise GoalError(f"goal {predicates[0]} names something that is not among the task's objects and fixtures "
                        f"{sorted(known)}")
    return PickPlaceGoal(target_object=target, place=place, relation=relation, region=region)


def _parse(text: str) -> list[SExpr]:
    """Every top-level s-expression of `text` (`;` comments removed)."""
    text = "\n".join(line.split(";", 1)[0] for line in text.splitlines())
    stack: list[list[SExpr]] = [[]]
    for token in _TOKEN.findall(text):
        if token == "(":
            stack.append([])
        elif token == ")":
            if len(stack) == 1:
                raise GoalError("unbalanced BDDL text: a ')' closes nothing")
            done = stack.pop()
            stack[-1].append(done)
        else:
            stack[-1].append(token)
    if len(stack) != 1:
        raise GoalError(f"unbalanced BDDL text: {len(stack) - 1} '(' never closed")
    return stack[0]


def _find_goal(expressions: list[SExpr]) -> list[SExpr] | None:
    for expression in expressions:
        if isinstance(expression, list):
            if expression and expression[0] == ":goal":
                return expression
            found = _find_goal(expression)
            if found is not None:
                return found
    return None


def _show(expression: SExpr) -> str:
    if isinstance(expression, str):
        return expression
    return "(" + " ".join(_show(e) for e in expression) + ")"
