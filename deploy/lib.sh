# Shared by the deploy scripts (sourced, not run): compose invocation and
# small helpers. Expects `set -euo pipefail` in the caller.

DEPLOY_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$DEPLOY_DIR/.." && pwd)"
COMPOSE_FILE="$DEPLOY_DIR/docker-compose.yml"
RAFTMQ_IMAGE="${RAFTMQ_IMAGE:-raftmq:local}"
export RAFTMQ_IMAGE
# The compose cluster's certificates, users and tokens (make-secrets.sh).
SECRETS_DIR="$DEPLOY_DIR/secrets"
RAFTMQ_CLUSTER_ID="${RAFTMQ_CLUSTER_ID:-compose}"
export RAFTMQ_CLUSTER_ID

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

# Where deploy/build-image.sh leaves the static raftmq-node.
static_node_binary() {
    local target
    target="$(rustc -vV 2>/dev/null | sed -n 's/^host: //p')" || true
    echo "${CARGO_TARGET_DIR:-$REPO_DIR/target}/${target:-unknown}/release/raftmq-node"
}

# Makes the secrets when they are missing, and points this script's
# clients (the raftmq CLI, raftmq-check) at the CA and the admin's token.
use_secrets() {
    [ -f "$SECRETS_DIR/ca.pem" ] || "$DEPLOY_DIR/make-secrets.sh"
    export RAFTMQ_TLS_CA="$SECRETS_DIR/ca.pem"
    export RAFTMQ_TOKEN_FILE="$SECRETS_DIR/admin.token"
}
