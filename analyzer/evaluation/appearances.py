"""Match the worker's events to labelled appearances of a video (the ``labels.json`` schema).

A label gives an appearance's span (``start_s``-``end_s``) and its face box ``[x, y, w, h]`` at
``t_s``; an event gives its span and its best face's box. An event belongs to the label whose
span it overlaps (give or take ``slack_s``, one or two sampling periods) and whose box it covers
with an IoU of at least ``min_iou``; of several such labels, the one of highest IoU. Each label
then is found as exactly ``one`` event, ``split`` over several, or ``missed``; events that belong
to no label are ``unmatched`` (a face found where none was labelled, or far from its label).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from analyzer.analysis.tracking import box_iou
from analyzer.events import Event

__all__ = ["LabelMatch", "iou", "match_events"]

MIN_IOU = 0.5
SLACK_S = 0.4  # s; two sampling periods at the worker's default 5 samples/s


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two ``(x, y, w, h)`` boxes (the tracker's ``box_iou``)."""
    corners = np.array([[a[0], a[1], a[0] + a[2], a[1] + a[3]], [b[0], b[1], b[0] + b[2], b[1] + b[3]]], float)
    return float(box_iou(corners[:1], corners[1:])[0, 0])


def event_box(event: Event) -> tuple[int, int, int, int]:
    return event.x, event.y, event.w, event.h


@dataclass
class LabelMatch:
    """One labelled appearance and the events found for it."""

    label: Mapping[str, Any]
    events: list[Event] = field(default_factory=list)

    @property
    def outcome(self) -> str:
        """``one``, ``split`` or ``missed``."""
        return "missed" if not self.events else "one" if len(self.events) == 1 else "split"


def _overlaps(label: Mapping[str, Any], event: Event, slack_s: float) -> bool:
    return event.start_ms / 1000 <= label["end_s"] + slack_s and event.end_ms / 1000 >= label["start_s"] - slack_s


def match_events(
    labels: Sequence[Mapping[str, Any]],
    events: Sequence[Event],
    *,
    min_iou: float = MIN_IOU,
    slack_s: float = SLACK_S,
) -> tuple[list[LabelMatch], list[Event]]:
    """(one ``LabelMatch`` per label in order, the events that belong to no label)."""
    matches = [LabelMatch(label) for label in labels]
    unmatched = []
    for event in sorted(events, key=lambda e: (e.start_ms, e.event_key)):
        scored = [
            (iou(event_box(event), m.label["box"]), n)
            for n, m in enumerate(matches)
            if _overlaps(m.label, event, slack_s)
        ]
        best = max(scored, default=(0.0, -1))
        if best[0] >= min_iou:
            matches[best[1]].events.append(event)
        else:
            unmatched.append(event)
    return matches, unmatched
