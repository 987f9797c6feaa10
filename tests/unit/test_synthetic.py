"""The synthetic tracks: FairFace 540's halves, and four tracks generated, decoded and checked."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from pathlib import Path

import av
import cv2
import pytest

from analyzer.analysis.tracking import DEFAULT_SCENE_CUT_CORRELATION, frame_signature
from analyzer.evaluation import evalset, fairface, synthetic
from analyzer.evaluation.appearances import iou
from tests.conftest import SHARED

FAIRFACE_DIR = SHARED / "data" / "fairface_540"
needs_fairface = pytest.mark.skipif(not FAIRFACE_DIR.is_dir(), reason="../shared/data/fairface_540 not present")
LABEL_KEYS = {"id", "person", "gender", "age_bin", "start_s", "end_s", "t_s", "box", "judgeable", "face_px"}
LABEL_KEYS |= {"blur_sigma", "image"}


def cells(images: list[fairface.FairFaceImage]) -> Counter:
    return Counter((image.age_bin, image.gender) for image in images)


@needs_fairface
def test_fairface_halves_follow_evalsets_rule() -> None:
    images = fairface.load_fairface(FAIRFACE_DIR)
    fit, held_out = fairface.split(images)
    assert len(images) == 540 and len(fit) == len(held_out) == 270
    assert set(cells(fit).values()) == set(cells(held_out).values()) == {15}  # 30 per cell, halved
    assert set(fairface.split(list(reversed(images)))[0]) == set(fit)  # order of the manifest does not matter
    # the one halving rule: even index of each cell sorted by sha256
    female_0_2 = sorted((i for i in images if i.age_bin == "0-2" and i.gender == "female"), key=lambda i: i.sha256)
    assert [i for i in fit if i in female_0_2] == female_0_2[::2]
    assert evalset.halves(images, lambda i: (i.age_bin, i.gender)) == (fit, held_out)
    names = [i.path.name for i in fairface.half(images, "fit")]
    assert names == sorted(names) and len(names) == 270


@pytest.fixture(scope="module")
def four_tracks(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("synthetic")
    return out, synthetic.generate(FAIRFACE_DIR, out, half_name="fit", seed=0, limit=4)


@needs_fairface
def test_labels_follow_the_schema_and_credit_fairface(four_tracks: tuple[Path, dict]) -> None:
    out, labels = four_tracks
    assert json.loads((out / "labels.json").read_text(encoding="utf-8")) == labels
    assert labels["version"] == 1 and labels["age_bins"] == list(fairface.AGE_BINS)
    assert "FairFace" in labels["credit"] and "Kärkkäinen" in labels["credit"]
    (video,) = labels["videos"]
    assert video["name"] == "synth-fit-00" and video["kind"] == "synthetic" and video["half"] == "fit"
    assert video["licence"] == "CC BY 4.0" and "FairFace" in video["source"]
    fit = {i.path.name: i for i in fairface.half(fairface.load_fairface(FAIRFACE_DIR), "fit")[:4]}
    assert {a["image"] for a in video["appearances"]} == set(fit)
    for label in video["appearances"]:
        assert set(label) == LABEL_KEYS
        image = fit[label["image"]]
        assert (label["gender"], label["age_bin"]) == (image.gender, image.age_bin)
        assert label["id"] == label["person"] == "ff-" + image.path.stem.split("_")[1]
        assert synthetic.TRACK_S[0] - 0.05 <= label["end_s"] - label["start_s"] <= synthetic.TRACK_S[1]
        assert label["start_s"] <= label["t_s"] <= label["end_s"]
        assert synthetic.FACE_PX[0] <= label["face_px"] <= synthetic.FACE_PX[1]
        assert synthetic.BLUR_SIGMA[0] <= label["blur_sigma"] <= synthetic.BLUR_SIGMA[1]
        x, y, w, h = label["box"]
        assert 0 <= x and x + w <= synthetic.FRAME_W and 0 <= y and y + h <= synthetic.FRAME_H
        assert abs(w - label["face_px"]) <= synthetic.SCALE_JITTER * label["face_px"] + 1


@needs_fairface
def test_clip_decodes_as_25_fps_h264_as_long_as_planned(four_tracks: tuple[Path, dict]) -> None:
    out, labels = four_tracks
    (video,) = labels["videos"]
    with av.open(str(out / video["file"])) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.average_rate == 25
        frames = [frame.to_ndarray(format="bgr24") for frame in container.decode(stream)]
    assert frames[0].shape == (synthetic.FRAME_H, synthetic.FRAME_W, 3)
    last_face_s = max(a["end_s"] for a in video["appearances"])
    assert len(frames) == round((last_face_s + synthetic.TAIL_S) * synthetic.FPS) + 1
    # a face is where its label says, and gone after its span: the box differs from the empty place
    for label in video["appearances"]:
        x, y, w, h = label["box"]
        shown = frames[round(label["t_s"] * synthetic.FPS)][y : y + h, x : x + w].astype(float)
        empty = frames[-1][y : y + h, x : x + w].astype(float)
        assert abs(shown - empty).mean() > 10, label["id"]


@needs_fairface
def test_labelled_box_holds_over_the_span_and_places_empty_between_tracks() -> None:
    images = fairface.half(fairface.load_fairface(FAIRFACE_DIR), "fit")[:32]
    clips = synthetic.plan_clips(images, "fit", seed=3)
    assert [len(c.tracks) for c in clips] == [16, 16]
    for clip in clips:
        for track in clip.tracks:
            labelled = track.label()["box"]
            worst = min(iou(track.face_box(f), labelled) for f in range(track.first_frame, track.last_frame + 1))
            assert worst >= 0.6, (clip.name, track.image.path.name, worst)
        for slot in range(len(synthetic.SLOTS)):
            spans = sorted((t.start_s, t.end_s) for t in clip.tracks if t.slot == slot)
            gaps = [nxt[0] - end for (_, end), nxt in zip(spans, spans[1:], strict=False)]
            assert len(spans) == synthetic.TRACKS_PER_SLOT and min(gaps) >= 1.5  # the tracker's gap is 1 s


@needs_fairface
def test_same_seed_same_bytes_other_seed_other_clip(four_tracks: tuple[Path, dict], tmp_path: Path) -> None:
    out, labels = four_tracks
    again = synthetic.generate(FAIRFACE_DIR, tmp_path / "again", half_name="fit", seed=0, limit=4)
    file = labels["videos"][0]["file"]
    assert again == labels
    assert (tmp_path / "again" / file).read_bytes() == (out / file).read_bytes()
    images = fairface.half(fairface.load_fairface(FAIRFACE_DIR), "fit")[:4]
    other = synthetic.plan_clips(images, "fit", seed=1)[0]
    assert other.tracks[0].label()["box"] != labels["videos"][0]["appearances"][0]["box"]


@needs_fairface
def test_faces_are_placed_by_their_measured_box_and_faceless_crops_are_not_judgeable() -> None:
    images = {i.path.name: i for i in fairface.load_fairface(FAIRFACE_DIR)}
    boxes = synthetic.face_boxes()
    faceless = sorted(set(images) - set(boxes))
    assert set(boxes) < set(images) and faceless == ["fairface_0379.jpg", "fairface_0389.jpg"]
    (clip,) = synthetic.plan_clips([images["fairface_0001.jpg"], images[faceless[0]]], "fit", seed=0)
    found, lost = (track.label() for track in clip.tracks)
    x, y, w, h = boxes["fairface_0001.jpg"]
    assert found["box"][3] / found["box"][2] == pytest.approx(h / w, abs=0.03) and found["judgeable"]
    assert not lost["judgeable"]


@needs_fairface
def test_a_plain_wall_never_reads_as_a_scene_cut(tmp_path: Path) -> None:
    # Clip 11 of the fit half (seed 0) on a flat wall: at 1.4 s the encoder shifted its one colour
    # across a histogram bin and the tracker's correlation fell to 0.69, ending three tracks.
    images = fairface.half(fairface.load_fairface(FAIRFACE_DIR), "fit")
    clip = synthetic.plan_clips(images, "fit", seed=0)[11]
    assert not clip.textured
    synthetic.write_clip(tmp_path / "start.mp4", itertools.islice(synthetic.render_clip(clip), 50), clip.crf)
    with av.open(str(tmp_path / "start.mp4")) as container:
        frames = enumerate(container.decode(video=0))
        samples = [frame_signature(frame.to_ndarray(format="bgr24")) for i, frame in frames if i % 5 == 0]
    correlations = [cv2.compareHist(a, b, cv2.HISTCMP_CORREL) for a, b in itertools.pairwise(samples)]
    assert min(correlations) > DEFAULT_SCENE_CUT_CORRELATION + 0.2
