#!/usr/bin/env bash
# Validates template.yaml offline, four ways (each catches mistakes the others miss):
#   1. cfn-lint (the .tools/py venv): resource schemas, best practices; any warning fails.
#   2. sam validate --lint: SAM CLI's own bundled cfn-lint.
#   3. sam validate --region us-east-1: the SAM translator itself (catches misspelled event
#      properties that both lints accept). Run with an empty config file: samconfig.toml sets
#      validate.lint = true, which would otherwise turn this run into a second lint.
#   4. scripts/check_template_schema.py: the tables agree with shared/src/store/dynamodb/schema.rs,
#      the queues with shared/src/queue/sqs.rs, and every function deploys through its alias with
#      rollback on its own alarms (checked on SAM's transform output).
# Needs no AWS account and no network. Tools come from scripts/setup-tools.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

TOOLS="$PWD/.tools"
PY="$TOOLS/py/bin/python"
CFN_LINT="$TOOLS/py/bin/cfn-lint"
SAM="$TOOLS/sam/bin/sam"
TEMPLATE=template.yaml

log() { printf '[validate-template] %s\n' "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }

for tool in "$PY" "$CFN_LINT" "$SAM"; do
  [ -x "$tool" ] || die "missing ${tool#"$PWD"/}: run scripts/setup-tools.sh"
done
[ -f "$TEMPLATE" ] || die "no $TEMPLATE in $PWD"

# sam validate needs a region and reads credentials if present; dummy ones keep it offline
# and away from whatever the user's AWS profile points to. No telemetry calls either.
export SAM_CLI_TELEMETRY=0
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-test}"
export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-test}"
export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}"

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
printf 'version = 0.1\n' >"$scratch/samconfig.toml"

log "1/4 cfn-lint $("$CFN_LINT" --version 2>&1 | awk '{print $2}')"
# cfn-lint exits non-zero on errors (2) and warnings (4); informational findings (8) are not
# shown by default (with `--include-checks I` the template is clean as well).
"$CFN_LINT" -- "$TEMPLATE" || die "cfn-lint reported problems in $TEMPLATE"

log "2/4 sam validate --lint"
"$SAM" validate --lint --template "$TEMPLATE" || die "sam validate --lint rejected $TEMPLATE"

log "3/4 sam validate --region us-east-1 (SAM translator)"
"$SAM" validate --region us-east-1 --template "$TEMPLATE" --config-file "$scratch/samconfig.toml" \
  || die "sam validate (SAM translator) rejected $TEMPLATE"

log "4/4 tables, queues and safe deploys (scripts/check_template_schema.py)"
"$PY" scripts/check_template_schema.py "$TEMPLATE" shared/src/store/dynamodb/schema.rs \
  || die "template.yaml and schema.rs disagree"

log "all checks passed"
