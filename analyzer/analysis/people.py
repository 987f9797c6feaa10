"""One person, one key: link a video's appearances and judge each from all of its person's faces.

After tracking, the appearances of one person (split by a moment out of sight, a turn of the head
or a scene cut) are linked by their faces' descriptors (``identity.link_people``: average-linkage
clustering of each appearance's mean unit descriptor, appearances overlapping in time never one
person). Each Event gets its person's key, ``p1``, ``p2``, ... by first appearance, and its gender,
score, age and range from all judgeable faces of its person through the same calibrated pooling
as one appearance's (``pooling.judge`` on the faces concatenated), so a score stays a calibrated
probability. The Event keeps its own time span, box, best frame and face count.

The key means something only within its video and model version: not an identity, not comparable
across videos. Descriptors never leave the process: not stored, not logged, not in any output.

LINK_THRESHOLD is a distance between unit vectors (dlib's raw 0.6 is about 0.43 on that scale),
chosen on the labelled real video set by ``scripts/link_eval.py`` (docs/person-keys.md).
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

import numpy as np

from analyzer.analysis.identity import link_people
from analyzer.analysis.pooling import AppearanceFaces, Pooling, concat_faces, judge
from analyzer.events import Event
from models.weights import MODELS

__all__ = ["CHIPS_PER_TRACK", "LINK_THRESHOLD", "assign_people", "descriptors", "linking_digest", "people_of"]

# Chosen by scripts/link_eval.py on the labelled real video set and the synthetic FairFace tracks
# (docs/person-keys.md): among the thresholds that keep at least 99 % of the different-person pairs
# apart in both (113 of 113 real, 723 of 724 synthetic here), the lowest that links as many
# same-person pairs as any (15 of 16); it links the README sample's curly-haired woman, no one else
LINK_THRESHOLD = 0.32
CHIPS_PER_TRACK = 2  # best faces of each appearance embedded (analyzer.analysis.descriptors says why)


def linking_digest(threshold: float = LINK_THRESHOLD, chips_per_track: int = CHIPS_PER_TRACK) -> str:
    """First 8 hex digits of the sha256 of the embedding weights' hash, the threshold and the faces
    embedded per appearance (part of model_version, so a change re-analyses stored videos)."""
    text = f"{MODELS['dlib_face_recognition'].sha256}:{threshold!r}:{chips_per_track}"
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def descriptors(faces: AppearanceFaces) -> np.ndarray:
    """(n, D) the appearance's embedded faces' descriptors (NaN rows dropped); (0, 0) without any."""
    if faces.embedding is None:
        return np.zeros((0, 0))
    rows = np.isfinite(faces.embedding).all(axis=1)
    return np.asarray(faces.embedding[rows], np.float64)


def people_of(events: list[Event], appearances: dict[str, AppearanceFaces], threshold: float) -> list[str]:
    """The person key of each event, in the order given (``identity.link_people``)."""
    return link_people(events, [descriptors(appearances[e.event_key]) for e in events], threshold)


def assign_people(
    events: list[Event],
    appearances: dict[str, AppearanceFaces],
    pooling: Pooling,
    min_score: float,
    threshold: float = LINK_THRESHOLD,
) -> list[Event]:
    """The events with their person keys, each judged from all faces of its person.

    Args:
        events: the tracker's events, in its order (kept).
        appearances: event_key -> its faces (``Tracker.appearances``).
        pooling, min_score: as the tracker judges one appearance.
        threshold: the linking distance (see the module docstring).
    """
    keys = people_of(events, appearances, threshold)
    members: dict[str, list[Event]] = {}
    for event, key in zip(events, keys):
        members.setdefault(key, []).append(event)
    judged = {
        key: judge(pooling, concat_faces([appearances[e.event_key] for e in group]), min_score)
        for key, group in members.items()
        if len(group) > 1
    }
    linked = []
    for event, key in zip(events, keys):
        if key not in judged:  # a person of one appearance: the tracker's judgement stands
            linked.append(replace(event, person_key=key))
            continue
        gender, score, age, age_low, age_high = judged[key]
        linked.append(
            replace(
                event,
                person_key=key,
                gender=gender,
                gender_score=score,
                age=age,
                age_low=age_low,
                age_high=age_high,
            )
        )
    return linked
