#!/usr/bin/env bash
# One image through all stages with the image-wise models (SPEC §8-9):
#   bash run_single.sh sample_data/images/0_L_CC.png L-CC
# prints one JSON line per model: {"benign": p, "malignant": p}.
# Every variable can be set from the environment, e.g. `DEVICE_TYPE=cpu bash run_single.sh ...`.
set -uo pipefail
cd "$(dirname "$0")"

# run_single_tf.sh runs this script with BCC_SINGLE_TF=1: stages 3 and 4 then use the _tf
# scripts (TensorFlow, fp32 only, so no --precision flag).
if [ "${BCC_SINGLE_TF:-0}" = "1" ]; then
    NAME=run_single_tf.sh; TF=_tf
else
    NAME=run_single.sh; TF=
fi

if [ $# -ne 2 ]; then
    echo "usage: bash $NAME IMAGE.png VIEW   (VIEW one of L-CC, R-CC, L-MLO, R-MLO)" >&2
    exit 2
fi
IMAGE_PATH=$1
VIEW=$2

DEVICE_TYPE=${DEVICE_TYPE:-gpu}
NUM_EPOCHS=${NUM_EPOCHS:-10}
HEATMAP_BATCH_SIZE=${HEATMAP_BATCH_SIZE:-100}
GPU_NUMBER=${GPU_NUMBER:-0}
# fp32 (default) matches the original; bf16 or tf32 (NVIDIA GPUs) trade accuracy for speed
# in stages 3 and 4 (README, "Measured figures").
PRECISION=${PRECISION:-fp32}
HORIZONTAL_FLIP=${HORIZONTAL_FLIP:-NO}

PATCH_MODEL_PATH=${PATCH_MODEL_PATH:-models/sample_patch_model.p}
IMAGE_MODEL_PATH=${IMAGE_MODEL_PATH:-models/ImageOnly__ModeImage_weights.p}
IMAGEHEATMAPS_MODEL_PATH=${IMAGEHEATMAPS_MODEL_PATH:-models/ImageHeatmaps__ModeImage_weights.p}

OUTPUT_PATH=${OUTPUT_PATH:-sample_single_output}
CROPPED_IMAGE_PATH=${CROPPED_IMAGE_PATH:-$OUTPUT_PATH/cropped.png}
CROPPED_METADATA_PATH=${CROPPED_METADATA_PATH:-$OUTPUT_PATH/cropped_metadata.pkl}
MALIGNANT_HEATMAP_PATH=${MALIGNANT_HEATMAP_PATH:-$OUTPUT_PATH/malignant_heatmap.hdf5}
BENIGN_HEATMAP_PATH=${BENIGN_HEATMAP_PATH:-$OUTPUT_PATH/benign_heatmap.hdf5}

# Optional: an overlay picture of the image (1 to enable).
VISUALIZE=${VISUALIZE:-0}
VISUALIZATION_PATH=${VISUALIZATION_PATH:-$OUTPUT_PATH/visualization.png}
VISUALIZE_NOTE=${VISUALIZE_NOTE:-}
# The JSON lines printed below are also kept here.
PREDICTIONS_PATH=${PREDICTIONS_PATH:-$OUTPUT_PATH/predictions.jsonl}

if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export PYTHONPATH="$(pwd)${PYTHONPATH:+:$PYTHONPATH}"
if [ -n "$TF" ]; then PRECISION_FLAG=(); else PRECISION_FLAG=(--precision "$PRECISION"); fi

# Outputs of an earlier run are removed first, so a failure never leaves old and new mixed.
mkdir -p "$OUTPUT_PATH"
rm -f -- "$CROPPED_IMAGE_PATH" "$CROPPED_METADATA_PATH" "$MALIGNANT_HEATMAP_PATH" \
    "$BENIGN_HEATMAP_PATH" "$VISUALIZATION_PATH" "$PREDICTIONS_PATH"

stop_on_failure() {  # $1: status, $2: stage
    if [ "$1" -ne 0 ]; then
        echo "$NAME: $2 failed (exit $1); stopping" >&2
        exit "$1"
    fi
}

echo "Stage 1: Crop Mammograms"
"$PYTHON" src/cropping/crop_single.py \
    --mammogram-path "$IMAGE_PATH" \
    --view "$VIEW" \
    --horizontal-flip "$HORIZONTAL_FLIP" \
    --cropped-mammogram-path "$CROPPED_IMAGE_PATH" \
    --metadata-path "$CROPPED_METADATA_PATH"
stop_on_failure $? "Stage 1"

echo "Stage 2: Extract Centers"
"$PYTHON" src/optimal_centers/get_optimal_center_single.py \
    --cropped-mammogram-path "$CROPPED_IMAGE_PATH" \
    --metadata-path "$CROPPED_METADATA_PATH"
stop_on_failure $? "Stage 2"

echo "Stage 3: Generate Heatmaps"
"$PYTHON" src/heatmaps/run_producer_single$TF.py \
    --model-path "$PATCH_MODEL_PATH" \
    --cropped-mammogram-path "$CROPPED_IMAGE_PATH" \
    --metadata-path "$CROPPED_METADATA_PATH" \
    --batch-size "$HEATMAP_BATCH_SIZE" \
    --heatmap-path-malignant "$MALIGNANT_HEATMAP_PATH" \
    --heatmap-path-benign "$BENIGN_HEATMAP_PATH" \
    --device-type "$DEVICE_TYPE" \
    "${PRECISION_FLAG[@]}" \
    --gpu-number "$GPU_NUMBER"
stop_on_failure $? "Stage 3"

echo "Stage 4a: Run Classifier (Image)"
"$PYTHON" src/modeling/run_model_single$TF.py \
    --view "$VIEW" \
    --model-path "$IMAGE_MODEL_PATH" \
    --cropped-mammogram-path "$CROPPED_IMAGE_PATH" \
    --metadata-path "$CROPPED_METADATA_PATH" \
    --use-augmentation \
    --num-epochs "$NUM_EPOCHS" \
    --device-type "$DEVICE_TYPE" \
    "${PRECISION_FLAG[@]}" \
    --gpu-number "$GPU_NUMBER" | tee -a "$PREDICTIONS_PATH"
stop_on_failure $? "Stage 4a"

echo "Stage 4b: Run Classifier (Image+Heatmaps)"
"$PYTHON" src/modeling/run_model_single$TF.py \
    --view "$VIEW" \
    --model-path "$IMAGEHEATMAPS_MODEL_PATH" \
    --cropped-mammogram-path "$CROPPED_IMAGE_PATH" \
    --metadata-path "$CROPPED_METADATA_PATH" \
    --use-heatmaps \
    --heatmap-path-malignant "$MALIGNANT_HEATMAP_PATH" \
    --heatmap-path-benign "$BENIGN_HEATMAP_PATH" \
    --use-augmentation \
    --num-epochs "$NUM_EPOCHS" \
    --device-type "$DEVICE_TYPE" \
    "${PRECISION_FLAG[@]}" \
    --gpu-number "$GPU_NUMBER" | tee -a "$PREDICTIONS_PATH"
stop_on_failure $? "Stage 4b"

if [ "$VISUALIZE" = "1" ]; then
    "$PYTHON" src/utilities/visualize.py --single-output-dir "$OUTPUT_PATH" \
        --predictions-path "$PREDICTIONS_PATH" --output-path "$VISUALIZATION_PATH" \
        ${VISUALIZE_NOTE:+--note "$VISUALIZE_NOTE"} --overwrite
    stop_on_failure $? "Visualization"
fi
