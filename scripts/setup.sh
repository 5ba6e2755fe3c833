#!/usr/bin/env bash
# Install breastssl and its dependencies into the current Python environment (a venv is recommended).
# torch is a range (>=2.5), never an exact pin: see README "Installing".
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q --disable-pip-version-check -e ".[dev,nlp,export]"
