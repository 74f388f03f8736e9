# mk/bench.mk: the load generator the HTTP benchmarks use (included by the top-level Makefile).
#
#   make bench-tools   install Debian's `hey` when missing (root + apt-get); elsewhere the HTTP benchmarks fall
#                      back to an httpx asyncio load generator and say so in their notes
#
# `hey` (Go, all cores) is preferred: a Python load generator on a 2-core machine competes with the server for
# CPU, so it caps subject and baseline alike and flatters the ratio.

BENCH_CACHE ?= var/cache

.PHONY: bench-tools
bench: bench-tools

bench-tools:
	@if command -v hey >/dev/null; then \
	  echo "bench-tools: hey at $$(command -v hey)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  mkdir -p $(BENCH_CACHE); echo "bench-tools: apt-get install hey"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends hey) \
	    >$(BENCH_CACHE)/apt-hey.log 2>&1 \
	    || echo "bench-tools: apt-get install hey failed (see $(BENCH_CACHE)/apt-hey.log); httpx load instead" >&2; \
	else \
	  echo "bench-tools: hey is not installed and cannot be here (needs root and apt-get); httpx load instead" >&2; \
	fi
