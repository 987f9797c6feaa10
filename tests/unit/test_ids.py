"""One video-id validator: the worker, the dispatcher, manifests and ``submit`` agree on every value."""

from __future__ import annotations

import argparse
import json

import pytest

from analyzer import settings
from analyzer.errors import AnalyzerError
from analyzer.fleet import dispatch, submit
from analyzer.fleet.manifest import parse_manifest_line
from analyzer.ids import MAX_VIDEO_ID, parse_column_name, parse_table_name, parse_video_id


def _worker(text: str) -> int:
    parser = argparse.ArgumentParser()
    settings.add_arguments(parser)
    return settings.resolve(parser.parse_args([]), {"VideoKey": "k", "video_id": text}).video_id


def _dispatcher(value: object) -> int:
    return dispatch.positive_id(value, "message attribute video_id")


def _manifest(value: object) -> int:
    return parse_manifest_line(json.dumps({"video_id": value, "key": "k"}), "m line 1").video_id


def _submit(text: str) -> int:
    args = argparse.Namespace(
        job_queue="q", job_definition="d", env=None, manifest=None, video_id=text, key="videos/a.mp4", bucket=None
    )
    [request] = submit.build_plan(args).requests
    return int(request["containerOverrides"]["environment"][1]["value"])


TEXT_ENTRY_POINTS = [_worker, _dispatcher, _manifest, _submit]
ACCEPTED = {"1": 1, "84": 84, str(MAX_VIDEO_ID): MAX_VIDEO_ID, " 7\n": 7, "007": 7}
REFUSED = [
    str(MAX_VIDEO_ID + 1),
    "2" + "0" * 30,
    "0",
    "-1",
    "+5",
    "1e3",
    "84.0",
    "",
    " ",
    "١٢",
    "٣",
    "²",
    "８４",
    "0x10",
    "1_000",
]


@pytest.mark.parametrize("entry", TEXT_ENTRY_POINTS, ids=lambda f: f.__name__.strip("_"))
def test_every_entry_point_accepts_the_same_ids(entry):
    for text, expected in ACCEPTED.items():
        assert entry(text) == expected, text


@pytest.mark.parametrize("entry", TEXT_ENTRY_POINTS, ids=lambda f: f.__name__.strip("_"))
@pytest.mark.parametrize("text", REFUSED)
def test_every_entry_point_refuses_the_same_ids(entry, text):
    with pytest.raises(AnalyzerError) as info:
        entry(text)
    assert "\n" not in str(info.value) and not info.value.exit_code.retryable


@pytest.mark.parametrize("entry", [_dispatcher, _manifest], ids=["dispatcher", "manifest"])
@pytest.mark.parametrize("value", [True, 84.0, MAX_VIDEO_ID + 1, 0, -3, None, [84]])
def test_json_values_are_refused_alike(entry, value):
    with pytest.raises(AnalyzerError):
        entry(value)


def test_the_bound_is_the_advisory_locks_int4():
    assert MAX_VIDEO_ID == 2**31 - 1
    assert parse_video_id(84) == 84
    with pytest.raises(ValueError, match="ASCII digits"):
        parse_video_id("١٢")


@pytest.mark.parametrize("name", ["videos", "app.uploads", "_v1", "Videos"])
def test_table_names(name):
    assert parse_table_name(name) == name


@pytest.mark.parametrize("name", ["videos;", "a.b.c", "", "1videos", "vid eos", 'x"', "a" * 64, "videos."])
def test_bad_table_names(name):
    with pytest.raises(ValueError):
        parse_table_name(name)
    with pytest.raises(ValueError):
        parse_column_name(name)
