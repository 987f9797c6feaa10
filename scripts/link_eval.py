"""Person linking on the labelled video set: the threshold's curve, the README sample's check,
the threshold the rule picks (and picks leave-one-video-out), and gender coverage with and without
pooling per person.

    .venv/bin/python scripts/link_eval.py tests/data/video_set/labels.json out/synthetic/labels.json
        [--out out/link_eval.json]

(out/synthetic from scripts/make_synthetic_tracks.py --half all.) Each video goes through the
worker's pipeline (descriptors stay in this process); each label is matched to an appearance
(analyzer.evaluation.videoset.match). For every threshold of the grid the appearances are linked
(analyzer.analysis.people.people_of) and pairs of matched labels are counted, real and synthetic
videos apart: same ``person`` -> linked or not; different people whose appearances do not overlap
in time (those that do can never be linked) -> wrongly linked or not. Every synthetic track is a
person of its own. Coverage: the share of labels judgeable by eye that get a gender at the default
ANALYZER_MIN_GENDER_SCORE, and the share of those right, with each appearance judged alone and
judged with its person's faces.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from analyzer.analysis.people import LINK_THRESHOLD, people_of
from analyzer.analysis.pipeline import analyze_video
from analyzer.analysis.pooling import POOLINGS, AppearanceFaces, concat_faces, judge
from analyzer.evaluation import videoset
from analyzer.events import Event
from analyzer.faces import default_model_dir
from analyzer.settings import DEFAULT_MIN_GENDER_SCORE, Settings

THRESHOLDS = [round(t, 2) for t in np.arange(0.20, 0.71, 0.02)]
SAMPLE = ("walking", "walking-06", "walking-07")  # the README sample's curly-haired woman


@dataclass
class Video:
    name: str
    kind: str
    events: list[Event]
    appearances: dict[str, AppearanceFaces]
    matches: list[videoset.Match]
    _keys: dict[float, dict[str, str]] = field(default_factory=dict, repr=False)

    def keys(self, threshold: float) -> dict[str, str]:
        """event_key -> person key at ``threshold`` (linked once per threshold: the curve, the rule
        and every leave-one-out fold ask again)."""
        if threshold not in self._keys:
            people = people_of(self.events, self.appearances, threshold)
            self._keys[threshold] = dict(zip([e.event_key for e in self.events], people))
        return self._keys[threshold]


def analyse(labels: list[str]) -> list[Video]:
    """Every video of the labels files through the pipeline, its labels matched."""
    videos = []
    for video in (video for path in labels for video in videoset.load(path)):
        settings = Settings(video_key=str(video.path), video_id=1, model_dir=default_model_dir(), device="cpu")
        result = analyze_video(video.path, settings)
        matches = videoset.match(video, result.appearances)
        videos.append(Video(video.name, video.kind, result.events, result.appearances, matches))
        print(f"{video.name}: {len(result.events)} appearances", flush=True)
    return videos


def pair_counts(video: Video, keys: dict[str, str]) -> dict[str, int]:
    """Same-person pairs (linked of all) and different-person pairs apart in time (linked of all)."""
    spans = {e.event_key: (e.start_ms, e.end_ms) for e in video.events}
    counts = {"same": 0, "same_linked": 0, "different": 0, "different_linked": 0}
    matched = [m for m in video.matches if m.event_key is not None]
    for a, b in itertools.combinations(matched, 2):
        assert a.event_key is not None and b.event_key is not None
        linked = keys[a.event_key] == keys[b.event_key]
        if a.label.person == b.label.person:
            counts["same"] += 1
            counts["same_linked"] += linked
            continue
        (s1, e1), (s2, e2) = spans[a.event_key], spans[b.event_key]
        if s1 <= e2 and s2 <= e1:
            continue  # on screen together: never linked, so no evidence about the threshold
        counts["different"] += 1
        counts["different_linked"] += linked
    return counts


def totals(videos: list[Video], threshold: float) -> dict[str, Any]:
    """The videos' pair counts at ``threshold`` and the two shares."""
    total = {"same": 0, "same_linked": 0, "different": 0, "different_linked": 0}
    for video in videos:
        keys = video.keys(threshold)
        for name, value in pair_counts(video, keys).items():
            total[name] += value
    return with_shares(total)


def with_shares(total: dict[str, int]) -> dict[str, Any]:
    """Pair counts with the share of same-person pairs linked and of different-person pairs apart."""
    return {
        **total,
        "same_linked_share": round(total["same_linked"] / max(total["same"], 1), 3),
        "different_apart_share": round(1 - total["different_linked"] / max(total["different"], 1), 4),
    }


def curve(videos: list[Video], with_sample: bool = True) -> list[dict[str, Any]]:
    return [
        {"threshold": threshold, **totals(videos, threshold)}
        | ({"sample_ok": _sample_ok(videos, threshold)} if with_sample else {})
        for threshold in THRESHOLDS
    ]


