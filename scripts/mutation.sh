#!/usr/bin/env bash
# Mutation testing of the core (configured in pyproject.toml's [tool.mutmut]); not part of CI.
#   scripts/mutation.sh            run every mutant (results are cached in mutants/; reruns are incremental)
#   scripts/mutation.sh 'analyzer.settings*'   only the mutants whose names match
# Then: .venv/bin/mutmut results (the survivors), .venv/bin/mutmut show NAME, and
# .venv/bin/python -m tests.support.mutation_report for the score per module (docs/testing.md).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
.venv/bin/pip install -q --disable-pip-version-check -e '.[test,mutation]'
# The tests find ../shared from the checkout; mutmut runs them from mutants/.
export ANALYZER_SHARED_DIR="${ANALYZER_SHARED_DIR:-$(cd .. && pwd)/shared}"
# One PostgreSQL and one S3 server for the whole run, not one per mutant.
exec .venv/bin/python -m tests.support.services .venv/bin/mutmut run "$@"
