"""Small PNG charts drawn with OpenCV (already a dependency), for ``analyzer evaluate``.

Two kinds are enough for the quality report: a line chart on unit axes (accuracy-coverage
curves, reliability diagrams with their diagonal) and a bar chart of values per category (age
MAE per bin). Each takes plain numbers and returns a BGR image; ``save`` writes it as PNG.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

__all__ = ["Series", "line_chart", "bar_chart", "save"]

WIDTH, HEIGHT = 640, 480  # px
MARGIN = (70, 30, 50, 60)  # left, right, top, bottom px around the plot area
FONT = cv2.FONT_HERSHEY_SIMPLEX
BACKGROUND = (255, 255, 255)
INK = (40, 40, 40)
GRID = (225, 225, 225)
PALETTE = ((180, 90, 20), (40, 120, 230), (60, 160, 60), (140, 40, 190), (120, 120, 120))  # BGR


@dataclass(frozen=True)
class Series:
    """One line: x and y values in data units, a legend label, markers drawn at the points
    (sized by ``sizes`` when given, e.g. a bin's face count) and a dashed look."""

    x: Sequence[float]
    y: Sequence[float]
    label: str
    markers: bool = False
    sizes: Sequence[float] | None = None
    dashed: bool = False


class _Axes:
    def __init__(self, x_range: tuple[float, float], y_range: tuple[float, float]) -> None:
        self.x_range, self.y_range = x_range, y_range
        left, right, top, bottom = MARGIN
        self.box = (left, top, WIDTH - right, HEIGHT - bottom)

    def point(self, x: float, y: float) -> tuple[int, int]:
        x0, y0, x1, y1 = self.box
        fx = (x - self.x_range[0]) / (self.x_range[1] - self.x_range[0])
        fy = (y - self.y_range[0]) / (self.y_range[1] - self.y_range[0])
        return round(x0 + fx * (x1 - x0)), round(y1 - fy * (y1 - y0))


def _text(image: np.ndarray, text: str, origin: tuple[int, int], scale: float = 0.45, colour=INK) -> None:
    cv2.putText(image, text, origin, FONT, scale, colour, 1, cv2.LINE_AA)


def _frame(
    title: str,
    x_label: str,
    y_label: str,
    axes: _Axes,
    x_ticks: Sequence[float],
    y_ticks: Sequence[float],
    x_names: Sequence[str] | None = None,
) -> np.ndarray:
    image = np.full((HEIGHT, WIDTH, 3), BACKGROUND, np.uint8)
    x0, y0, x1, y1 = axes.box
    for i, tick in enumerate(x_ticks):
        px, _ = axes.point(tick, axes.y_range[0])
        cv2.line(image, (px, y0), (px, y1), GRID, 1)
        name = x_names[i] if x_names else f"{tick:g}"
        (w, _), _ = cv2.getTextSize(name, FONT, 0.4, 1)
        _text(image, name, (px - w // 2, y1 + 16), 0.4)
    for tick in y_ticks:
        _, py = axes.point(axes.x_range[0], tick)
        cv2.line(image, (x0, py), (x1, py), GRID, 1)
        _text(image, f"{tick:g}", (x0 - 40, py + 4), 0.4)
    cv2.rectangle(image, (x0, y0), (x1, y1), INK, 1)
    _text(image, title, (x0, y0 - 18), 0.55)
    (w, _), _ = cv2.getTextSize(x_label, FONT, 0.45, 1)
    _text(image, x_label, ((x0 + x1 - w) // 2, HEIGHT - 18))
    _text(image, y_label, (8, y0 - 4), 0.45)
    return image


def _dashed(image: np.ndarray, a: tuple[int, int], b: tuple[int, int], colour, dash: int = 8) -> None:
    length = max(1.0, float(np.hypot(b[0] - a[0], b[1] - a[1])))
    steps = int(length // dash)
    for i in range(0, steps, 2):
        p = (round(a[0] + (b[0] - a[0]) * i / steps), round(a[1] + (b[1] - a[1]) * i / steps))
        q = (round(a[0] + (b[0] - a[0]) * (i + 1) / steps), round(a[1] + (b[1] - a[1]) * (i + 1) / steps))
        cv2.line(image, p, q, colour, 1, cv2.LINE_AA)


def reliability_series(rows: Sequence[dict], label: str, dashed: bool = False) -> Series:
    """A reliability line from ``calibration.reliability_bins`` rows: mean confidence against share
    right per bin, markers sized by the bin's count."""
    return Series(
        [b["confidence"] for b in rows],
        [b["accuracy"] for b in rows],
        label,
        markers=True,
        sizes=[b["count"] for b in rows],
        dashed=dashed,
    )


def reliability_chart(lines: Sequence[Series], title: str) -> np.ndarray:
    """``line_chart`` of reliability lines: share right against the mean score per bin, 0.5-1."""
    return line_chart(
        lines,
        title,
        "gender score (mean in bin)",
        "share right",
        (0.5, 1.0),
        (0.3, 1.0),
        [0.5, 0.6, 0.7, 0.8, 0.9, 1.0],
        [0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0],
    )


def line_chart(
    series: Sequence[Series],
    title: str,
    x_label: str,
    y_label: str,
    x_range: tuple[float, float],
    y_range: tuple[float, float],
    x_ticks: Sequence[float],
    y_ticks: Sequence[float],
) -> np.ndarray:
    """Lines (and optional markers) with a legend in the lower right; a BGR image."""
    axes = _Axes(x_range, y_range)
    image = _frame(title, x_label, y_label, axes, x_ticks, y_ticks)
    for i, s in enumerate(series):
        colour = PALETTE[i % len(PALETTE)]
        points = [axes.point(x, y) for x, y in zip(s.x, s.y) if np.isfinite(x) and np.isfinite(y)]
        for a, b in zip(points, points[1:]):
            if s.dashed:
                _dashed(image, a, b, colour)
            else:
                cv2.line(image, a, b, colour, 2, cv2.LINE_AA)
        if s.markers:
            sizes = s.sizes if s.sizes is not None else [1.0] * len(points)
            biggest = max(max(sizes, default=1.0), 1e-9)
            for point, size in zip(points, sizes):
                cv2.circle(image, point, max(3, round(9 * np.sqrt(size / biggest))), colour, -1, cv2.LINE_AA)
        x0, _, x1, y1 = axes.box
        top = y1 - 20 * (len(series) - i) - 6
        cv2.line(image, (x1 - 200, top - 4), (x1 - 175, top - 4), colour, 2)
        _text(image, s.label, (x1 - 168, top), 0.42)
    return image


def bar_chart(
    groups: Sequence[str], values: dict[str, Sequence[float]], title: str, y_label: str, y_max: float, y_step: float
) -> np.ndarray:
    """Side-by-side bars per group, one colour per key of ``values``; a BGR image."""
    axes = _Axes((-0.5, len(groups) - 0.5), (0.0, y_max))
    ticks = list(np.arange(0.0, y_max + 1e-9, y_step))
    image = _frame(title, "", y_label, axes, list(range(len(groups))), ticks, x_names=list(groups))
    width = 0.8 / max(1, len(values))
    for k, (label, numbers) in enumerate(values.items()):
        colour = PALETTE[k % len(PALETTE)]
        for g, value in enumerate(numbers):
            if not np.isfinite(value):
                continue
            left = g - 0.4 + k * width
            a = axes.point(left, 0.0)
            b = axes.point(left + width * 0.9, min(value, y_max))
            cv2.rectangle(image, (a[0], b[1]), (b[0], a[1]), colour, -1)
        x0, y0, x1, _ = axes.box
        cv2.rectangle(image, (x1 - 200, y0 + 10 + 20 * k), (x1 - 185, y0 + 22 + 20 * k), colour, -1)
        _text(image, label, (x1 - 178, y0 + 21 + 20 * k), 0.42)
    return image


def save(image: np.ndarray, path: str | Path) -> Path:
    """Write ``image`` as PNG at ``path`` (folders created); raises OSError when it cannot."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, encoded = cv2.imencode(".png", image)
    if not ok:
        raise OSError(f"cannot encode {path} as PNG")
    path.write_bytes(encoded.tobytes())
    return path
