#!/usr/bin/env bash
# Build the Lambda zip of the dispatcher (handler: analyzer.fleet.dispatch.handler).
#
#   deploy/package-dispatcher.sh [--with-psycopg] [OUT.zip]     (default out/dispatcher.zip)
#
# The zip holds only the modules the dispatcher imports; boto3 comes with the Lambda Python
# runtime. --with-psycopg adds psycopg (binary wheels for Linux x86_64, Python 3.12) for the
# videos-table lookup that runs when DATABASE_URL is set.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
with_psycopg=0
if [[ "${1:-}" == "--with-psycopg" ]]; then
  with_psycopg=1
  shift
fi
out="$(realpath -m "${1:-$repo/out/dispatcher.zip}")"

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT

mkdir -p "$(dirname "$out")"
for module in __init__ errors ids conninfo source/__init__ source/s3 fleet/__init__ fleet/submit fleet/manifest \
  fleet/dispatch; do
  mkdir -p "$stage/analyzer/$(dirname "$module")"
  cp "$repo/analyzer/$module.py" "$stage/analyzer/$module.py"
done
if [[ "$with_psycopg" == 1 ]]; then
  python3 -m pip install --quiet --no-compile --target "$stage" \
    --platform manylinux2014_x86_64 --python-version 3.12 --only-binary=:all: \
    "psycopg[binary]>=3.1"
fi
rm -f "$out"
(cd "$stage" && python3 -m zipfile -c "$out" .)
echo "$out"
