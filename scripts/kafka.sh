#!/usr/bin/env bash
# A real single-node Apache Kafka (KRaft, broker+controller in one JVM) for development and CI,
# without Docker. See docs/adr/0008-kafka-broker-for-dev-and-ci.md.
#
#   scripts/kafka.sh start    fetch the jars once (Maven Central), format once, start, wait for clients
#   scripts/kafka.sh stop     stop the broker started for this port and wait for it to exit
#   scripts/kafka.sh status   exit 0 when the broker for this port runs, 1 otherwise
#   scripts/kafka.sh fetch    only fetch the jars (three tries), e.g. before a CI run
#
# Environment:
#   KAFKA_PORT             client listener port on 127.0.0.1 (default 9092)
#   KAFKA_CONTROLLER_PORT  controller listener port on 127.0.0.1 (default KAFKA_PORT + 1)
#   KAFKA_HEAP             JVM max heap (default 384m)
#   KAFKA_JVM_OPTS         more JVM options, split on spaces (default -XX:TieredStopAtLevel=1: the
#                          quick compiler only; set it empty for the optimising compiler too)
#   KAFKA_START_TIMEOUT    seconds to wait for the broker to accept clients (default 60)
#   KAFKA_CACHE_DIR        jars and broker state (default <repo>/.cache/kafka)
#   KAFKA_JAVA             java executable (default: java on PATH)
#   MVN                    maven executable (default: mvn on PATH)
#
# Jars go to $KAFKA_CACHE_DIR/libs; each port has its own state directory
# $KAFKA_CACHE_DIR/broker-<port> (server.properties, cluster.id, data/, broker.log, broker.pid).
# Everything binds to 127.0.0.1 only.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE_DIR="${KAFKA_CACHE_DIR:-$ROOT/.cache/kafka}"
LIBS="$CACHE_DIR/libs"
PORT="${KAFKA_PORT:-9092}"
CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-$((PORT + 1))}"
HEAP="${KAFKA_HEAP:-384m}"
START_TIMEOUT="${KAFKA_START_TIMEOUT:-60}"
JAVA="${KAFKA_JAVA:-java}"
# Unset: the default; set, even empty: as given. C2's compilations took 10-13 s of CPU in the
# first minutes of a broker's life on two cores, more than C1's slower code costs in hours of
# tests and benches (docs/benchmarks.md, session 10).
read -r -a JVM_OPTS <<<"${KAFKA_JVM_OPTS--XX:TieredStopAtLevel=1}"
MVN_BIN="${MVN:-mvn}"
STATE="$CACHE_DIR/broker-$PORT"
PID_FILE="$STATE/broker.pid"
LOG_FILE="$STATE/broker.log"
PROPS="$STATE/server.properties"
DATA="$STATE/data"
POM="$ROOT/tools/kafka/pom.xml"

