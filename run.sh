#!/usr/bin/env bash
# The whole pipeline on an exam list: crop, centers, heatmaps, both classifiers (SPEC §8).
# Every variable can be set from the environment, e.g. `DEVICE_TYPE=cpu bash run.sh`.
#
# Failure policy: a stage that exits 3 (some images or exams failed, the rest is complete)
# lets the run go on with what it produced; any other failure stops the run with that
# stage's exit status. Each stage replaces its previous outputs only once it has finished,
# and when a stage fails the outputs an earlier run left for it and the later stages are
# removed, so the output folder never mixes two runs.
set -uo pipefail
cd "$(dirname "$0")"

NUM_PROCESSES=${NUM_PROCESSES:-10}
DEVICE_TYPE=${DEVICE_TYPE:-gpu}
NUM_EPOCHS=${NUM_EPOCHS:-10}
HEATMAP_BATCH_SIZE=${HEATMAP_BATCH_SIZE:-100}
GPU_NUMBER=${GPU_NUMBER:-0}
# fp32 (default) matches the original; bf16 or tf32 (NVIDIA GPUs) trade accuracy for speed
# in stages 3 and 4 (README, "Measured figures").
PRECISION=${PRECISION:-fp32}

DATA_FOLDER=${DATA_FOLDER:-sample_data/images}
INITIAL_EXAM_LIST_PATH=${INITIAL_EXAM_LIST_PATH:-sample_data/exam_list_before_cropping.pkl}
PATCH_MODEL_PATH=${PATCH_MODEL_PATH:-models/sample_patch_model.p}
IMAGE_MODEL_PATH=${IMAGE_MODEL_PATH:-models/sample_image_model.p}
IMAGEHEATMAPS_MODEL_PATH=${IMAGEHEATMAPS_MODEL_PATH:-models/sample_imageheatmaps_model.p}

CROPPED_IMAGE_PATH=${CROPPED_IMAGE_PATH:-sample_output/cropped_images}
CROPPED_EXAM_LIST_PATH=${CROPPED_EXAM_LIST_PATH:-sample_output/cropped_images/cropped_exam_list.pkl}
EXAM_LIST_PATH=${EXAM_LIST_PATH:-sample_output/data.pkl}
HEATMAPS_PATH=${HEATMAPS_PATH:-sample_output/heatmaps}
IMAGE_PREDICTIONS_PATH=${IMAGE_PREDICTIONS_PATH:-sample_output/image_predictions.csv}
IMAGEHEATMAPS_PREDICTIONS_PATH=${IMAGEHEATMAPS_PREDICTIONS_PATH:-sample_output/imageheatmaps_predictions.csv}
# The data quality check of stage 1's crops (docs/qa.md): warns, never stops.
QA_PATH=${QA_PATH:-$(dirname "$EXAM_LIST_PATH")/qa.csv}

# Optional: calibration.json files of `bcc calibrate`, one per model: each adds *_calibrated
# columns after the raw ones of that model's CSV (README, "Calibration").
IMAGE_CALIBRATION_PATH=${IMAGE_CALIBRATION_PATH:-}
IMAGEHEATMAPS_CALIBRATION_PATH=${IMAGEHEATMAPS_CALIBRATION_PATH:-}

# Optional: overlay pictures of every exam (1 to enable) into VISUALIZATIONS_PATH.
VISUALIZE=${VISUALIZE:-0}
VISUALIZATIONS_PATH=${VISUALIZATIONS_PATH:-sample_output/visualizations}
# Optional: an extra title line on every picture, drawn as a warning (make demo: demo weights).
VISUALIZE_NOTE=${VISUALIZE_NOTE:-}

if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export PYTHONPATH="$(pwd)${PYTHONPATH:+:$PYTHONPATH}"

# Each stage's output, in stage order: when a stage fails, its own output and those after
# it are what an earlier run left, and are removed.
STAGE_OUTPUTS=(
    "$CROPPED_IMAGE_PATH"
    "$QA_PATH"
    "$EXAM_LIST_PATH"
    "$HEATMAPS_PATH"
    "$IMAGE_PREDICTIONS_PATH"
    "$IMAGEHEATMAPS_PREDICTIONS_PATH"
    "$VISUALIZATIONS_PATH"
)
PARTIAL=0

