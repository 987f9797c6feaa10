"""Starting worker processes the way Batch does, and reading what they did."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def worker_env(**extra: str) -> dict[str, str]:
    """The current environment without the worker's settings, plus ``extra`` (JSON logs)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not (
            k.startswith(("ANALYZER_", "AWS_BATCH_", "TEST_ANALYSIS_"))
            or k in ("DATABASE_URL", "VideoKey", "VIDEO_KEY", "video_id", "VIDEO_ID", "S3_BUCKET")
        )
    }
    env.update(ANALYZER_LOG_FORMAT="json", PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    if "ANALYZER_SHARED_DIR" in os.environ:
        env["ANALYZER_SHARED_DIR"] = os.environ["ANALYZER_SHARED_DIR"]
    env.update(extra)
    return env


@dataclass
class Finished:
    returncode: int
    stdout: str
    stderr: str
    cpu_s: float = 0.0


def start(
    args: list[str], env: dict[str, str], module: str = "tests.support.worker", log_dir: Path | None = None
) -> subprocess.Popen:
    """A worker process (``python -m module args``) whose output goes to files in log_dir."""
    out = open(log_dir / f"{time.monotonic_ns()}.out", "w+") if log_dir else subprocess.PIPE
    err = open(log_dir / f"{time.monotonic_ns()}.err", "w+") if log_dir else subprocess.PIPE
    proc = subprocess.Popen([sys.executable, "-m", module, *args], cwd=REPO, env=env, stdout=out, stderr=err, text=True)
    proc.log_files = (out, err) if log_dir else None
    return proc


def wait_rusage(proc: subprocess.Popen, timeout: float = 120) -> Finished:
    """Wait for a process started with log_dir, returning its output and CPU time (user + system)."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            proc.kill()
            raise TimeoutError(f"worker {proc.pid} did not finish in {timeout} s")
        time.sleep(0.02)
    proc.returncode = os.waitstatus_to_exitcode(status)
    texts = []
    for handle in proc.log_files:
        handle.seek(0)
        texts.append(handle.read())
        handle.close()
    return Finished(proc.returncode, texts[0], texts[1], usage.ru_utime + usage.ru_stime)


def run(args: list[str], env: dict[str, str], module: str = "tests.support.worker", timeout: float = 300) -> Finished:
    proc = subprocess.run(
        [sys.executable, "-m", module, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )
    return Finished(proc.returncode, proc.stdout, proc.stderr)


def wait_for(condition: Callable[[], object], timeout: float = 30, what: str = "condition") -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise TimeoutError(f"timed out waiting for {what}")
