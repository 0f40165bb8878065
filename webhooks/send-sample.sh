#!/usr/bin/env bash
# Sign a sample webhook body and POST it to a running `promptgate serve`.
#
#   webhooks/send-sample.sh github tests/fixtures/github/webhook.pull_request.opened.cogni.raw-body.json
#   webhooks/send-sample.sh gitlab tests/fixtures/gitlab/webhook.merge_request.open.atlantis.json
#   webhooks/send-sample.sh github some-body.json pull_request      # explicit event name
#
# The file must be the bare body, sent byte for byte (the `*.raw-body.json` files and
# bare payloads in tests/fixtures/; unwrap `*.probot.json` / `*.headers+body.json`
# first). The event is taken from the file name (`webhook.<event>.…`) unless given.
#
# Environment:
#   PROMPTGATE_URL   bot base URL (default http://127.0.0.1:8080)
#   SECRET           secret to sign with / token to send; default: the first entry of
#                    PROMPTGATE_GITHUB_WEBHOOK_SECRET or PROMPTGATE_GITLAB_WEBHOOK_SECRET
#   DELIVERY         delivery id (default: a fresh UUID); reuse one to see a redelivery
#                    being dropped (HTTP 200 instead of 202)
#
# Needs bash, openssl and curl.
set -euo pipefail

usage() {
    sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

[ $# -ge 2 ] || usage
forge=$1
file=$2
event=${3:-}
url=${PROMPTGATE_URL:-http://127.0.0.1:8080}
[ -f "$file" ] || { echo "send-sample: no such file: $file" >&2; exit 2; }

# webhook.<event>.<variant>… → <event>
base=$(basename "$file")
guess=""
if [[ $base == webhook.* ]]; then
    guess=${base#webhook.}
    guess=${guess%%.*}
fi

new_uuid() {
    if command -v uuidgen >/dev/null 2>&1; then
        uuidgen | tr 'A-Z' 'a-z'
    elif [ -r /proc/sys/kernel/random/uuid ]; then
        cat /proc/sys/kernel/random/uuid
    else
        openssl rand -hex 16
    fi
}
delivery=${DELIVERY:-$(new_uuid)}

case "$forge" in
github)
    secret=${SECRET:-${PROMPTGATE_GITHUB_WEBHOOK_SECRET:-}}
    secret=${secret%%,*}
    [ -n "$secret" ] || { echo "send-sample: set SECRET (or PROMPTGATE_GITHUB_WEBHOOK_SECRET)" >&2; exit 2; }
    event=${event:-$guess}
    [ -n "$event" ] || { echo "send-sample: give the event name (e.g. pull_request)" >&2; exit 2; }
    # HMAC-SHA256 over the exact bytes of the file.
    sig=$(openssl dgst -sha256 -hmac "$secret" -hex < "$file" | awk '{print $NF}')
    headers=(
        -H "Content-Type: application/json"
        -H "User-Agent: GitHub-Hookshot/promptgate-sample"
        -H "X-GitHub-Event: $event"
        -H "X-GitHub-Delivery: $delivery"
        -H "X-Hub-Signature-256: sha256=$sig"
    )
    path=/webhooks/github
    ;;
gitlab)
    secret=${SECRET:-${PROMPTGATE_GITLAB_WEBHOOK_SECRET:-}}
    secret=${secret%%,*}
    [ -n "$secret" ] || { echo "send-sample: set SECRET (or PROMPTGATE_GITLAB_WEBHOOK_SECRET)" >&2; exit 2; }
    if [ -z "$event" ]; then
        case "$guess" in
        merge_request) event="Merge Request Hook" ;;
        note) event="Note Hook" ;;
        push) event="Push Hook" ;;
        pipeline) event="Pipeline Hook" ;;
        *) echo "send-sample: give the event name (e.g. 'Merge Request Hook')" >&2; exit 2 ;;
        esac
    fi
    headers=(
        -H "Content-Type: application/json"
        -H "User-Agent: GitLab/promptgate-sample"
        -H "X-Gitlab-Event: $event"
        -H "X-Gitlab-Token: $secret"
        -H "X-Gitlab-Event-UUID: $delivery"
        -H "Idempotency-Key: $delivery"
    )
    path=/webhooks/gitlab
    ;;
*)
    usage
    ;;
esac

echo "POST $url$path  event=\"$event\" delivery=$delivery" >&2
response=$(curl -sS -w '\n%{http_code}' -X POST "${headers[@]}" --data-binary "@$file" "$url$path")
status=${response##*$'\n'}
body=${response%$'\n'*}
echo "HTTP $status $body" >&2
case "$status" in
202) echo "accepted: stored and queued" >&2 ;;
200) echo "duplicate: this delivery id was already recorded" >&2 ;;
401) echo "rejected: the signature/token does not match the bot's secret" >&2 ;;
404) echo "this forge is not served (its webhook secret is not configured)" >&2 ;;
esac
[[ $status == 2* ]]
