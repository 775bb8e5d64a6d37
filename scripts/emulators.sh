# Sourced by scripts/test: starts DynamoDB Local and moto's server (for SQS) on loopback and
# stops them on exit. Sets ORDERLY_TEST_DYNAMODB_ENDPOINT, ORDERLY_TEST_SQS_ENDPOINT and the
# dummy AWS settings the SDK needs.
# shellcheck shell=bash

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

wait_for_port() { # port name pid
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    kill -0 "$3" 2>/dev/null || { echo "$2 exited during start-up; its log:" >&2; cat "$LOG_DIR/$2.log" >&2; return 1; }
    sleep 0.1
  done
  echo "$2 did not open port $1 within 10 s; its log:" >&2; cat "$LOG_DIR/$2.log" >&2; return 1
}

EMULATOR_PIDS=()
stop_emulators() {
  for pid in "${EMULATOR_PIDS[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
}

start_dynamodb_local() {
  local dir="$TOOLS/dynamodb-local" port
  [ -f "$dir/DynamoDBLocal.jar" ] || { echo "DynamoDB Local missing: run scripts/setup-tools.sh" >&2; return 1; }
  port="$(free_port)"
  # -inMemory: every run starts empty; the heap cap keeps it from taking 1.6 GB.
  (cd "$dir" && exec java -Xmx512m -Djava.library.path=./DynamoDBLocal_lib -jar DynamoDBLocal.jar \
      -inMemory -sharedDb -port "$port") >"$LOG_DIR/dynamodb-local.log" 2>&1 &
  EMULATOR_PIDS+=($!)
  wait_for_port "$port" dynamodb-local "$!"
  export ORDERLY_TEST_DYNAMODB_ENDPOINT="http://127.0.0.1:$port"
  echo "DynamoDB Local on $ORDERLY_TEST_DYNAMODB_ENDPOINT" >&2
}

# moto's server, for SQS only: moto's DynamoDB is not atomic under load, so the store's
# concurrency tests cannot rely on it; DynamoDB Local serves DynamoDB instead. Stopped with
# SIGINT by stop_emulators: it once ignored SIGTERM.
start_moto() {
  local bin="$TOOLS/py/bin/moto_server" port
  [ -x "$bin" ] || { echo "moto's server missing: run scripts/setup-tools.sh" >&2; return 1; }
  port="$(free_port)"
  "$bin" -H 127.0.0.1 -p "$port" >"$LOG_DIR/moto.log" 2>&1 &
  EMULATOR_PIDS+=($!)
  wait_for_port "$port" moto "$!"
  export ORDERLY_TEST_SQS_ENDPOINT="http://127.0.0.1:$port"
  echo "moto (SQS) on $ORDERLY_TEST_SQS_ENDPOINT" >&2
}

export AWS_REGION="${AWS_REGION:-us-east-1}"
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-test}"
export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-test}"
