#!/usr/bin/env bash
# Set up this machine for p2pfaas: a virtualenv with the project, and, where we are root on Debian,
# the Docker engine, MariaDB and debootstrap from Debian's packages, started if not running.
# Idempotent. Sourced by scripts/test.sh and scripts/demo.sh; safe to run on its own.
#   P2PFAAS_SERVICES=0  skip the system services (tests that need them then skip, with a reason)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { printf '[setup] %s\n' "$*" >&2; }

setup_venv() {
    if [ ! -x .venv/bin/python ]; then
        log "creating .venv"
        python3 -m venv .venv
    fi
    if ! .venv/bin/python -c 'import p2pfaas, pytest, hypothesis, mypy' 2>/dev/null \
        || [ pyproject.toml -nt .venv/.installed ]; then
        log "installing p2pfaas and its development tools into .venv"
        .venv/bin/pip install -q --upgrade pip
        .venv/bin/pip install -q -e '.[dev]'
        touch .venv/.installed
    fi
}

wait_for() {  # wait_for SECONDS COMMAND...
    local deadline=$((SECONDS + $1)); shift
    until "$@" >/dev/null 2>&1; do
        if [ "$SECONDS" -ge "$deadline" ]; then return 1; fi
        sleep 1
    done
}

setup_services() {
    if [ "${P2PFAAS_SERVICES:-1}" = 0 ]; then log "P2PFAAS_SERVICES=0: not touching system services"; return; fi
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        log "not root on Debian: install docker.io, mariadb-server, debootstrap, iproute2, iptables, tcpdump and tmux yourself for the full test suite"
        return
    fi
    local need=()
    command -v dockerd >/dev/null || need+=(docker.io)
    command -v mariadbd >/dev/null || need+=(mariadb-server)
    command -v debootstrap >/dev/null || need+=(debootstrap)
    command -v ip >/dev/null || need+=(iproute2)  # the network lab (p2pfaas/lab)
    command -v iptables >/dev/null || need+=(iptables)
    command -v tcpdump >/dev/null || need+=(tcpdump)  # the lab's capture of what an on-path observer sees
    command -v tmux >/dev/null || need+=(tmux)  # `p2pfaas top` is tested in a real terminal
    if [ ${#need[@]} -gt 0 ]; then
        log "installing ${need[*]} from Debian's packages"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    fi
    if ! docker info >/dev/null 2>&1; then
        log "starting dockerd (log: /var/log/p2pfaas-dockerd.log)"
        nohup dockerd >/var/log/p2pfaas-dockerd.log 2>&1 &
        wait_for 60 docker info || { log "dockerd did not start"; tail -20 /var/log/p2pfaas-dockerd.log; exit 1; }
    fi
    if ! mariadb -e 'SELECT 1' >/dev/null 2>&1; then
        log "starting mariadbd (log: /var/log/p2pfaas-mariadb.log)"
        mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
        nohup mariadbd --user=mysql >/var/log/p2pfaas-mariadb.log 2>&1 &
        wait_for 60 mariadb -e 'SELECT 1' || { log "mariadbd did not start"; tail -20 /var/log/p2pfaas-mariadb.log; exit 1; }
    fi
    # The test database and user that tests/conftest.py expects.
    mariadb <<'SQL'
CREATE DATABASE IF NOT EXISTS p2pfaas_test;
CREATE USER IF NOT EXISTS 'p2pfaas'@'127.0.0.1' IDENTIFIED BY 'p2pfaas';
CREATE USER IF NOT EXISTS 'p2pfaas'@'localhost' IDENTIFIED BY 'p2pfaas';
GRANT ALL ON p2pfaas_test.* TO 'p2pfaas'@'127.0.0.1';
GRANT ALL ON p2pfaas_test.* TO 'p2pfaas'@'localhost';
GRANT ALL ON `p2pfaas\_test\_%`.* TO 'p2pfaas'@'127.0.0.1';
GRANT ALL ON `p2pfaas\_test\_%`.* TO 'p2pfaas'@'localhost';
SQL
}

setup_runtime_image() {
    if docker info >/dev/null 2>&1; then
        log "building the function runtime image (skipped if current)"
        .venv/bin/p2pfaas runtime build
    fi
}

setup_venv
setup_services
setup_runtime_image
