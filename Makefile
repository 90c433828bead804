# linuxns.guests — development targets (run as root on Debian 12).
#   make test    deps + venv + link, then the whole pytest suite (unit + integration on lab hosts)
#   make demo    deps + venv + link, 2 lab hosts, playbooks/demo.yml, lab down (also on failure)
#   make sanity  ansible-test sanity on a copy of the tree
#   make lint    ruff (ruff.toml)
#   make ansible-lint   ansible-lint, production profile, on roles, playbooks and molecule scenarios
#   make molecule       molecule scenarios (extensions/molecule), each on its own lab
#   make fleet-demo     2 lab hosts x 5 guests: playbooks/fleet.yml, summary table, lab down (FLEET_SIZE=N)
#   make bench-plots    fleet bench (ours vs shell) at PLOT_SIZES guests per host, log-log PNGs into docs/ (docs/performance.md)
SHELL := /bin/bash
.DEFAULT_GOAL := test

REPO     := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
SHARED   ?= $(REPO)/../shared
PY       := /usr/bin/python3
VENV     := $(REPO)/.venv
VPY      := $(VENV)/bin/python
STAMP    := $(VENV)/.installed-lock
LAB      := $(PY) $(REPO)/tests/lab/lab.py
HOSTS    ?= 2
PYTEST_ARGS ?=
COLL_LINK := $(REPO)/build/ansible_collections/linuxns/guests
SANITY_DIR := $(REPO)/build/sanity/ansible_collections/linuxns/guests
SANITY_PYTHON ?= 3.11
GET_PIP_VERSIONS ?= 24.2

.PHONY: deps venv link lab-up lab-down lab-status test test-serial test-extended test-all demo demo-basic sanity lint clean ansible-lint molecule fleet-demo bench-plots mitogen-test

deps:
	@bash $(REPO)/tests/lab/deps.sh

venv: $(STAMP)

$(STAMP): $(REPO)/requirements-lock.txt
	test -x $(VPY) || $(PY) -m venv $(VENV)
	$(VPY) -m pip install --disable-pip-version-check -q -r $(REPO)/requirements-lock.txt
	touch $@

# build/ansible_collections/linuxns/guests -> repo root (a symlink, never a copy):
# ANSIBLE_COLLECTIONS_PATH=$(REPO)/build makes linuxns.guests importable.
link:
	@mkdir -p $(dir $(COLL_LINK))
	@if [ -e $(COLL_LINK) ] && [ ! -L $(COLL_LINK) ]; then \
	    echo "$(COLL_LINK) exists and is not a symlink; remove it" >&2; exit 1; fi
	@ln -sfn ../../.. $(COLL_LINK)

lab-up: deps link
	$(LAB) up --hosts $(HOSTS)

lab-down:
	$(LAB) down

lab-status:
	$(LAB) status

# make test: the suite CI runs (under 30 minutes); the slow variants (marker `extended`:
# molecule, the fleet reboot and killed-playbook reruns, the 20-guest connection playbook,
# pyroute2 0.9, the docs-site build) are
# left out: `make test-extended` runs only those, `make test-all` everything.
# tests/run_suites.py runs the unit suite and the lab suites (integration, security) side by
# side and fails unless both pytest runs exit 0; `make test-serial` runs them in one pytest.
test: deps venv link
	cd $(REPO) && $(VPY) tests/run_suites.py $(VPY) -m "not extended" $(PYTEST_ARGS)

test-serial: deps venv link
	cd $(REPO) && $(VPY) -m pytest tests -m "not extended" $(PYTEST_ARGS)

test-extended: deps venv link
	cd $(REPO) && $(VPY) -m pytest tests -m extended $(PYTEST_ARGS)

test-all: deps venv link
	cd $(REPO) && $(VPY) -m pytest tests $(PYTEST_ARGS)

# make demo: the fleet (2 lab hosts x FLEET_SIZE busybox guests on a bridge, pages checked, table, teardown).
demo: fleet-demo

# The foundation's smaller demo: a few guests per host and namespace_info (playbooks/demo.yml).
demo-basic: deps venv link
	bash $(REPO)/tests/lab/demo.sh

