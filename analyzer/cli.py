"""The ``analyzer`` command: ``run``, ``migrate``, ``faces``, ``models fetch``, ``submit``, ``evaluate``.

``main(argv) -> int`` holds no logic: each command's handler lives beside what it does and
returns an exit code; one error handler turns the project's exceptions into one line and the
documented code (see ``analyzer.errors``). Nothing heavy is imported here: a duplicate run
must be able to see the lock taken and exit in a fraction of a second.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Sequence

from analyzer import errors, logs, settings

log = logging.getLogger("analyzer")


def _run(args: argparse.Namespace) -> int:
    from analyzer.job.runner import Job

    s = settings.resolve(args, _job_environment())
    logs.CONTEXT.update(video_id=s.video_id, batch_job_id=s.batch_job_id, run_id=None)
    job = Job(s, analyze=args.analyze)
    started = time.monotonic()
    try:
        code = job.run()
    except errors.AnalyzerError as exc:
        _emit_metrics(s, job.summary | {"outcome": "failed"}, int(exc.exit_code), time.monotonic() - started)
        raise
    _emit_metrics(s, job.summary, int(code), time.monotonic() - started)
    return int(code)


def _emit_metrics(s: settings.Settings, summary: dict, exit_code: int, seconds: float) -> None:
    """One CloudWatch EMF line per run, in AWS Batch only (locally stdout carries the events)."""
    if not s.batch_job_id:
        return
    from analyzer.fleet.metrics import emit_run_metrics

    outcome = {"already_done": "duplicate"}.get(str(summary["outcome"]), str(summary["outcome"]))
    emit_run_metrics(
        outcome,
        exit_code,
        queue=s.batch_queue,
        frames=summary.get("frames"),
        faces=summary.get("faces"),
        events=summary.get("events"),
        seconds=round(seconds, 3),
        realtime_factor=summary.get("realtime_factor"),
        properties={"video_id": s.video_id, "batch_job_id": s.batch_job_id, "run_id": logs.CONTEXT.get("run_id")},
    )


def _job_environment() -> dict[str, str]:
    """The environment, plus VideoKey/video_id from the manifest row of an array-job child."""
    env = dict(os.environ)
    if "ANALYZER_MANIFEST" in env and "AWS_BATCH_JOB_ARRAY_INDEX" in env:
        from analyzer.fleet.manifest import read_manifest_row

        try:
            index = int(env["AWS_BATCH_JOB_ARRAY_INDEX"])
        except ValueError:
            raise errors.SettingsError("invalid setting AWS_BATCH_JOB_ARRAY_INDEX: not an integer") from None
        key, video_id = read_manifest_row(env["ANALYZER_MANIFEST"], index)
        env.update(VideoKey=key, video_id=str(video_id))
    return env


def _migrate(args: argparse.Namespace) -> int:
    from analyzer.conninfo import mask_url
    from analyzer.store.db import connect
    from analyzer.store.migrate import migrate

    url = settings.resolve_one(settings.spec("database_url"), args, os.environ, required=True)
    with connect(url, "analyzer:migrate") as conn:
        applied = migrate(conn)
    log.info("schema of %s is up to date (%d migrations applied now)", mask_url(url), len(applied))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="analyzer", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--log-level",
        default=os.environ.get("ANALYZER_LOG_LEVEL", "INFO"),
        help="log level [$ANALYZER_LOG_LEVEL; default INFO]",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser(
        "run",
        help="analyse one video (what the container does)",
        description="Analyse one video; every flag also reads an environment variable.",
    )
    settings.add_arguments(run)
    run.set_defaults(handler=_run)

    migrate = commands.add_parser("migrate", help="create or upgrade the database schema")
    migrate.add_argument("--database-url", dest="database_url", help="PostgreSQL URL [$DATABASE_URL]")
    migrate.set_defaults(handler=_migrate)

    from analyzer import faces
    from analyzer.evaluation import evaluate
    from analyzer.fleet import submit  # light modules: their heavy imports sit in the handlers

    faces.register(commands)
    submit.register(commands)
    evaluate.register(commands)
    return parser


def main(argv: Sequence[str] | None = None, analyze=None) -> int:
    """Entry point; ``analyze`` replaces the analysis step (the real pipeline by default)."""
    args = build_parser().parse_args(argv)
    args.analyze = analyze
    logs.configure(
        getattr(args, "log_format", None) or os.environ.get("ANALYZER_LOG_FORMAT", "auto"),
        getattr(logging, str(args.log_level).upper(), logging.INFO),
    )
    logs.register_environment_secrets(os.environ)  # before anything can log or fail
    logs.register_url_secrets(getattr(args, "database_url", None))
    try:
        return args.handler(args)
    except errors.AnalyzerError as exc:
        log.error("%s", exc, extra={"action": "error", "exit_code": int(exc.exit_code)})
        return int(exc.exit_code)
    except KeyboardInterrupt:
        log.error("interrupted")
        return int(errors.ExitCode.INTERRUPTED)
    except Exception as exc:  # a bug: log it whole, exit with its own code
        log.exception("internal error: %s: %s", type(exc).__name__, exc, extra={"action": "error"})
        return int(errors.ExitCode.INTERNAL_ERROR)


if __name__ == "__main__":
    sys.exit(main())
