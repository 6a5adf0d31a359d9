# ssl_min: every command a user needs. Variables override, e.g. `make pretrain DATA=~/music OUT=runs/mine`.
PY      ?= .venv/bin/python
DATA    ?= data/demo
PRESET  ?= demo
OUT     ?= runs/$(PRESET)
ARGS    ?=

.PHONY: install test pretrain probe bench clean

install: .venv/.installed          ## virtual env + pinned requirements (reused when present)
.venv/.installed: requirements.txt
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $@

test:                              ## the whole test suite, CPU only
	$(PY) -m pytest -q tests

pretrain:                          ## contrastive pretraining (built-in demo data unless DATA= is given)
	$(PY) train.py --data $(DATA) --preset $(PRESET) --out $(OUT) $(ARGS)

probe:                             ## linear probe of the pretrained encoder vs a random-init one
	$(PY) probe.py --checkpoint $(OUT)/checkpoint.pt --data $(DATA) $(ARGS)

bench:                             ## speed figures: augmentations, data loading, training throughput
	$(PY) bench/augment.py
	$(PY) bench/data.py
	$(PY) bench/train.py

clean:                             ## remove runs and generated data (keeps the virtual env)
	rm -rf runs data/demo .pytest_cache
