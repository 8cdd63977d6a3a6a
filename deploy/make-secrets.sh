#!/usr/bin/env bash
# Makes the compose cluster's development secrets in deploy/secrets/
# (ignored by git): a CA, a certificate and key for each node, a users file
# with an admin and an application user, and their tokens. The compose
# cluster mounts the directory read-only and runs with TLS and client
# authentication on.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
    cat <<USAGE
Usage: deploy/make-secrets.sh [--force]

Writes into $SECRETS_DIR:
  ca.pem                         the development CA (clients trust it: --tls-ca)
  node-N.pem, node-N.key         node N's certificate (names nodeN, localhost, 127.0.0.1)
  users.toml                     users "admin" (everything) and "app" (publish and consume)
  admin.token, app.token         their tokens (NAME:SECRET; --token-file)
Does nothing when ca.pem exists, unless --force. The certificates carry the
cluster id \$RAFTMQ_CLUSTER_ID (default: $RAFTMQ_CLUSTER_ID).

Uses raftmq-node from \$RAFTMQ_NODE_BIN, else the static binary
deploy/build-image.sh built, else builds one with cargo.

Development secrets: the key files are readable by everyone on this
machine, because the nodes run as uid 65532 inside their containers and
read them through a bind mount. A production cluster issues its
certificates from its own PKI and keeps keys private.
USAGE
}

force=false
while [ $# -gt 0 ]; do
    case "$1" in
        --force) force=true; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done

if [ -f "$SECRETS_DIR/ca.pem" ] && ! $force; then
    log "secrets already in $SECRETS_DIR (--force makes new ones)"
    exit 0
fi
command -v jq >/dev/null 2>&1 || die "jq is not installed"

node_bin="${RAFTMQ_NODE_BIN:-}"
if [ -z "$node_bin" ]; then
    node_bin="$(static_node_binary)"
    if [ ! -x "$node_bin" ]; then
        log "building raftmq-node (cargo, debug) to make the secrets"
        (cd "$REPO_DIR" && nice -n 10 cargo build --quiet --locked -p raftmq-node)
        node_bin="${CARGO_TARGET_DIR:-$REPO_DIR/target}/debug/raftmq-node"
    fi
fi
[ -x "$node_bin" ] || die "no raftmq-node at $node_bin"

rm -rf "$SECRETS_DIR"
mkdir -p "$SECRETS_DIR"
"$node_bin" certs --out "$SECRETS_DIR" --cluster-id "$RAFTMQ_CLUSTER_ID" \
    --node 1=node1+localhost+127.0.0.1 \
    --node 2=node2+localhost+127.0.0.1 \
    --node 3=node3+localhost+127.0.0.1 >/dev/null

users="$SECRETS_DIR/users.toml"
echo "# The compose cluster's users (deploy/make-secrets.sh); read again on SIGHUP." >"$users"
add_user() {
    local name="$1" permissions="$2" made
    made="$("$node_bin" token "$name" --json)"
    jq -r .token <<<"$made" >"$SECRETS_DIR/$name.token"
    chmod 0600 "$SECRETS_DIR/$name.token"
    printf '\n[[user]]\nname = "%s"\nsecret = "%s"\n%s\n' \
        "$name" "$(jq -r .secret <<<"$made")" "$permissions" >>"$users"
}
add_user admin $'publish = ["*"]\nconsume = ["*"]\nmanage = ["*"]\nadmin = true'
add_user app $'publish = ["*"]\nconsume = ["*"]'
chmod 0755 "$SECRETS_DIR"
chmod 0644 "$SECRETS_DIR"/*.pem "$SECRETS_DIR"/*.key "$users"
log "secrets for cluster $RAFTMQ_CLUSTER_ID in $SECRETS_DIR"
