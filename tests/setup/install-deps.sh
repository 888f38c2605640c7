#!/usr/bin/env bash
# Everything the test suite needs besides the Python packages: OpenSSH's sshd
# (SFTP tests), sshfs (a FUSE network share), xxhsum (benchmarks), systemd-analyze (unit file check), and
# Azurite (Azure tests) from npm into .cache/node. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/../.."

need_apt=()
[ -x /usr/sbin/sshd ] || need_apt+=(openssh-server)
command -v ssh-keygen >/dev/null || need_apt+=(openssh-client)
command -v xxhsum >/dev/null || need_apt+=(xxhash)
command -v systemd-analyze >/dev/null || need_apt+=(systemd)
command -v git >/dev/null || need_apt+=(git)
command -v setpriv >/dev/null || need_apt+=(util-linux)
command -v sshfs >/dev/null || need_apt+=(sshfs)  # a real FUSE network share for the polling tests
if [ ${#need_apt[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

if [ ! -x .cache/node/node_modules/.bin/azurite-blob ]; then
    mkdir -p .cache/node
    npm install --prefix .cache/node --no-audit --no-fund --loglevel=error azurite@3 >/dev/null
fi
