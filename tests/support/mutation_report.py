"""The mutation score per module, from mutmut's results in ``mutants/`` (after scripts/mutation.sh).

``python -m tests.support.mutation_report`` prints one Markdown table row per module: mutants,
killed (a test failed, or it ran out of time), survived, no test (no fast test calls the
function), the survivors judged equivalent in ``EQUIVALENT``, and the score: killed over the
mutants that are not equivalent. ``--survivors`` lists the rest by name (``mutmut show NAME``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

KILLED = {1, 3, 24, -24, 36, 152, 255}  # a test failed or errored; or the mutant hung (SIGXCPU, timeout)
SURVIVED = {0}
NO_TESTS = {5, 33}

# Survivors no test can tell from the original, by name, with why (docs/testing.md groups them).
_UNLOCK = "closing the session frees the lock as well; the explicit unlock in close() is belt and braces"
EQUIVALENT: dict[str, str] = {
    "analyzer.store.postgres.xǁStoreǁclose__mutmut_1": _UNLOCK,
    "analyzer.store.postgres.xǁStoreǁclose__mutmut_2": _UNLOCK,
    "analyzer.store.postgres.xǁStoreǁclose__mutmut_3": _UNLOCK,
    "analyzer.store.postgres.xǁStoreǁclose__mutmut_6": _UNLOCK,
    "analyzer.store.postgres.xǁStoreǁclose__mutmut_7": _UNLOCK,
    "analyzer.store.postgres.xǁStoreǁtry_lock__mutmut_15": _UNLOCK + " (locked_video only feeds it)",
    "analyzer.store.postgres.xǁStoreǁcheck_video_row__mutmut_14": "psycopg formats an Identifier without a connection",
    "analyzer.store.postgres.xǁStoreǁcheck_video_row__mutmut_32": "SQL keywords in lower case",
    "analyzer.store.postgres.xǁStoreǁinterrupt__mutmut_21": "terminate_backend waits 1001 ms instead of 1000",
    "analyzer.store.migrate.x_migrate__mutmut_52": "a broken connection is also closed; no closed one reaches migrate",
    "analyzer.store.db.x_connect__mutmut_21": "the server cuts application_name to 63 bytes itself",
    "analyzer.job.runner.xǁJobǁ__init____mutmut_9": "rmtree('', ignore_errors=True) does nothing, like skipping None",
    "analyzer.job.runner.xǁJobǁ_lock__mutmut_2": "the loop assigns holder before anything reads it",
    "analyzer.job.runner.x__record_failure__mutmut_1": "the default of stopped; the one caller always passes it",
    "analyzer.job.runner.x__record_failure__mutmut_2": "the default of seconds; the one caller always passes it",
    "analyzer.job.runner.x__write_json__mutmut_29": "only the temp file's name changes; it is renamed into place",
    "analyzer.job.runner.x__write_json__mutmut_30": "delete=None is falsy like delete=False",
    "analyzer.job.runner.x__write_json__mutmut_33": "only the temp file's name changes; it is renamed into place",
    "analyzer.job.shutdown.xǁStopSignalsǁ__init____mutmut_6": "__enter__ sets _old_mask before anything reads it",
    "analyzer.settings.x__non_negative_float__mutmut_10": 'float("INF") is float("inf")',
    "analyzer.settings.x_add_arguments__mutmut_25": "argparse derives dest 'force' from --force, the field's name",
    "analyzer.settings.x_add_arguments__mutmut_30": "argparse derives dest 'force' from --force, the field's name",
    "analyzer.settings.x_add_arguments__mutmut_37": "_flag lowercases the const 'TRUE'",
    "analyzer.settings.x_add_arguments__mutmut_40": "argparse's default metavar is dest.upper(), the same",
    "analyzer.settings.x_add_arguments__mutmut_44": "argparse's default metavar is dest.upper(), the same",
    "analyzer.source.inputs.x_stat_input__mutmut_29": "an ETag (hex digits, -N) never holds an X to strip",
    "analyzer.source.inputs.x__download__mutmut_5": "TransferConfig(use_threads=None) uses threads, its default",
    "analyzer.source.inputs.x__download__mutmut_9": "TransferConfig without use_threads uses threads, its default",
    "analyzer.source.s3.x_error_code__mutmut_22": ".get(key, None) or 0 is .get(key, 0) or 0",
    "analyzer.source.s3.x_error_code__mutmut_24": ".get(key, None) or 0 is .get(key, 0) or 0",
    "analyzer.source.s3.x__client_error__mutmut_10": "a NoSuchBucket code comes from response['Error'], so it exists",
    "analyzer.source.s3.x__client_error__mutmut_12": "a NoSuchBucket code comes from response['Error'], so it exists",
    "analyzer.fleet.dispatch.x_parse_message__mutmut_10": "a missing body read as 'XXXX' or '' is 'not JSON' alike",
    "analyzer.fleet.dispatch.x_parse_message__mutmut_75": "source's first value is always replaced before use",
    "analyzer.fleet.dispatch.xǁVideoLookupǁ_query__mutmut_9": "SQL keywords in lower case",
    "analyzer.fleet.dispatch.xǁVideoLookupǁ__call____mutmut_4": "also looks up s3://None/KEY: no bucket is named None",
    "analyzer.fleet.dispatch.x_find_conflicts__mutmut_3": "grouping by key only saves work; same_as compares keys",
    "analyzer.fleet.dispatch.x_find_conflicts__mutmut_40": "a conflicted request's message is already in failures",
    "analyzer.fleet.dispatch.x_handler__mutmut_13": "the default level 'info' is upper-cased anyway",
}
# Not equivalent, and not killed here: analyzer.fleet.dispatch.xǁVideoLookupǁ__call____mutmut_9 and _12 drop
# the lookup's connect_timeout (only a server that accepts and never answers shows it: 2 s a test at least);
# analyzer.source.inputs.x__head_local__mutmut_7 changes the message of an unreadable local file, and the
# tests run as root, which reads any file.


def results(root: Path) -> dict[str, dict[str, int | None]]:
    """Each mutated module's exit code per mutant, from mutmut's ``.meta`` files."""
    found = {}
    for meta in sorted((root / "mutants").rglob("*.py.meta")):
        module = meta.relative_to(root / "mutants").as_posix().removesuffix(".meta")
        codes = json.loads(meta.read_text()).get("exit_code_by_key", {})
        if codes:
            found[module] = codes
    return found


def outcome(name: str, code: int | None) -> str:
    if name in EQUIVALENT:
        return "equivalent"
    if code in KILLED:
        return "killed"
    if code in SURVIVED:
        return "survived"
    if code in NO_TESTS:
        return "no test"
    return "not run" if code is None else "other"


def table(found: dict[str, dict[str, int | None]]) -> list[str]:
    rows = [
        "| module | mutants | killed | survived | no test | equivalent | score |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    total: Counter[str] = Counter()
    for module, codes in found.items():
        counts = Counter(outcome(name, code) for name, code in codes.items())
        total.update(counts)
        rows.append(_row(module, len(codes), counts))
    rows.append(_row("**all**", sum(len(c) for c in found.values()), total))
    return rows


def _row(module: str, mutants: int, counts: Counter[str]) -> str:
    judged = mutants - counts["equivalent"] - counts["not run"]
    score = f"{100 * counts['killed'] / judged:.1f} %" if judged else "-"
    return (
        f"| {module} | {mutants} | {counts['killed']} | {counts['survived']} | {counts['no test']}"
        f" | {counts['equivalent']} | {score} |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path.cwd())
    parser.add_argument("--survivors", action="store_true", help="list the mutants that survived or had no test")
    args = parser.parse_args(argv)
    found = results(args.root)
    if not found:
        print("no results in mutants/: run scripts/mutation.sh first", file=sys.stderr)
        return 1
    print("\n".join(table(found)))
    if args.survivors:
        for codes in found.values():
            for name, code in codes.items():
                if outcome(name, code) in ("survived", "no test", "other"):
                    print(f"{outcome(name, code)}: {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
