"""The report's charts as inline SVG: loss curves, sweep scatters, the uplift interval, sparklines, bars.

Plain functions returning Markup (or None for nothing to draw). Every text in them is escaped;
no chart loads anything.
"""
from __future__ import annotations

import math
import re
from typing import Any, Sequence

from markupsafe import Markup, escape

from harness.judge.outcomes import FAIL, INCONCLUSIVE, PASS, SKIP
from harness.report.format import fmt_float, fmt_num, fmt_uplift, is_finite, shorten

_OUTCOME_COLOR = {PASS: "#15803d", FAIL: "#b91c1c", INCONCLUSIVE: "#b45309", SKIP: "#6b7280"}
_PALETTE = ["#2563eb", "#ea580c", "#16a34a", "#9333ea", "#0891b2", "#be123c"]
LOG_SCALE_RATIO = 10     # loss spanning 10x or more (a first eval at ~5, training ending near 0.2) gets a log axis


def wants_log_axis(losses: list[float]) -> bool:
    """Whether the largest loss is LOG_SCALE_RATIO times the smallest or more (all above 0): a linear
    axis would flatten the end of training against the floor."""
    return bool(losses) and min(losses) > 0 and max(losses) / min(losses) >= LOG_SCALE_RATIO


def _nice_step(span: float, count: int) -> float:
    raw = span / max(1, count)
    power = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * power:
            return m * power
    return 10 * power


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values covering [lo, hi]."""
    if not (is_finite(lo) and is_finite(hi)):
        return [0.0, 1.0]
    if hi < lo:
        lo, hi = hi, lo
    if hi == lo:
        pad = abs(lo) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    step = _nice_step(hi - lo, count)
    start, end = math.floor(lo / step + 1e-9) * step, math.ceil(hi / step - 1e-9) * step
    n = int(round((end - start) / step))
    return [round(start + i * step, 12) for i in range(n + 1)]


def _tick_label(value: float, step: float, scale: float = 1.0, suffix: str = "") -> str:
    decimals = max(0, -math.floor(math.log10(step * scale) + 1e-9)) if step > 0 else 0
    if decimals == 0 and abs(step * scale - round(step * scale)) > 1e-9:
        decimals = 1
    text = f"{value * scale:.{min(decimals, 6)}f}"
    if text.strip("-0.") == "":
        text = text.lstrip("-")
    return text + suffix


def _f(x: float) -> str:
    return f"{x:.1f}"


def log_ticks(lo: float, hi: float) -> list[float]:
    """1-2-5 ticks covering [lo, hi] on a log axis (both > 0)."""
    ticks = []
    for e in range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1):
        ticks += [m * 10.0 ** e for m in (1, 2, 5)]
    first = max(t for t in ticks if t <= lo * (1 + 1e-9))
    last = min(t for t in ticks if t >= hi * (1 - 1e-9))
    if last <= first:  # lo == hi, on a tick: widen to the next tick up so the axis has a span
        last = min(t for t in ticks if t > first * (1 + 1e-9))
    return [float(f"{t:.6g}") for t in ticks if first <= t <= last]


def line_chart(series: list[dict], *, width: int = 560, height: int = 260, x_label: str = "",
               y_label: str = "", title: str = "", log_y: bool = False,
               x_marks: Sequence[tuple[float, str]] = ()) -> Markup | None:
    """A line chart: series are {label, points: [(x, y)], color, markers, dashed, legend}; NaN/None
    points break the line. A series with legend=False has no legend entry, and one with no points
    is only a legend entry.

    log_y puts y on a log axis (points at or below zero are then left out); x_marks are labelled
    vertical lines (epoch ends)."""
    def usable(x, y):
        return is_finite(x) and is_finite(y) and (y > 0 or not log_y)

    finite = [[(x, y) if usable(x, y) else None for x, y in s.get("points", [])] for s in series]
    xs = [p[0] for pts in finite for p in pts if p]
    ys = [p[1] for pts in finite for p in pts if p]
    if not xs:
        return None
    left, right, top, bottom = 62, 18, 40, 46
    pw, ph = width - left - right, height - top - bottom
    xt = nice_ticks(min(xs), max(xs), 6)
    yt = log_ticks(min(ys), max(ys)) if log_y else nice_ticks(min(ys), max(ys), 5)
    x0, x1 = xt[0], xt[-1]
    fy = math.log10 if log_y else (lambda v: v)
    y0, y1 = fy(yt[0]), fy(yt[-1])

    def sx(x):
        return left + (x - x0) / (x1 - x0) * pw

    def sy(y):
        return top + ph - (fy(y) - y0) / (y1 - y0) * ph

    out = [f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
           f'role="img" aria-label="{escape(title)}">', f"<title>{escape(title)}</title>"]
    y_ticks = [(sy(t), f"{t:g}" if log_y else _tick_label(t, yt[1] - yt[0])) for t in yt]
    x_ticks = [(sx(t), _tick_label(t, xt[1] - xt[0])) for t in xt]
    out += _axes((left, top, pw, ph), x_ticks, y_ticks, x_label=x_label, y_label=y_label, height=height)
    for x, text in x_marks:
        if is_finite(x) and x0 < x <= x1:
            out.append(f'<line x1="{_f(sx(x))}" x2="{_f(sx(x))}" y1="{top}" y2="{top + ph}" class="mark"/>')
            out.append(f'<text x="{_f(sx(x) - 4)}" y="{top + 12}" text-anchor="end" class="mark-label">'
                       f"{escape(text)}</text>")
    legend_x = left
    for i, (s, pts) in enumerate(zip(series, finite)):
        color = _color(s.get("color"), i)
        # a dashed, faded line: a series that stopped early (a pruned or failed sweep trial)
        dash = ' stroke-dasharray="5 4" stroke-opacity="0.75"' if s.get("dashed") else ""
        path, pen_up = [], True
        for p in pts:
            if p is None:
                pen_up = True
                continue
            path.append(f"{'M' if pen_up else 'L'}{_f(sx(p[0]))} {_f(sy(p[1]))}")
            pen_up = False
        if path:
            out.append(f'<path d="{" ".join(path)}" fill="none" stroke="{color}" stroke-width="2" '
                       f'stroke-linejoin="round"{dash}/>')
        drawn = [p for p in pts if p]
        if s.get("markers") or len(drawn) == 1:
            for p in drawn[:200]:
                out.append(f'<circle cx="{_f(sx(p[0]))}" cy="{_f(sy(p[1]))}" r="3.5" fill="{color}">'
                           f"<title>{escape(s.get('label', ''))}: step {escape(fmt_num(p[0]))}, "
                           f"{escape(fmt_num(p[1], 4))}</title></circle>")
        if s.get("legend", True):
            label = str(s.get("label", ""))
            out.append(f'<line x1="{legend_x}" x2="{legend_x + 18}" y1="16" y2="16" stroke="{color}" '
                       f'stroke-width="3"{dash}/>')
            out.append(f'<text x="{legend_x + 23}" y="20" class="legend">{escape(label)}</text>')
            legend_x += 40 + 7 * len(label)
    out.append("</svg>")
    return Markup("".join(out))


def _axes(box: tuple[float, float, float, float], x_ticks: Sequence[tuple[float, str]],
          y_ticks: Sequence[tuple[float, str]], *, x_label: str, y_label: str, height: int) -> list[str]:
    """Grid lines, tick labels, the two axis lines and their labels around a plot box (left, top,
    width, height); ticks are (pixel position, text)."""
    left, top, pw, ph = box
    out = []
    for y, text in y_ticks:
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{_f(y)}" y2="{_f(y)}" class="grid"/>')
        out.append(f'<text x="{left - 6}" y="{_f(y + 4)}" text-anchor="end" class="tick">{escape(text)}</text>')
    for x, text in x_ticks:
        out.append(f'<line x1="{_f(x)}" x2="{_f(x)}" y1="{top + ph}" y2="{top + ph + 4}" class="axis"/>')
        out.append(f'<text x="{_f(x)}" y="{top + ph + 17}" text-anchor="middle" class="tick">{escape(text)}</text>')
    out.append(f'<line x1="{left}" x2="{left + pw}" y1="{top + ph}" y2="{top + ph}" class="axis"/>')
    out.append(f'<line x1="{left}" x2="{left}" y1="{top}" y2="{top + ph}" class="axis"/>')
    if x_label:
        out.append(f'<text x="{left + pw / 2:.1f}" y="{height - 8}" text-anchor="middle" class="label">'
                   f"{escape(x_label)}</text>")
    if y_label:
        out.append(f'<text x="16" y="{top + ph / 2:.1f}" text-anchor="middle" class="label" '
                   f'transform="rotate(-90 16 {top + ph / 2:.1f})">{escape(y_label)}</text>')
    return out


# Trial markers, by kind: the best trial in the candidate's blue, the rest in slate; pruned hollow.
TRIAL_COLORS = {"best": "#2563eb", "complete": "#64748b", "pruned": "#94a3b8", "failed": "#dc2626"}
SCATTER_STRIP = 26   # px under a scatter's plot where pruned trials, which have no score, sit
SCATTER_PAD = 0.05   # of the score range, added above and below it
DODGE_PX = 9         # markers on the same spot are set side by side this far apart


def scatter_chart(points: list[dict], *, x_label: str = "", y_label: str = "", title: str = "",
                  log_x: bool = False, categories: Sequence[str] = (), width: int = 330,
                  height: int = 250) -> Markup | None:
    """Sweep trials as dots of their score (y) against one setting (x).

    points are {x, y, kind, label} with kind complete | best | pruned. Pruned trials have no score:
    they sit as hollow rings in a strip under the plot labelled "pruned". The best is a larger dot
    in a ring. With categories, x is an index into them and the axis names them; log_x puts x on
    a log axis (x > 0).
    """
    log_x = log_x and not categories
    shown = [p for p in points if is_finite(p.get("x")) and (p["x"] > 0 or not log_x)]
    if not shown:
        return None
    pruned = [p for p in shown if p.get("kind") == "pruned"]
    scored = [p for p in shown if p.get("kind") != "pruned" and is_finite(p.get("y"))]
    left, right, top, bottom = 62, 30, 30, 46
    strip = SCATTER_STRIP if pruned else 0
    pw, ph = width - left - right, height - top - bottom - strip
    xs = [p["x"] for p in shown]
    if categories:
        lo, hi = -0.5, len(categories) - 0.5
        xt = [(float(i), shorten(str(c), 12)) for i, c in enumerate(categories)]
    elif log_x:
        ticks = log_ticks(min(xs), max(xs))
        lo, hi, xt = ticks[0], ticks[-1], [(t, fmt_float(t)) for t in ticks]
    else:
        ticks = nice_ticks(min(xs), max(xs), 5)
        lo, hi, xt = ticks[0], ticks[-1], [(t, _tick_label(t, ticks[1] - ticks[0])) for t in ticks]
    if scored:  # a little room above and below, so no dot sits on the plot's edge or the pruned strip
        lo_y, hi_y = min(p["y"] for p in scored), max(p["y"] for p in scored)
        pad = (hi_y - lo_y) * SCATTER_PAD
        yt = nice_ticks(lo_y - pad, hi_y + pad, 4)
    else:
        yt = [0.0, 1.0]
    fx = math.log10 if log_x else (lambda v: v)

    def sx(x):
        return left + (fx(x) - fx(lo)) / (fx(hi) - fx(lo)) * pw

    def sy(y):
        return top + ph - (y - yt[0]) / (yt[-1] - yt[0]) * ph

    out = [f'<svg class="scatter" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
           f'role="img" aria-label="{escape(title)}">', f"<title>{escape(title)}</title>"]
    out += _axes((left, top, pw, ph + strip), [(sx(x), text) for x, text in xt],
                 [(sy(t), _tick_label(t, yt[1] - yt[0])) for t in yt], x_label=x_label, y_label=y_label,
                 height=height)
    strip_y = top + ph + strip / 2 + 2
    if pruned:
        out.append(f'<text x="{left - 6}" y="{_f(strip_y + 4)}" text-anchor="end" class="tick">pruned</text>')
    spots = [(p, sx(p["x"]), strip_y if p.get("kind") == "pruned" else sy(p["y"])) for p in scored + pruned]
    nudges = _dodge([(round(x), round(y)) for _, x, y in spots])
    # the best last, so no other marker covers it
    for (p, x, y), dx in sorted(zip(spots, nudges), key=lambda s: s[0][0].get("kind") == "best"):
        out.append(_dot(p.get("kind", "complete"), x + dx, y, cls="pt", title=str(p.get("label", ""))))
    legend_x = left
    drawn = {p.get("kind") for p in scored + pruned}
    for kind, text in (("complete", "complete"), ("best", "best trial"), ("pruned", "pruned")):
        if kind not in drawn:
            continue
        out.append(_dot(kind, legend_x + 6, 14, cls="key"))
        out.append(f'<text x="{legend_x + 18}" y="18" class="legend">{text}</text>')
        legend_x += 30 + 7 * len(text)
    out.append("</svg>")
    return Markup("".join(out))


def _dot(kind: str, x: float, y: float, *, cls: str, title: str = "") -> str:
    """One trial marker: a filled dot, a hollow ring (pruned), or a bigger ringed dot (the best)."""
    color = TRIAL_COLORS.get(kind, TRIAL_COLORS["complete"])
    tip = f"<title>{escape(title)}</title>" if title else ""
    if kind == "pruned":
        return (f'<circle class="{cls} pruned" cx="{_f(x)}" cy="{_f(y)}" r="4" fill="#fff" stroke="{color}" '
                f'stroke-width="1.5">{tip}</circle>')
    if kind == "best":
        return (f'<circle cx="{_f(x)}" cy="{_f(y)}" r="8.5" fill="none" stroke="{color}" stroke-width="1.5"/>'
                f'<circle class="{cls} best" cx="{_f(x)}" cy="{_f(y)}" r="5" fill="{color}">{tip}</circle>')
    return f'<circle class="{cls} complete" cx="{_f(x)}" cy="{_f(y)}" r="4" fill="{color}">{tip}</circle>'


def _dodge(spots: Sequence[Any]) -> list[float]:
    """Horizontal offsets (px) that set side by side the markers sharing a spot, centred on it."""
    totals: dict[Any, int] = {}
    for spot in spots:
        totals[spot] = totals.get(spot, 0) + 1
    seen: dict[Any, int] = {}
    offsets = []
    for spot in spots:
        i = seen.get(spot, 0)
        seen[spot] = i + 1
        offsets.append((i - (totals[spot] - 1) / 2) * DODGE_PX)
    return offsets


def _color(value: Any, i: int) -> str:
    if isinstance(value, str) and re.fullmatch(r"#[0-9a-fA-F]{3,8}", value):
        return value
    return _PALETTE[i % len(_PALETTE)]


def interval_chart(uplift: float | None, low: float | None, high: float | None, threshold: float | None,
                   relative: bool = True, outcome: str | None = None, *, compact: bool = False,
                   axis_label: str = "") -> Markup | None:
    """The uplift's interval as a bar against the bar it must clear (dashed) and zero (solid).

    The full chart is wide enough to read across a room: labelled ticks, the estimate and both
    ends of the interval written out, and the region that clears the bar shaded. The compact one
    (for the index's table) keeps only the shapes; its numbers are in the cells beside it.
    """
    if not is_finite(uplift) and not (is_finite(low) and is_finite(high)):
        return None
    values = [v for v in (uplift, low, high, threshold, 0.0) if is_finite(v)]
    ticks = nice_ticks(min(values), max(values), 3 if compact else 6)
    d0, d1 = ticks[0], ticks[-1]
    if compact:
        width, height, left, right, zone_top, bar_y, axis_y = 180, 30, 6, 6, 3, 13, 24
    else:
        # rows, top to bottom: bar label (y=16), shaded zone from 26, estimate label, the bar (72),
        # the axis (100), tick labels (117), the axis label (142)
        width, height, left, right, zone_top, bar_y, axis_y = 960, 150, 80, 80, 26, 72, 100
    pw = width - left - right

    def sx(v):
        return left + (v - d0) / (d1 - d0) * pw

    suffix = "%" if relative else " pts"
    color = _OUTCOME_COLOR.get(outcome or "", "#374151")
    label = (f"uplift {fmt_uplift(uplift, relative)}, interval {fmt_uplift(low, relative)} .. "
             f"{fmt_uplift(high, relative)}, bar {fmt_uplift(threshold, relative)}")
    cls = "interval compact" if compact else "interval wide"
    out = [f'<svg class="{cls}" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
           f'aria-label="{escape(label)}"><title>{escape(label)}</title>']
    if is_finite(threshold):
        x = sx(threshold)
        out.append(f'<rect x="{_f(x)}" y="{zone_top}" width="{_f(max(left + pw - x, 0))}" '
                   f'height="{axis_y - zone_top}" class="zone"/>')
    out.append(f'<line x1="{left}" x2="{left + pw}" y1="{axis_y}" y2="{axis_y}" class="axis"/>')
    if not compact:
        for t in ticks:
            x = sx(t)
            out.append(f'<line x1="{_f(x)}" x2="{_f(x)}" y1="{axis_y}" y2="{axis_y + 5}" class="axis"/>')
            out.append(f'<text x="{_f(x)}" y="{axis_y + 19}" text-anchor="middle" class="tick">'
                       f"{escape(_tick_label(t, ticks[1] - ticks[0], 100, suffix))}</text>")
        if axis_label:
            out.append(f'<text x="{left + pw / 2:.1f}" y="{height - 6}" text-anchor="middle" class="label">'
                       f"{escape(axis_label)}</text>")
    out.append(f'<line x1="{_f(sx(0))}" x2="{_f(sx(0))}" y1="{zone_top}" y2="{axis_y}" class="zero"/>')
    if is_finite(threshold):
        x = sx(threshold)
        out.append(f'<line x1="{_f(x)}" x2="{_f(x)}" y1="{zone_top - (0 if compact else 6)}" y2="{axis_y}" '
                   f'class="threshold"/>')
        if not compact:
            out.append(f'<text x="{_f(x)}" y="15" text-anchor="middle" class="label">'
                       f"bar {escape(fmt_uplift(threshold, relative))}</text>")
            if left + pw - x > 190:  # room for the zone's own label right of the bar's
                out.append(f'<text x="{left + pw - 6}" y="{zone_top + 15}" text-anchor="end" class="zone-label">'
                           f"clears the bar</text>")
    half = 4 if compact else 8
    if is_finite(low) and is_finite(high):
        x_lo, x_hi = sx(min(low, high)), sx(max(low, high))
        out.append(f'<rect x="{_f(x_lo)}" y="{bar_y - half}" width="{_f(max(x_hi - x_lo, 1.5))}" '
                   f'height="{2 * half}" rx="{half}" fill="{color}" fill-opacity="0.3" stroke="{color}"/>')
        if not compact:
            for v, anchor, dx in ((min(low, high), "end", -8), (max(low, high), "start", 8)):
                out.append(f'<text x="{_f(sx(v) + dx)}" y="{bar_y + 5}" text-anchor="{anchor}" class="end">'
                           f"{escape(fmt_uplift(v, relative))}</text>")
    if is_finite(uplift):
        out.append(f'<circle cx="{_f(sx(uplift))}" cy="{bar_y}" r="{3.5 if compact else 6.5}" fill="{color}" '
                   f'stroke="#fff" stroke-width="1.5"/>')
        if not compact:
            out.append(f'<text x="{_f(sx(uplift))}" y="{bar_y - 15}" text-anchor="middle" class="estimate" '
                       f'fill="{color}">{escape(fmt_uplift(uplift, relative))}</text>')
    out.append("</svg>")
    return Markup("".join(out))


def sparkline(values: Sequence[float | None], *, width: int = 110, height: int = 26) -> Markup | None:
    """A tiny line of a metric over runs (oldest to newest); missing values are skipped."""
    points = [(i, v) for i, v in enumerate(values) if is_finite(v)]
    if not points:
        return None
    lo, hi = min(v for _, v in points), max(v for _, v in points)
    n = max(len(values) - 1, 1)
    pad = 3

    def sx(i):
        return pad + i / n * (width - 2 * pad) if len(values) > 1 else width / 2

    def sy(v):
        return height / 2 if hi == lo else pad + (hi - v) / (hi - lo) * (height - 2 * pad)

    label = "candidate over runs: " + ", ".join(fmt_num(v) for _, v in points)
    coords = " ".join(f"{_f(sx(i))},{_f(sy(v))}" for i, v in points)
    last_i, last_v = points[-1]
    return Markup(f'<svg class="spark" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
                  f'role="img" aria-label="{escape(label)}"><title>{escape(label)}</title>'
                  f'<polyline points="{coords}" fill="none" stroke="#2563eb" stroke-width="1.5"/>'
                  f'<circle cx="{_f(sx(last_i))}" cy="{_f(sy(last_v))}" r="2.5" fill="#2563eb"/></svg>')


def bar_chart(bars: list[tuple[str, float | None, str]], *, label: str = "", width: int = 760,
              ticks: dict[str, float] | None = None, reference: tuple[float, str] | None = None) -> Markup | None:
    """Horizontal bars, one per approach: (name, value, role) with role candidate|best|baseline.
    ticks: a mark on some bars (e.g. the best cut of its scores); reference: a dashed line across
    every bar, with its label (e.g. the class prior)."""
    shown = [(n, v, r) for n, v, r in bars if is_finite(v)]
    if not shown:
        return None
    ticks = {n: v for n, v in (ticks or {}).items() if is_finite(v)}
    row, left, right, top = 24, 250, 60, 22  # left: room for a 34-character name
    height = top + row * len(shown) + 8 + (14 if reference else 0)
    hi = max(max(v for _, v, _ in shown), 0.0)
    hi = 1.0 if 0 <= hi <= 1 else hi
    lo = min(min(v for _, v, _ in shown), 0.0)
    pw = width - left - right
    colors = {"candidate": "#2563eb", "best": "#0f766e", "baseline": "#9ca3af"}
    out = [f'<svg class="bars" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
           f'aria-label="{escape(label)}"><title>{escape(label)}</title>',
           f'<text x="{left}" y="13" class="label">{escape(label)}</text>']
    for i, (name, value, role) in enumerate(shown):
        y = top + i * row
        x0 = left + (0 - lo) / (hi - lo) * pw if hi > lo else left
        x1 = left + (value - lo) / (hi - lo) * pw if hi > lo else left
        out.append(f'<text x="{left - 8}" y="{y + 15}" text-anchor="end" class="tick">{escape(shorten(name, 34))}'
                   f"</text>")
        out.append(f'<rect x="{_f(min(x0, x1))}" y="{y + 4}" width="{_f(max(abs(x1 - x0), 1))}" height="14" rx="2" '
                   f'fill="{colors.get(role, "#9ca3af")}"/>')
        if name in ticks and hi > lo:
            xt = left + (ticks[name] - lo) / (hi - lo) * pw
            out.append(f'<line x1="{_f(xt)}" x2="{_f(xt)}" y1="{y + 1}" y2="{y + 21}" stroke="#111827" '
                       f'stroke-width="2"><title>best cut of its label scores: {escape(fmt_num(ticks[name]))}</title>'
                       f'</line>')
        # a white halo keeps the value readable where a tick or the reference line crosses it
        out.append(f'<text x="{_f(max(x0, x1) + 6)}" y="{y + 15}" class="tick" stroke="#fff" stroke-width="3" '
                   f'paint-order="stroke">{escape(fmt_num(value))}</text>')
    if reference and is_finite(reference[0]) and hi > lo:
        xr = left + (reference[0] - lo) / (hi - lo) * pw
        bottom = top + row * len(shown)
        out.append(f'<line x1="{_f(xr)}" x2="{_f(xr)}" y1="{top}" y2="{bottom + 4}" stroke="#b91c1c" '
                   f'stroke-dasharray="4 3"/><text x="{_f(xr)}" y="{bottom + 16}" text-anchor="middle" '
                   f'class="tick">{escape(reference[1])} {escape(fmt_num(reference[0]))}</text>')
    out.append("</svg>")
    return Markup("".join(out))
