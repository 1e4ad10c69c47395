"""What the worker-pool throughput benchmarks print: the machine they ran on, and the result as JSON or key lines.

Imported by the scripts beside it (`python benchmarks/x.py` puts this directory on sys.path).
"""

from __future__ import annotations

import json
import os
import platform
import sys
from collections.abc import Sequence
from typing import Any


def machine(load_before: tuple[float, float, float]) -> dict[str, Any]:
    """Cores, platform and the 1-minute load average before and now (a shared machine's load moves figures)."""
    return {"cpu_count": os.cpu_count(), "platform": platform.platform(),
            "load_average_1m_before": round(load_before[0], 2), "load_average_1m_after": round(os.getloadavg()[0], 2)}


def emit(result: dict[str, Any], headline: Sequence[str], as_json: bool) -> None:
    """Print `result` as one JSON object, or its `headline` keys one per line."""
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        for key in headline:
            print(f"{key}: {result[key]}")
    sys.stdout.flush()
