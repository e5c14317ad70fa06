#!/usr/bin/env bash
# Installs what `make test` needs on Debian 12 and says what it did. Go itself is a
# prerequisite (https://go.dev/dl); everything else comes from Debian's packages.
set -euo pipefail
need=()
command -v gcc >/dev/null || need+=(gcc)          # cgo: the collector links DuckDB
command -v setpriv >/dev/null || need+=(util-linux)
command -v protoc >/dev/null || need+=(protobuf-compiler) # make check-generated
command -v git >/dev/null || need+=(git)
command -v clang >/dev/null || need+=(clang llvm)             # make check-generated: eBPF objects
[ -f /usr/include/bpf/bpf_helpers.h ] || need+=(libbpf-dev)
command -v nc >/dev/null || need+=(netcat-openbsd)           # e2e: the process tripwire's target
command -v nsenter >/dev/null || need+=(util-linux)
command -v npm >/dev/null || need+=(nodejs npm)               # the Grafana plugin's frontend tests
# Real servers for the storage tests (internal/testservers runs them from these paths).
[ -x /usr/lib/postgresql/15/bin/postgres ] || need+=(postgresql)
[ -x /usr/sbin/clickhouse-server ] || need+=(clickhouse-server)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing packages: ${need[*]} (run as root, or: sudo apt-get install ${need[*]})" >&2
    exit 1
  fi
  echo "installing: ${need[*]}"
  apt-get update -qq
  # policy-rc.d may refuse to start the packaged services: the tests start their own.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
command -v go >/dev/null || { echo "go is not on PATH: install Go 1.26 (https://go.dev/dl)" >&2; exit 1; }