def chosen_threshold(videos: list[Video]) -> float:
    """The rule LINK_THRESHOLD follows: among the thresholds of the grid that keep at least 99 % of
    the different-person pairs of ``videos`` apart (of each kind, real and synthetic), the lowest
    that links as many same-person pairs as any."""
    rows = [totals([v for v in videos if v.kind == kind], t) for t in THRESHOLDS for kind in ("real", "synthetic")]
    keeps = [
        (t, real["same_linked"])
        for t, real, synthetic in zip(THRESHOLDS, rows[0::2], rows[1::2])
        if real["different_apart_share"] >= 0.99 and synthetic["different_apart_share"] >= 0.99
    ]
    most = max((linked for _, linked in keeps), default=0)
    return min((t for t, linked in keeps if linked == most), default=THRESHOLDS[0])


def held_out(videos: list[Video]) -> dict[str, Any]:
    """Leave one real video out: its pairs counted at the threshold the rule picks on all the other
    videos (real and synthetic)."""
    real = [v for v in videos if v.kind == "real"]
    thresholds = {v.name: chosen_threshold([o for o in videos if o is not v]) for v in real}
    counts = [totals([v], thresholds[v.name]) for v in real]
    total = {name: sum(c[name] for c in counts) for name in ("same", "same_linked", "different", "different_linked")}
    return {"thresholds": thresholds, **with_shares(total)}


def sample_check(videos: list[Video], threshold: float) -> dict[str, Any]:
    """The curly-haired woman's two appearances: their keys, and who else shares them."""
    name, first, second = SAMPLE
    video = next(v for v in videos if v.name == name)
    keys = video.keys(threshold)
    by_label = {m.label.id: m.event_key for m in video.matches}
    mine = {keys[k] for k in (by_label[first], by_label[second]) if k is not None}
    sharing = sorted(k for k, key in keys.items() if key in mine)
    return {"keys": sorted(mine), "events": sharing, "same_key": len(mine) == 1, "others": len(sharing) - 2}


def _sample_ok(videos: list[Video], threshold: float) -> bool:
    check = sample_check(videos, threshold)
    return bool(check["same_key"] and check["others"] == 0)


def coverage(videos: list[Video], threshold: float, min_score: float) -> dict[str, dict[str, float]]:
    """Answered share and share right of the answered, per appearance alone and per person."""
    pooling = POOLINGS["cydral"]
    tallies = {"appearance": [0, 0], "person": [0, 0]}  # answered, right
    labels = 0
    for video in videos:
        keys = video.keys(threshold)
        for m in video.matches:
            if not m.label.judgeable:
                continue
            labels += 1
            if m.event_key is None:
                continue
            person = [video.appearances[k] for k in keys if keys[k] == keys[m.event_key]]
            for kind, faces in (("appearance", video.appearances[m.event_key]), ("person", concat_faces(person))):
                gender = judge(pooling, faces, min_score)[0]
                if gender is not None:
                    tallies[kind][0] += 1
                    tallies[kind][1] += gender == m.label.gender
    return {
        kind: {
            "labels": labels,
            "answered": answered,
            "answered_share": round(answered / labels, 3),
            "right_of_answered": round(right / max(answered, 1), 3),
        }
        for kind, (answered, right) in tallies.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("labels", nargs="+", help="labels.json files; real and synthetic videos are reported apart")
    parser.add_argument("--out", type=Path, help="write the figures (no descriptors) as JSON here")
    parser.add_argument("--threshold", type=float, default=LINK_THRESHOLD)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    everything = analyse(args.labels)
    figures: dict[str, Any] = {
        "threshold": args.threshold,
        "min_gender_score": DEFAULT_MIN_GENDER_SCORE,
        "chosen_by_the_rule": chosen_threshold(everything),
        "held_out": held_out(everything),
    }
    for kind in sorted({v.kind for v in everything}):
        videos = [v for v in everything if v.kind == kind]
        with_sample = any(v.name == SAMPLE[0] for v in videos)
        figures[kind] = {
            "curve": curve(videos, with_sample),
            "coverage": coverage(videos, args.threshold, DEFAULT_MIN_GENDER_SCORE),
        } | ({"sample": sample_check(videos, args.threshold)} if with_sample else {})
        print(f"\n{kind} videos\n")
        print("| threshold | same-person pairs linked | different-person pairs apart | README sample |")
        print("|---|---|---|---|")
        for row in figures[kind]["curve"]:
            print(
                f"| {row['threshold']:.2f} | {row['same_linked']}/{row['same']} ({row['same_linked_share']:.1%})"
                f" | {row['different'] - row['different_linked']}/{row['different']}"
                f" ({row['different_apart_share']:.2%}) | {'one key, hers alone' if row.get('sample_ok') else 'no'} |"
            )
        print(json.dumps({k: v for k, v in figures[kind].items() if k != "curve"}, indent=2))
    print(json.dumps({k: figures[k] for k in ("chosen_by_the_rule", "held_out")}, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
