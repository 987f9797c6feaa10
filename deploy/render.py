"""Render the deploy/ JSON templates and keep the Batch retry rules in step with the exit codes.

The job definition's ``retryStrategy.evaluateOnExit`` is derived from ``analyzer.errors.ExitCode``
(first match wins, at most 5 rules):

1. RETRY when the status reason starts with ``Host EC2`` (instance terminated: Spot reclaim,
   host failure; the container may have exited 143 on the way, which is why this rule is first);
2. RETRY on each retryable exit code (``ExitCode.retryable``);
3. EXIT for any other reason: a catch-all, because Batch retries a failure that no rule matches.

Its ``timeout.attemptDurationSeconds`` is derived from the longest video the worker accepts
(``ANALYZER_MAX_DURATION_S``: the job definition's environment, else the setting's default), so
that no accepted video can run out of time (Batch does not retry a timed-out attempt):

    attemptDurationSeconds = ceil(max_duration_s / WORST_REALTIME_FACTOR) + ATTEMPT_MARGIN_S

``WORST_REALTIME_FACTOR`` = 1.0: the slowest case foreseen on a g5.xlarge processes a video no
faster than it plays. The only full-pipeline GPU figure is 4.2x real time (1080p on an H200 with 16
CPUs, OpenCV decoding, 5 samples/s); a g5.xlarge decodes with 4 vCPUs (OpenCV there: 13x real time
at 1080p25, measured pinned to 4 CPUs) or one NVDEC session (21x), and a frame of the largest size
accepted (``ANALYZER_MAX_PIXELS``, 3840x2160) has 4x the pixels: 3.3x for 4K25 and 1.4x for 4K60
on 4 CPUs, and about 1x if the H200 run's per-frame overhead grows with the pixels. None of this was
measured on an A10G. ``ATTEMPT_MARGIN_S`` = 900 covers what is not video time: model loading, the
download (a 4-h 4K upload is tens of GB), the write. Default: 14,400 s of video -> 15,300 s.

Usage (from the repository root)::

    python deploy/render.py check                 # exit 1 if the JSON's rules or timeout are stale
    python deploy/render.py write                 # rewrite the rules and the timeout in the JSON
    python deploy/render.py fill deploy/batch/job-definition.json [NAME=VALUE ...] > jobdef.json

``fill`` replaces every ``${NAME}`` with the NAME=VALUE given, else the environment variable NAME,
and fails if one is left without a value or a given NAME is not used, so a half-filled policy
never reaches AWS.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(REPO))

from analyzer.errors import ExitCode  # noqa: E402
from analyzer.settings import spec  # noqa: E402

JOB_DEFINITION = REPO / "deploy" / "batch" / "job-definition.json"
MAX_RULES = 5  # AWS Batch limit on evaluateOnExit entries
HOST_EC2_RULE = {"onStatusReason": "Host EC2*", "action": "RETRY"}
CATCH_ALL_RULE = {"onReason": "*", "action": "EXIT"}
_PLACEHOLDER = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")
WORST_REALTIME_FACTOR = 1.0  # seconds of video processed per second, at worst (module docstring)
ATTEMPT_MARGIN_S = 900  # start-up, download and write, beyond the video's own time
MAX_DURATION_ENV = "ANALYZER_MAX_DURATION_S"


def retry_rules(codes: Sequence[ExitCode] = tuple(ExitCode)) -> list[dict[str, str]]:
    """evaluateOnExit rules from the exit-code enum (see the module docstring)."""
    retryable = [{"onExitCode": str(int(code)), "action": "RETRY"} for code in codes if code.retryable]
    rules = [HOST_EC2_RULE, *retryable, CATCH_ALL_RULE]
    if len(rules) > MAX_RULES:
        raise ValueError(f"{len(rules)} evaluateOnExit rules; AWS Batch allows {MAX_RULES}")
    return rules


def max_duration_s(doc: dict[str, Any]) -> float:
    """The longest video the job definition's worker accepts (its environment, else the default)."""
    env = {item["name"]: item["value"] for item in doc.get("containerProperties", {}).get("environment", [])}
    setting = spec("max_duration_s")
    return setting.parse(env[MAX_DURATION_ENV]) if MAX_DURATION_ENV in env else setting.default


def attempt_duration_s(max_duration: float) -> int:
    """The attempt timeout that lets a video of ``max_duration`` seconds finish (module docstring)."""
    return math.ceil(max_duration / WORST_REALTIME_FACTOR) + ATTEMPT_MARGIN_S


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def check(path: Path = JOB_DEFINITION) -> list[str]:
    """Differences between the file and what the enum and the duration limit give (empty: none)."""
    doc = load(path)
    problems = []
    have = doc.get("retryStrategy", {}).get("evaluateOnExit")
    want = retry_rules()
    if have != want:
        problems += [
            f"{path}: retryStrategy.evaluateOnExit is {json.dumps(have)}",
            f"the exit-code enum gives {json.dumps(want)}; run: python deploy/render.py write",
        ]
    timeout = doc.get("timeout", {}).get("attemptDurationSeconds")
    limit = max_duration_s(doc)
    if timeout != attempt_duration_s(limit):
        problems += [
            f"{path}: timeout.attemptDurationSeconds is {timeout}; videos of up to {limit:.0f} s need"
            f" {attempt_duration_s(limit)}; run: python deploy/render.py write"
        ]
    return problems


def write(path: Path = JOB_DEFINITION) -> None:
    doc = load(path)
    doc.setdefault("retryStrategy", {})["evaluateOnExit"] = retry_rules()
    doc.setdefault("timeout", {})["attemptDurationSeconds"] = attempt_duration_s(max_duration_s(doc))
    path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")


def placeholders(text: str) -> set[str]:
    return set(_PLACEHOLDER.findall(text))


def fill(text: str, values: dict[str, str], defaults: Mapping[str, str] | None = None) -> str:
    """Replace ``${NAME}`` from ``values``, else ``defaults`` (the environment, for the CLI).

    ValueError when a placeholder has no value, or a name in ``values`` is not used (a typo).
    """
    names = placeholders(text)
    merged = {name: (defaults or {})[name] for name in names if name in (defaults or {})}
    merged.update(values)
    missing, unused = sorted(names - set(merged)), sorted(set(values) - names)
    if missing or unused:
        raise ValueError(f"missing values for {missing}; unused values {unused}")
    return _PLACEHOLDER.sub(lambda m: merged[m.group(1)], text)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["check"]:
        problems = check()
        for line in problems:
            sys.stderr.write(line + "\n")
        return 1 if problems else 0
    if args == ["write"]:
        write()
        return 0
    if len(args) >= 2 and args[0] == "fill":
        pairs = dict(arg.split("=", 1) for arg in args[2:] if "=" in arg)
        if len(pairs) != len(args) - 2:
            sys.stderr.write("fill: values must be NAME=VALUE\n")
            return 2
        try:
            sys.stdout.write(fill(Path(args[1]).read_text(encoding="utf-8"), pairs, os.environ))
        except (OSError, ValueError) as exc:
            sys.stderr.write(f"fill {args[1]}: {exc}\n")
            return 2
        return 0
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
