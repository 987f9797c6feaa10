"""``analyzer`` with a small deterministic analysis step, for the runner's process-level tests.

Everything around the analysis is the real worker (settings, lock, store, signals, exit codes);
the analysis derives its events from the input's bytes, in steps with a pause between them
so that a test can signal or kill the process mid-analysis. Steps and pause come from
TEST_ANALYSIS_STEPS and TEST_ANALYSIS_PAUSE; TEST_ANALYSIS_BLOCK makes one step ignore stop
requests for that many seconds (a long GPU call).
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from pathlib import Path

from analyzer.cli import main
from analyzer.events import AnalysisResult, Event


def stepped_analysis(path: Path, settings, control) -> AnalysisResult:
    steps = int(os.environ.get("TEST_ANALYSIS_STEPS", "2"))
    pause = float(os.environ.get("TEST_ANALYSIS_PAUSE", "0.05"))
    block = float(os.environ.get("TEST_ANALYSIS_BLOCK", "0"))
    digest = hashlib.sha256(path.read_bytes()).digest()
    for _ in range(steps):
        time.sleep(pause)
        control.check()
    if block:
        time.sleep(block)  # like one long torch call: no check in between
    events = [expected_event(digest, i) for i in range(4)]
    return AnalysisResult(events=events, frames=steps, faces=len(events) * 2)


def expected_event(digest: bytes, i: int) -> Event:
    start = 1000 * i + digest[i]
    return Event(
        event_key=f"{start:08d}-{i}",
        start_ms=start,
        end_ms=start + 400,
        best_frame_ms=start + 200,
        x=digest[i + 4],
        y=digest[i + 8],
        w=20 + digest[i + 12] % 50,
        h=30,
        det_score=0.95,
        gender=None if i == 3 else ("male" if digest[i] % 2 else "female"),
        gender_score=None if i == 3 else 50 + digest[i + 16] % 50,
        age=None if i == 3 else 20 + i,
        face_count=2,
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], analyze=stepped_analysis))
