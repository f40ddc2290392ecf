#!/usr/bin/env bash
# A real single-node Apache Kafka broker (KRaft, combined broker + controller) on 127.0.0.1,
# with its jars resolved from Maven Central by Maven. For development, tests and CI.
#
#   dev/kafka/broker.sh start     fresh data dir, format, start, wait until ready
#   dev/kafka/broker.sh stop      SIGTERM to our own pid, SIGKILL after a timeout
#   dev/kafka/broker.sh restart   stop, then start again KEEPING the data dir (topics, offsets);
#                                 for broker-restart tests (tests/reliability)
#   dev/kafka/broker.sh status    running or not, and where
#   dev/kafka/broker.sh fetch     resolve the jars only
#   dev/kafka/broker.sh env       print KAFKA_BOOTSTRAP=... for eval
#
# Environment (all optional):
#   KAFKA_LINE=4|3.9           broker line (default 4; 3.9 is the documented fallback)
#   KAFKA_PORT=19092           client port; KAFKA_CONTROLLER_PORT defaults to KAFKA_PORT+1
#   KAFKA_RUN_DIR=...          run folder (default: .kafka-run beside the repository root)
#   KAFKA_LIBS_DIR=...         jar folder (default: ~/.cache/freshpaint-iterable/kafka-<line>)
#   KAFKA_START_TIMEOUT=120    seconds to wait for readiness
#   KAFKA_STOP_TIMEOUT=30      seconds between SIGTERM and SIGKILL
#   KAFKA_HEAP_OPTS="-Xms256m -Xmx1g"
#   MVN=mvn, JAVA=java (or JAVA_HOME)
#
# Secure mode (KAFKA_SECURE=1; the default, plain mode is unchanged): beside the PLAINTEXT listener
# on KAFKA_PORT (inter-broker, as a cluster's private network would be) the broker listens with
#   SASL_SSL on KAFKA_SASL_SSL_PORT (default KAFKA_PORT+2): TLS, then SCRAM-SHA-256 or SCRAM-SHA-512
#   SSL      on KAFKA_SSL_PORT      (default KAFKA_PORT+3): mutual TLS, a client certificate required
# `start` makes a CA, the broker's certificate (127.0.0.1, localhost) and a client certificate with
# openssl in $KAFKA_RUN_DIR/tls/ (ca.pem, client.pem, client-key.pem), and creates the SCRAM users
# of KAFKA_SCRAM_USERS ("name:password name2:password2", default "fpi:fpi-secret"), both mechanisms,
# with Kafka's own storage tool (format --add-scram).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

line="${KAFKA_LINE:-4}"
port="${KAFKA_PORT:-19092}"
controller_port="${KAFKA_CONTROLLER_PORT:-$((port + 1))}"
run_dir="${KAFKA_RUN_DIR:-$repo/.kafka-run}"
libs_dir="${KAFKA_LIBS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/freshpaint-iterable/kafka-$line}"
start_timeout="${KAFKA_START_TIMEOUT:-120}"
stop_timeout="${KAFKA_STOP_TIMEOUT:-30}"
heap_opts="${KAFKA_HEAP_OPTS:--Xms256m -Xmx1g}"
secure="${KAFKA_SECURE:-0}"
sasl_ssl_port="${KAFKA_SASL_SSL_PORT:-$((port + 2))}"
ssl_port="${KAFKA_SSL_PORT:-$((port + 3))}"
scram_users="${KAFKA_SCRAM_USERS:-fpi:fpi-secret}"
tls_dir="$run_dir/tls"
mvn="${MVN:-mvn}"
if [[ -n "${JAVA:-}" ]]; then java="$JAVA"
elif [[ -n "${JAVA_HOME:-}" ]]; then java="$JAVA_HOME/bin/java"
else java="java"; fi

pid_file="$run_dir/broker.pid"
log_file="$run_dir/logs/broker.log"

die() { echo "broker.sh: $*" >&2; exit 1; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

recorded_pid() {
  [[ -f "$pid_file" ]] && cat "$pid_file" || true
}

alive() { [[ -n "$1" ]] && kill -0 "$1" 2>/dev/null; }

log_tail() {
  if [[ -f "$log_file" ]]; then
    echo "---- last 80 lines of $log_file ----" >&2
    tail -n 80 "$log_file" >&2
    echo "---- end of broker log ----" >&2
  fi
}

fetch() {
  if compgen -G "$libs_dir/kafka_2.13-*.jar" >/dev/null; then
    return 0
  fi
  local profile
  case "$line" in
    4) profile=kafka4 ;;
    3.9) profile=kafka39 ;;
    *) die "KAFKA_LINE must be 4 or 3.9, got '$line'" ;;
  esac
  echo "broker.sh: resolving Kafka $line jars from Maven Central into $libs_dir" >&2
  rm -rf "$libs_dir.tmp"
  mkdir -p "$(dirname "$libs_dir")"
  "$mvn" -B -q -f "$here/pom.xml" -P"$profile" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$libs_dir.tmp" >&2 \
    || die "Maven could not resolve the broker's jars (see the output above)"
  compgen -G "$libs_dir.tmp/kafka_2.13-*.jar" >/dev/null || die "no kafka_2.13 jar after resolving"
  rm -rf "$libs_dir"
  mv "$libs_dir.tmp" "$libs_dir"
}

