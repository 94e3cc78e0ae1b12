# Shared helpers for the cluster scripts (sourced, not run).
# Topology: 1 redis-server, 2 imr, 3 im, all on 127.0.0.1.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUN_DIR=${FERRY_RUN_DIR:-$ROOT/run/cluster}
BIN=${FERRY_BIN:-$ROOT/target/release/ferry}
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

# Polls until something accepts on 127.0.0.1:$1 (bounded).
wait_port() {
  local port=$1 name=$2 i
  for i in $(seq 1 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  echo "$name did not start listening on port $port; see $RUN_DIR/$name.log" >&2
  return 1
}
