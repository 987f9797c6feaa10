"""What the analysis produces: one Event per tracked appearance of a face."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Event:
    """One appearance of one person.

    Times are milliseconds from the start of the video (presentation timestamps); the box
    is the best face's box in pixels of the source frame (after rotation metadata is applied).
    ``gender`` and ``gender_score`` are both ``None`` when no face of the appearance was
    large and sharp enough to judge, or when the score fell below ANALYZER_MIN_GENDER_SCORE;
    ``gender_score`` is the calibrated probability of ``gender`` in percent, over 50.
    ``age`` is the point estimate in years and ``age_low``-``age_high`` (inclusive) the range
    that holds the true age for about 80 % of faces; all three are ``None`` together when no
    face was judgeable. ``person_key`` (``p1``, ``p2``, ...) is shared by the appearances of one
    person within this video (analyzer.analysis.people; gender and age are then judged from all
    of that person's faces); it is no identity and means nothing outside its video.
    """

    event_key: str
    start_ms: int
    end_ms: int
    best_frame_ms: int
    x: int
    y: int
    w: int
    h: int
    det_score: float
    gender: str | None
    gender_score: float | None
    age: int | None
    face_count: int
    age_low: int | None = None
    age_high: int | None = None
    person_key: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class AnalysisResult:
    """What the analysis step hands back to the runner."""

    events: list[Event]
    frames: int = 0  # sampled frames analysed
    faces: int = 0  # face detections over all sampled frames
    stats: dict[str, Any] = field(default_factory=dict)  # decode/throughput figures for the summary line
    # event_key -> its faces (analyzer.analysis.pooling.AppearanceFaces), for evaluation; never stored
    appearances: dict[str, Any] = field(default_factory=dict)