write_tls() {  # a private CA, the broker's PKCS12 keystore, and a client certificate for mutual TLS
  command -v openssl >/dev/null || die "openssl not found (secure mode makes its certificates with it)"
  rm -rf "$tls_dir"
  mkdir -p "$tls_dir"
  (
    cd "$tls_dir"
    openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=freshpaint-iterable test CA" \
      -keyout ca-key.pem -out ca.pem
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n' >broker.ext
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout broker-key.pem -out broker.csr
    openssl x509 -req -in broker.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 30 \
      -extfile broker.ext -out broker.pem
    openssl pkcs12 -export -in broker.pem -inkey broker-key.pem -name broker \
      -passout pass:broker-store -out broker.p12
    printf 'extendedKeyUsage=clientAuth\n' >client.ext
    openssl req -newkey rsa:2048 -nodes -subj "/CN=fpi-client" -keyout client-key.pem -out client.csr
    openssl x509 -req -in client.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 30 \
      -extfile client.ext -out client.pem
    rm -f ./*.csr ./*.ext
  ) >/dev/null 2>&1 || die "openssl could not make the test certificates in $tls_dir"
}

scram_args() {  # format --add-scram for every user of KAFKA_SCRAM_USERS, with both mechanisms
  local entry name password
  for entry in $scram_users; do
    name="${entry%%:*}"
    password="${entry#*:}"
    [[ -n "$name" && "$entry" == *:* ]] || die "KAFKA_SCRAM_USERS entries are name:password, got '$entry'"
    printf -- '--add-scram\nSCRAM-SHA-256=[name=%s,password=%s]\n' "$name" "$password"
    printf -- '--add-scram\nSCRAM-SHA-512=[name=%s,password=%s]\n' "$name" "$password"
  done
}

write_configs() {
  mkdir -p "$run_dir/logs" "$run_dir/config"
  cat >"$run_dir/config/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller_port
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller_port
advertised.listeners=PLAINTEXT://127.0.0.1:$port
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$run_dir/data
num.network.threads=2
num.io.threads=2
num.recovery.threads.per.data.dir=1
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
auto.create.topics.enable=true
delete.topic.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
group.initial.rebalance.delay.ms=0
EOF
  if [[ "$secure" == 1 ]]; then
    write_tls
    # Later keys win in a properties file: these replace the plain listener lines above.
    cat >>"$run_dir/config/server.properties" <<EOF
listeners=PLAINTEXT://127.0.0.1:$port,SASL_SSL://127.0.0.1:$sasl_ssl_port,SSL://127.0.0.1:$ssl_port,CONTROLLER://127.0.0.1:$controller_port
advertised.listeners=PLAINTEXT://127.0.0.1:$port,SASL_SSL://127.0.0.1:$sasl_ssl_port,SSL://127.0.0.1:$ssl_port
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL,SSL:SSL
sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512
ssl.keystore.type=PKCS12
ssl.keystore.location=$tls_dir/broker.p12
ssl.keystore.password=broker-store
ssl.truststore.type=PEM
ssl.truststore.location=$tls_dir/ca.pem
listener.name.ssl.ssl.client.auth=required
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
EOF
  fi
  if [[ "$line" == 4 ]]; then
    cat >>"$run_dir/config/server.properties" <<EOF
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
EOF
    cat >"$run_dir/config/log4j2-broker.properties" <<'EOF'
status = warn
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = STDOUT
logger.req.name = kafka.request.logger
logger.req.level = WARN
logger.chan.name = kafka.network.RequestChannel$
logger.chan.level = WARN
EOF
    cat >"$run_dir/config/log4j2-tools.properties" <<'EOF'
status = warn
appender.err.type = Console
appender.err.name = STDERR
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.err.ref = STDERR
EOF
  else
    cat >"$run_dir/config/log4j-broker.properties" <<'EOF'
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.kafka.network.RequestChannel$=WARN
EOF
    cat >"$run_dir/config/log4j-tools.properties" <<'EOF'
log4j.rootLogger=WARN, stderr
log4j.appender.stderr=org.apache.log4j.ConsoleAppender
log4j.appender.stderr.Target=System.err
log4j.appender.stderr.layout=org.apache.log4j.PatternLayout
log4j.appender.stderr.layout.ConversionPattern=[%d] %p %m (%c)%n
EOF
  fi
}

log_opts() {  # $1 = broker|tools
  if [[ "$line" == 4 ]]; then
    echo "-Dlog4j2.configurationFile=$run_dir/config/log4j2-$1.properties"
  else
    echo "-Dlog4j.configuration=file:$run_dir/config/log4j-$1.properties"
  fi
}

stop() {
  local pid
  pid="$(recorded_pid)"
  if ! alive "$pid"; then
    rm -f "$pid_file"
    echo "broker.sh: not running"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  local waited=0
  while alive "$pid" && ((waited < stop_timeout * 2)); do
    sleep 0.5
    waited=$((waited + 1))
  done
  if alive "$pid"; then
    echo "broker.sh: pid $pid still alive after ${stop_timeout}s, sending SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.5
  fi
  rm -f "$pid_file"
  echo "broker.sh: stopped (pid $pid)"
}

start() {  # $1 = keep: reuse the formatted data dir of the previous start
  local keep="${1:-}"
  command -v "$java" >/dev/null || die "java not found (Java 17+ is required); set JAVA_HOME"
  local pid
  pid="$(recorded_pid)"
  if alive "$pid"; then
    # A previous run that was killed half-way left its broker behind: stop it, never reuse it,
    # so every start begins from an empty data directory.
    echo "broker.sh: a broker from an earlier run is still alive (pid $pid); stopping it" >&2
    stop >&2
  fi
  rm -f "$pid_file"
  port_open "$port" && die "port $port is already in use; set KAFKA_PORT to a free port"
  port_open "$controller_port" && die "port $controller_port is already in use; set KAFKA_CONTROLLER_PORT"
  if [[ "$secure" == 1 ]]; then
    port_open "$sasl_ssl_port" && die "port $sasl_ssl_port is already in use; set KAFKA_SASL_SSL_PORT"
    port_open "$ssl_port" && die "port $ssl_port is already in use; set KAFKA_SSL_PORT"
  fi

  fetch
  if [[ -n "$keep" && -f "$run_dir/data/meta.properties" ]]; then
    mv -f "$log_file" "$log_file.1" 2>/dev/null || true
  else
  rm -rf "$run_dir/data" "$run_dir/logs"
  write_configs

  local cluster_id format_out
  local -a scram=()
  if [[ "$secure" == 1 ]]; then mapfile -t scram < <(scram_args); fi
  cluster_id="$("$java" -Xmx256m "$(log_opts tools)" -cp "$libs_dir/*" kafka.tools.StorageTool random-uuid)" \
    || die "StorageTool random-uuid failed"
  if ! format_out="$("$java" -Xmx256m "$(log_opts tools)" -cp "$libs_dir/*" kafka.tools.StorageTool \
      format -t "$cluster_id" -c "$run_dir/config/server.properties" --ignore-formatted "${scram[@]}" 2>&1)"; then
    echo "$format_out" >&2
    die "formatting the storage directory failed"
  fi
  fi

  # shellcheck disable=SC2086  # heap_opts holds several flags on purpose
  nohup "$java" $heap_opts -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -XX:MaxInlineLevel=15 \
    -Djava.awt.headless=true -Dkafka.logs.dir="$run_dir/logs" "$(log_opts broker)" \
    -cp "$libs_dir/*" kafka.Kafka "$run_dir/config/server.properties" \
    </dev/null >"$log_file" 2>&1 &
  pid=$!
  echo "$pid" >"$pid_file"

  local deadline=$((SECONDS + start_timeout))
  while ((SECONDS < deadline)); do
    if ! alive "$pid"; then
      log_tail
      rm -f "$pid_file"
      die "broker JVM exited during startup"
    fi
    if grep -q "Kafka Server started" "$log_file" 2>/dev/null && port_open "$port"; then
      echo "broker.sh: Kafka $line ready on 127.0.0.1:$port (pid $pid, log $log_file)"
      if [[ "$secure" == 1 ]]; then
        echo "broker.sh: SASL_SSL on 127.0.0.1:$sasl_ssl_port, mutual TLS on 127.0.0.1:$ssl_port, CA $tls_dir/ca.pem"
      fi
      return 0
    fi
    sleep 0.5
  done
  log_tail
  stop >&2
  die "broker not ready after ${start_timeout}s"
}

status() {
  local pid
  pid="$(recorded_pid)"
  if alive "$pid" && port_open "$port"; then
    echo "running: pid $pid, bootstrap 127.0.0.1:$port, log $log_file"
  elif alive "$pid"; then
    echo "starting or unhealthy: pid $pid alive but port $port closed"
    return 1
  else
    echo "not running"
    return 3
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  restart) stop; start keep ;;
  status) status ;;
  fetch) fetch ;;
  env)
    echo "KAFKA_BOOTSTRAP=127.0.0.1:$port"
    if [[ "$secure" == 1 ]]; then
      echo "KAFKA_SASL_SSL_BOOTSTRAP=127.0.0.1:$sasl_ssl_port"
      echo "KAFKA_SSL_BOOTSTRAP=127.0.0.1:$ssl_port"
      echo "KAFKA_TLS_DIR=$tls_dir"
    fi ;;
  *) echo "usage: $0 start|stop|restart|status|fetch|env" >&2; exit 2 ;;
esac
