"""link_people: average linkage over appearance means, the time constraint, determinism, keys."""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import pytest

from analyzer.analysis.identity import appearance_vectors, link_people


@dataclass(frozen=True)
class App:
    event_key: str
    start_ms: int
    end_ms: int


def unit(angle_degrees: float) -> np.ndarray:
    """A unit vector in the plane of the first two of 128 dimensions: the distance between
    unit(a) and unit(b) is 2 sin(|a - b| / 2)."""
    vector = np.zeros(128)
    vector[:2] = np.cos(np.radians(angle_degrees)), np.sin(np.radians(angle_degrees))
    return vector


def faces(angle_degrees: float, count: int = 3, scale: float = 1.38) -> np.ndarray:
    """``count`` raw descriptors around one direction (dlib's norms are about 1.38)."""
    return np.stack([unit(angle_degrees + 0.1 * i) * scale for i in range(count)])


def test_close_appearances_share_a_key_and_far_ones_do_not() -> None:
    apps = [App("a", 0, 1000), App("b", 2000, 3000), App("c", 4000, 5000)]
    keys = link_people(apps, [faces(0), faces(10), faces(90)], threshold=0.4)
    assert keys == ["p1", "p1", "p2"]


def test_overlapping_appearances_are_never_one_person() -> None:
    apps = [App("a", 0, 1000), App("b", 1000, 2000)]  # both on screen at 1000 ms
    assert link_people(apps, [faces(0), faces(0)], threshold=1.0) == ["p1", "p2"]
    apart = [App("a", 0, 999), App("b", 1000, 2000)]
    assert link_people(apart, [faces(0), faces(0)], threshold=1.0) == ["p1", "p1"]


def test_the_time_constraint_holds_across_whole_clusters() -> None:
    """b overlaps a only; c is nearest to b but joins a first (closer still): then {a, c} may
    not take b, however close b is to c."""
    apps = [App("a", 0, 1000), App("b", 500, 1500), App("c", 5000, 6000)]
    keys = link_people(apps, [faces(0), faces(4), faces(1)], threshold=1.0)
    assert keys[0] == keys[2] != keys[1]


def test_average_not_single_linkage() -> None:
    """a-b and b-c are close, a-c is not: single linkage would chain all three; average linkage
    keeps c apart once the mean distance of {a, b} to c is over the threshold."""
    apps = [App("a", 0, 100), App("b", 1000, 1100), App("c", 2000, 2100)]
    embeddings = [faces(0), faces(18), faces(40)]  # distances a-b 0.31, b-c 0.38, a-c 0.68
    assert link_people(apps, embeddings, threshold=0.4) == ["p1", "p1", "p2"]


def test_keys_follow_first_appearance_and_ignore_input_order() -> None:
    apps = [App(f"k{i}", start, start + 500) for i, start in enumerate((9000, 0, 3000, 6000, 12000))]
    embeddings = [faces(0), faces(90), faces(180), faces(2), faces(91)]
    keys = link_people(apps, embeddings, threshold=0.3)
    # first appearance (k1, t=0) is p1; k2 (t=3000) p2; k3 and k0 are one person, p3
    assert keys == ["p3", "p1", "p2", "p3", "p1"]
    pairs = list(zip(apps, embeddings))
    for seed in range(5):
        random.Random(seed).shuffle(pairs)
        shuffled = link_people([p[0] for p in pairs], [p[1] for p in pairs], threshold=0.3)
        assert dict(zip((p[0].event_key for p in pairs), shuffled)) == dict(zip((a.event_key for a in apps), keys))


def test_exact_ties_go_to_the_earliest_cluster() -> None:
    """c is exactly as close to a as to b (which overlap): c joins a, the earlier one, whichever
    order the input comes in."""
    apps = [App("a", 0, 1000), App("b", 0, 1000), App("c", 5000, 6000)]
    embeddings = [faces(10, 1), faces(-10, 1), faces(0, 1)]
    assert link_people(apps, embeddings, threshold=1.0) == ["p1", "p2", "p1"]
    assert link_people(apps[::-1], embeddings[::-1], threshold=1.0) == ["p1", "p2", "p1"]


