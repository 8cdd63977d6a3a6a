#!/usr/bin/env bash
# Chaos run against the compose cluster: while raftmq-check publishes with
# confirms and consumes with acks, inject faults one at a time (SIGKILL the
# leader and start it again, crash a node and let the restart policy bring it
# back, pause a node, cut a node off the network), heal, wait for the cluster
# to agree on a leader, repeat. Then stop the checker and print its figures.
# Exit status is the checker's: 0 only with 0 lost and 0 order violations.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
    cat <<USAGE
Usage: deploy/chaos.sh [options]

Brings the compose cluster up (building the image offline if it is missing),
runs the checker against localhost:7001-7003 and injects faults in turn:
  kill-leader        docker kill -s KILL the leader, docker start it after the fault time
  pause-leader       docker pause / unpause the leader
  disconnect-leader  docker network disconnect / connect the leader
  crash-follower     kill -9 a follower's process from the host; the restart policy revives it
  pause-follower     docker pause / unpause a follower
  disconnect-follower
Every wait is bounded; the whole run stops at --timeout-secs.

Options:
  --faults N          faults to inject (default 24)
  --fault-secs S      how long each fault lasts (default 6; a leader fault shorter
                      than a failover under load may not move the leadership)
  --settle-secs S     pause after the cluster recovered, before the next fault (default 2)
  --rate R            messages per second the checker publishes (default 500)
  --timeout-secs S    bound on the fault phase (default 900)
  --drain-secs S      bound on the checker's final drain (default 120)
  --fresh             remove the cluster and its volumes first (docker compose down -v)
  --down              remove the cluster and its volumes at the end
  -h, --help          this text

Environment: RAFTMQ_IMAGE (default raftmq:local), RAFTMQ_BIN_DIR (where raftmq
and raftmq-check are; default: build them with cargo into target/debug).
The cluster runs with TLS and tokens: the secrets deploy/make-secrets.sh
makes (it runs when deploy/secrets/ is missing); the checker and the CLI
use its CA and the admin token.
Needs: docker, docker compose or docker-compose, jq, Rust (cargo), and root
for the crash-follower fault's kill -9 of a container's process (without
root it becomes kill-follower: docker kill, then docker start).
USAGE
}

faults=24
fault_secs=6
settle_secs=2
rate=500
timeout_secs=900
drain_secs=120
fresh=false
down=false
while [ $# -gt 0 ]; do
    case "$1" in
        --faults) faults="${2:?--faults needs a value}"; shift 2 ;;
        --fault-secs) fault_secs="${2:?--fault-secs needs a value}"; shift 2 ;;
        --settle-secs) settle_secs="${2:?--settle-secs needs a value}"; shift 2 ;;
        --rate) rate="${2:?--rate needs a value}"; shift 2 ;;
        --timeout-secs) timeout_secs="${2:?--timeout-secs needs a value}"; shift 2 ;;
        --drain-secs) drain_secs="${2:?--drain-secs needs a value}"; shift 2 ;;
        --fresh) fresh=true; shift ;;
        --down) down=true; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done
for number in "$faults" "$fault_secs" "$settle_secs" "$rate" "$timeout_secs" "$drain_secs"; do
    [[ "$number" =~ ^[0-9]+$ ]] || die "not a whole number: $number"
done
[ "$faults" -le 1000 ] || die "--faults is at most 1000"

SERVERS="127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003"
NODES=(node1 node2 node3)
# How long the cluster may take to agree on a leader after a heal.
RECOVERY_SECS_MAX=60

require_docker
command -v jq >/dev/null 2>&1 || die "jq is not installed"

# --- binaries --------------------------------------------------------------

if [ -n "${RAFTMQ_BIN_DIR:-}" ]; then
    bin_dir="$RAFTMQ_BIN_DIR"
else
    log "building raftmq and raftmq-check (cargo, debug)"
    (cd "$REPO_DIR" && nice -n 10 cargo build --quiet -p raftmq-client --bins)
    bin_dir="${CARGO_TARGET_DIR:-$REPO_DIR/target}/debug"
