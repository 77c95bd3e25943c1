#!/usr/bin/env bash
# Start or stop a Docker engine of the project's own (Debian's docker.io), for the tests that
# run containers. The project's machines come with a docker client but no daemon.
#
#   scripts/dockerd.sh start    start dockerd in the background (unless an engine answers) and
#                               wait for `docker info`; prints the DOCKER_HOST to use
#   scripts/dockerd.sh stop     stop the dockerd this script started, unmount what it left
#   scripts/dockerd.sh status   exit 0 when the engine answers
#
# Its own data root, exec root, pid file, socket and log under $TINKERBELL_DOCKER_DIR (default
# /var/lib/tinkerbell-ci/docker): nothing of a system dockerd's is touched. No bridge and no
# iptables rules on the host: the tests use `--network host`, `--network none` and their own
# `docker network create` networks. Needs root.
set -euo pipefail
dir=${TINKERBELL_DOCKER_DIR:-/var/lib/tinkerbell-ci/docker}
sock=$dir/docker.sock
export DOCKER_HOST=unix://$sock

answers() { timeout 10 docker info >/dev/null 2>&1; }

start() {
  [ "$(id -u)" = 0 ] || { echo "dockerd.sh: needs root" >&2; exit 1; }
  command -v dockerd >/dev/null || { echo "dockerd.sh: dockerd missing (scripts/install-deps.sh installs docker.io)" >&2; exit 1; }
  if answers; then echo "DOCKER_HOST=$DOCKER_HOST"; return; fi
  mkdir -p "$dir/data" "$dir/exec"
  # overlay2 where the kernel has overlayfs (it has on the project's machines), else
  # fuse-overlayfs (the storage driver the machine's own docker setup names).
  local driver=overlay2
  grep -qw overlay /proc/filesystems || driver=fuse-overlayfs
  cat > "$dir/daemon.json" <<EOF
{"storage-driver": "$driver", "log-driver": "json-file", "mtu": 1400}
EOF
  # A stale pid file from a killed run would stop dockerd from starting.
  if [ -f "$dir/dockerd.pid" ] && ! kill -0 "$(cat "$dir/dockerd.pid")" 2>/dev/null; then
    rm -f "$dir/dockerd.pid"
  fi
  nohup dockerd --config-file "$dir/daemon.json" --data-root "$dir/data" --exec-root "$dir/exec" \
    --pidfile "$dir/dockerd.pid" -H "$DOCKER_HOST" --bridge none --iptables=false --ip6tables=false \
    > "$dir/dockerd.log" 2>&1 &
  local pid=$! i
  for i in $(seq 120); do
    if answers; then
      echo "DOCKER_HOST=$DOCKER_HOST"
      echo "dockerd ($driver) up in $((i / 2)) s, log $dir/dockerd.log" >&2
      return
    fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  echo "dockerd.sh: dockerd did not come up; its log ($dir/dockerd.log):" >&2
  tail -n 30 "$dir/dockerd.log" >&2
  exit 1
}

stop() {
  if [ -f "$dir/dockerd.pid" ]; then
    local pid; pid=$(cat "$dir/dockerd.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$dir/dockerd.pid"
  fi
  # dockerd leaves its default netns bind mount (and, when killed, container mounts) behind.
  if [ -d "$dir" ]; then
    awk -v d="$dir/" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r | while read -r m; do
      umount -l "$m" 2>/dev/null || true
    done
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) answers ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
