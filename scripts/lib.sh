# Shared helpers for the cluster scripts (sourced, not run).
# Topology: 1 redis-server, 2 imr, 3 im, all on 127.0.0.1.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUN_DIR=${FERRY_RUN_DIR:-$ROOT/run/cluster}
BIN=${FERRY_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/ferry}
REDIS_PORT=${FERRY_REDIS_PORT:-16379}
IMR_PORTS=(4444 4446)        # link ports; HTTP on port+1
IM_TCP_PORTS=(23000 23001 23002)
IM_HTTP_PORTS=(6666 6667 6668)
IM_WS_PORTS=(13891 13892 13893)

imr_list() {
  local out=() p
  for p in "${IMR_PORTS[@]}"; do out+=("127.0.0.1:$p"); done
  (IFS=,; echo "${out[*]}")
}

# True if the pid in $1 is alive and its command line mentions $2.
alive() {
  local pidfile=$1 pattern=$2 pid
  [ -f "$pidfile" ] || return 1
  pid=$(cat "$pidfile")
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$pattern"
}

# True if nothing accepts connections on 127.0.0.1:$1.
port_free() {
  ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Polls until something accepts on 127.0.0.1:$1 (bounded).
# $3 = pid of the process that should be listening: fail early if it exited.
wait_port() {
  local port=$1 name=$2 pid=${3:-} i
  for i in $(seq 1 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
      echo "$name exited during startup; see $RUN_DIR/$name.log:" >&2
      tail -n 5 "$RUN_DIR/$name.log" >&2 || true
      return 1
    fi
    sleep 0.05
  done
  echo "$name did not start listening on port $port; see $RUN_DIR/$name.log" >&2
  return 1
}

# Body of GET http://127.0.0.1:$1$2 (HTTP/1.0, no curl needed); empty on failure.
http_get() {
  local port=$1 path=$2
  timeout 2 bash -c '
    exec 3<>"/dev/tcp/127.0.0.1/$0" || exit 1
    printf "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n" "$1" >&3
    sed "1,/^\r\$/d" <&3' "$port" "$path" 2>/dev/null || true
}