fi
RAFTMQ="$bin_dir/raftmq"
CHECK="$bin_dir/raftmq-check"
[ -x "$RAFTMQ" ] && [ -x "$CHECK" ] || die "raftmq and raftmq-check not found in $bin_dir"

# --- cluster -----------------------------------------------------------------

if ! docker image inspect "$RAFTMQ_IMAGE" >/dev/null 2>&1; then
    log "image $RAFTMQ_IMAGE missing: building it offline"
    "$DEPLOY_DIR/build-image.sh"
fi
# TLS and tokens: the cluster needs its secrets, the checker the CA and a token.
use_secrets
if $fresh; then
    log "removing the old cluster and its volumes"
    compose down -v --remove-orphans >/dev/null 2>&1
fi
if ! up_output="$(compose up -d --no-build 2>&1)"; then
    echo "$up_output" >&2
    die "bringing the cluster up failed"
fi

declare -A CONTAINER
for node in "${NODES[@]}"; do
    CONTAINER[$node]="$(container_of "$node")"
    [ -n "${CONTAINER[$node]}" ] || die "no container for $node"
done
NETWORK="$(docker inspect -f '{{range $name, $_ := .NetworkSettings.Networks}}{{$name}} {{end}}' "${CONTAINER[node1]}" | awk '{print $1}')"
[ -n "$NETWORK" ] || die "cannot find the compose network of node1"

# The leader's node id when every node answers and names the same leader,
# else nothing.
agreed_leader() {
    "$RAFTMQ" --servers "$SERVERS" --deadline-secs 2 cluster status --json 2>/dev/null \
        | jq -r '[.nodes[] | .status.leader_id // "none"] as $views
                 | if ($views | length) == 3 and ($views | unique | length) == 1 and $views[0] != "none"
                   then $views[0] else empty end' 2>/dev/null || true
}

# Waits (bounded) until the cluster agrees on a leader; prints its id.
wait_for_leader() {
    local deadline=$((SECONDS + RECOVERY_SECS_MAX)) leader=""
    while [ $SECONDS -lt $deadline ]; do
        leader="$(agreed_leader)"
        if [ -n "$leader" ]; then
            echo "$leader"
            return 0
        fi
        sleep 0.5
    done
    return 1
}

# Undoes every fault that may be in place; safe to call at any time.
heal_all() {
    local node cid
    for node in "${NODES[@]}"; do
        cid="${CONTAINER[$node]}"
        if [ "$(docker inspect -f '{{.State.Paused}}' "$cid" 2>/dev/null)" = "true" ]; then
            docker unpause "$cid" >/dev/null 2>&1 || true
        fi
        if [ "$(docker inspect -f '{{.State.Running}}' "$cid" 2>/dev/null)" = "false" ]; then
            docker start "$cid" >/dev/null 2>&1 || true
        fi
        if ! docker inspect -f '{{range $name, $_ := .NetworkSettings.Networks}}{{$name}} {{end}}' "$cid" 2>/dev/null | grep -qw "$NETWORK"; then
            docker network connect --alias "$node" "$NETWORK" "$cid" >/dev/null 2>&1 || true
        fi
    done
}

