#!/usr/bin/env bash
# Build the report of RUN_DIR and render it with headless Chromium into RUN_DIR/report/screenshot.png,
# to check by eye that the self-contained page displays (plots draw, tables fit, no external fetches).
# Needs Chromium: `sudo apt-get install -y chromium` (Debian/Ubuntu). Not part of the test suite.
# Usage: scripts/check_report_in_browser.sh RUN_DIR [WIDTHxHEIGHT]   (default 1280x2000)
set -euo pipefail
if [ $# -lt 1 ]; then
  echo "usage: $0 RUN_DIR [WIDTHxHEIGHT]" >&2
  exit 2
fi
run_dir=$1
size=${2:-1280x2000}
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
if [ -z "$browser" ]; then
  echo "$0: chromium is not installed; install it with: sudo apt-get install -y chromium" >&2
  exit 3
fi
here_venv="$(cd "$(dirname "$0")/.." && pwd)/.venv/bin/python"
python=${PYTHON:-$([ -x "$here_venv" ] && echo "$here_venv" || echo python3)}
here=$(cd "$(dirname "$0")/.." && pwd)
PYTHONPATH="$here/src${PYTHONPATH:+:$PYTHONPATH}" "$python" -m elastic_lm.cli.main report "$run_dir"
index=$(cd "$run_dir/report" && pwd)/index.html
shot=$(dirname "$index")/screenshot.png
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
"$browser" --headless --no-sandbox --disable-gpu --no-first-run --disable-background-networking \
  --disable-component-update --disable-sync --user-data-dir="$profile" --hide-scrollbars \
  --virtual-time-budget=10000 \
  --screenshot="$shot" --window-size="${size/x/,}" "file://$index" 2>/dev/null
echo "screenshot: $shot"
