# The two commands of the README: `make run` and `make test`. Everything else is set up on demand:
# the Python 3.10 virtualenv, the project's spaCy pipeline and the trained model are rebuilt only
# when what they are made from has changed.

SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
PY := $(VENV)/bin/python
RASA := $(VENV)/bin/rasa
MODEL := models/clinic.tar.gz
SPACY := build/spacy_en

# Rasa 3.6 needs Python 3.10. Use $(PYTHON) if given, else the first python3.10 found.
PYTHON ?= $(shell for p in python3.10 $$(pyenv root 2>/dev/null)/versions/3.10*/bin/python3.10 /usr/local/bin/python3.10 /usr/bin/python3.10; do \
	if "$$p" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))' >/dev/null 2>&1; then echo "$$p"; break; fi; done)

export RASA_TELEMETRY_ENABLED := false
export SQLALCHEMY_SILENCE_UBER_WARNING := 1
export TF_CPP_MIN_LOG_LEVEL := 2
export PYTHONWARNINGS := ignore::DeprecationWarning

WEB_DEPS := web/node_modules/.package-lock.json
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

NLU_DATA := $(wildcard data/*.yml)
MODEL_INPUTS := config.yml domain.yml $(NLU_DATA) $(SPACY)/meta.json $(wildcard components/*.py) rasa_ext/rule_policy.py

.PHONY: help setup model run test test-stories test-unit test-e2e validate crossval probe probe-pain probe-answers \
	calibrate-retrieval requests clean lint attack \
	console staff-user retention bench-console chromium fuzz soak-memory migrate bench

help:
	@echo "make run    set up what is missing, train if needed, start the assistant (Ctrl-C stops it)"
	@echo "make test   validate the data, train if needed, run the story tests and the pytest suite"
	@echo "make cluster  nginx :8080 in front of two Rasa and two action servers on PostgreSQL and Redis"
	@echo "make crossval / probe / requests / clean: see the README"

# The pinned requirements, then the project itself (pyproject.toml, editable: the code stays where it is).
# uv (pinned, installed into the virtualenv by pip in a few seconds) installs them in about 20 s from a cold
# cache where pip takes about 4 minutes. pip is the fallback, from the same requirements.txt, when uv cannot
# be had or fails; NO_UV=1 forces it.
UV_VERSION := 0.13.9
$(VENV)/.installed: requirements.txt pyproject.toml
	@if [ -z "$(PYTHON)" ]; then echo "Python 3.10 is required (Rasa 3.6 refuses 3.11): install it, or run make PYTHON=/path/to/python3.10" >&2; exit 1; fi
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	@if [ -z "$(NO_UV)" ] && $(PY) -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)" \
		&& VIRTUAL_ENV=$(VENV) $(VENV)/bin/uv pip install --quiet -r requirements.txt \
		&& VIRTUAL_ENV=$(VENV) $(VENV)/bin/uv pip install --quiet --no-deps --editable .; then \
		echo "installed with uv"; \
	else \
		echo "installing with pip"; \
		$(PY) -m pip install --quiet --upgrade "pip<24.1" && $(PY) -m pip install --quiet -r requirements.txt \
		&& $(PY) -m pip install --quiet --no-deps --editable .; \
	fi
	@touch $@

setup: $(VENV)/.installed $(SPACY)/meta.json

$(SPACY)/meta.json: $(VENV)/.installed knowledge/topics.yml core/knowledge.py core/knowledge_loader.py scripts/build_spacy_pipeline.py
	rm -rf $(SPACY)
	$(PY) -m scripts.build_spacy_pipeline $(SPACY)

$(MODEL): $(VENV)/.installed $(MODEL_INPUTS)
	$(RASA) train --force --fixed-model-name clinic --out models

model: $(MODEL)

# The widget's socket.io client, from the npm registry, served locally (no CDN).
$(WEB_DEPS): web/package.json web/package-lock.json
	cd web && npm ci --no-audit --no-fund
	@touch $@

# Debian's Chromium for the browser tests (Playwright drives it; it never downloads a browser).
chromium:
	@[ -x /usr/bin/chromium ] || { $(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends chromium; }

run: $(MODEL) $(WEB_DEPS)
	$(PY) -m scripts.migrate
	$(if $(WORKERS),RASA_WORKERS=$(WORKERS) )$(PY) -m scripts.serve

# Creates the assistant's database and tables if missing (idempotent; make run runs it first).
migrate: $(VENV)/.installed
	$(PY) -m scripts.migrate $(ARGS)

validate: $(VENV)/.installed
	$(RASA) data validate --fail-on-warnings

# Ruff (settings in ruff.toml): pyflakes, pycodestyle, import order, bug-prone patterns.
lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

# On the same patched Rasa that serves visitors (python -m rasa_ext: rasa_ext/patches.py applied).
test-stories: $(MODEL)
	$(PY) -m rasa_ext test core --model $(MODEL) --stories tests/test_stories.yml --fail-on-prediction-errors --out results/stories

# The suite in two halves (docs/testing.md): no server and no model (a fresh clone needs only the virtualenv
# and the spaCy pipeline), then everything that starts a server or loads the trained model.
test-unit: setup
	$(PY) -m pytest tests -m "not e2e and not model"

test-e2e: $(MODEL) $(WEB_DEPS) chromium nginx
	$(PY) -m pytest tests -m "e2e or model"

# pytest-xdist workers for make test (TEST_WORKERS=1: one process). tests/conftest.py keeps each module on one
# worker and every module on the shared servers on the same one, so no server starts twice (docs/testing.md).
TEST_WORKERS ?= 2
XDIST = $(if $(filter-out 1,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder)

test: lint validate $(MODEL) $(WEB_DEPS) chromium nginx
	$(MAKE) --no-print-directory test-stories
	$(PY) -m pytest tests $(XDIST)

# Generalisation of the NLU model: 5-fold cross-validation on data/nlu.yml (five trainings: about 7 minutes
# on the shared 2-core machine, see the README).
crossval: setup
	$(RASA) test nlu --nlu data/nlu.yml --cross-validation --folds 5 --out results/crossval

# The trained model on phrasings it never saw (tests/data/nlu_probe.yml).
probe: $(MODEL)
	$(RASA) test nlu --model $(MODEL) --nlu tests/data/nlu_probe.yml --out results/probe

# Issue 10's probes: how people in pain ask. The NLU part, then whole answers through the real servers
# (tests/answer_probe.py; PROBE=tests/data/answer_probe_fresh.yml for the second probe).
PROBE ?= tests/data/answer_probe.yml
probe-pain: $(MODEL)
	$(RASA) test nlu --model $(MODEL) --nlu tests/data/nlu_probe_pain.yml --out results/probe_pain

probe-answers: $(MODEL)
	$(PY) -m tests.answer_probe $(PROBE) --show-misses --json results/answer_probe.json

# The article-retrieval threshold of actions/retrieval.py, against the training data.
calibrate-retrieval: setup
	$(PY) -m tests.calibrate_retrieval

requests: $(VENV)/.installed
	$(PY) -m actions.list_requests $(ARGS)

# The staff console alone (make run starts it too), its accounts, retention and benchmark.
console: $(VENV)/.installed
	$(PY) -m console

staff-user: $(VENV)/.installed
	@if [ -z "$(EMAIL)" ]; then echo 'usage: make staff-user EMAIL=you@clinic.example' >&2; exit 1; fi
	$(PY) -m console.users create $(EMAIL)

retention: $(VENV)/.installed
	@if [ -z "$(DAYS)" ]; then echo 'usage: make retention DAYS=180 [ARGS=--dry-run]' >&2; exit 1; fi
	$(PY) -m console.retention --days $(DAYS) $(ARGS)

bench-console: $(VENV)/.installed
	$(PY) scripts/bench_console.py $(ARGS)

# The door's fuzz test, longer than in `make test` (FUZZ_INPUTS=2000 there; FUZZ_SEED replays a run).
fuzz: $(MODEL)
	FUZZ_INPUTS=$${FUZZ_INPUTS:-20000} $(PY) -m pytest tests/test_fuzz.py -q -s

# Memory with ever-new words: 20,000 distinct messages to a real Rasa server's NLU, RSS printed every
# 1,000 (ARGS="--unpatched": Rasa's own server, the "before" figure; "--via webhook": whole turns, slower).
soak-memory: $(MODEL)
	$(PY) scripts/soak_memory.py $(ARGS)

# The project's assistant against a stock `rasa init` bot, alternating rounds of the same load (README, Speed).
# ARGS: --senders 20 --messages 20 --rounds 3 --turns 100 --workers 1 --unpatched --stock-dir DIR (reuse a trained stock bot).
bench: $(MODEL)
	$(PY) -m bench $(ARGS)

# The hostile load of tests/test_fair_share.py, longer (docs/fair-share.md): ATTACK_SECONDS (120) of
# ATTACKERS (10) connections from one address sending 2,000-character punctuation runs as fast as they
# are answered, while another visitor books over REST and socket.io; prints the figures. Then every shape
# of the cost corpus at every step of a consultation request (the suite tries each shape at one step).
attack: $(MODEL)
	FAIR_SHARE_ATTACK_SECONDS=$${ATTACK_SECONDS:-120} FAIR_SHARE_ATTACKERS=$${ATTACKERS:-10} \
		$(PY) -m pytest tests/test_fair_share.py -k attacking -q -s -p no:cacheprovider
	FAIR_SHARE_EVERY_STEP=1 $(PY) -m pytest tests/test_fair_share_cost.py -k form_step -q -p no:cacheprovider

clean:
	rm -rf models build results .pytest_cache

# Several servers on this machine (README, "Several servers"): nginx on :8080 in front of two Rasa
# servers and two action servers, on PostgreSQL (database clinic, created if missing) and Redis.
.PHONY: cluster load nginx
nginx:
	@command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || { $(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends nginx; }

cluster: $(MODEL) $(WEB_DEPS) nginx
	$(PY) -m scripts.cluster

# 50 visitors for 2 minutes through a running `CLINIC_MAX_REQUESTS_PER_CLIENT=0 CLINIC_RATE_PER_ADDRESS=0
# CLINIC_RATE_PER_CONVERSATION=0 make cluster` (all of them come from one address, and talk faster than people);
# ARGS="--url ... --visitors ... --seconds ...".
load: $(VENV)/.installed
	$(PY) scripts/load.py $(ARGS)
