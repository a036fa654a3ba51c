"""How numbers, times and labels read on a report page: the `fmt_*` filters and badge classes.

Every formatter takes whatever the store holds (None, NaN, a string) and never raises: a value
that is not a finite number is a dash.
"""
from __future__ import annotations

import html
import math
from datetime import datetime
from typing import Any

from harness.judge import decision
from harness.judge.decision import FINE_TUNE, INCONCLUSIVE_VERDICT, KEEP_PROMPTING
from harness.judge.outcomes import FAIL, INCONCLUSIVE, PASS, SKIP
from harness.judge.units import uplift_text

# Badge classes, one per outcome / verdict / status / check level / sweep-trial state (fixed
# strings, never data; a trial's FAIL shares the gate outcome's).
_BADGE = {PASS: "pass", FAIL: "fail", INCONCLUSIVE: "warn", SKIP: "skip",
          FINE_TUNE: "pass", KEEP_PROMPTING: "fail", INCONCLUSIVE_VERDICT: "warn",
          decision.RUN_FAILED: "fail", decision.RUNNING: "skip",
          "complete": "pass", "failed": "fail", "running": "skip",
          "COMPLETE": "pass", "PRUNED": "warn",
          "error": "fail", "warning": "warn", "info": "skip"}


def is_finite(x: Any) -> bool:
    """A real number that is neither NaN nor infinite (a bool is not a number here)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def finite_or_none(value: Any) -> float | None:
    """A finite number, or None (missing, NaN, infinite, or not a number)."""
    return float(value) if is_finite(value) else None


def shorten(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def fmt_num(x: Any, digits: int = 3) -> str:
    if not is_finite(x):
        return "—"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if float(x).is_integer() and abs(x) >= 10:
        return f"{x:.0f}"
    return f"{x:.{digits}f}"


def fmt_tokens(x: Any) -> str:
    return f"{x:,.0f}" if is_finite(x) else "—"


def fmt_ms(x: Any) -> str:
    if not is_finite(x):
        return "—"
    return f"{x:,.0f} ms" if x < 1000 else f"{x / 1000:,.2f} s"


def fmt_duration(x: Any) -> str:
    if not is_finite(x):
        return "—"
    if x < 60:
        return f"{x:.1f} s"
    if x < 3600:
        return f"{int(x // 60)}m {int(x % 60):02d}s"
    return f"{int(x // 3600)}h {int(x % 3600 // 60):02d}m"


def fmt_uplift(x: Any, relative: bool = True) -> str:
    if not is_finite(x):
        return "—"
    return uplift_text(x, relative)


def fmt_threshold(x: Any, relative: bool = True) -> str:
    if not is_finite(x):
        return "required"
    return f"{x * 100:g}%" if relative else f"{x * 100:g}-point"


def fmt_when(x: Any) -> str:
    if isinstance(x, datetime):
        return x.strftime("%Y-%m-%d %H:%M UTC")
    return "—" if x is None else str(x)


def fmt_hash(x: Any, n: int = 12) -> str:
    return "—" if not x else str(x)[:n]


def fmt_float(x: float) -> str:
    """A float as people write learning rates: 0.05, 2, 1e-4, 2.5e-5 (not 0.0001 or 1e-04)."""
    if x == 0 or 0.01 <= abs(x) < 1e5:
        return f"{x:.6g}"
    mantissa, exponent = f"{x:.5e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def badge_class(label: Any) -> str:
    return _BADGE.get(str(label), "skip")


def now_text() -> str:
    """The local time now, for a page's "generated" line."""
    return datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")


def json_plain(value: Any) -> Any:
    """JSON's values only: datetimes as ISO text, and NaN or infinity (which JSON cannot
    carry, and which a reader would take for a number) as null."""
    if isinstance(value, dict):
        return {str(k): json_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_plain(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def md_cell(text: Any) -> str:
    """Text safe inside a table cell: no pipe ends the cell, no newline ends the row."""
    return md_inline(text).replace("|", "\\|")


def md_inline(text: Any) -> str:
    """One line, with <, > and & escaped: a message is text, never markup."""
    return html.escape(" ".join(str(text).split()), quote=False)
