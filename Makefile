# Quick start: `make demo` runs the pipeline on the sample data, `make test` runs the tests.
# Both create .venv from requirements.txt on first use and install the project into it
# (editable), which gives .venv/bin/bcc.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
DEVICE_TYPE ?= gpu
REPRO := reproduce_output

.PHONY: test demo download reproduce bench venv clean-venv

venv: $(STAMP)

# The dependencies (requirements.txt, setuptools included), then the project itself, editable
# and without fetching anything again: this puts the `bcc` command in $(VENV)/bin.
$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt
	$(PY) -m pip install --disable-pip-version-check -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

# The heavy optional extras (Ray, ...), for their tests; the demo does not need them.
EXTRAS_STAMP := $(VENV)/.extras-stamp
$(EXTRAS_STAMP): $(STAMP) requirements-extras.txt
	$(PY) -m pip install --disable-pip-version-check -q -r requirements-extras.txt
	touch $(EXTRAS_STAMP)

test: $(STAMP) $(EXTRAS_STAMP)
	$(PY) -m pytest -q -ra --durations=20 tests

# Demo weights fill in only the checkpoints missing from models/; official ones are kept.
# With demo weights the pictures carry a warning line too.
DEMO_NOTE := DEMO WEIGHTS (untrained): these numbers and heatmaps are NOT predictions
NOTE_IF_DEMO = VISUALIZE_NOTE="$$($(PY) src/utilities/make_demo_weights.py --models-dir models --status | grep 'demo$$' >/dev/null && echo '$(DEMO_NOTE)')"

demo: $(STAMP)
	$(PY) src/utilities/make_demo_weights.py --models-dir models
	@$(MAKE) --no-print-directory demo-banner
	$(NOTE_IF_DEMO) DEVICE_TYPE=$(DEVICE_TYPE) VISUALIZE=1 PYTHON=$(PY) bash run.sh
	$(NOTE_IF_DEMO) DEVICE_TYPE=$(DEVICE_TYPE) VISUALIZE=1 PYTHON=$(PY) bash run_single.sh sample_data/images/0_L_CC.png L-CC
	@$(MAKE) --no-print-directory demo-banner
	@echo "Outputs: sample_output/ and sample_single_output/"

.PHONY: demo-banner
demo-banner:
	@if $(PY) src/utilities/make_demo_weights.py --models-dir models --status | grep 'demo$$' >/dev/null; then \
	  mkdir -p sample_output; cp models/DEMO_WEIGHTS.txt sample_output/DEMO_WEIGHTS_README.txt; \
	  echo ""; \
	  echo "************************************************************************"; \
	  echo "*  DEMO WEIGHTS (untrained): this demo's numbers are NOT predictions. *"; \
	  echo "*  Run 'make download' for the official weights (needs a network).    *"; \
	  echo "************************************************************************"; \
	  echo ""; \
	else rm -f sample_output/DEMO_WEIGHTS_README.txt; fi

download: $(STAMP)
	$(PY) src/utilities/download_files.py --models-dir models

# Official weights and sample exams, the whole pipeline, and our numbers beside the published ones.
reproduce: $(STAMP)
	$(PY) src/utilities/download_files.py --models-dir models --sample-images \
	  --sample-dir official_sample_data
	DEVICE_TYPE=$(DEVICE_TYPE) PYTHON=$(PY) \
	  DATA_FOLDER=official_sample_data/images \
	  INITIAL_EXAM_LIST_PATH=official_sample_data/exam_list_before_cropping.pkl \
	  CROPPED_IMAGE_PATH=$(REPRO)/cropped_images \
	  CROPPED_EXAM_LIST_PATH=$(REPRO)/cropped_images/cropped_exam_list.pkl \
	  EXAM_LIST_PATH=$(REPRO)/data.pkl HEATMAPS_PATH=$(REPRO)/heatmaps \
	  IMAGE_PREDICTIONS_PATH=$(REPRO)/image_predictions.csv \
	  IMAGEHEATMAPS_PREDICTIONS_PATH=$(REPRO)/imageheatmaps_predictions.csv \
	  bash run.sh
	DEVICE_TYPE=$(DEVICE_TYPE) PYTHON=$(PY) OUTPUT_PATH=$(REPRO)/single \
	  bash run_single.sh official_sample_data/images/0_L_CC.png L-CC
	$(PY) src/utilities/compare_published.py \
	  --image-predictions $(REPRO)/image_predictions.csv \
	  --imageheatmaps-predictions $(REPRO)/imageheatmaps_predictions.csv \
	  --single-predictions $(REPRO)/single/predictions.jsonl

bench: $(STAMP)
	$(PY) benchmarks/bench_preprocess.py
	$(PY) benchmarks/bench_heatmaps.py
	$(PY) benchmarks/bench_classifiers.py
	$(PY) benchmarks/bench_precision.py

clean-venv:
	rm -rf $(VENV)