checker_pid=""
cleanup() {
    heal_all
    if [ -n "$checker_pid" ] && kill -0 "$checker_pid" 2>/dev/null; then
        kill -INT "$checker_pid" 2>/dev/null || true
    fi
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

log "waiting for the cluster to elect a leader"
leader="$(wait_for_leader)" || die "no leader within ${RECOVERY_SECS_MAX}s; see: $RAFTMQ --servers $SERVERS cluster status"
log "leader is node$leader"

# --- checker -----------------------------------------------------------------

run_dir="$(mktemp -d "${TMPDIR:-/tmp}/raftmq-chaos.XXXXXX")"
log "checker output in $run_dir (check.out, check.log)"
"$CHECK" --servers "$SERVERS" --rate "$rate" \
    --duration-secs $((timeout_secs + 60)) --drain-secs "$drain_secs" \
    >"$run_dir/check.out" 2>"$run_dir/check.log" &
checker_pid=$!
sleep 3
kill -0 "$checker_pid" 2>/dev/null || { cat "$run_dir/check.log" >&2; die "the checker stopped at once"; }

# --- faults ------------------------------------------------------------------

KINDS=(kill-leader pause-leader disconnect-leader crash-follower pause-follower disconnect-follower)
if [ "$(id -u)" -ne 0 ]; then
    log "not root: crash-follower (kill -9 from the host) is replaced by kill-follower"
    KINDS[3]=kill-follower
fi

# A node other than the leader, chosen by the fault number.
follower_of() {
    local leader="$1" index="$2" candidates=()
    for node in 1 2 3; do
        [ "$node" = "$leader" ] || candidates+=("$node")
    done
    echo "${candidates[$((index % 2))]}"
}

progress() {
    grep 't=' "$run_dir/check.log" 2>/dev/null | tail -n 1 | sed 's/^raftmq-check: //' || true
}

started=$SECONDS
injected=0
recovery_longest=0
for ((i = 1; i <= faults; i++)); do
    if [ $((SECONDS - started)) -ge "$timeout_secs" ]; then
        log "time bound of ${timeout_secs}s reached after $injected faults"
        break
    fi
    kill -0 "$checker_pid" 2>/dev/null || { log "the checker exited early"; break; }
    kind="${KINDS[$(((i - 1) % ${#KINDS[@]}))]}"
    leader="$(wait_for_leader)" || { log "no agreed leader before fault $i; healing and retrying"; heal_all; continue; }
    case "$kind" in
        *-leader) target="$leader" ;;
        *) target="$(follower_of "$leader" "$i")" ;;
    esac
    node="node$target"
    cid="${CONTAINER[$node]}"
    log "fault $i/$faults: $kind on $node"
    case "$kind" in
        kill-*)
            docker kill -s KILL "$cid" >/dev/null
            sleep "$fault_secs"
            docker start "$cid" >/dev/null
            ;;
        crash-*)
            pid="$(docker inspect -f '{{.State.Pid}}' "$cid")"
            [ "$pid" -gt 1 ] || die "no process id for $node"
            kill -9 "$pid"
            sleep "$fault_secs"
            ;;
        pause-*)
            docker pause "$cid" >/dev/null
            sleep "$fault_secs"
            docker unpause "$cid" >/dev/null
            ;;
        disconnect-*)
            docker network disconnect "$NETWORK" "$cid" >/dev/null
            sleep "$fault_secs"
            docker network connect --alias "$node" "$NETWORK" "$cid" >/dev/null
            ;;
    esac
    injected=$((injected + 1))
    heal_all
    healed=$SECONDS
    if leader="$(wait_for_leader)"; then
        took=$((SECONDS - healed))
        [ $took -le $recovery_longest ] || recovery_longest=$took
        if [ "$leader" = "$target" ]; then moved="stayed on"; else moved="now"; fi
        log "  healed after ${took}s; leader $moved node$leader | $(progress)"
    else
        log "  healed; no agreed leader within ${RECOVERY_SECS_MAX}s | $(progress)"
    fi
    sleep "$settle_secs"
done

# --- verdict -----------------------------------------------------------------

log "$injected faults injected in $((SECONDS - started))s (longest recovery after a heal: ${recovery_longest}s); stopping the checker"
heal_all
kill -INT "$checker_pid" 2>/dev/null || true
wait_deadline=$((SECONDS + drain_secs + 60))
while kill -0 "$checker_pid" 2>/dev/null && [ $SECONDS -lt $wait_deadline ]; do
    sleep 1
done
if kill -0 "$checker_pid" 2>/dev/null; then
    kill -KILL "$checker_pid" 2>/dev/null || true
    die "the checker did not finish its drain; see $run_dir/check.log"
fi
status=0
wait "$checker_pid" || status=$?
checker_pid=""

cat "$run_dir/check.out"
echo "faults injected: $injected (kinds: ${KINDS[*]})"
if $down; then
    log "removing the cluster and its volumes"
    compose down -v >/dev/null 2>&1 || true
fi
exit "$status"