log() { printf 'kafka.sh: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

usage() {
  echo "usage: $0 start|stop|status|fetch  (fetch: only download the broker jars)" >&2
  exit 2
}

# True when something accepts TCP connections on 127.0.0.1:$1.
port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# The pid of our broker for this port, when it is alive.
running_pid() {
  local pid
  [[ -f "$PID_FILE" ]] || return 1
  pid="$(cat "$PID_FILE")"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  printf '%s\n' "$pid"
}

fetch_jars() {
  if [[ -f "$LIBS/.complete" ]]; then
    return 0
  fi
  command -v "$MVN_BIN" >/dev/null || die "maven ('$MVN_BIN') is needed once to fetch the Kafka jars"
  log "fetching Kafka jars from Maven Central into $LIBS"
  local tmp="$CACHE_DIR/libs.tmp.$$" attempt
  # Three tries, and Maven's own retries per request: one dropped connection to Maven Central
  # must not fail a CI run. fd 9 (the start lock) is not handed to Maven.
  for attempt in 1 2 3; do
    rm -rf "$tmp"
    mkdir -p "$tmp"
    if "$MVN_BIN" -q -B -Dstyle.color=never -f "$POM" dependency:copy-dependencies \
      -Dmaven.wagon.http.retryHandler.count=5 -Daether.connector.http.retryHandler.count=5 \
      -DincludeScope=runtime -DoutputDirectory="$tmp" >&2 9>&-; then
      rm -rf "$LIBS"
      mv "$tmp" "$LIBS"
      touch "$LIBS/.complete"
      return 0
    fi
    log "maven could not fetch the Kafka jars (attempt $attempt of 3)"
    sleep $((attempt * 5))
  done
  rm -rf "$tmp"
  die "maven could not fetch the Kafka jars"
}

write_properties() {
  mkdir -p "$STATE"
  cat >"$PROPS" <<EOF
# Written by scripts/kafka.sh; rewritten on every start.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$DATA
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=2
log.retention.hours=24
# The log cleaner keeps a dedupe buffer of this size on the heap for its whole life (default
# 128 MiB, a third of the small heap): compacted topics here are tiny.
log.cleaner.dedupe.buffer.size=16777216
EOF
}

format_storage() {
  if [[ -f "$DATA/meta.properties" ]]; then
    return 0
  fi
  local id
  if [[ -s "$STATE/cluster.id" ]]; then
    id="$(cat "$STATE/cluster.id")"
  else
    id="$("$JAVA" -cp "$LIBS/*" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)" || id=""
    [[ -n "$id" ]] || die "could not generate a cluster id (java: $JAVA)"
    printf '%s\n' "$id" >"$STATE/cluster.id"
  fi
  log "formatting storage in $DATA (cluster id $id)"
  "$JAVA" -cp "$LIBS/*" kafka.tools.StorageTool format -t "$id" -c "$PROPS" >>"$LOG_FILE" 2>&1 ||
    { tail -n 40 "$LOG_FILE" >&2; die "formatting storage failed"; }
}

start() {
  local pid
  mkdir -p "$CACHE_DIR"
  # Serialise concurrent starts (parallel test runs): the later one finds the broker running.
  if command -v flock >/dev/null; then
    exec 9>"$CACHE_DIR/.start.lock"
    flock 9
  fi
  if pid="$(running_pid)"; then
    if port_open "$PORT"; then
      log "already running (pid $pid) on 127.0.0.1:$PORT"
      return 0
    fi
    # Still starting (another caller launched it): wait for it below.
  else
    rm -f "$PID_FILE"
    if port_open "$PORT"; then
      die "127.0.0.1:$PORT is in use by another process; set KAFKA_PORT"
    fi
    command -v "$JAVA" >/dev/null || die "java 17+ ('$JAVA') is needed to run the broker"
    fetch_jars
    write_properties
    format_storage
    log "starting broker on 127.0.0.1:$PORT (controller $CONTROLLER_PORT, heap $HEAP)"
    : >"$LOG_FILE"
    nohup "$JAVA" "-Xmx$HEAP" "-Xms$HEAP" -XX:+UseG1GC ${JVM_OPTS[@]+"${JVM_OPTS[@]}"} -Djava.awt.headless=true \
      -Dslf4j.internal.verbosity=WARN \
      -cp "$LIBS/*" kafka.Kafka "$PROPS" </dev/null >>"$LOG_FILE" 2>&1 9>&- &
    pid=$!
    printf '%s\n' "$pid" >"$PID_FILE"
  fi

  local deadline=$((SECONDS + START_TIMEOUT))
  # Ready: the client port accepts connections and the server finished its startup.
  until port_open "$PORT" && grep -q 'Kafka Server started' "$LOG_FILE"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      rm -f "$PID_FILE"
      tail -n 60 "$LOG_FILE" >&2 || true
      die "broker exited during startup (log: $LOG_FILE)"
    fi
    if ((SECONDS >= deadline)); then
      tail -n 60 "$LOG_FILE" >&2 || true
      # Not left behind: a broker that comes up later would look "already running" to the next
      # caller and never be stopped.
      kill "$pid" 2>/dev/null || true
      rm -f "$PID_FILE"
      die "broker did not accept clients on 127.0.0.1:$PORT within ${START_TIMEOUT}s (pid $pid, log: $LOG_FILE)"
    fi
    sleep 0.2
  done
  log "running (pid $pid) on 127.0.0.1:$PORT"
}

stop() {
  local pid
  if ! pid="$(running_pid)"; then
    rm -f "$PID_FILE"
    log "not running on 127.0.0.1:$PORT"
    return 0
  fi
  log "stopping broker (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + 30))
  while kill -0 "$pid" 2>/dev/null; do
    if ((SECONDS >= deadline)); then
      log "broker did not stop within 30s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    sleep 0.2
  done
  rm -f "$PID_FILE"
  log "stopped"
}

status() {
  local pid
  if pid="$(running_pid)" && port_open "$PORT"; then
    echo "running (pid $pid) on 127.0.0.1:$PORT"
    return 0
  fi
  echo "not running on 127.0.0.1:$PORT"
  return 1
}

[[ $# -eq 1 ]] || usage
case "$1" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  fetch) mkdir -p "$CACHE_DIR"; fetch_jars ;;
  *) usage ;;
esac
