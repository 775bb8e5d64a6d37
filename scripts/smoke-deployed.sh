#!/usr/bin/env bash
# Smoke test of a deployed stack: `scripts/smoke-deployed.sh <stack-name>` (AWS credentials and
# region from the environment, as for `sam deploy`). Reads the stack's ApiUrl output and checks
# three routes through API Gateway and the functions' `live` aliases: the OpenAPI document (admin
# function, no table), the catalog (products function reading DynamoDB) and an order list without
# a token (orders function, 401). Writes `api_url=...` to $GITHUB_OUTPUT when set. Read-only.
set -euo pipefail
stack="${1:?usage: scripts/smoke-deployed.sh <stack-name>}"

log() { printf '[smoke] %s\n' "$*" >&2; }
command -v aws >/dev/null || { log "needs the AWS CLI"; exit 1; }
command -v curl >/dev/null || { log "needs curl"; exit 1; }

api_url="$(aws cloudformation describe-stacks --stack-name "$stack" \
  --query "Stacks[0].Outputs[?OutputKey=='ApiUrl'].OutputValue" --output text)"
case "$api_url" in
  http*://*/) ;;
  *) log "stack $stack has no ApiUrl output (got '$api_url')"; exit 1 ;;
esac
log "$stack: $api_url"
if [ -n "${GITHUB_OUTPUT:-}" ]; then
  echo "api_url=$api_url" >>"$GITHUB_OUTPUT"
fi

failed=0
expect() { # expect <status> <path>
  local want="$1" path="$2" got
  got="$(curl -sS -o /dev/null -w '%{http_code}' --max-time 15 --retry 3 --retry-all-errors "${api_url}${path}")" || got="no answer"
  if [ "$got" = "$want" ]; then
    log "ok   GET /$path -> $got"
  else
    log "FAIL GET /$path -> $got (want $want)"
    failed=1
  fi
}
expect 200 openapi.json
expect 200 products
expect 401 orders
[ "$failed" = 0 ] || { log "smoke test of $stack failed"; exit 1; }
log "smoke test of $stack passed"
