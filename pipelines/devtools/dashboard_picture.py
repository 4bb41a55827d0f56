"""Draws a Cloud Monitoring dashboard's layout as an SVG picture, from its JSON.

The picture shows each tile where the dashboard puts it, with its title and what it plots (the
counters of a PromQL query, or the metric type of a filter); it draws no data. The README shows
the one of ``events_to_bigquery`` (``terraform/generate.py`` writes it beside the module).
"""

from __future__ import annotations

import re
from typing import Any
from xml.sax.saxutils import escape

__all__ = ["render_svg"]

X_UNIT, Y_UNIT = 80, 40  # pixels per grid unit (a dashboard row is 12 units wide)
_COUNTERS = re.compile(r'metric_name=~?"([^"]+)"')
_TYPE = re.compile(r'metric\.type="([^"]+)"')


def _plots(widget: dict[str, Any]) -> str:
    query = widget["xyChart"]["dataSets"][0]["timeSeriesQuery"]
    if "prometheusQuery" in query:
        names = dict.fromkeys(_COUNTERS.findall(query["prometheusQuery"]))
        return "counters: " + ", ".join(name.replace("\\\\", "\\") for name in names)
    found = _TYPE.search(query["timeSeriesFilter"]["filter"])
    return found.group(1) if found else ""


def render_svg(dashboard: dict[str, Any]) -> str:
    """Returns the SVG text of ``dashboard``'s mosaic layout (tiles, titles, what each plots)."""
    tiles = dashboard["mosaicLayout"]["tiles"]
    width = dashboard["mosaicLayout"]["columns"] * X_UNIT
    height = max(tile["yPos"] + tile["height"] for tile in tiles) * Y_UNIT + 40
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="13">',
        f'<rect width="{width}" height="{height}" fill="#f8f9fa"/>',
        f'<text x="8" y="24" font-size="16" font-weight="bold">'
        f"{escape(dashboard['displayName'])}</text>",
    ]
    for tile in tiles:
        x, y = tile["xPos"] * X_UNIT + 4, tile["yPos"] * Y_UNIT + 40
        w, h = tile["width"] * X_UNIT - 8, tile["height"] * Y_UNIT - 8
        widget = tile["widget"]
        line = f"M{x + 12} {y + h - 20} " + " ".join(
            f"L{x + 12 + i * (w - 24) // 8} {y + h - 30 - (i * 37 % 50)}" for i in range(1, 9)
        )
        parts += [
            f'<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="4" fill="white" '
            f'stroke="#dadce0"/>',
            f'<text x="{x + 10}" y="{y + 20}" font-weight="bold">{escape(widget["title"])}</text>',
            f'<text x="{x + 10}" y="{y + 38}" fill="#5f6368" font-size="11">'
            f"{escape(_plots(widget)[:80])}</text>",
            f'<path d="{line}" fill="none" stroke="#1a73e8" stroke-width="1.5" '
            f'stroke-dasharray="4 3"/>',
        ]
    return "\n".join([*parts, "</svg>"]) + "\n"
