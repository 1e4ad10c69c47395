"""The replay's HTML report: one self-contained file (frames inlined as PNG data URIs, no scripts, no fetches).

Per chunk: the two camera frames the policy saw, the recorded and the replayed CoT side by side, and both chunks as
tables whose differing cells are marked, with the per-dimension L2 / max-abs difference and the gripper flips.
"""

from __future__ import annotations

import base64
import io
from html import escape
from typing import Any

import numpy as np
from PIL import Image

from dtvla_policy.model.conventions import COMMAND_NAMES
from dtvla_policy.recording.replay import ChunkComparison

STYLE = """
body{font-family:sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse;font-size:12px}
td,th{border:1px solid #ccc;padding:2px 5px;text-align:right}.diff{background:#fdd}.same{color:#070}
.changed{color:#b00}.cols{display:flex;gap:1.5em;flex-wrap:wrap}.cot{white-space:pre-wrap;max-width:38em;
background:#f6f6f6;padding:.5em}img{image-rendering:pixelated;width:160px;height:160px}section{margin-bottom:2em}
"""


def _png_uri(rgb: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(rgb, dtype=np.uint8)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _chunk_table(actions: np.ndarray, other: np.ndarray) -> str:
    head = "<tr><th>step</th>" + "".join(f"<th>{escape(n)}</th>" for n in COMMAND_NAMES) + "</tr>"
    rows = []
    for k, row in enumerate(actions):
        cells = "".join(
            f"<td class='{'diff' if k >= len(other) or value != other[k][d] else ''}'>{value:+.4f}</td>"
            for d, value in enumerate(row))
        rows.append(f"<tr><td>{k}</td>{cells}</tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def _section(comparison: ChunkComparison) -> str:
    record, info = comparison.recorded, comparison.as_dict()
    verdict = "<span class='same'>identical</span>" if comparison.identical else "<span class='changed'>differs</span>"
    metrics = "".join(f"<tr><td>{escape(n)}</td><td>{info['action_l2'][n]:.4f}</td>"
                      f"<td>{info['action_max_abs'][n]:.4f}</td></tr>" for n in COMMAND_NAMES)
    recorded = np.asarray(record.actions, dtype=np.float64)
    replayed = np.asarray(comparison.actions, dtype=np.float64)
    return f"""<section><h2>chunk {record.index} ({verdict}) at stamp {record.stamp_ns / 1e9:.3f} s</h2>
<p>task: {escape(record.task)} | mode {escape(comparison.mode)} | CoT cap {comparison.max_cot_tokens} |
gripper flips {comparison.gripper_flips} | CoT similarity {info['cot_similarity']}</p>
<div class='cols'><div><img alt='agentview' src='{_png_uri(record.agentview)}'><br>agentview</div>
<div><img alt='wrist' src='{_png_uri(record.wrist)}'><br>wrist</div>
<div><table><tr><th>dim</th><th>L2</th><th>max abs</th></tr>{metrics}</table></div></div>
<div class='cols'><div><h3>recorded CoT</h3><div class='cot'>{escape(record.cot) or '<i>(empty)</i>'}</div></div>
<div><h3>replayed CoT</h3><div class='cot'>{escape(comparison.cot) or '<i>(empty)</i>'}</div></div></div>
<div class='cols'><div><h3>recorded chunk</h3>{_chunk_table(recorded, replayed)}</div>
<div><h3>replayed chunk</h3>{_chunk_table(replayed, recorded)}</div></div></section>"""


def render_html(comparisons: list[ChunkComparison], header: dict[str, Any]) -> str:
    """The whole report; `header` (bag, checkpoint, summary, ...) is shown as a key/value table on top."""
    rows = "".join(f"<tr><th>{escape(str(k))}</th><td style='text-align:left'>{escape(str(v))}</td></tr>"
                   for k, v in header.items())
    body = "".join(_section(c) for c in comparisons)
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>dtvla replay</title><style>{STYLE}</style>"
            f"</head><body><h1>dtvla replay</h1><table>{rows}</table>{body}</body></html>\n")
