"""A picture of one policy step for humans: both camera views, the chain-of-thought and the action chunk.

Published by the policy node on ~/reasoning_image (rqt_image_view, Foxglove) and reusable for evaluation videos.
Drawn with PIL only; the layout is fixed so a video of many steps does not jump.
"""

from __future__ import annotations

import textwrap

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from dtvla_policy.model.conventions import COMMAND_NAMES

VIEW = 224  # px per camera view
PANEL_H = 150  # CoT text panel height
PLOT_W = 240  # chunk plot width
_COLOURS = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#000000"]


def _plot_chunk(draw: ImageDraw.ImageDraw, actions: np.ndarray, box: tuple[int, int, int, int]) -> None:
    """One line per command dim over the chunk's steps, each dim scaled by the chunk's max |value|."""
    x0, y0, x1, y1 = box
    draw.rectangle(box, outline="#888888")
    mid = (y0 + y1) / 2
    draw.line([(x0, mid), (x1, mid)], fill="#cccccc")
    steps = actions.shape[0]
    scale = max(float(np.max(np.abs(actions))), 1e-6)
    for dim in range(actions.shape[1]):
        points = [
            (x0 + 4 + (x1 - x0 - 8) * k / max(steps - 1, 1), mid - (y1 - y0 - 8) / 2 * float(actions[k, dim]) / scale)
            for k in range(steps)
        ]
        draw.line(points, fill=_COLOURS[dim % len(_COLOURS)], width=2)
    for dim, name in enumerate(COMMAND_NAMES):
        draw.text((x0 + 4, y1 + 2 + 11 * dim), name, fill=_COLOURS[dim % len(_COLOURS)])


def render_reasoning_view(
    agentview: np.ndarray, wrist: np.ndarray, cot: str, actions: np.ndarray, caption: str = ""
) -> np.ndarray:
    """-> (VIEW + PANEL_H, 2 * VIEW + PLOT_W, 3) uint8 RGB image."""
    width, height = 2 * VIEW + PLOT_W, VIEW + PANEL_H
    canvas = Image.new("RGB", (width, height), "white")
    for index, view in enumerate((agentview, wrist)):
        canvas.paste(Image.fromarray(np.ascontiguousarray(view)).resize((VIEW, VIEW)), (index * VIEW, 0))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    _plot_chunk(draw, np.asarray(actions, dtype=np.float32), (2 * VIEW + 8, 8, width - 8, VIEW - 80))
    text = cot.strip() or "(no chain-of-thought: masked mode)"
    lines = textwrap.wrap(text, width=(width - 16) // 6)[: (PANEL_H - 24) // 12]
    draw.text((8, VIEW + 4), caption, fill="#555555", font=font)
    for row, line in enumerate(lines):
        draw.text((8, VIEW + 20 + 12 * row), line, fill="black", font=font)
    return np.asarray(canvas)
