"""Run a command with the test servers up: ``python -m tests.support.services CMD...``.

Starts the PostgreSQL and SeaweedFS servers the fixtures would start, points the fixtures at
them (``TEST_POSTGRES_URL``, ``TEST_S3_*``), runs the command and stops both. Mutation testing
uses it: it runs the tests once per mutant, and a server start per run would cost seconds each.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.fixtures import postgres, s3


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: python -m tests.support.services COMMAND [ARGS...]", file=sys.stderr)
        return 2
    # weed and the PostgreSQL wrappers live beside the interpreter, which need not be on PATH
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    with postgres.running_server() as pg, s3.running_server() as store:
        env = {
            **os.environ,
            "TEST_POSTGRES_URL": pg.url(),
            "TEST_S3_ENDPOINT_URL": store.endpoint_url,
            "TEST_S3_ACCESS_KEY": store.access_key,
            "TEST_S3_SECRET_KEY": store.secret_key,
        }
        return subprocess.run(argv, env=env).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
