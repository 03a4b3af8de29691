# MobileViT from Scratch: the README's two commands, `make book` and `make test`.
#
#   make book    set up .venv if needed, run every chapter (profile full), render _build/html
#   make test    set up .venv if needed, run tests/ and every chapter under nbval (profile ci)
#   make html    render _build/html from the chapters (executed copies in _build/ when newer)
#   make figures regenerate every figure in figures/ (re-runs the chapters, profile full)
#   make check   check that book.toml and chapters/ agree
#   make experiments  run the small-scale experiments the ledger lacks (resumable; see README)
#   make setup   create .venv and install the book (re-runs when pyproject.toml changes)
#   make clean   remove _build/ and caches (keeps .venv); `make distclean` also removes .venv

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.mobilevit-edu-installed
TORCH ?= torch==2.13.0
# torch is installed first, pinned, so that pip never pulls a multi-GB CUDA build on a CPU machine
# (where this book is tested, pip finds that wheel on local disk). On your own CPU-only machine,
# `make setup TORCH_INDEX=https://download.pytorch.org/whl/cpu` fetches the small CPU wheel.
TORCH_INDEX ?=
NBVAL_FLAGS := --nbval-lax --nbval-current-env --nbval-cell-timeout=600 \
	--nbval-sanitize-with tests/nbval_sanitize.cfg

.PHONY: book test html figures check experiments setup clean distclean

book: $(STAMP)
	$(PY) -m mobilevit_edu.book run --profile full
	$(PY) -m mobilevit_edu.book html

test: $(STAMP)
	MOBILEVIT_EDU_PROFILE=ci MOBILEVIT_EDU_FIGURES=$(CURDIR)/_build/figures-ci \
		MOBILEVIT_EDU_RESULTS=$(CURDIR)/_build/results-ci $(PY) -m pytest tests chapters $(NBVAL_FLAGS)

html: $(STAMP)
	$(PY) -m mobilevit_edu.book html

figures: $(STAMP)
	$(PY) -m mobilevit_edu.book figures

check: $(STAMP)
	$(PY) -m mobilevit_edu.book check

experiments: $(STAMP)
	$(PY) -m mobilevit_edu.experiments run all

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX)) "$(TORCH)"
	$(PY) -m pip install -e '.[book]'
	touch $(STAMP)

clean:
	rm -rf _build .pytest_cache
	find . -name __pycache__ -not -path './$(VENV)/*' -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
