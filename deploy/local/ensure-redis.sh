#!/usr/bin/env bash
# Prints `export MEMORYOS_REDIS_URL=...` for a reachable Redis, for `eval` in the Makefile.
# 1. MEMORYOS_REDIS_URL (default redis://localhost:6379/0) when it answers PING;
# 2. otherwise a private redis-server on a free port (no persistence), installing Debian's
#    redis-server package when it is missing and we are allowed to (root, apt-get present,
#    MEMORYOS_NO_INSTALL unset); 3. otherwise stop with a message saying what to do.
set -euo pipefail
PY="${PYTHON:-.venv/bin/python}"
URL="${MEMORYOS_REDIS_URL:-redis://localhost:6379/0}"
STATE_DIR="${MEMORYOS_LOCAL_REDIS_DIR:-.memoryos/redis}"

ping_url() {
  "$PY" - "$1" <<'PYEOF' >/dev/null 2>&1
import sys, redis
redis.Redis.from_url(sys.argv[1], socket_connect_timeout=1, socket_timeout=2).ping()
PYEOF
}

if ping_url "$URL"; then
  echo "export MEMORYOS_REDIS_URL='$URL'"
  exit 0
fi

# A private server started by an earlier run of this script?
if [[ -f "$STATE_DIR/url" ]] && ping_url "$(cat "$STATE_DIR/url")"; then
  echo "export MEMORYOS_REDIS_URL='$(cat "$STATE_DIR/url")'"
  exit 0
fi

if ! command -v redis-server >/dev/null 2>&1; then
  if [[ -z "${MEMORYOS_NO_INSTALL:-}" && "$(id -u)" == "0" ]] && command -v apt-get >/dev/null 2>&1; then
    echo "Redis is not reachable at $URL and redis-server is missing: installing Debian's redis-server" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server) >&2
  else
    echo "error: no Redis at $URL and no redis-server to start." >&2
    echo "Start Redis (e.g. 'sudo apt-get install redis-server' or 'docker run -p 6379:6379 redis:7')," >&2
    echo "or set MEMORYOS_REDIS_URL to a reachable Redis, then run this again." >&2
    exit 1
  fi
fi

mkdir -p "$STATE_DIR"
PORT=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
redis-server --port "$PORT" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
  --dir "$(cd "$STATE_DIR" && pwd)" --pidfile "$(cd "$STATE_DIR" && pwd)/redis.pid" \
  --logfile "$(cd "$STATE_DIR" && pwd)/redis.log" >&2
LOCAL="redis://127.0.0.1:$PORT/0"
for _ in $(seq 1 50); do ping_url "$LOCAL" && break; sleep 0.1; done
ping_url "$LOCAL" || { echo "error: started redis-server on port $PORT but it does not answer; see $STATE_DIR/redis.log" >&2; exit 1; }
echo "$LOCAL" > "$STATE_DIR/url"
echo "started a private redis-server at $LOCAL (stop it with: make redis-stop)" >&2
echo "export MEMORYOS_REDIS_URL='$LOCAL'"
