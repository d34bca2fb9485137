#!/usr/bin/env bash
# One image through all stages, stages 3 and 4 on TensorFlow (the original's TF image-wise
# model; SPEC §8-9):
#   bash run_single_tf.sh sample_data/images/0_L_CC.png L-CC
# prints one JSON line per model: {"benign": p, "malignant": p}. Same variables and outputs
# as run_single.sh, which runs the stages; the networks are Keras ports whose weights are
# converted from the same PyTorch checkpoints when loaded. Needs the `tf` extra:
# pip install '.[tf]'.
set -uo pipefail
cd "$(dirname "$0")"

if [ "${PRECISION:-fp32}" != "fp32" ]; then
    echo "run_single_tf.sh: PRECISION=$PRECISION: the TensorFlow path runs fp32 only" \
         "(use run_single.sh for bf16/tf32)" >&2
    exit 2
fi
if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
# Before any output is touched: TensorFlow must be there.
PYTHONPATH="$(pwd)${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -c "
import sys
from breast_cancer_classifier.tools.tf_port import INSTALL_HINT, tensorflow_available
if not tensorflow_available():
    sys.exit('run_single_tf.sh: ' + INSTALL_HINT)
" || exit 2

PYTHON=$PYTHON BCC_SINGLE_TF=1 exec bash run_single.sh "$@"
