#!/usr/bin/env bash
# Full-restart check: confirmed messages survive `docker compose down` and
# `up` of the whole cluster (the named volumes keep each node's data).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
    cat <<USAGE
Usage: deploy/restart-check.sh [--count N]

Publishes N confirmed messages (default 5000) to a fresh topic on the running
compose cluster, removes and recreates all three containers (down, then
up -d --no-build; volumes kept), and consumes the topic: exits 0 when all N
come back. RAFTMQ_BIN_DIR names where the raftmq CLI is (default: built with
cargo into target/debug).
USAGE
}

count=5000
while [ $# -gt 0 ]; do
    case "$1" in
        --count) count="${2:?--count needs a value}"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done
[[ "$count" =~ ^[0-9]+$ ]] && [ "$count" -ge 1 ] || die "--count must be a positive number"

require_docker
command -v jq >/dev/null 2>&1 || die "jq is not installed"
if [ -n "${RAFTMQ_BIN_DIR:-}" ]; then
    RAFTMQ="$RAFTMQ_BIN_DIR/raftmq"
else
    (cd "$REPO_DIR" && nice -n 10 cargo build --quiet -p raftmq-client --bin raftmq)
    RAFTMQ="${CARGO_TARGET_DIR:-$REPO_DIR/target}/debug/raftmq"
fi
export RAFTMQ_SERVERS="127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003"
use_secrets

# Bounded wait until all three nodes name the same leader.
wait_for_leader() {
    local deadline=$((SECONDS + 60))
    while [ $SECONDS -lt $deadline ]; do
        if "$RAFTMQ" --deadline-secs 2 cluster status --json 2>/dev/null \
            | jq -e '[.nodes[] | .status.leader_id // null] | length == 3 and (unique | length == 1) and .[0] != null' >/dev/null 2>&1; then
            return 0
        fi
        sleep 1
    done
    die "no agreed leader within 60s"
}

wait_for_leader
topic="restart-$(date +%s)"
"$RAFTMQ" topic declare "$topic" --partitions 4 >/dev/null
confirmed="$("$RAFTMQ" publish "$topic" --key restart --count "$count" --size 100 --json | jq -r '.confirmed')"
[ "$confirmed" = "$count" ] || die "only $confirmed of $count messages confirmed before the restart"
log "$confirmed messages confirmed on $topic; recreating the whole cluster"
compose down >/dev/null 2>&1
compose up -d --no-build >/dev/null 2>&1
wait_for_leader
got="$("$RAFTMQ" consume "$topic" --subscription restart-check --count "$count" --timeout-secs 30 --json | wc -l)"
echo "confirmed before restart: $count, consumed after restart: $got"
[ "$got" -eq "$count" ] || die "$((count - got)) confirmed messages missing after the restart"
