# Sourced by dev/image/*: podman with the repository's configuration (never /etc/containers) and
# its own storage, so the base image and the build's layers are cached between runs.
# Needs root (the project's machines and CI run as root); installs podman and debootstrap from
# Debian's packages when they are missing.

IMAGE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$IMAGE_DIR/../.." && pwd)"
FPI_CACHE="${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/freshpaint-iterable"

# The base image (Debian bookworm's Python 3.11, made by dev/image/base) and the image under test.
BASE_TAG="${FPI_BASE_IMAGE:-localhost/freshpaint-iterable-base:python3.11-bookworm}"
IMAGE_TAG="${FPI_IMAGE:-localhost/freshpaint-iterable:test}"
# Bump when the base image's recipe changes, so cached ones are rebuilt.
BASE_RECIPE=1

export CONTAINERS_CONF="$IMAGE_DIR/containers.conf"
export CONTAINERS_STORAGE_CONF="$IMAGE_DIR/storage.conf"
export CONTAINERS_REGISTRIES_CONF="$IMAGE_DIR/registries.conf"

PODMAN_ROOT="${FPI_PODMAN_ROOT:-$FPI_CACHE/podman}"
# Run state lives on /run (a tmpfs): podman detects a reboot by its files there disappearing.
PODMAN_RUN="${FPI_PODMAN_RUN:-/run/freshpaint-iterable-podman}"

log() { echo "dev/image: $*" >&2; }

pm() {
  podman --root "$PODMAN_ROOT/storage" --runroot "$PODMAN_RUN/storage" --tmpdir "$PODMAN_RUN/libpod" "$@"
}

ensure_tools() {
  local missing=()
  command -v podman >/dev/null || missing+=(podman buildah runc uidmap slirp4netns)
  command -v runc >/dev/null || missing+=(runc)
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  if [[ ${#missing[@]} -gt 0 ]]; then
    [[ $(id -u) -eq 0 ]] || { log "needs ${missing[*]} (apt-get install as root)"; return 1; }
    log "installing ${missing[*]} from Debian's packages"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  [[ $(id -u) -eq 0 ]] || { log "podman here runs as root (no subordinate ids for rootless)"; return 1; }
  mkdir -p "$PODMAN_ROOT" "$PODMAN_RUN"
}
