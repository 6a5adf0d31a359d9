# ssl_min: every command a user needs. Variables override, e.g.
#   make pretrain DATA=~/music PRESET=clmr OUT=runs/mine ARGS="--batch_size 96"
#   make probe OUT=runs/mine LABELED=~/mtt_ssl
#   make pretrain probe OBJECTIVE=masked          # the masked objective, in runs/demo_masked
PY       ?= .venv/bin/python
DEMO     := data/demo
DATA     ?= $(DEMO)/unlabeled
LABELED  ?= $(DEMO)
PRESET   ?= demo
OBJECTIVE ?= simclr
OUT      ?= runs/$(PRESET)$(if $(filter-out simclr,$(OBJECTIVE)),_$(OBJECTIVE))
comma    := ,
# The masked main job's probe adds the ceiling on the demo (the architecture trained on the labels, as
# long as the pretraining: ~2.5 min a task on 2 AVX2 cores); ROWS=...,supervised adds it to any run.
ROWS     ?= pretrained,random_init,mfcc$(if $(and $(filter $(DEMO),$(LABELED)),$(filter masked,$(OBJECTIVE))),$(comma)supervised)
ARGS     ?=
CKPT     ?= $(OUT)/checkpoint.pt

.PHONY: install test test-repeat pretrain probe embed bench bench-music demo clean

install: .venv/.installed            ## virtual env + pinned requirements (reused when present)
.venv/.installed: requirements.txt
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $@

test: install                        ## the whole test suite, CPU only
	$(PY) -m pytest -q tests

N        ?= 5
test-repeat: install                 ## the suite N times in a row (default 5), stops at the first failure
	for i in $$(seq $(N)); do t=$$(date +%s); $(PY) -m pytest -q -p no:cacheprovider tests || exit 1; \
	  echo "== run $$i of $(N) passed in $$(( $$(date +%s) - t )) s"; done

demo: install                        ## write the built-in demo dataset (once; a no-op afterwards)
	$(PY) -m ssl_min.demo $(DEMO)

# The demo data is generated only when it is what we train on.
pretrain: install $(if $(filter $(DEMO)/unlabeled,$(DATA)),demo)   ## contrastive pretraining (the demo data unless DATA= is given)
	$(PY) train.py --data $(DATA) --preset $(PRESET) --objective $(OBJECTIVE) --out $(OUT) $(ARGS)

probe: install $(if $(filter $(DEMO),$(LABELED)),demo)                  ## linear probe: pretrained vs random init vs MFCC vs supervised
	$(PY) probe.py --checkpoint $(CKPT) --data $(LABELED) --rows $(ROWS)
	if [ "$(LABELED)" = "$(DEMO)" ]; then \
	  $(PY) probe.py --checkpoint $(CKPT) --data $(DEMO)/style --rows $(ROWS) --out $(OUT)/probe_style.json; fi

EMB      ?= $(OUT)/embeddings_export
embed: install                       ## one .npy per audio file of DATA (the track embedding), plus index.csv
	$(PY) -m ssl_min.embed --checkpoint $(CKPT) --data $(DATA) --out $(EMB) $(ARGS)

bench-music: install                 ## real music: Debian soundtracks, --preset cpu, probe vs random init and MFCC
	$(PY) bench/real_music.py

bench: install                       ## speed figures: augmentations, data loading, training
	$(PY) bench/augment.py
	$(PY) bench/data.py
	$(PY) bench/train.py

clean:                               ## remove runs and generated data (keeps the virtual env)
	rm -rf runs $(DEMO) .pytest_cache
