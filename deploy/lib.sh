# Shared by the deploy scripts (sourced, not run): compose invocation and
# small helpers. Expects `set -euo pipefail` in the caller.

DEPLOY_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$DEPLOY_DIR/.." && pwd)"
COMPOSE_FILE="$DEPLOY_DIR/docker-compose.yml"
RAFTMQ_IMAGE="${RAFTMQ_IMAGE:-raftmq:local}"
export RAFTMQ_IMAGE

die() {
    echo "error: $*" >&2
    exit 1
}

log() {
    echo "[$(date +%H:%M:%S)] $*" >&2
}

# `docker compose` (v2) when present, else `docker-compose` (v1).
compose() {
    if docker compose version >/dev/null 2>&1; then
        docker compose -f "$COMPOSE_FILE" "$@"
    elif command -v docker-compose >/dev/null 2>&1; then
        docker-compose -f "$COMPOSE_FILE" "$@"
    else
        die "neither 'docker compose' nor 'docker-compose' is installed"
    fi
}

require_docker() {
    command -v docker >/dev/null 2>&1 || die "docker is not installed"
    docker info >/dev/null 2>&1 || die "cannot talk to the Docker engine (is it running, may this user use it?)"
}

# Container id of a compose service (empty when it has none).
container_of() {
    compose ps -q "$1" 2>/dev/null | head -n 1
}
