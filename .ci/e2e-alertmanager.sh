#!/usr/bin/env bash
# End-to-end alerting (issue 7): a real Alertmanager (Debian's prometheus-alertmanager) on loopback, and the
# scenario of tests/e2e_alertmanager.rs against it — a pair breaks with repair refused (403), the alert must be
# listed by GET /api/v2/alerts; repair succeeds, the alert must be resolved. Stops what it started.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

as_root=()
[ "$(id -u)" -eq 0 ] || as_root=(sudo)
apt_env=(env DEBIAN_FRONTEND=noninteractive)

if ! command -v prometheus-alertmanager >/dev/null 2>&1; then
  echo "installing prometheus-alertmanager"
  # An unknown package or a stale list (old version no longer on the mirror) needs the lists first.
  if ! apt-cache show prometheus-alertmanager >/dev/null 2>&1 \
    || ! "${as_root[@]}" "${apt_env[@]}" apt-get install -y -qq prometheus-alertmanager >/dev/null; then
    "${as_root[@]}" "${apt_env[@]}" apt-get update -qq
    "${as_root[@]}" "${apt_env[@]}" apt-get install -y -qq prometheus-alertmanager >/dev/null
  fi
fi
prometheus-alertmanager --version 2>&1 | head -1

work_dir="$(mktemp -d -t e2e-alertmanager.XXXXXX)"
am_pid=""
cleanup() {
  if [ -n "$am_pid" ] && kill -0 "$am_pid" 2>/dev/null; then
    kill "$am_pid" 2>/dev/null || true
    # Bounded: Alertmanager stops within a second on SIGTERM; force it after 10 s.
    for _ in $(seq 1 50); do kill -0 "$am_pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$am_pid" 2>/dev/null || true
    wait "$am_pid" 2>/dev/null || true
  fi
  rm -rf "$work_dir"
}
trap cleanup EXIT

# Minimal configuration: every alert to a receiver that notifies nobody (the API is what is tested).
cat >"$work_dir/alertmanager.yml" <<'YAML'
route:
  receiver: nobody
  group_wait: 1s
receivers:
  - name: nobody
YAML

# GET /-/ready on 127.0.0.1:$1 answers 200 (plain bash: no curl needed).
ready() {
  (
    exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
    printf 'GET /-/ready HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
    IFS= read -r -t 2 status <&3 || exit 1
    [[ "$status" == HTTP/1.?" 200"* ]]
  ) 2>/dev/null
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# A free loopback port; retried if another process takes it between the check and the bind.
port=""
for attempt in 1 2 3 4 5; do
  candidate=$((20000 + RANDOM % 20000))
  port_in_use "$candidate" && continue
  prometheus-alertmanager \
    --web.listen-address="127.0.0.1:$candidate" \
    --cluster.listen-address= \
    --storage.path="$work_dir/data" \
    --config.file="$work_dir/alertmanager.yml" \
    --log.level=warn \
    >"$work_dir/alertmanager.log" 2>&1 &
  am_pid=$!
  for _ in $(seq 1 100); do  # up to 20 s
    if ready "$candidate"; then port="$candidate"; break; fi
    kill -0 "$am_pid" 2>/dev/null || break
    sleep 0.2
  done
  [ -n "$port" ] && break
  echo "Alertmanager did not become ready on 127.0.0.1:$candidate (attempt $attempt):" >&2
  tail -n 20 "$work_dir/alertmanager.log" >&2 || true
  kill "$am_pid" 2>/dev/null || true
  wait "$am_pid" 2>/dev/null || true
  am_pid=""
done
if [ -z "$port" ]; then
  echo "could not start Alertmanager on loopback" >&2
  exit 1
fi
echo "Alertmanager ready on 127.0.0.1:$port (pid $am_pid)"

status=0
ALERTMANAGER_URL="http://127.0.0.1:$port" AUTOATTACH_E2E_ALERTMANAGER=1 \
  cargo test -p acr-autoattach --test e2e_alertmanager -- --nocapture || status=$?
if [ "$status" -ne 0 ]; then
  echo "--- Alertmanager log ---" >&2
  tail -n 50 "$work_dir/alertmanager.log" >&2 || true
fi
exit "$status"
