#!/usr/bin/env bash
# Set up, then run the demo on the embedded synthetic data.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
breastssl demo --overwrite "$@"
