#!/usr/bin/env bash
# make demo: a collector on the embedded DuckDB store, an agent with example tripwires on
# a demo directory, one tripwire tripped, and alerts printed live as they arrive.
# Ctrl-C stops everything. DEMO_SECONDS=N stops by itself after N seconds (for CI).
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=$PWD/bin
DEMO=$PWD/demo
GRPC=${DEMO_GRPC:-127.0.0.1:7443}
ENROLL=${DEMO_ENROLL:-127.0.0.1:7444}
HTTP=${DEMO_HTTP:-127.0.0.1:8080}
HEALTHZ=${DEMO_HEALTHZ:-127.0.0.1:9100}
DECOY_PORT=${DEMO_DECOY_PORT:-2222}

pids=()
cleanup() {
  trap - EXIT INT TERM
  echo
  echo "stopping demo"
  # Newest first: the follower, then the agent, then the collector.
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill "${pids[i]}" 2>/dev/null || true
    wait "${pids[i]}" 2>/dev/null || true
  done
  echo "state kept in $DEMO (audit chain: $DEMO/audit, store: $DEMO/data). 'make clean' removes it."
}
trap cleanup EXIT INT TERM

mkdir -p "$DEMO"/{decoy,data,audit}
chmod 755 "$DEMO" "$DEMO/decoy"
[ -f "$DEMO/decoy/aws-credentials" ] || printf '[default]\naws_access_key_id = AKIADEMODEMODEMO\naws_secret_access_key = not-a-real-secret\n' > "$DEMO/decoy/aws-credentials"
chmod 644 "$DEMO/decoy/aws-credentials"
[ -f "$DEMO/pki/ca.crt" ] || "$BIN/tripwire-collector" pki init --dir "$DEMO/pki" >/dev/null
[ -f "$DEMO/token" ] || head -c 24 /dev/urandom | base64 | tr -d '/+=' > "$DEMO/token"
TOKEN=$(cat "$DEMO/token")

cat > "$DEMO/collector.yaml" <<YAML
listen: {grpc: $GRPC, http: $HTTP, enroll: $ENROLL}
pki: {dir: pki}
storage: {duckdb: data/tripwire.duckdb}
api: {tokens: [$TOKEN]}
YAML

rules="  - {name: decoy-credentials, type: file, paths: [$DEMO/decoy/aws-credentials], severity: CRITICAL}
  - {name: netcat, type: process, names: [nc, ncat, netcat], severity: CRITICAL}
  - {name: ssh-decoy, type: network, ports: [$DECOY_PORT], mode: decoy, severity: WARN}"
if [ "$(id -u)" -eq 0 ]; then
  rules="$rules
  - {name: etc-passwd-watch, type: file, paths: [/etc/passwd], severity: WARN}"
fi
cat > "$DEMO/config.yaml" <<YAML
host: demo-host
collector: {address: $GRPC, ca: agent-pki/ca.crt, cert: agent-pki/agent.crt, key: agent-pki/agent.key, server_name: localhost}
audit: {dir: audit, max_segment_mb: 64}
healthz: $HEALTHZ
rules:
$rules
YAML

if [ "$(id -u)" -ne 0 ]; then
  cat <<'MSG'
== Not running as root: what degrades ==
  fanotify needs CAP_SYS_ADMIN, so file tripwires fall back to fsnotify (inotify):
  writes, creates, removes, renames and attribute changes are seen, READS ARE NOT,
  and no process identity (PID, user, executable, command line) is recorded.
  The demo trips its tripwire with a write so that you still see an alert.
  Process tripwires need CAP_BPF and CAP_PERFMON for eBPF; without them the agent
  falls back to the netlink process connector or /proc polling (see /healthz).
  The decoy port works for everyone.
  Run `sudo make demo` for the full picture.
MSG
fi

echo "== starting collector (embedded DuckDB store: $DEMO/data/tripwire.duckdb)"
"$BIN/tripwire-collector" serve --config "$DEMO/collector.yaml" 2> "$DEMO/collector.log" &
pids+=($!)
for _ in $(seq 100); do curl -fsS "http://$HTTP/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fsS "http://$HTTP/healthz" >/dev/null || { echo "collector did not start:"; cat "$DEMO/collector.log"; exit 1; }

if [ ! -f "$DEMO/agent-pki/agent.crt" ]; then
  echo "== enrolling the agent: a one-time join token (tripwire-collector pki token), traded by tripwire enroll for a certificate of a key the host makes"
  JOIN=$("$BIN/tripwire-collector" pki token --host demo-host --ttl 10m --config "$DEMO/collector.yaml" | grep -o 'tw1\.[^ ]*' | head -1)
  "$BIN/tripwire" enroll --collector "$ENROLL" --token "$JOIN" --dir "$DEMO/agent-pki" --ingest "$GRPC" | sed 's/^/   /'
fi

echo "== starting agent (log: $DEMO/agent.log; its certificate lives 24 h and renews itself over the stream)"
"$BIN/tripwire" start --config "$DEMO/config.yaml" 2> "$DEMO/agent.log" &
pids+=($!)
for _ in $(seq 100); do curl -fsS "http://$HEALTHZ/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fsS "http://$HEALTHZ/healthz" || { echo "agent did not start:"; cat "$DEMO/agent.log"; exit 1; }
echo

echo "== following alerts live (tripwire-collector alerts --follow); Ctrl-C stops the demo"
"$BIN/tripwire-collector" alerts --follow --config "$DEMO/collector.yaml" &
pids+=($!)
sleep 0.5

echo "== tripping the decoy: reading $DEMO/decoy/aws-credentials"
if [ "$(id -u)" -eq 0 ]; then
  setpriv --reuid=nobody --regid=nogroup --clear-groups cat "$DEMO/decoy/aws-credentials" >/dev/null
  echo "== and reading /etc/passwd as user nobody"
  setpriv --reuid=nobody --regid=nogroup --clear-groups head -1 /etc/passwd >/dev/null
else
  cat "$DEMO/decoy/aws-credentials" >/dev/null
  echo "# touched by the demo" >> "$DEMO/decoy/aws-credentials"
fi
echo "== knocking on the decoy port $DECOY_PORT (a network tripwire), with nc if installed (a process tripwire)"
as_nobody=()
[ "$(id -u)" -eq 0 ] && as_nobody=(setpriv --reuid=nobody --regid=nogroup --clear-groups)
if command -v nc >/dev/null; then
  "${as_nobody[@]}" nc -z 127.0.0.1 "$DECOY_PORT" || true
else
  "${as_nobody[@]}" bash -c "echo knock > /dev/tcp/127.0.0.1/$DECOY_PORT" 2>/dev/null || true
fi
cat <<MSG
== try it yourself in another terminal:
     cat $DEMO/decoy/aws-credentials
     curl -s -H "Authorization: Bearer $TOKEN" 'http://$HTTP/api/v1/alerts?type=FILE'
     nc -z 127.0.0.1 $DECOY_PORT
     curl -s http://$HEALTHZ/healthz
     $BIN/tripwire doctor
     $BIN/tripwire audit verify --dir $DEMO/audit
MSG
if [ -n "${DEMO_SECONDS:-}" ]; then
  sleep "$DEMO_SECONDS"
else
  wait "${pids[0]}"
fi
