"""Contact sheet: a real PNG of real face crops, read back with OpenCV."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from analyzer.analysis.contact_sheet import (
    BACKGROUND,
    HEADER_PX,
    PAD_PX,
    THUMB_PX,
    caption_lines,
    format_ms,
    render_contact_sheet,
    write_contact_sheet,
)
from analyzer.analysis.tracking import FrameFaces, Tracker, TrackerSettings
from analyzer.events import Event
from models.cydral import AGE_CLASSES

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("ANALYZER_SHARED_DIR", REPO.parent / "shared"))
TWO_PEOPLE = SHARED / "media" / "two_people.jpg"
# Boxes (x1, y1, x2, y2) of the two faces, from ../shared/models/reference/README.md rows 3-4.
TWO_PEOPLE_BOXES = np.array([[236.92, 29.6, 383.8, 223.38], [786.36, 46.41, 942.1, 253.2]])


def event(key: str, start_ms: int = 0, **fields) -> Event:
    values = dict(
        event_key=key,
        start_ms=start_ms,
        end_ms=start_ms + 1500,
        best_frame_ms=start_ms,
        x=0,
        y=0,
        w=10,
        h=10,
        det_score=0.99,
        gender="male",
        gender_score=87.5,
        age=54,
        face_count=8,
    )
    values.update(fields)
    return Event(**values)


@pytest.fixture(scope="module")
def two_people() -> np.ndarray:
    if not TWO_PEOPLE.is_file():
        pytest.skip(f"test media missing: {TWO_PEOPLE} (set ANALYZER_SHARED_DIR)")
    image = cv2.imread(str(TWO_PEOPLE))
    assert image is not None
    return image


def test_sheet_of_real_faces_written_and_read_back(tmp_path, two_people):
    # The photo as three sampled frames: both faces tracked, thumbnails cut by the tracker.
    height, width = two_people.shape[:2]
    tracker = Tracker(TrackerSettings(), frame_width=width, frame_height=height)
    faces = FrameFaces.from_arrays(
        boxes=TWO_PEOPLE_BOXES,
        scores=np.array([0.9996, 0.9949]),
        gender_logit=np.log(np.array([0.97, 0.2]) / np.array([0.03, 0.8])),
        age_probs=np.eye(len(AGE_CLASSES))[[AGE_CLASSES.index(54.0), AGE_CLASSES.index(68.0)]],
        face_px=np.array([147.0, 156.0]),
        sharpness=np.array([808.0, 3.0]),  # the second one too blurred to judge
    )
    for timestamp_ms in (61_000, 61_200, 61_400):
        tracker.update(timestamp_ms, faces, two_people)
    events = tracker.finish()
    # three agreeing frames at 97 % are worth 1.5 faces (rho 0.51): 99.4 %; the age correction reads 54 as 61
    assert [(e.gender, e.gender_score, e.age) for e in events] == [("male", 99.4, 61), (None, None, None)]
    assert events[0].age_low < 54 < events[0].age_high and events[1].age_low is None
    assert set(tracker.thumbnails) == {e.event_key for e in events}

    path = tmp_path / "sheet.png"
    write_contact_sheet(path, events, tracker.thumbnails, title="two_people.jpg")
    sheet = cv2.imread(str(path))
    assert sheet is not None and sheet.dtype == np.uint8
    assert sheet.shape[0] >= HEADER_PX + THUMB_PX and sheet.shape[1] >= 2 * THUMB_PX
    for column in range(2):  # each cell holds a face, not blank background
        left = PAD_PX + column * (THUMB_PX + PAD_PX)
        cell = sheet[HEADER_PX + 10 : HEADER_PX + THUMB_PX - 10, left + 10 : left + THUMB_PX - 10]
        assert cell.std() > 20
    # The first cell shows the first face: compare with the crop shrunk to the same size.
    face = cv2.resize(two_people[30:223, 237:384], (40, 40), interpolation=cv2.INTER_AREA).astype(float)
    shown = sheet[HEADER_PX : HEADER_PX + THUMB_PX, PAD_PX : PAD_PX + THUMB_PX]
    inner = cv2.resize(shown[20:140, 35:125], (40, 40), interpolation=cv2.INTER_AREA).astype(float)
    assert np.abs(face - inner).mean() < 40


def test_sheet_without_events_says_no_faces(tmp_path):
    path = tmp_path / "empty.png"
    write_contact_sheet(path, [], {})
    sheet = cv2.imread(str(path))
    assert sheet is not None
    assert sheet.shape[0] < 200  # just the heading band
    assert (sheet != np.array(BACKGROUND, np.uint8)).any()  # the words are drawn


def test_missing_thumbnail_draws_a_placeholder():
    events = [event("a"), event("b", start_ms=2000, gender=None, gender_score=None, age=None)]
    sheet = render_contact_sheet(events, {})
    assert sheet.shape[2] == 3 and sheet.dtype == np.uint8


def test_many_events_wrap_into_rows():
    events = [event(f"k{i}", start_ms=i * 1000) for i in range(13)]
    one_row = render_contact_sheet(events[:6], {})
    three_rows = render_contact_sheet(events, {})
    assert three_rows.shape[1] == one_row.shape[1]
    assert three_rows.shape[0] > 2 * one_row.shape[0] - HEADER_PX


def test_write_creates_missing_folders(tmp_path):
    write_contact_sheet(tmp_path / "no" / "such" / "sheet.png", [], {})
    assert (tmp_path / "no" / "such" / "sheet.png").stat().st_size > 0


def test_unwritable_path_raises(tmp_path):
    (tmp_path / "taken").mkdir()
    with pytest.raises(OSError):
        write_contact_sheet(tmp_path / "taken", [], {})


@pytest.mark.parametrize(
    ("ms", "text"),
    [(0, "00:00.0"), (1234, "00:01.2"), (59_960, "01:00.0"), (83_456, "01:23.5"), (3_725_000, "62:05.0")],
)
def test_format_ms(ms, text):
    assert format_ms(ms) == text


def test_caption_shows_unknowns():
    known = caption_lines(1, event("a", start_ms=61_000))
    assert known[:3] == ["#1 01:01.0-01:02.5", "male 88%", "age 54"]
    ranged = caption_lines(1, event("a", age_low=47, age_high=61))
    assert ranged[2] == "age 54 (47-61)"
    unknown = caption_lines(2, event("b", gender=None, gender_score=None, age=None))
    assert unknown[1:3] == ["gender n/a", "age ?"]


def test_caption_names_the_person():
    assert caption_lines(4, event("a", person_key="p3"))[0] == "#4 p3 00:00.0-00:01.5"
