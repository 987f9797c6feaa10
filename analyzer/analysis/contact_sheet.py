"""A PNG grid of each Event's best face, so a person can check a run by looking.

Each cell shows the face (letterboxed, or a grey "no image" box when no thumbnail was kept)
and under it: the event number, its person key ("p3": the appearances of one person share it) and
time range (mm:ss.s), the gender and its score in percent
("gender n/a" when NULL), the age and its range ("age 34 (27-42)"; "age ?" when NULL) and the
number of faces linked.
A run without events gives a small sheet that says "no faces".
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np

from analyzer.events import Event

log = logging.getLogger(__name__)

COLUMNS = 6  # cells per row
THUMB_PX = 160  # px; side of the square thumbnail area in a cell
PAD_PX = 10  # px; space around and between cells
LINE_PX = 18  # px; height of one caption line
CAPTION_LINES = 4
HEADER_PX = 40  # px; height of the title band
MIN_WIDTH_PX = 420  # px; narrowest sheet, so the title fits
FONT = cv2.FONT_HERSHEY_SIMPLEX
FONT_SCALE = 0.45
TITLE_SCALE = 0.6

BACKGROUND = (255, 255, 255)  # BGR
EMPTY_THUMB = (200, 200, 200)
TEXT = (30, 30, 30)
GENDER_COLOURS = {"male": (180, 90, 20), "female": (140, 40, 190), None: (110, 110, 110)}


def write_contact_sheet(
    path: str | Path,
    events: Sequence[Event],
    thumbnails: Mapping[str, np.ndarray],
    title: str = "",
) -> None:
    """Render the sheet and write it as PNG to path (raises OSError if it cannot be written).

    thumbnails: event_key -> H x W x 3 uint8 BGR crop of the event's best face; missing keys
    are drawn as "no image".
    """
    image = render_contact_sheet(events, thumbnails, title)
    ok, encoded = cv2.imencode(".png", image)
    if not ok:
        raise OSError(f"cannot encode the contact sheet for {path} as PNG")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_bytes(encoded.tobytes())
    log.info("contact sheet: %s events written to %s", len(events), path)


def render_contact_sheet(events: Sequence[Event], thumbnails: Mapping[str, np.ndarray], title: str = "") -> np.ndarray:
    """The sheet as an H x W x 3 uint8 BGR image; see write_contact_sheet."""
    heading = f"{title}  " if title else ""
    if not events:
        sheet = np.full((HEADER_PX + PAD_PX, MIN_WIDTH_PX, 3), BACKGROUND, dtype=np.uint8)
        _text(sheet, heading + "no faces", (PAD_PX, HEADER_PX - 14), TEXT, TITLE_SCALE, thickness=2)
        return sheet
    columns = min(COLUMNS, len(events))
    rows = -(-len(events) // columns)
    cell_h = THUMB_PX + CAPTION_LINES * LINE_PX + PAD_PX // 2
    width = max(PAD_PX + columns * (THUMB_PX + PAD_PX), MIN_WIDTH_PX)
    height = HEADER_PX + rows * (cell_h + PAD_PX) + PAD_PX
    sheet = np.full((height, width, 3), BACKGROUND, dtype=np.uint8)
    heading += f"{len(events)} appearance{'s' if len(events) != 1 else ''}"
    _text(sheet, heading, (PAD_PX, HEADER_PX - 14), TEXT, TITLE_SCALE, thickness=2)
    for number, event in enumerate(events):
        row, col = divmod(number, columns)
        left = PAD_PX + col * (THUMB_PX + PAD_PX)
        top = HEADER_PX + row * (cell_h + PAD_PX)
        _draw_cell(sheet, left, top, number + 1, event, thumbnails.get(event.event_key))
    return sheet


def format_ms(ms: int) -> str:
    """Milliseconds -> "mm:ss.s" (minutes keep counting past 59)."""
    tenths = (int(ms) + 50) // 100
    minutes, tenths = divmod(tenths, 600)
    return f"{minutes:02d}:{tenths // 10:02d}.{tenths % 10}"


def caption_lines(number: int, event: Event) -> list[str]:
    """The text under one face: number, person key and time range, gender and score, age and
    range, face count."""
    if event.gender is None or event.gender_score is None:
        gender = "gender n/a"
    else:
        gender = f"{event.gender} {event.gender_score:.0f}%"
    age = "age ?" if event.age is None else f"age {event.age}"
    if event.age is not None and event.age_low is not None and event.age_high is not None:
        age += f" ({event.age_low}-{event.age_high})"
    person = f" {event.person_key}" if event.person_key else ""
    return [
        f"#{number}{person} {format_ms(event.start_ms)}-{format_ms(event.end_ms)}",
        gender,
        age,
        f"{event.face_count} faces, det {event.det_score:.2f}",
    ]


def _draw_cell(sheet: np.ndarray, left: int, top: int, number: int, event: Event, thumbnail: np.ndarray | None) -> None:
    area = sheet[top : top + THUMB_PX, left : left + THUMB_PX]
    if thumbnail is None:
        area[:] = EMPTY_THUMB
        (text_w, text_h), _ = cv2.getTextSize("no image", FONT, FONT_SCALE, 1)
        origin = (left + (THUMB_PX - text_w) // 2, top + (THUMB_PX + text_h) // 2)
        _text(sheet, "no image", origin, TEXT, FONT_SCALE)
    else:
        _letterbox_into(area, thumbnail)
    colour = GENDER_COLOURS.get(event.gender, GENDER_COLOURS[None])
    cv2.rectangle(sheet, (left, top), (left + THUMB_PX - 1, top + THUMB_PX - 1), colour, 2)
    for i, line in enumerate(caption_lines(number, event)):
        baseline = top + THUMB_PX + (i + 1) * LINE_PX - 4
        _text(sheet, line, (left, baseline), colour if i == 1 else TEXT, FONT_SCALE)


def _letterbox_into(area: np.ndarray, image: np.ndarray) -> None:
    """Scale image to fit the square area keeping its aspect, centred on the empty colour."""
    area[:] = EMPTY_THUMB
    height, width = image.shape[:2]
    scale = THUMB_PX / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    resized = cv2.resize(image, size, interpolation=interpolation)
    y = (THUMB_PX - size[1]) // 2
    x = (THUMB_PX - size[0]) // 2
    area[y : y + size[1], x : x + size[0]] = resized


def _text(
    image: np.ndarray,
    text: str,
    origin: tuple[int, int],
    colour: tuple[int, int, int],
    scale: float,
    thickness: int = 1,
) -> None:
    cv2.putText(image, text, origin, FONT, scale, colour, thickness, cv2.LINE_AA)