def test_appearances_without_descriptors_are_their_own_person() -> None:
    apps = [App("a", 0, 100), App("b", 200, 300), App("c", 400, 500)]
    embeddings = [faces(0), np.zeros((0, 128)), faces(0)]
    assert link_people(apps, embeddings, threshold=2.0) == ["p1", "p2", "p1"]
    vectors, present = appearance_vectors(embeddings)
    assert present.tolist() == [True, False, True] and np.allclose(np.linalg.norm(vectors[present], axis=1), 1)


def test_threshold_extremes_and_empty_input() -> None:
    apps = [App(str(i), 1000 * i, 1000 * i + 10) for i in range(4)]
    embeddings = [faces(30 * i) for i in range(4)]
    assert link_people(apps, embeddings, threshold=0.0) == ["p1", "p2", "p3", "p4"]
    assert link_people(apps, embeddings, threshold=2.01) == ["p1"] * 4
    assert link_people([], [], threshold=0.5) == []
    with pytest.raises(ValueError, match="embedding"):
        link_people(apps, embeddings[:3], threshold=0.5)


def test_a_long_appearance_weighs_as_one_vote() -> None:
    """The mean of unit descriptors: many faces of a do not pull the cluster's centre more than
    the one face of b does, and the descriptors' scale does not matter."""
    vectors, _ = appearance_vectors([faces(0, 40, scale=5.0), faces(0, 1, scale=0.5)])
    assert np.linalg.norm(vectors[0] - vectors[1]) < 0.04


def reference_keys(apps: list[App], embeddings: list[np.ndarray], threshold: float) -> list[str]:
    """Average linkage the slow, obvious way: every round, every pair of clusters that share no
    overlapping appearances, the mean of all their members' pairwise distances."""
    order = sorted(range(len(apps)), key=lambda i: (apps[i].start_ms, apps[i].event_key))
    vectors, _ = appearance_vectors([embeddings[i] for i in order])
    spans = [(apps[i].start_ms, apps[i].end_ms) for i in order]
    clusters = [[i] for i in range(len(order))]

    def conflict(x: list[int], y: list[int]) -> bool:
        return any(spans[i][0] <= spans[j][1] and spans[j][0] <= spans[i][1] for i in x for j in y)

    while True:
        pairs = [
            (np.mean([np.linalg.norm(vectors[i] - vectors[j]) for i in x for j in y]), min(x), min(y))
            for k, x in enumerate(clusters)
            for y in clusters[k + 1 :]
            if not conflict(x, y)
        ]
        if not pairs or min(pairs)[0] >= threshold:
            break
        _, first_a, first_b = min(pairs)
        a = next(c for c in clusters if min(c) == first_a)
        b = next(c for c in clusters if min(c) == first_b)
        clusters.remove(b)
        a.extend(b)
    keys = [""] * len(apps)
    for number, cluster in enumerate(sorted(clusters, key=min), start=1):
        for position in cluster:
            keys[order[position]] = f"p{number}"
    return keys


@pytest.mark.parametrize("seed", range(6))
def test_matches_the_slow_obvious_clustering(seed: int) -> None:
    """Random people (directions) seen in random, partly overlapping appearances."""
    rng = np.random.default_rng(seed)
    people = rng.normal(size=(5, 128))
    apps, embeddings = [], []
    for i in range(24):
        start = int(rng.integers(0, 20_000))
        apps.append(App(f"k{i:02d}", start, start + int(rng.integers(100, 3000))))
        person = people[rng.integers(0, 5)]
        embeddings.append(person + 0.6 * rng.normal(size=(int(rng.integers(1, 4)), 128)))
    for threshold in (0.5, 0.6, 0.9):
        assert link_people(apps, embeddings, threshold) == reference_keys(apps, embeddings, threshold)
