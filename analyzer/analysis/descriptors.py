"""Which faces get a descriptor: each appearance's few best faces, embedded only where linking can use them.

The descriptor net (dlib's face-recognition ResNet, a 150 px chip) costs far more per face than
the gender and age nets: embedding every judgeable face raised the CPU time of a video by 60 to
140 % (docs/person-keys.md), against a bound of 10 %. So:

- While the video runs, each track keeps the 150 px chips of its ``CHIPS_PER_TRACK`` (2) best
  judgeable faces so far (ranked as the face its Event and thumbnail show: the highest weight,
  then the earliest), cut on the device by ``FaceAnalyzer.cut_chips`` from the batch's frames when
  a face makes that cut (a ``grid_sample``, no network). A track with no judgeable face keeps
  none: a face too small or blurred to judge says little about who it is.
- After tracking, only the appearances that linking can use are embedded, in one forward pass:
  those with a chip and at least one other appearance with a chip that does not overlap it in
  time (appearances on screen together are never one person). A clip in which every pair of
  people is on screen together embeds nothing.

Why two: linking compares the mean of an appearance's unit descriptors, and one face's descriptor
carries that face's pose, blur and expression. On the labelled video set and the synthetic
FairFace tracks (docs/person-keys.md), with the best face alone the threshold that linked the
README sample's woman also linked 23 of 724 pairs of different synthetic people; with the mean
of the 2 best, a lower threshold kept the same real links (15 of 16 pairs) and linked 1 of the
724. Three faces did as well (0 of 724, one more real pair of different people) for 1.5 times
the cost; five no better.

Each embedded face's descriptor is its row of ``AppearanceFaces.embedding`` (NaN rows elsewhere).
Chips are held in host memory as whole grey levels (uint8, as dlib's own chips are), 68 KB
each, at most CHIPS_PER_TRACK per track: a long video's thousands of tracks must not hold
gigabytes. Rounding moves a descriptor by at most 0.002 per value (cosine >= 0.99999 to the
float chip's).
"""

from __future__ import annotations

from dataclasses import replace
from typing import cast

import numpy as np
import torch

from analyzer.analysis.people import CHIPS_PER_TRACK
from analyzer.analysis.pooling import AppearanceFaces
from analyzer.analysis.tracking import Tracker, TrackerSettings, is_judgeable
from analyzer.events import Event
from models.dlib_resnet import EMBEDDING_SIZE
from models.face_analyzer import FaceAnalyzer, FaceBatch

__all__ = ["BestChips", "linkable"]


def linkable(events: list[Event]) -> list[bool]:
    """Per event: is there another event of the list that does not overlap it in time (the two
    may then be one person)? Intervals are [start_ms, end_ms], as ``identity.link_people`` reads them."""
    starts = np.array([e.start_ms for e in events], np.int64)
    ends = np.array([e.end_ms for e in events], np.int64)
    apart = (starts[:, None] > ends[None, :]) | (starts[None, :] > ends[:, None])
    return apart.any(axis=1).tolist()


class BestChips:
    """The chips of each track's ``per_track`` best judgeable faces, kept batch by batch; see the
    module docstring."""

    def __init__(self, settings: TrackerSettings, per_track: int = CHIPS_PER_TRACK) -> None:
        if per_track < 1:
            raise ValueError(f"per_track must be at least 1, got {per_track}")
        self.settings = settings
        self.per_track = per_track
        # track id -> its best faces so far, best first: (rank, the face's ms, chip)
        self._chips: dict[int, list[tuple[tuple[bool, float, int], int, torch.Tensor | None]]] = {}

    def after_batch(
        self,
        tracker: Tracker,
        model: FaceAnalyzer,
        pixels: torch.Tensor,
        timestamps_ms: np.ndarray,
        found: FaceBatch,
        track_ids: list[list[int]],
    ) -> None:
        """Cut the chips of this batch's faces that are now among their track's best.

        pixels: the batch's frames on the device; found: its faces; track_ids: per frame, the
        track id of each of its faces (``Tracker.update``'s answers).
        """
        batch: dict[int, list[tuple[tuple[bool, float, int], int, torch.Tensor | None]]] = {}
        rows: dict[tuple[int, int], int] = {}  # (track id, ms) -> row of found
        for i, ids in enumerate(track_ids):
            for row, track_id in zip(np.flatnonzero(found.frame_index == i), ids):
                if not is_judgeable(found.face_px[row], found.sharpness[row], self.settings):
                    continue
                ms = int(timestamps_ms[i])
                rows[(track_id, ms)] = int(row)
                batch.setdefault(track_id, []).append((tracker.face_rank(track_id, ms), ms, None))
        wanted: list[tuple[int, int]] = []  # (track id, ms) of the new faces that make the cut
        for track_id, faces in batch.items():
            best = sorted(self._chips.get(track_id, []) + faces, key=lambda face: face[0], reverse=True)
            self._chips[track_id] = best[: self.per_track]
            wanted += [(track_id, ms) for _, ms, chip in self._chips[track_id] if chip is None]
        if not wanted:
            return
        chosen = np.array([rows[face] for face in wanted])
        chips = model.cut_chips(pixels, found.frame_index[chosen], found.landmarks[chosen])
        chips = chips.round().clamp(0, 255).to(torch.uint8).cpu()
        cut = dict(zip(wanted, chips))
        for track_id in {track_id for track_id, _ in wanted}:
            self._chips[track_id] = [
                (rank, ms, cut[(track_id, ms)] if chip is None else chip) for rank, ms, chip in self._chips[track_id]
            ]

    def describe(
        self,
        events: list[Event],
        appearances: dict[str, AppearanceFaces],
        track_ids: dict[str, int],
        model: FaceAnalyzer,
    ) -> dict[str, AppearanceFaces]:
        """The appearances, each with its ``embedding``: the descriptors of its best faces where
        linking can use them (see the module docstring), NaN rows elsewhere."""
        held = [e for e in events if self._chips.get(track_ids[e.event_key])]
        chosen = [e for e, can in zip(held, linkable(held)) if can]
        faces = [(e.event_key, ms, chip) for e in chosen for _, ms, chip in self._chips[track_ids[e.event_key]]]
        vectors = np.zeros((0, EMBEDDING_SIZE), np.float32)
        if faces:
            # after_batch cuts every kept face's chip before it returns
            vectors = model.describe(torch.stack([cast(torch.Tensor, chip) for _, _, chip in faces]).float())
        described: dict[str, list[tuple[int, np.ndarray]]] = {}
        for (key, ms, _), vector in zip(faces, vectors):
            described.setdefault(key, []).append((ms, vector))
        result = {}
        for key, appearance in appearances.items():
            rows = np.full((len(appearance.times_ms), EMBEDDING_SIZE), np.nan, np.float32)
            for ms, vector in described.get(key, []):
                rows[int(np.flatnonzero(appearance.times_ms == ms)[0])] = vector
            result[key] = replace(appearance, embedding=rows)
        return result
