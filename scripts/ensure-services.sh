#!/usr/bin/env bash
# Make sure what the test suite uses is here and running on loopback:
# PostgreSQL, Redis, Chromium, Node.js and nginx (Debian's packages; the browser tests
# drive /usr/bin/chromium with Playwright and run seed 002's portal backend
# with Node; the gateway's test runs nginx's auth_request in front of an application).
# Installs them with apt when missing
# and we are root.
set -euo pipefail

PG_USER=iam
PG_PASSWORD=iam

need_apt=()
command -v pg_ctlcluster >/dev/null 2>&1 || need_apt+=(postgresql)
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
[ -x /usr/sbin/nginx ] || need_apt+=(nginx)

if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "Missing Debian packages: ${need_apt[*]}. Install them (sudo apt-get install ${need_apt[*]}) and retry." >&2
    exit 1
  fi
  echo "Installing ${need_apt[*]} ..."
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# PostgreSQL: start the default cluster and make a login that may create the test database.
pg_version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
if ! pg_lsclusters -h | awk '{print $1" "$2}' | grep -q "^$pg_version main$"; then
  pg_createcluster "$pg_version" main >/dev/null
fi
if ! pg_lsclusters -h | grep -q "^$pg_version *main .* online"; then
  pg_ctlcluster "$pg_version" main start
fi
for _ in $(seq 1 30); do
  pg_isready -q -h 127.0.0.1 -p 5432 && break
  sleep 0.5
done
as_postgres() { if [ "$(id -u)" -eq 0 ]; then su postgres -c "$1"; else sudo -u postgres sh -c "$1"; fi; }
as_postgres "psql -q -tAc \"SELECT 1 FROM pg_roles WHERE rolname='$PG_USER'\" | grep -q 1 || psql -q -c \"CREATE ROLE $PG_USER LOGIN CREATEDB PASSWORD '$PG_PASSWORD'\""
as_postgres "psql -q -tAc \"SELECT 1 FROM pg_database WHERE datname='$PG_USER'\" | grep -q 1 || createdb -O $PG_USER $PG_USER"
echo "PostgreSQL ready: postgres://$PG_USER:$PG_PASSWORD@127.0.0.1:5432/$PG_USER"

# Redis on loopback for the background-work tests (they use database 15 and
# start their own throwaway servers for the fault tests).
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  redis-server --port 6379 --bind 127.0.0.1 --daemonize yes --save "" --appendonly no >/dev/null
  for _ in $(seq 1 30); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 0.2; done
fi
echo "Redis ready: redis://127.0.0.1:6379"

# Seed 002's portal backend (express, axios) for the embedding browser test.
if [ ! -d tests/portal/node_modules ]; then
  (cd tests/portal && npm ci --no-audit --no-fund --loglevel=error)
fi
