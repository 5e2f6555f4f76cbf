#!/usr/bin/env bash
# Installs what test-looper needs on this machine, idempotently. Each group can be asked for alone:
#   deploy/install_deps.sh [redis] [test] [oidc] [xterm] [all]      (default: all)
#   redis  redis-server (Debian)
#   test   everything the test suite needs: redis, chromium + chromium-driver, busybox-static,
#          bash-static, libjs-xterm, openssl (Debian; TLS tests make certificates), moto[server] and oidc-provider-mock==0.3.4 (the
#          OpenID Connect provider the auth crate's tests log in against) in a venv under the
#          cache dir (PyPI)
#   oidc   oidc-provider-mock (PyPI, pinned) in the venv under the cache dir, for the auth tests
#   xterm  xterm.js 5.5.0 unpacked from the pinned PyPI package pyttyd==2.0.2 into static/vendor
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${TEST_LOOPER_CACHE:-$HOME/.cache/test-looper}"
mkdir -p "$cache"

apt_updated=0
apt_install() {
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    echo "install_deps: apt-get install ${missing[*]}"
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    if [ "$apt_updated" = 0 ]; then $sudo apt-get update -qq; apt_updated=1; fi
    $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

install_redis() { apt_install redis-server; }

install_moto() {
    local venv="$cache/venv"
    if [ -x "$venv/bin/moto_server" ]; then return 0; fi
    echo "install_deps: pip install moto[server] into $venv"
    apt_install python3-venv 2>/dev/null || true
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q 'moto[server]'
}

# A real OpenID Connect provider for test_looper_auth's tests, in the same venv as moto.
# Pinned: 0.4.x needs a newer Python than this machine's 3.11.
OIDC_PROVIDER_MOCK_VERSION="0.3.4"
install_oidc_provider_mock() {
    local venv="$cache/venv"
    if [ -x "$venv/bin/oidc-provider-mock" ] \
        && "$venv/bin/pip" show oidc-provider-mock 2>/dev/null | grep -qx "Version: $OIDC_PROVIDER_MOCK_VERSION"; then
        return 0
    fi
    echo "install_deps: pip install oidc-provider-mock==$OIDC_PROVIDER_MOCK_VERSION into $venv"
    if [ ! -x "$venv/bin/pip" ]; then
        apt_install python3-venv 2>/dev/null || true
        python3 -m venv "$venv"
    fi
    "$venv/bin/pip" install -q "oidc-provider-mock==$OIDC_PROVIDER_MOCK_VERSION"
}

# Pinned: the package and the three files we serve.
XTERM_WHEEL="pyttyd-2.0.2-py3-none-any.whl"
XTERM_WHEEL_SHA256="a08587684f5c4e722671d551ca012bd81e9b0893e6f73be6fd3d0b9ccbb09f06"
XTERM_FILES="
pyttyd/static/js/xterm.js 4196e242ef1cf4c2adead8d97f4a772a69576076f70b095e004b4abbb049e7bf
pyttyd/static/js/xterm-addon-fit.js a6a7bbb33569f16aa3e18d71425e34d035fc89a0b7e8cba084f8855f91aa38f1
pyttyd/static/css/xterm.css 125f4259737b69cb58502a0fe1fe993540b813f4f3351481652bc6458f3b1abb
"

install_xterm() {
    local dest="$root/static/vendor/xterm"
    if [ -f "$dest/.installed" ]; then return 0; fi
    local wheel_dir="$cache/wheels"
    mkdir -p "$wheel_dir" "$dest"
    if [ ! -f "$wheel_dir/$XTERM_WHEEL" ]; then
        echo "install_deps: pip download pyttyd==2.0.2 (xterm.js 5.5.0)"
        python3 -m pip download -q --no-deps pyttyd==2.0.2 -d "$wheel_dir"
    fi
    echo "$XTERM_WHEEL_SHA256  $wheel_dir/$XTERM_WHEEL" | sha256sum -c --quiet
    python3 - "$wheel_dir/$XTERM_WHEEL" "$dest" <<PY
import hashlib, os, sys, zipfile
wheel, dest = sys.argv[1], sys.argv[2]
pins = [line.split() for line in """$XTERM_FILES""".strip().splitlines()]
with zipfile.ZipFile(wheel) as z:
    for name, digest in pins:
        data = z.read(name)
        if hashlib.sha256(data).hexdigest() != digest:
            sys.exit(f"hash mismatch for {name}")
        with open(os.path.join(dest, os.path.basename(name)), "wb") as out:
            out.write(data)
PY
    touch "$dest/.installed"
}

install_test() {
    apt_install redis-server chromium chromium-driver busybox-static bash-static libjs-xterm git openssl
    install_moto
    install_oidc_provider_mock
    install_xterm
}

groups=("$@")
[ "${#groups[@]}" -gt 0 ] || groups=(all)
for group in "${groups[@]}"; do
    case "$group" in
        redis) install_redis ;;
        oidc) install_oidc_provider_mock ;;
        xterm) install_xterm ;;
        test|all) install_test ;;
        *) echo "usage: $0 [redis] [test] [oidc] [xterm] [all]" >&2; exit 2 ;;
    esac
done
