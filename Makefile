# Hitless: `make demo` runs the main job, `make test` runs every test. Both set up first.
SHELL := /bin/bash
BUILD := native/build
RELEASE ?= 0.1.0-dev

.PHONY: all setup build native ts test test-native test-integration demo bench clean

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

demo: build
	node --import tsx scripts/demo.ts

bench: build
	bench/run forward --quick

clean:
	rm -rf $(BUILD)
