"""The dashboard's weekly trend as numbers for an inline SVG (drawn by templates/_trend.html).

Bars: complaints received and closed per week (left axis, counts); line: the week's closure rate (right axis,
0–100%). Everything is computed here so the template only places shapes; no JavaScript is involved.
"""

from __future__ import annotations

import math
from datetime import date
from typing import Any

WIDTH, HEIGHT = 760, 260
LEFT, RIGHT, TOP, BOTTOM = 44, 48, 16, 42


def _nice_max(n: int) -> int:
    """The axis top: four equal integer steps of 1, 2 or 5 × 10^k covering ``n``."""
    step = math.ceil(max(n, 4) / 4)
    mag = 10 ** int(math.log10(step))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= step)
    return step * 4


def weekly_trend(weeks: list[dict[str, Any]]) -> dict[str, Any]:
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    n = max(len(weeks), 1)
    top = _nice_max(max([w["received"] for w in weeks] + [w["closed"] for w in weeks] + [0]))
    slot = plot_w / n
    bar = max(min(slot * 0.32, 28), 3)
    base = TOP + plot_h

    def y(v: float) -> float:
        return round(base - plot_h * v / top, 1)

    items, points = [], []
    for i, w in enumerate(weeks):
        x0 = LEFT + i * slot + slot / 2
        start = date.fromisoformat(w["week_start"])
        rate = w.get("closure_rate")
        item = {
            "label": f"{start.month}/{start.day}",
            "title": f"{w['week_start']} 至 {w['week_end']}：受理 {w['received']} 件，办结 {w['closed']} 件"
                     + (f"，办结率 {rate * 100:.1f}%" if rate is not None else ""),
            "cx": round(x0, 1),
            "rx": round(x0 - bar - 1, 1), "ry": y(w["received"]), "rh": round(base - y(w["received"]), 1),
            "cx_bar": round(x0 + 1, 1), "cy": y(w["closed"]), "ch": round(base - y(w["closed"]), 1),
            "bar": round(bar, 1), "received": w["received"], "closed": w["closed"],
        }
        if rate is not None:
            item["py"] = round(base - plot_h * rate, 1)
            points.append(f"{item['cx']},{item['py']}")
        items.append(item)
    ticks = [{"v": int(top * k / 4), "y": y(top * k / 4)} for k in range(5)]
    rate_ticks = [{"v": f"{k * 25}%", "y": round(base - plot_h * k / 4, 1)} for k in range(5)]
    return {"width": WIDTH, "height": HEIGHT, "left": LEFT, "right": WIDTH - RIGHT, "top": TOP, "base": base,
            "weeks": items, "ticks": ticks, "rate_ticks": rate_ticks, "line": " ".join(points),
            "empty": not any(w["received"] for w in weeks)}
