"""The 13 regressions of issue 13, planted one at a time against the tests that must catch them.

``python -m tests.support.regressions [NAME...]`` edits one source file of this checkout, runs
the named tests, puts the file back (always, even on Ctrl-C) and prints CAUGHT or SURVIVED for
each; exit status 1 if any survived. Every one survived the whole suite before issue 13; each
row of docs/testing.md names the test that now fails. The checkout must be clean of edits to
the files it plants into.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
UPSERT_UPDATE = """ON CONFLICT (video_id, event_key) DO UPDATE SET
    start_ms = EXCLUDED.start_ms, end_ms = EXCLUDED.end_ms, best_frame_ms = EXCLUDED.best_frame_ms,
    box_x = EXCLUDED.box_x, box_y = EXCLUDED.box_y, box_w = EXCLUDED.box_w, box_h = EXCLUDED.box_h,
    det_score = EXCLUDED.det_score, gender = EXCLUDED.gender, gender_score = EXCLUDED.gender_score,
    age = EXCLUDED.age, face_count = EXCLUDED.face_count, model_version = EXCLUDED.model_version,
    age_low = EXCLUDED.age_low, age_high = EXCLUDED.age_high, updated_at = now();"""


@dataclass(frozen=True)
class Regression:
    file: str
    old: str
    new: str
    tests: tuple[str, ...]


REGRESSIONS = {
    "fence-skipped": Regression(
        "analyzer/store/postgres.py",
        'if row is None or str(row["run_id"]) != run_id:',
        "if False:",
        ("tests/integration/test_store.py",),
    ),
    "lock-released-before-write": Regression(
        "analyzer/store/postgres.py",
        '        with db.translate_errors("writing events"), self.conn.transaction():',
        '        db.fetch_one(self.conn, "unlock_video", namespace=LOCK_NAMESPACE, video_id=video_id)\n'
        '        with db.translate_errors("writing events"), self.conn.transaction():',
        ("tests/integration/test_exactly_once.py::test_the_lock_stays_held_while_the_write_waits",),
    ),
    "finish-run-unguarded": Regression(
        "analyzer/store/sql/queries.sql",
        "exit_code = %(exit_code)s\nWHERE video_id = %(video_id)s AND run_id = %(run_id)s AND status = 'running'\n",
        "exit_code = %(exit_code)s\nWHERE video_id = %(video_id)s AND %(run_id)s::text IS NOT NULL\n",
        ("tests/integration/test_store.py",),
    ),
    "upsert-does-nothing": Regression(
        "analyzer/store/sql/queries.sql",
        UPSERT_UPDATE,
        "ON CONFLICT (video_id, event_key) DO NOTHING;",
        ("tests/integration/test_store.py", "tests/integration/test_exactly_once.py"),
    ),
    "model-version-ignored": Regression(
        "analyzer/job/runner.py",
        'same = previous["input_fingerprint"] == fingerprint and previous["model_version"] == version',
        'same = previous["input_fingerprint"] == fingerprint',
        ("tests/unit/test_job_branches.py",),
    ),
    "bug-exits-75": Regression(
        "analyzer/cli.py",
        "        return int(errors.ExitCode.INTERNAL_ERROR)",
        "        return int(errors.ExitCode.RETRYABLE)",
        ("tests/unit/test_cli.py",),
    ),
    "s3-5xx-denied": Regression(
        "analyzer/source/s3.py",
        '    return InfrastructureError(f"{what}: S3 error {code}")',
        '    return AccessDenied(f"{what}: S3 error {code}")',
        ("tests/unit/test_s3_errors.py",),
    ),
    "false-flag-true": Regression(
        "analyzer/settings.py",
        '    if text.lower() in ("1", "true", "yes", "on"):',
        '    if text.lower() in ("1", "true", "yes", "on", "0", "false"):',
        ("tests/unit/test_settings.py",),
    ),
    "sample-fps-ignored": Regression(
        "analyzer/analysis/pipeline.py",
        "            sample_fps=settings.sample_fps,",
        "            sample_fps=5.0,",
        ("tests/pipeline/test_analyze.py::test_sample_rate_and_least_face_size_change_what_is_analysed",),
    ),
    "min-face-px-dropped": Regression(
        "analyzer/analysis/pipeline.py",
        "        min_face_px=settings.min_face_px,\n",
        "",
        ("tests/pipeline/test_analyze.py::test_sample_rate_and_least_face_size_change_what_is_analysed",),
    ),
    "conflict-picks-smaller": Regression(
        "analyzer/fleet/dispatch.py",
        "            if len(named_ids) < 2:\n                continue",
        "            if len(named_ids) < 2:\n                continue\n"
        "            for r in named:\n                r.video_id = min(named_ids)\n            continue",
        ("tests/ship/test_dispatch.py",),
    ),
    "id-zero-accepted": Regression(
        "analyzer/fleet/dispatch.py",
        "    try:\n        return parse_video_id(value)",
        "    try:\n        if value == 0:\n            return 0\n        return parse_video_id(value)",
        ("tests/ship/test_dispatch.py",),
    ),
    "scrubbing-off": Regression(
        "analyzer/logs.py",
        "    return mask_tokens(text, _SECRETS)",
        "    return text",
        ("tests/unit/test_secrets.py", "tests/integration/test_exactly_once.py::test_password_never_logged"),
    ),
}


def plant(name: str, regression: Regression) -> bool:
    """Whether the regression's tests fail with it planted; the file is restored either way."""
    path = REPO / regression.file
    original = path.read_text()
    if original.count(regression.old) != 1:
        raise SystemExit(f"{name}: the code to replace is not in {regression.file} exactly once; update this list")
    path.write_text(original.replace(regression.old, regression.new))
    try:
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *regression.tests],
            cwd=REPO,
            capture_output=True,
            text=True,
        )
    finally:
        path.write_text(original)
    failed = [line.split(" - ")[0] for line in done.stdout.splitlines() if line.startswith("FAILED")]
    verdict = "CAUGHT  " if done.returncode else "SURVIVED"
    print(f"{verdict} {name:28s} {time.monotonic() - started:5.1f} s  {failed[0] if failed else ''}", flush=True)
    return done.returncode != 0


def main(argv: list[str]) -> int:
    names = argv or list(REGRESSIONS)
    unknown = [n for n in names if n not in REGRESSIONS]
    if unknown:
        print(f"unknown: {', '.join(unknown)}; known: {', '.join(REGRESSIONS)}", file=sys.stderr)
        return 2
    caught = [plant(name, REGRESSIONS[name]) for name in names]
    return 0 if all(caught) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