sanity: deps venv
	mkdir -p $(HOME)/.ansible/test/cache
	for v in $(GET_PIP_VERSIONS); do \
	    cp $(SHARED)/tools/get_pip_offline.py $(HOME)/.ansible/test/cache/get_pip_$${v//./_}.py; done
	mkdir -p $(SANITY_DIR)
	rsync -a --delete --delete-excluded --exclude=/.venv --exclude=/build \
	    --exclude='/.lab*' --exclude=/tests/output --exclude=__pycache__ --exclude=.pytest_cache --exclude=.ruff_cache \
	    $(REPO)/ $(SANITY_DIR)/
	cd $(SANITY_DIR) && PATH=$(VENV)/bin:$$PATH $(VENV)/bin/ansible-test sanity \
	    --python $(SANITY_PYTHON) --local $(SANITY_ARGS)

lint: venv
	cd $(REPO) && $(VENV)/bin/ruff check --no-cache .

ansible-lint: venv link
	cd $(REPO) && PATH=$(VENV)/bin:$$PATH ANSIBLE_COLLECTIONS_PATH=$(REPO)/build $(VENV)/bin/ansible-lint --offline roles playbooks extensions

MOLECULE_SCENARIOS ?= default fleet
molecule: deps venv link
	for s in $(MOLECULE_SCENARIOS); do bash $(REPO)/tests/lab/molecule.sh $$s || exit 1; done

FLEET_SIZE ?= 5
fleet-demo: deps venv link
	DEMO_PLAYBOOK=$(REPO)/playbooks/fleet.yml DEMO_ARGS="-e fleet_size=$(FLEET_SIZE) -e fleet_teardown=true $(DEMO_ARGS)" \
	    bash $(REPO)/tests/lab/demo.sh

clean:
	-$(LAB) down --purge
	@for d in $(REPO)/.lab-*; do \
	    [ -d "$$d" ] && LINUXNS_LAB=$${d##*/.lab-} $(LAB) down --purge || true; done
	rm -rf $(REPO)/build $(REPO)/tests/output
	find $(REPO) -path $(REPO)/.venv -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

# --- ecosystem (docs/ecosystem.md) ---
#   make matrix      the smoke subset on each ansible-core of MATRIX_VERSIONS, one venv each under
#                    build/matrix/<version> (made once); `make test` runs 2.16 only
#   make runner      tests/integration/test_runner.py: playbooks/fleet.yml through ansible-runner, 2 slices
#   make docs-site   HTML docs site (antsibull-docs + Sphinx, docs/site/build.py) -> build/docs-site/build/html
MATRIX_VERSIONS ?= 2.16 2.17 2.18 2.19
.PHONY: matrix runner docs-site
matrix: deps venv link
	cd $(REPO) && LINUXNS_MATRIX="$(MATRIX_VERSIONS)" $(VPY) -m pytest tests/integration/test_matrix.py $(PYTEST_ARGS)

runner: deps venv link
	cd $(REPO) && $(VPY) -m pytest tests/integration/test_runner.py $(PYTEST_ARGS)

docs-site: venv link
	cd $(REPO) && $(VPY) docs/site/build.py --dest $(REPO)/build/docs-site

# Fleet bench curves (bench/plots/fleet_plots.py; matplotlib is pip-installed into the venv when missing).
PLOT_SIZES ?= 10,50,200,1000
PLOT_ROUNDS ?= 1
bench-plots: deps venv link
	$(VPY) -c 'import matplotlib' 2>/dev/null || $(VPY) -m pip install --disable-pip-version-check -q matplotlib
	cd $(REPO) && $(VPY) bench/plots/fleet_plots.py run --sizes $(PLOT_SIZES) --rounds $(PLOT_ROUNDS) \
	    --json bench/plots/fleet.json --out docs

# make mitogen-test: build/mitogen-venv (the locked ansible-core + mitogen 0.3.x), then the modules and the
# guest connection under strategy mitogen_linear (tests/integration/test_mitogen.py; skipped by `make test`).
MITOGEN_VENV := $(REPO)/build/mitogen-venv
MITOGEN_VERSION ?= 0.3.54
mitogen-test: deps venv link
	test -x $(MITOGEN_VENV)/bin/python || $(PY) -m venv $(MITOGEN_VENV)
	$(MITOGEN_VENV)/bin/pip install --disable-pip-version-check -q "$$(grep -i '^ansible-core==' $(REPO)/requirements-lock.txt)" "mitogen==$(MITOGEN_VERSION)"
	cd $(REPO) && LINUXNS_MITOGEN_VENV=$(MITOGEN_VENV) $(VPY) -m pytest tests/integration/test_mitogen.py $(PYTEST_ARGS)
