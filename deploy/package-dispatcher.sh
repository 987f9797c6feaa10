#!/usr/bin/env bash
# Build the Lambda zip of the dispatcher (handler: analyzer.fleet.dispatch.handler).
#
#   deploy/package-dispatcher.sh [--with-psycopg] [OUT.zip]     (default out/dispatcher.zip)
#
# The zip holds only the project modules the dispatcher imports, computed by deploy/lambda_modules.py;
# boto3 comes with the Lambda Python runtime. --with-psycopg adds psycopg (binary wheels for Linux
# x86_64, Python 3.12) for the videos-table lookup that runs when DATABASE_URL is set.
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
# The modules: what the handler's module imports, computed (deploy/lambda_modules.py).
python3 "$repo/deploy/lambda_modules.py" analyzer.fleet.dispatch | while read -r file; do
  mkdir -p "$stage/$(dirname "$file")"
  cp "$repo/$file" "$stage/$file"
done
if [[ "$with_psycopg" == 1 ]]; then
  python3 -m pip install --quiet --no-compile --target "$stage" \
    --platform manylinux2014_x86_64 --python-version 3.12 --only-binary=:all: \
    "psycopg[binary]>=3.1"
fi
rm -f "$out"
(cd "$stage" && python3 -m zipfile -c "$out" .)
echo "$out"
