"""Link the appearances of one person within a video: a per-video person key for each appearance.

Each appearance is represented by the mean of its faces' descriptors (dlib's face-recognition
ResNet, ``models.dlib_resnet``), each face's descriptor and the mean scaled to unit length, so
that a long appearance weighs as one vote, like a short one. Appearances are then clustered
bottom-up with average linkage (UPGMA): the distance between two clusters is the mean Euclidean
distance between their members' unit vectors; the closest pair is merged while that distance is
below ``threshold``. Two constraints:

- **Cannot-link.** Two appearances that overlap in time (their ``[start_ms, end_ms]`` intervals
  share a millisecond) are two people on screen at once, so two clusters holding such a pair are
  never merged, whatever their distance; this holds across whole clusters, not only the pair.
- **Determinism.** The input is ordered by (start_ms, event_key) first; distances are computed in
  float64 in that order; among pairs at exactly the same distance the one whose clusters' first
  appearances come first wins. The same appearances and descriptors give the same keys.

Keys are ``p1``, ``p2``, ... numbered by each person's first appearance (start_ms, then
event_key). They mean something only within their video and model version: not an identity, not
comparable across videos. An appearance without any descriptor is a person of its own.

On the scale: dlib calls two raw descriptors the same person below a Euclidean distance of 0.6;
the raw descriptors' norms are about 1.38 (docs/models.md), so that is about 0.43 between unit
vectors. The threshold is the caller's, chosen on labelled data.

Cost: n x n distance and candidate matrices (float64) and at most n - 1 merges, each one
vectorised scan for the closest pair plus an update of one row and column: 1.4 s for 1,000
appearances of 60 people on 2 busy CPU cores.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

__all__ = ["Span", "link_people", "appearance_vectors"]


class Span(Protocol):
    """What linking needs of an appearance (``analyzer.events.Event`` has it)."""

    @property
    def event_key(self) -> str: ...

    @property
    def start_ms(self) -> int: ...

    @property
    def end_ms(self) -> int: ...


def appearance_vectors(embeddings: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per appearance, the unit-length mean of its faces' unit-length descriptors.

    Args:
        embeddings: per appearance an (n_i, D) array of its faces' descriptors (n_i may be 0).

    Returns:
        vectors: (A, D) float64, zero rows where an appearance has no usable descriptor.
        present: (A,) bool, False for those rows.
    """
    width = max((e.shape[1] for e in embeddings if e.ndim == 2), default=0)
    vectors = np.zeros((len(embeddings), width), np.float64)
    for i, faces in enumerate(embeddings):
        faces = np.asarray(faces, np.float64).reshape(-1, width) if faces.size else np.zeros((0, width))
        norms = np.linalg.norm(faces, axis=1, keepdims=True)
        faces = faces[norms[:, 0] > 0] / norms[norms[:, 0] > 0]
        if len(faces):
            mean = faces.mean(axis=0)
            length = np.linalg.norm(mean)
            if length > 0:
                vectors[i] = mean / length
    return vectors, np.linalg.norm(vectors, axis=1) > 0


def _overlaps(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """(A, A) bool: appearance intervals [start, end] that share a millisecond (not the diagonal)."""
    overlap = (starts[:, None] <= ends[None, :]) & (starts[None, :] <= ends[:, None])
    np.fill_diagonal(overlap, False)
    return overlap


def link_people(appearances: Sequence[Span], embeddings: Sequence[np.ndarray], threshold: float) -> list[str]:
    """A person key per appearance, in the order given.

    Args:
        appearances: the video's appearances (event_key, start_ms, end_ms), any order.
        embeddings: per appearance, its faces' descriptors, (n_i, D) each (n_i may be 0).
        threshold: merge while the average-linkage distance between unit vectors is below it
            (0 links nothing; 2 links everything the time constraint allows).

    Returns:
        ``p1``, ``p2``, ... per appearance, numbered by each person's first appearance.
    """
    if len(appearances) != len(embeddings):
        raise ValueError(f"{len(appearances)} appearances but {len(embeddings)} embedding arrays")
    count = len(appearances)
    if count == 0:
        return []
    order = sorted(range(count), key=lambda i: (appearances[i].start_ms, appearances[i].event_key))
    vectors, present = appearance_vectors([embeddings[i] for i in order])
    starts = np.array([appearances[i].start_ms for i in order], np.int64)
    ends = np.array([appearances[i].end_ms for i in order], np.int64)

    # Cluster c lives in row/column c, c being its first member (the lowest position in order)
    # |u - v| from the Gram matrix: an n x n array, never n x n x D
    squares = (vectors**2).sum(axis=1)
    distance = np.sqrt(np.maximum(squares[:, None] + squares[None, :] - 2.0 * (vectors @ vectors.T), 0.0))
    blocked = _overlaps(starts, ends) | ~present[:, None] | ~present[None, :]
    # Mergeable pairs (row < column, both alive, not blocked) and their distance; inf elsewhere
    candidates = np.where(np.triu(~blocked, k=1), distance, np.inf)
    sizes = np.ones(count, np.int64)
    members: dict[int, list[int]] = {c: [c] for c in range(count)}
    alive = np.ones(count, bool)
    while True:
        a, b = divmod(int(np.argmin(candidates)), count)  # row-major: ties go to the earliest pair
        if not candidates[a, b] < threshold:
            break
        # Average linkage (Lance-Williams): d(a+b, c) = (|a| d(a, c) + |b| d(b, c)) / (|a| + |b|)
        merged = (sizes[a] * distance[a] + sizes[b] * distance[b]) / (sizes[a] + sizes[b])
        distance[a, :], distance[:, a] = merged, merged
        blocked[a, :] |= blocked[b, :]  # a time conflict of either part is the merged cluster's
        blocked[:, a] = blocked[a, :]
        sizes[a] += sizes[b]
        members[a] += members.pop(b)
        alive[b] = False
        candidates[b, :], candidates[:, b] = np.inf, np.inf
        row = np.where(blocked[a] | ~alive, np.inf, merged)
        candidates[a, a + 1 :], candidates[:a, a] = row[a + 1 :], row[:a]

    keys = [""] * count
    for number, cluster in enumerate(sorted(members), start=1):  # by first member: first appearance
        for position in members[cluster]:
            keys[order[position]] = f"p{number}"
    return keys
