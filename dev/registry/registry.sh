#!/usr/bin/env bash
# A real schema registry for development and the integration tests: Apicurio Registry 3.0.9 from
# Maven Central (the attached `all` tar.gz of io.apicurio:apicurio-registry-app), in-memory H2
# storage, on 127.0.0.1. Its Confluent-compatible API is at http://127.0.0.1:$REGISTRY_PORT/apis/ccompat/v7.
#
#   dev/registry/registry.sh start     unpack if needed, start, wait until GET /subjects answers 200
#   dev/registry/registry.sh stop      SIGTERM to our own recorded pid, SIGKILL after a timeout
#   dev/registry/registry.sh status    running or not
#   dev/registry/registry.sh fetch     download and unpack only
#   dev/registry/registry.sh env       print SCHEMA_REGISTRY_URL=... for eval
#
# Environment (all optional):
#   REGISTRY_PORT=18081           HTTP port; REGISTRY_MANAGEMENT_PORT defaults to REGISTRY_PORT+1
#   REGISTRY_RUN_DIR=...          run folder (default: .registry-run beside the repository root)
#   REGISTRY_HOME=...             unpacked app (default: ~/.cache/freshpaint-iterable/apicurio-<version>)
#   REGISTRY_VERSION=3.0.9        Apicurio version (3.0.x ships a runner jar plus lib/)
#   REGISTRY_START_TIMEOUT=90, REGISTRY_STOP_TIMEOUT=20, REGISTRY_HEAP_OPTS="-Xmx256m"
#   MVN=mvn, JAVA=java (or JAVA_HOME)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

version="${REGISTRY_VERSION:-3.0.9}"
port="${REGISTRY_PORT:-18081}"
management_port="${REGISTRY_MANAGEMENT_PORT:-$((port + 1))}"
run_dir="${REGISTRY_RUN_DIR:-$repo/.registry-run}"
app_home="${REGISTRY_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/freshpaint-iterable/apicurio-$version}"
start_timeout="${REGISTRY_START_TIMEOUT:-90}"
stop_timeout="${REGISTRY_STOP_TIMEOUT:-20}"
heap_opts="${REGISTRY_HEAP_OPTS:--Xmx256m}"
mvn="${MVN:-mvn}"
if [[ -n "${JAVA:-}" ]]; then java="$JAVA"
elif [[ -n "${JAVA_HOME:-}" ]]; then java="$JAVA_HOME/bin/java"
else java="java"; fi

pid_file="$run_dir/registry.pid"
log_file="$run_dir/registry.log"
url="http://127.0.0.1:$port/apis/ccompat/v7"

die() { echo "registry.sh: $*" >&2; exit 1; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
recorded_pid() { [[ -f "$pid_file" ]] && cat "$pid_file" || true; }
alive() { [[ -n "$1" ]] && kill -0 "$1" 2>/dev/null; }
runner_jar() { compgen -G "$app_home/apicurio-registry-app-*-runner.jar" | head -n 1; }

log_tail() {
  [[ -f "$log_file" ]] || return 0
  echo "---- last 60 lines of $log_file ----" >&2
  tail -n 60 "$log_file" >&2
}

ready() {  # GET /subjects must answer 200
  { exec 3<>"/dev/tcp/127.0.0.1/$port"; } 2>/dev/null || return 1
  printf 'GET /apis/ccompat/v7/subjects HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
  local status
  read -r -t 5 status <&3 || status=""
  exec 3<&-
  [[ "$status" == *" 200 "* ]]
}

fetch() {
  [[ -n "$(runner_jar)" ]] && return 0
  echo "registry.sh: fetching io.apicurio:apicurio-registry-app:$version:tar.gz:all from Maven Central" >&2
  local tmp="$app_home.tmp"
  rm -rf "$tmp"
  mkdir -p "$tmp/dl"
  # Plugin 2.8 copies the file alone; 3.x also reads the artifact's parent POM, which Apicurio
  # did not publish for 3.0.9. Run outside any project so no POM is involved.
  (cd "$tmp" && "$mvn" -B -q org.apache.maven.plugins:maven-dependency-plugin:2.8:copy \
    -Dartifact="io.apicurio:apicurio-registry-app:$version:tar.gz:all" -DoutputDirectory="$tmp/dl" >&2) \
    || die "Maven could not fetch Apicurio Registry $version (see the output above)"
  tar -xzf "$tmp"/dl/*.tar.gz -C "$tmp"
  rm -rf "$tmp/dl"
  compgen -G "$tmp/apicurio-registry-app-*-runner.jar" >/dev/null \
    || die "no runner jar in the Apicurio archive (3.1.7+ ship quarkus-app/ instead; use 3.0.x)"
  rm -rf "$app_home"
  mv "$tmp" "$app_home"
}

stop() {
  local pid
  pid="$(recorded_pid)"
  if ! alive "$pid"; then
    rm -f "$pid_file"
    echo "registry.sh: not running"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  local waited=0
  while alive "$pid" && ((waited < stop_timeout * 2)); do sleep 0.5; waited=$((waited + 1)); done
  if alive "$pid"; then
    echo "registry.sh: pid $pid still alive after ${stop_timeout}s, sending SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$pid_file"
  echo "registry.sh: stopped (pid $pid)"
}

start() {
  command -v "$java" >/dev/null || die "java not found (Java 17+ is required); set JAVA_HOME"
  local pid
  pid="$(recorded_pid)"
  if alive "$pid"; then
    echo "registry.sh: a registry from an earlier run is still alive (pid $pid); stopping it" >&2
    stop >&2
  fi
  port_open "$port" && die "port $port is already in use; set REGISTRY_PORT to a free port"
  port_open "$management_port" && die "port $management_port is already in use; set REGISTRY_MANAGEMENT_PORT"
  fetch
  mkdir -p "$run_dir"
  rm -f "$log_file"
  # In-memory H2 storage (Apicurio's default): every start begins with an empty registry.
  # shellcheck disable=SC2086
  nohup "$java" $heap_opts \
    -Dquarkus.http.host=127.0.0.1 -Dquarkus.http.port="$port" \
    -Dquarkus.management.host=127.0.0.1 -Dquarkus.management.port="$management_port" \
    -jar "$(runner_jar)" >"$log_file" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$pid_file"
  local waited=0
  while ((waited < start_timeout * 2)); do
    if ! alive "$pid"; then
      log_tail
      rm -f "$pid_file"
      die "the registry JVM exited during startup"
    fi
    if ready; then
      echo "registry.sh: ready at $url (pid $pid)"
      return 0
    fi
    sleep 0.5
    waited=$((waited + 1))
  done
  log_tail
  stop >&2
  die "not ready after ${start_timeout}s"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status)
    pid="$(recorded_pid)"
    if alive "$pid"; then echo "registry.sh: running (pid $pid) at $url"; else echo "registry.sh: not running"; exit 1; fi ;;
  fetch) fetch ;;
  env) echo "SCHEMA_REGISTRY_URL=$url" ;;
  *) die "usage: registry.sh start|stop|status|fetch|env" ;;
esac
