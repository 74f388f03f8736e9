# The studio's browser tests drive Debian's Chromium (never a browser build downloaded by Playwright).
CHROMIUM ?= /usr/bin/chromium

.PHONY: chromium

chromium:
	@if [ ! -x $(CHROMIUM) ]; then \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update -q && $$SUDO apt-get install -y -q chromium; \
	fi
