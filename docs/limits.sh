#!/usr/bin/env bash
# Each limit and the API key tried with a bad request against a live `dlm serve`:
#   bash docs/limits.sh src/dlm/models/chat-tiny > docs/limits.txt   # the shipped model
# prints the request, then the status code and the error message the server answered.
set -euo pipefail
CKPT=${1:?usage: docs/limits.sh CKPT}
PORT=${PORT:-8765}
KEY=s3cret
dlm serve --ckpt "$CKPT" --port "$PORT" --api-key "$KEY" --max-prompt-tokens 64 \
    --max-tokens 128 --max-steps 128 --max-n 4 --max-request-bytes 4096 --max-queue 64 \
    >/dev/null 2>&1 &
SERVER=$!
ANSWER=$(mktemp)
trap 'kill $SERVER; rm -f "$ANSWER"' EXIT
until curl -sf "http://127.0.0.1:$PORT/health" >/dev/null; do sleep 0.3; done
echo "dlm serve --ckpt $CKPT --api-key \$KEY --max-prompt-tokens 64 --max-tokens 128 \\"
echo "    --max-steps 128 --max-n 4 --max-request-bytes 4096"
echo
try() {  # try NAME AUTH BODY
    local name=$1 auth=$2 body=$3
    out=$(curl -s -o "$ANSWER" -w '%{http_code}' "http://127.0.0.1:$PORT/v1/chat/completions" \
        -H "Content-Type: application/json" ${auth:+-H "Authorization: Bearer $auth"} -d "$body")
    printf '%-22s %s  %s\n' "$name" "$out" "$(python3 -c 'import json, sys; e = json.load(open(sys.argv[1]))["error"]; print("param=%s: %s" % (e["param"], e["message"]))' "$ANSWER")"
}
MSG='"messages": [{"role": "user", "content": "hello"}]'
try "no API key"          ""      "{$MSG}"
try "wrong API key"       "wrong" "{$MSG}"
try "steps"               "$KEY"  "{$MSG, \"steps\": 1000}"
try "max_tokens"          "$KEY"  "{$MSG, \"max_tokens\": 1000}"
try "n"                   "$KEY"  "{$MSG, \"n\": 10}"
try "prompt tokens"       "$KEY"  "{\"messages\": [{\"role\": \"user\", \"content\": \"$(printf 'hello %.0s' {1..100})\"}]}"
try "request size"        "$KEY"  "{\"messages\": [{\"role\": \"user\", \"content\": \"$(printf 'x%.0s' {1..5000})\"}]}"
try "commit_rule"         "$KEY"  "{$MSG, \"commit_rule\": \"loudest\"}"
try "temperature"         "$KEY"  "{$MSG, \"temperature\": -1}"
try "last turn"           "$KEY"  "{\"messages\": [{\"role\": \"assistant\", \"content\": \"hi\"}]}"
try "context"             "$KEY"  "{$MSG, \"max_tokens\": 128, \"messages\": [{\"role\": \"user\", \"content\": \"$(printf 'hello %.0s' {1..40})\"}]}"
try "empty prompt"        "$KEY"  "{\"messages\": [{\"role\": \"user\", \"content\": \"   \"}]}"
try "not JSON"            "$KEY"  "hello there"
try "JSON depth"          "$KEY"  "$(printf '[%.0s' {1..40})$(printf ']%.0s' {1..40})"
try "stop"                "$KEY"  "{$MSG, \"stop\": [\"a\", \"b\", \"c\", \"d\", \"e\"]}"
try "logprobs"            "$KEY"  "{$MSG, \"logprobs\": true}"
try "tools"               "$KEY"  "{$MSG, \"tools\": [{\"type\": \"function\"}]}"
try "unknown field"       "$KEY"  "{$MSG, \"temprature\": 0.5}"
echo
echo "ok with the key: $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/v1/chat/completions" \
    -H "Content-Type: application/json" -H "Authorization: Bearer $KEY" -d "{$MSG, \"steps\": 4}")"
