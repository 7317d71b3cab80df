# Shared set-up steps for scripts/serve and scripts/test. Sourced, not run.
# shellcheck shell=bash

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${ACCESSBOT_VENV:-$REPO/.venv}

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

pick_python() {
  local py
  for py in python3.13 python3.12 python3.11 python3; do
    if command -v "$py" >/dev/null 2>&1 &&
       "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$py"; return
    fi
  done
  die "Python >= 3.11 is required (apt-get install python3)"
}

# ensure_venv EXTRAS: create the virtualenv and install the project when
# pyproject.toml changed since the last install (a stamp file remembers).
ensure_venv() {
  local extras=$1 stamp want
  if [[ ! -x $VENV/bin/python ]]; then
    say "creating virtualenv $VENV"
    "$(pick_python)" -m venv "$VENV" || die "python3 -m venv failed (apt-get install python3-venv)"
  fi
  stamp=$VENV/.accessbot-installed
  want="$(sha256sum "$REPO/pyproject.toml" | cut -c1-16)-$extras"
  if [[ ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
    say "installing accessbot${extras:+[$extras]} into $VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -e "$REPO${extras:+[$extras]}"
    echo "$want" >"$stamp"
  fi
}

as_root() {
  if [[ $(id -u) == 0 ]]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else die "need root to run: $*"
  fi
}

# Also what the Sentinel failover drill needs: Debian's redis-sentinel is this same
# binary, run as `redis-server sentinel.conf --sentinel`.
ensure_redis_server() {
  command -v redis-server >/dev/null 2>&1 && return
  say "installing redis-server from Debian packages"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq redis-server >/dev/null
  # The package starts a system-wide instance we do not use.
  as_root systemctl disable --now redis-server >/dev/null 2>&1 || true
  command -v redis-server >/dev/null 2>&1 || die "redis-server still missing after apt-get install"
}
