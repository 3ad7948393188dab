#!/usr/bin/env bash
# Set up Hookyard in .venv, start the example receiver and `hookyard serve` on the embedded
# SQLite default, send one signed webhook through, and keep serving until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/hookyard ]; then
  echo "== setting up .venv (first run only)"
  python3 -m venv .venv
  .venv/bin/pip install --quiet --upgrade pip
  .venv/bin/pip install --quiet -e .
fi

example=examples/quickstart
export GITHUB_SECRET="${GITHUB_SECRET:-quickstart-secret}"
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

echo "== starting the example receiver on http://127.0.0.1:9000/hooks"
.venv/bin/python "$example/receiver.py" --port 9000 &
pids+=($!)

echo "== starting hookyard serve --config $example/hookyard.toml"
log=$(mktemp)
.venv/bin/hookyard serve --config "$example/hookyard.toml" > >(tee "$log") 2>&1 &
pids+=($!)
for _ in $(seq 100); do grep -q "listening on" "$log" && break; sleep 0.1; done
grep -q "listening on" "$log" || { echo "hookyard did not start"; exit 1; }

echo "== sending a signed GitHub push webhook (hookyard send github - ...)"
printf '{"ref": "refs/heads/main", "sent_at": "%s"}' "$(date -u +%FT%TZ)" |
  .venv/bin/hookyard send github - -H "X-GitHub-Event: push" --config "$example/hookyard.toml"
sleep 1
echo "== the event log (hookyard events list --config $example/hookyard.toml)"
.venv/bin/hookyard events list --config "$example/hookyard.toml"
cat <<MSG

Hookyard is running on http://127.0.0.1:8787 (Ctrl-C stops it). Try, in another terminal:
  .venv/bin/hookyard send github $example/push.json -H "X-GitHub-Event: push" --config $example/hookyard.toml
  .venv/bin/hookyard events show <id> --config $example/hookyard.toml
MSG
wait "${pids[1]}"
