"""Which faces get a descriptor: each appearance's best face, embedded only where linking can use it.

The descriptor net (dlib's face-recognition ResNet, a 150 px chip) costs far more per face than
the gender and age nets: embedding every judgeable face raised the CPU time of a video by 60 to
140 % (docs/person-keys.md), against a bound of 10 %. So:

- While the video runs, each track keeps the 150 px chip of its best face so far (the face its
  Event and thumbnail show: judgeable first, then the highest weight), cut on the device by
  ``FaceAnalyzer.cut_chips`` from the batch's frames whenever the best face changes (a
  ``grid_sample``, no network). A track with no judgeable face keeps none: a face too small or
  blurred to judge says little about who it is.
- After tracking, only the appearances that linking can use are embedded, in one forward pass:
  those with a chip and at least one other appearance with a chip that does not overlap it in
  time (appearances on screen together are never one person). A clip in which every pair of
  people is on screen together embeds nothing.

Each embedded appearance has one descriptor, its best face's row of ``AppearanceFaces.embedding``
(NaN rows elsewhere). Chips are held in host memory, 270 KB each (float32, one per track).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

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
    """The chip of each track's best judgeable face, kept batch by batch; see the module docstring."""

    def __init__(self, settings: TrackerSettings) -> None:
        self.settings = settings
        self._chips: dict[int, tuple[int, torch.Tensor]] = {}  # track id -> (its face's ms, chip)

    def after_batch(
        self,
        tracker: Tracker,
        model: FaceAnalyzer,
        pixels: torch.Tensor,
        timestamps_ms: np.ndarray,
        found: FaceBatch,
        track_ids: list[list[int]],
    ) -> None:
        """Cut the chips of the tracks whose best face is now in this batch.

        pixels: the batch's frames on the device; found: its faces; track_ids: per frame, the
        track id of each of its faces (``Tracker.update``'s answers).
        """
        row_of: dict[tuple[int, int], int] = {}  # (track id, ms) -> row of found
        for i, ids in enumerate(track_ids):
            for row, track_id in zip(np.flatnonzero(found.frame_index == i), ids):
                row_of[(track_id, int(timestamps_ms[i]))] = int(row)
        wanted: list[tuple[int, int, int]] = []  # (track id, ms, row)
        for track_id in sorted({track_id for track_id, _ in row_of}):
            best_ms = tracker.best_face_ms(track_id)
            row = row_of.get((track_id, best_ms))
            if row is None:  # the best face is in an earlier batch: its chip is kept already
                continue
            if is_judgeable(found.face_px[row], found.sharpness[row], self.settings):
                wanted.append((track_id, best_ms, row))
        if not wanted:
            return
        rows = np.array([row for _, _, row in wanted])
        chips = model.cut_chips(pixels, found.frame_index[rows], found.landmarks[rows]).cpu()
        for (track_id, best_ms, _), chip in zip(wanted, chips):
            self._chips[track_id] = (best_ms, chip)

    def describe(
        self,
        events: list[Event],
        appearances: dict[str, AppearanceFaces],
        track_ids: dict[str, int],
        model: FaceAnalyzer,
    ) -> dict[str, AppearanceFaces]:
        """The appearances, each with its ``embedding``: the descriptor of its best face where
        linking can use it (see the module docstring), NaN rows elsewhere."""
        held = [e for e in events if track_ids[e.event_key] in self._chips]
        chosen = [e for e, can in zip(held, linkable(held)) if can]
        vectors = np.zeros((0, EMBEDDING_SIZE), np.float32)
        if chosen:
            vectors = model.describe(torch.stack([self._chips[track_ids[e.event_key]][1] for e in chosen]))
        described = {e.event_key: vector for e, vector in zip(chosen, vectors)}
        result = {}
        for key, faces in appearances.items():
            rows = np.full((len(faces.times_ms), EMBEDDING_SIZE), np.nan, np.float32)
            if key in described:
                best_ms = self._chips[track_ids[key]][0]
                rows[int(np.flatnonzero(faces.times_ms == best_ms)[0])] = described[key]
            result[key] = replace(faces, embedding=rows)
        return result
