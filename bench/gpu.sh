#!/bin/sh
# GPU readiness and speed in at most 5 minutes (JSON on stdout): see bench/gpu.py.
# Usage (repository root, on a machine with a CUDA GPU): sh bench/gpu.sh > runs/bench_gpu.json
PY=.venv/bin/python
[ -x "$PY" ] || PY=python3
exec timeout 300 "$PY" bench/gpu.py --device cuda "$@"
