# Hitless: `make demo` runs the main job, `make test` runs every test. Both set up first.
SHELL := /bin/bash
BUILD := native/build
RELEASE ?= 0.1.0-dev

.PHONY: all setup build native ts app package test test-native test-integration test-e2e demo demo-cli demo-host bench bench-peers clean

all: build

setup:
	@scripts/setup.sh

native: setup
	@[ -f $(BUILD)/build.ninja ] || meson setup $(BUILD) native -Drelease=$(RELEASE) >/dev/null
	@ninja -C $(BUILD) >/dev/null

ts: setup
	@node_modules/.bin/tsc -p tsconfig.json --noEmit
	@node_modules/.bin/tsc -p app/src/renderer/tsconfig.json --noEmit
	@node_modules/.bin/tsc -p app/src/renderer/tsconfig.test.json --noEmit

# the console's renderer, Electron main and preload, bundled into app/dist
app: setup
	@node --import tsx scripts/build-app.ts

build: native ts app

# what an operator installs, in dist/: the host package (the agent as one executable, the
# keeper), the signed datapath releases and the allowed-signers line of their key (README)
package: build
	@node --import tsx scripts/package.ts

test-native: native
	meson test -C $(BUILD) --print-errorlogs
	native/fuzz/run.sh 20

test-integration: build package
	node --import tsx --test --test-concurrency=1 --test-force-exit --test-timeout=900000 $$(find protocol testing agent app lab bench -name '*.test.ts' -not -path '*/node_modules/*' | sort)

# the console end to end: Playwright drives the renderer in Chromium against a lab fleet
# (screenshots in e2e/results/); the Electron shell test runs where an Electron binary exists
test-e2e: build package
	node_modules/.bin/playwright test

test: test-native test-integration test-e2e

# the main job: a lab fleet of 2 hosts x 4 VMs (namespaces, real sshd, traffic across hosts;
# the fourth VM of each host a QEMU guest with Linux virtio-net, measured through the guest),
# then the console on it: the desktop app where Electron is installed, otherwise browser mode
# (opened in Chromium when there is a display; the URL is printed either way). Ctrl-C stops it.
demo: build package
	lab/lab down
	lab/lab up --hosts 2 --vms 4 --vm-kind mixed
	@scripts/console.sh /var/tmp/hitless-lab/fleet.json

# the same fleet upgraded 1.0.0 -> 1.1.0 by the hitless CLI over SSH, within a 10 ms budget; its
# VMs are probe VMs: a round trip through a TCG guest on 2 shared cores has gaps of 5-45 ms of
# its own (the guest's scheduling, not the switch), over such a budget (make demo has guests)
demo-cli: build package
	lab/lab down
	lab/lab up --hosts 2 --vms 4 --vm-kind probe
	app/bin/hitless upgrade --hosts all --to 1.1.0 --approve auto --budget-gap-ms 10 --budget-lost 0
	@mkdir -p results && app/bin/hitless report --format html > results/campaign-latest.html
	@echo "report: results/campaign-latest.html (and results/campaign-*.json); the lab stays up: lab/lab status, lab/lab down"

# one host, in detail: per-VM handoff, rollback, commit, with the break-time table
demo-host: build package
	node --import tsx scripts/demo.ts

bench: build
	bench/run forward --quick

# Hitless beside testpmd and OVS-DPDK (installed here), one run, HTML report in bench/results/
bench-peers: build
	bench/run peers

clean:
	rm -rf $(BUILD)
