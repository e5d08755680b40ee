# Hitless: `make demo` runs the main job, `make test` runs every test. Both set up first.
SHELL := /bin/bash
BUILD := native/build
RELEASE ?= 0.1.0-dev

.PHONY: all setup build native ts test test-native test-integration demo demo-host bench clean

all: build

setup:
	@scripts/setup.sh

native: setup
	@[ -f $(BUILD)/build.ninja ] || meson setup $(BUILD) native -Drelease=$(RELEASE) >/dev/null
	@ninja -C $(BUILD) >/dev/null

ts: setup
	@node_modules/.bin/tsc -p tsconfig.json --noEmit

build: native ts

test-native: native
	meson test -C $(BUILD) --print-errorlogs
	native/fuzz/run.sh 20

test-integration: build
	node --import tsx --test --test-concurrency=1 $$(find agent app lab bench -name '*.test.ts' -not -path '*/node_modules/*' | sort)

test: test-native test-integration

# the main job: a lab fleet of 2 hosts x 4 VMs (namespaces, real sshd, traffic across hosts)
# upgraded 1.0.0 -> 1.1.0 VM by VM within a budget, through the hitless CLI over SSH
demo: build
	lab/lab down
	lab/lab up --hosts 2 --vms 4
	app/bin/hitless upgrade --hosts all --to 1.1.0 --approve auto --budget-gap-ms 10 --budget-lost 0
	@mkdir -p results && app/bin/hitless report --format html > results/campaign-latest.html
	@echo "report: results/campaign-latest.html (and results/campaign-*.json); the lab stays up: lab/lab status, lab/lab down"

# one host, in detail: per-VM handoff, rollback, commit, with the break-time table
demo-host: build
	node --import tsx scripts/demo.ts

bench: build
	bench/run forward --quick

clean:
	rm -rf $(BUILD)
