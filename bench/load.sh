#!/usr/bin/env bash
# Real-browser load (issue 9): bootfleet's runner beside Artillery with its
# Playwright engine, both given Debian's chromium binaries, on the test
# app's websocket scenario; the test app is served on 127.0.0.1 by the
# driver (bench/loadbench). Prints a RESULTS.md section. Bounded: the
# driver stops trying higher levels after BUDGET (default 9m, shared equally by the configurations); every run is
# killed with its process group if it hangs.
set -euo pipefail
cd "$(dirname "$0")/.."
hold=${1:-30s}
messages=${2:-50} # per iteration, 10 a second: sessions mostly live on the websocket
budget=${BUDGET:-9m}
./scripts/install-deps.sh chromium chromium-headless-shell nodejs >&2
# Debian's nodejs (18) ships npm apart; a nodejs with its own npm needs none.
command -v npm >/dev/null || ./scripts/install-deps.sh npm >&2
out=bench/out/load
mkdir -p "$out" bin
# Artillery, pinned by bench/artillery/package-lock.json; its own browser
# download is skipped (it fails here): it runs Debian's via executablePath.
art=bench/out/artillery
mkdir -p "$art"
if ! cmp -s bench/artillery/package-lock.json "$art/package-lock.json" || [ ! -x "$art/node_modules/.bin/artillery" ]; then
	cp bench/artillery/package.json bench/artillery/package-lock.json "$art/"
	(cd "$art" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error >&2)
fi
go build -o bin/bootfleet ./cmd/bootfleet
go build -o bin/loadbench ./bench/loadbench
versions="bootfleet $(git describe --always --dirty), $(/usr/lib/chromium/chromium-headless-shell --version 2>/dev/null | head -1), $(chromium --version 2>/dev/null | head -1), Artillery $("$art/node_modules/.bin/artillery" version 2>/dev/null | sed -n 's/.*Artillery: *//p'), artillery-engine-playwright $(node -p "require('./$art/node_modules/artillery-engine-playwright/package.json').version"), Playwright $(node -p "require('./$art/node_modules/playwright/package.json').version"), Node.js $(node --version)"
echo "### Real-browser load: bootfleet beside Artillery + Playwright"
echo
echo "The test app (load/chatapp: a page whose JavaScript logs in over a websocket and lists the 10 messages/s the server sends, one 64×64 image) on 127.0.0.1. One session's iteration: open the page, type the user, click log in, **ready** (wait for the room; the main step), wait for $messages websocket messages ($((messages / 10)) s); over and over for $hold after a ramp-up of 0.1 s per session (at most 5 s), all N sessions at once. Both tools run Debian's browser binaries (Artillery via launchOptions.executablePath, the same flags). A level **holds** with no failed step or user and the ready step's p95 within 10% of the same configuration at 5 sessions; levels rise until one does not hold. Memory: peak summed PSS (/proc/PID/smaps_rollup) of the tool's whole process tree (runner or Node, browsers, renderers); CPU: mean over the busiest stretch of the hold's length less 4 s, % of one core. Sessions/GiB = N / peak PSS at N. bootfleet runs 10 sessions per browser process (its default), each in its own browser context; Artillery its default (one browser, a context per user)."
echo
flock /tmp/bootfleet-bench.lock ./bin/loadbench -bootfleet bin/bootfleet -artillery "$art/node_modules/.bin/artillery" -flow bench/artillery -out "$out" -hold "$hold" -messages "$messages" -budget "$budget"
echo
echo "Versions: $versions. Taken on a shared machine ($(nproc) cores; other work may run): only ratios from the same run mean much."
echo "Command: \`bench/load.sh $hold $messages\` (reports of every run in $out/)."
