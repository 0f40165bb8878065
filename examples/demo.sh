#!/usr/bin/env bash
# One-command demo of promptgate, offline:
#
#     bash examples/demo.sh
#
# Builds a throwaway git repository from examples/acme-support/ (commit "base" = base/,
# commit "head" = base/ + the files in head/, a prompt edit), then runs
#
#     promptgate check --base <base> --head <head> --replay --recordings examples/acme-support/recordings
#
# and prints the PR comment promptgate would post. No model and no network are needed:
# every model answer comes from the committed recordings.
#
# Re-recording (needs python3, makes the recordings from the scripted stand-in model
# examples/fake-model.py, then runs the demo as above):
#
#     RECORD=1 bash examples/demo.sh
#
# Exit status: 0 when promptgate ran and gave its verdict (pass, or fail/needs_review:
# exit 1, which is what this example is meant to show); otherwise promptgate's own
# exit status (2 = error) or the failing step's.
set -euo pipefail

PROJECT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
EXAMPLE="$PROJECT/examples/acme-support"
RECORDINGS="$EXAMPLE/recordings"
RECORD="${RECORD:-0}"
# The endpoint the example's manifests name (a local Ollama server).
COMMITTED_URL="http://127.0.0.1:11434/v1"

tmp="$(mktemp -d "${TMPDIR:-/tmp}/promptgate-demo.XXXXXX")"
server_pid=""
cleanup() {
    if [[ -n "$server_pid" ]]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT

say() { printf 'demo: %s\n' "$*" >&2; }

promptgate() {
    cargo run --quiet --manifest-path "$PROJECT/Cargo.toml" -- "$@"
}

# Points every model endpoint in the work tree at $1 (record mode only). Recordings are
# keyed by provider, model, parameters and messages, never by base_url, so what is
# recorded this way replays against the committed files.
point_at() {
    local url="$1" f
    while IFS= read -r -d '' f; do
        if grep -q "$COMMITTED_URL" "$f"; then
            sed -i.bak "s#$COMMITTED_URL#$url#g" "$f" && rm -f "$f.bak"
        fi
    done < <(find "$repo" -path "$repo/.git" -prune -o -type f \( -name '*.yml' -o -name '*.yaml' \) -print0)
}

# --- the example repository: base commit, then the PR's head commit -----------------
repo="$tmp/repo"
mkdir -p "$repo"
git_() { git -C "$repo" "$@"; }
git_ init -q -b main
git_ config user.name "Demo Bot"
git_ config user.email "demo@example.invalid"
git_ config commit.gpgsign false
# Fixed dates: the same files give the same commit ids on every machine.
export GIT_AUTHOR_DATE="2024-06-03T09:00:00Z" GIT_COMMITTER_DATE="2024-06-03T09:00:00Z"

cp -R "$EXAMPLE/base/." "$repo/"
if [[ "$RECORD" == 1 ]]; then
    command -v python3 >/dev/null || { say "RECORD=1 needs python3"; exit 2; }
    port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    url="http://127.0.0.1:$port/v1"
    point_at "$url"
fi
git_ add -A
git_ commit -q -m "base"
base="$(git_ rev-parse HEAD)"

export GIT_AUTHOR_DATE="2024-06-04T15:30:00Z" GIT_COMMITTER_DATE="2024-06-04T15:30:00Z"
cp -R "$EXAMPLE/head/." "$repo/"
if [[ "$RECORD" == 1 ]]; then point_at "$url"; fi
git_ add -A
git_ commit -q -m "head"
head="$(git_ rev-parse HEAD)"
say "example repository: base ${base:0:12}, head ${head:0:12} (changed: $(git_ diff --name-only "$base" "$head" | paste -sd ' ' -))"

# --- record mode: answer every call with the scripted stand-in model ------------------
if [[ "$RECORD" == 1 ]]; then
    say "starting examples/fake-model.py on $url"
    python3 "$PROJECT/examples/fake-model.py" "$port" >&2 &
    server_pid=$!
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
        sleep 0.1
    done
    fresh="$tmp/recordings"
    say "recording base and head, every case (--full) ..."
    set +e
    promptgate check --repo "$repo" --base "$base" --head "$head" --full --record \
        --recordings "$fresh" --cache "$tmp/record-cache.db" --out "$tmp/record-comment.md"
    code=$?
    set -e
    if [[ $code -gt 1 ]]; then
        say "recording failed (promptgate exit $code); the committed recordings are unchanged"
        exit "$code"
    fi
    rm -rf "$RECORDINGS"
    mv "$fresh" "$RECORDINGS"
    say "wrote $(find "$RECORDINGS" -name '*.json' | wc -l | tr -d ' ') recordings ($(du -sh "$RECORDINGS" | cut -f1)) to ${RECORDINGS#"$PROJECT"/}"
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
fi

# --- the gate, offline ----------------------------------------------------------------
if [[ ! -d "$RECORDINGS" ]]; then
    say "no recordings in ${RECORDINGS#"$PROJECT"/}; run: RECORD=1 bash examples/demo.sh"
    exit 2
fi
say "running: promptgate check --base ${base:0:12} --head ${head:0:12} --replay (building first if needed)"
set +e
promptgate check --repo "$repo" --base "$base" --head "$head" \
    --replay --recordings "$RECORDINGS" --cache "$tmp/cache.db" --format markdown
code=$?
set -e

case "$code" in
    0) say "promptgate exit status 0: pass" ;;
    1) say "promptgate exit status 1: the gate failed or needs review - the regression this example shows" ;;
    *) say "promptgate exit status $code: error"; exit "$code" ;;
esac
exit 0
