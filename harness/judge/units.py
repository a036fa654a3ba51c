"""How an uplift is written, once, for every message, reason and page."""
from __future__ import annotations


def uplift_text(x: float, relative: bool = True) -> str:
    """+10.1% for a relative uplift, +6.0 pts for one in metric points (x = 0.06)."""
    return f"{x * 100:+.1f}%" if relative else f"{x * 100:+.1f} pts"


def signed_points(x: float) -> str:
    """+1.3 (points, without the unit), for intervals written as -4.8..+1.3 pts."""
    return f"{x * 100:+.1f}"
