#!/usr/bin/env bash
# Run by Snakemake in the new "bde" conda env (envs/bde.yaml), and by containers/bde.def:
# ALFABET and nfp without their dependencies (their pins do not resolve on Python 3.11; they
# ship their weights), then msid itself from the checkout, editable, for `msid-bde`.
set -euo pipefail
python -m pip install --no-deps alfabet==0.1.0 nfp==0.1.4
python -m pip install --no-deps -e "${MSID_ROOT:?the workflow sets MSID_ROOT to the checkout}"
