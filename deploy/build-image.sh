#!/usr/bin/env bash
# Builds the raftmq node image without pulling anything: the static binary is
# built on the host, then deploy/Dockerfile.prebuilt puts it in a `scratch`
# image (built into Docker, never pulled). The result is tagged like the image
# deploy/docker-compose.yml names, so `up -d --no-build` uses it.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
    cat <<USAGE
Usage: deploy/build-image.sh [--tag IMAGE] [--skip-cargo]

Builds a static raftmq-node on this machine (cargo, release, crt-static) and
the image $RAFTMQ_IMAGE from deploy/Dockerfile.prebuilt. No registry needed.

  --tag IMAGE    image name to produce (default \$RAFTMQ_IMAGE or raftmq:local)
  --skip-cargo   use the binary already built, do not run cargo
  -h, --help     this text

Then: docker-compose -f deploy/docker-compose.yml up -d --no-build
USAGE
}

skip_cargo=false
while [ $# -gt 0 ]; do
    case "$1" in
        --tag) [ $# -ge 2 ] || die "--tag needs a value"; RAFTMQ_IMAGE="$2"; shift 2 ;;
        --skip-cargo) skip_cargo=true; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done

require_docker
target="$(rustc -vV 2>/dev/null | sed -n 's/^host: //p')" || true
[ -n "$target" ] || die "rustc not found: install Rust (rustup) to build the node"
# Where cargo puts it: CARGO_TARGET_DIR when set (a shared build cache).
binary="$(static_node_binary)"

if ! $skip_cargo; then
    log "building a static raftmq-node for $target (a few minutes the first time)"
    # An env RUSTFLAGS replaces .cargo/config.toml's flags: keep tokio_unstable.
    (cd "$REPO_DIR" && RUSTFLAGS="--cfg tokio_unstable -C target-feature=+crt-static" \
        nice -n 10 cargo build --release --locked --target "$target" -p raftmq-node)
fi
[ -x "$binary" ] || die "no binary at $binary (run without --skip-cargo)"
if ldd "$binary" 2>&1 | grep -q '=>'; then
    die "$binary is dynamically linked; it would not run in a scratch image"
fi

context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
cp "$binary" "$context/raftmq-node"
strip "$context/raftmq-node" 2>/dev/null || true
mkdir "$context/data"
cp "$DEPLOY_DIR/Dockerfile.prebuilt" "$context/Dockerfile"
log "building image $RAFTMQ_IMAGE"
docker build --quiet -t "$RAFTMQ_IMAGE" "$context" >/dev/null
docker image inspect "$RAFTMQ_IMAGE" --format '{{.Id}} {{.Size}}' \
    | awk -v tag="$RAFTMQ_IMAGE" '{ printf "built %s (%s, %.1f MB)\n", tag, substr($1, 1, 19), $2 / 1e6 }'
