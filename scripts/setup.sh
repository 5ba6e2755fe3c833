#!/usr/bin/env bash
# Install breastssl and its dependencies into the current Python environment (a venv is recommended).
# torch is a range (>=2.5), never an exact pin: see README "Installing".
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q --disable-pip-version-check -e ".[dev,nlp,export]"
# The C++ dense CRF (pydensecrf2) builds from source (~40 s on 2 cores; needs a C++ compiler): optional,
# since breastssl carries a NumPy one.
if ! python3 -m pip install -q --disable-pip-version-check -e ".[crf]" >/dev/null 2>&1; then
    echo "setup: pydensecrf2 (extra 'crf') did not build; the dense CRF will use the NumPy fallback"
fi