remove_stale_outputs() {  # $1: index into STAGE_OUTPUTS of the failed stage
    local i
    for ((i = $1; i < ${#STAGE_OUTPUTS[@]}; i++)); do
        local out=${STAGE_OUTPUTS[$i]}
        if [ -e "$out" ]; then
            echo "run.sh: removing $out, left by an earlier run" >&2
            rm -rf -- "$out" "$out.failures.csv"
        fi
    done
}

check_status() {  # $1: stage exit status, $2: stage name, $3: the stage's STAGE_OUTPUTS index
    local status=$1
    if [ "$status" -eq 3 ]; then
        echo "run.sh: $2 finished with failures (exit 3); going on with what it produced" >&2
        PARTIAL=1
    elif [ "$status" -ne 0 ]; then
        echo "run.sh: $2 failed (exit $status); stopping" >&2
        remove_stale_outputs "$3"
        exit "$status"
    fi
}

echo "Stage 1: Crop Mammograms"
"$PYTHON" src/cropping/crop_mammogram.py \
    --input-data-folder "$DATA_FOLDER" \
    --output-data-folder "$CROPPED_IMAGE_PATH" \
    --exam-list-path "$INITIAL_EXAM_LIST_PATH" \
    --cropped-exam-list-path "$CROPPED_EXAM_LIST_PATH" \
    --num-processes "$NUM_PROCESSES" \
    --overwrite
check_status $? "Stage 1" 0

echo "Data quality check (stage 1's crops)"
"$PYTHON" src/utilities/check_data.py \
    --exam-list "$CROPPED_EXAM_LIST_PATH" \
    --data-folder "$CROPPED_IMAGE_PATH" \
    --output "$QA_PATH" \
    --num-processes "$NUM_PROCESSES" \
    --overwrite
QA_STATUS=$?
if [ "$QA_STATUS" -ne 0 ] && [ "$QA_STATUS" -ne 3 ]; then  # 3: some crops unreadable
    echo "run.sh: the quality check failed (exit $QA_STATUS); going on without it" >&2
    rm -f -- "$QA_PATH"
fi

echo "Stage 2: Extract Centers"
"$PYTHON" src/optimal_centers/get_optimal_centers.py \
    --cropped-exam-list-path "$CROPPED_EXAM_LIST_PATH" \
    --data-prefix "$CROPPED_IMAGE_PATH" \
    --output-exam-list-path "$EXAM_LIST_PATH" \
    --num-processes "$NUM_PROCESSES" \
    --overwrite
check_status $? "Stage 2" 2

echo "Stage 3: Generate Heatmaps"
"$PYTHON" src/heatmaps/run_producer.py \
    --model-path "$PATCH_MODEL_PATH" \
    --data-path "$EXAM_LIST_PATH" \
    --image-path "$CROPPED_IMAGE_PATH" \
    --batch-size "$HEATMAP_BATCH_SIZE" \
    --output-heatmap-path "$HEATMAPS_PATH" \
    --device-type "$DEVICE_TYPE" \
    --precision "$PRECISION" \
    --gpu-number "$GPU_NUMBER" \
    --overwrite
check_status $? "Stage 3" 3

echo "Stage 4a: Run Classifier (Image)"
"$PYTHON" src/modeling/run_model.py \
    --model-path "$IMAGE_MODEL_PATH" \
    --data-path "$EXAM_LIST_PATH" \
    --image-path "$CROPPED_IMAGE_PATH" \
    --output-path "$IMAGE_PREDICTIONS_PATH" \
    ${IMAGE_CALIBRATION_PATH:+--calibration "$IMAGE_CALIBRATION_PATH"} \
    --use-augmentation \
    --num-epochs "$NUM_EPOCHS" \
    --device-type "$DEVICE_TYPE" \
    --precision "$PRECISION" \
    --gpu-number "$GPU_NUMBER" \
    --overwrite
check_status $? "Stage 4a" 4

echo "Stage 4b: Run Classifier (Image+Heatmaps)"
"$PYTHON" src/modeling/run_model.py \
    --model-path "$IMAGEHEATMAPS_MODEL_PATH" \
    --data-path "$EXAM_LIST_PATH" \
    --image-path "$CROPPED_IMAGE_PATH" \
    --output-path "$IMAGEHEATMAPS_PREDICTIONS_PATH" \
    ${IMAGEHEATMAPS_CALIBRATION_PATH:+--calibration "$IMAGEHEATMAPS_CALIBRATION_PATH"} \
    --use-heatmaps \
    --heatmaps-path "$HEATMAPS_PATH" \
    --use-augmentation \
    --num-epochs "$NUM_EPOCHS" \
    --device-type "$DEVICE_TYPE" \
    --precision "$PRECISION" \
    --gpu-number "$GPU_NUMBER" \
    --overwrite
check_status $? "Stage 4b" 5

if [ "$VISUALIZE" = "1" ]; then
    echo "Visualizations"
    "$PYTHON" src/utilities/visualize.py \
        --exam-list-path "$EXAM_LIST_PATH" \
        --cropped-image-path "$CROPPED_IMAGE_PATH" \
        --heatmaps-path "$HEATMAPS_PATH" \
        --predictions-path "$IMAGE_PREDICTIONS_PATH" "$IMAGEHEATMAPS_PREDICTIONS_PATH" \
        --output-dir "$VISUALIZATIONS_PATH" \
        ${VISUALIZE_NOTE:+--note "$VISUALIZE_NOTE"} \
        --overwrite
    check_status $? "Visualizations" 6
fi

if [ "$PARTIAL" -eq 1 ]; then
    echo "run.sh: finished, but some images or exams failed: see the *.failures.csv files" >&2
    exit 3
fi
