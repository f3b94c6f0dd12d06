"""The digest's chart: refunds per day as a small PNG bar chart (matplotlib, no display)."""

from __future__ import annotations

import io
from datetime import date

CHART_DAYS = 14   # the days the digest's chart covers, the digest's own day last


def chart_png(series: list[tuple[date, int]]) -> bytes | None:
    """A small bar chart; None when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot
    except ImportError:
        return None
    figure, axes = pyplot.subplots(figsize=(6, 2.4), dpi=100)
    axes.bar([d.strftime("%d %b") for d, _ in series], [n for _, n in series], color="#1d4e5f")
    axes.set_title("Refunds per day", fontsize=10)
    axes.tick_params(axis="x", labelrotation=60, labelsize=7)
    axes.tick_params(axis="y", labelsize=7)
    axes.spines[["top", "right"]].set_visible(False)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    pyplot.close(figure)
    return buffer.getvalue()
