# The whole set-up is two commands:
#   make upscale   installs, then upscales the example face on the CPU with the bundled generator
#   make test      installs, then runs the test suite
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install upscale test lint clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -e '.[dev,judges]'
	$(BIN)/pip install -q --no-deps facenet-pytorch
	touch $(STAMP)

install: $(STAMP)

upscale: $(STAMP)
	$(BIN)/python scripts/example_input.py data/astronaut.png
	$(BIN)/python scripts/upscale.py data/astronaut.png --out out

test: $(STAMP)
	$(BIN)/ruff check idpulse scripts tests benchmarks
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check idpulse scripts tests benchmarks

clean:
	rm -rf $(VENV) out
