"""Matching the worker's events to labelled appearances: by span overlap and box IoU."""

from __future__ import annotations

import pytest

from analyzer.evaluation.appearances import iou, match_events
from analyzer.events import Event


def event(start_s: float, end_s: float, box: tuple[int, int, int, int], key: str = "") -> Event:
    x, y, w, h = box
    start_ms, end_ms = round(start_s * 1000), round(end_s * 1000)
    return Event(key or f"{start_ms}-{x}-{y}", start_ms, end_ms, start_ms, x, y, w, h, 0.99, None, None, None, 5)


def label(name: str, start_s: float, end_s: float, box: list[int]) -> dict:
    return {"id": name, "start_s": start_s, "end_s": end_s, "t_s": (start_s + end_s) / 2, "box": box}


def test_iou() -> None:
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (5, 0, 10, 10)) == pytest.approx(50 / 150)
    assert iou((0, 0, 10, 10), (20, 20, 5, 5)) == 0.0


def test_each_label_is_found_once_split_or_missed_and_strays_are_unmatched() -> None:
    labels = [
        label("a", 1.0, 3.0, [100, 100, 50, 60]),
        label("b", 5.0, 7.5, [100, 100, 50, 60]),  # same place, later: told apart by time
        label("c", 1.0, 3.0, [800, 400, 80, 100]),
    ]
    events = [
        event(1.2, 3.0, (104, 98, 50, 62)),  # a
        event(5.0, 6.0, (100, 104, 48, 58)),  # b, first part
        event(6.6, 7.4, (98, 100, 52, 60), key="b2"),  # b, second part: a split
        event(1.0, 3.0, (300, 300, 50, 60)),  # c's time, nobody's place
        event(9.0, 10.0, (100, 100, 50, 60)),  # a's and b's place, nobody's time
    ]
    matches, unmatched = match_events(labels, events)
    assert [m.outcome for m in matches] == ["one", "split", "missed"]
    assert [e.start_ms for e in matches[1].events] == [5000, 6600]
    assert sorted(e.start_ms for e in unmatched) == [1000, 9000]


def test_an_event_goes_to_the_label_it_overlaps_most_and_needs_half_overlap() -> None:
    labels = [label("left", 0.0, 2.0, [100, 100, 60, 60]), label("right", 0.0, 2.0, [140, 100, 60, 60])]
    matches, unmatched = match_events(labels, [event(0.4, 1.8, (132, 100, 60, 60))])
    assert [m.outcome for m in matches] == ["missed", "one"] and not unmatched
    _, unmatched = match_events(labels[:1], [event(0.4, 1.8, (130, 100, 60, 60))])  # IoU 0.33
    assert len(unmatched) == 1
