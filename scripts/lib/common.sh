# Shared by scripts/test and scripts/demo: install missing Debian packages, configure, build.
# shellcheck shell=bash

MOEGRAD_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
MOEGRAD_PACKAGES=(cmake g++ make pkg-config libfmt-dev doctest-dev libhdf5-dev hdf5-tools
                  libcli11-dev nlohmann-json3-dev libopenmpi-dev openmpi-bin
                  libopenblas-dev libopenblas-openmp-dev libdnnl-dev python3 python3-h5py python3-numpy
                  python3-matplotlib libprotobuf-dev protobuf-compiler python3-venv
                  libpng-dev liblzma-dev python3-torch fortunes)

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# Installs the packages above that are missing (apt-get; sudo when not root).
ensure_packages() {
  local missing=()
  for p in "${MOEGRAD_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing missing packages: ${missing[*]}"
  local sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# configure_and_build BUILD_DIR [cmake args...]: Release by default, all cores.
configure_and_build() {
  local dir=$1
  shift
  log "configuring $dir"
  cmake -S "$MOEGRAD_ROOT" -B "$dir" -DCMAKE_BUILD_TYPE=Release "$@" >"$dir.configure.log" 2>&1 ||
    { cat "$dir.configure.log"; return 1; }
  grep -E '^-- moegrad:' "$dir.configure.log" >&2 || true
  log "building $dir ($(nproc) jobs)"
  cmake --build "$dir" -j"$(nproc)"
}
