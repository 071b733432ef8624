#!/bin/bash

# Required parameters:
# @raycast.schemaVersion 1
# @raycast.title Read Selection Aloud
# @raycast.mode silent
# @raycast.packageName Kokoro

# Optional parameters:
# @raycast.icon 🔊
# @raycast.description Reads the selected text (or the clipboard) aloud through the Kokoro Lab endpoint. Run it again to stop.
# @raycast.argument1 { "type": "text", "placeholder": "voice (af_heart)", "optional": true }

# Settings: edit here, or export them in ~/.zshenv.
KOKORO_URL="${KOKORO_URL:-http://127.0.0.1:8880}"
KOKORO_VOICE="${1:-${KOKORO_VOICE:-af_heart}}"
KOKORO_SPEED="${KOKORO_SPEED:-1.0}"
KOKORO_API_KEY="${KOKORO_API_KEY:-}"

export PATH="/opt/homebrew/bin:/usr/local/bin:$PATH"
PIDFILE="${TMPDIR:-/tmp}/kokoro-read-aloud.pid"

# Running it while it speaks stops the speech.
if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
  kill -- -"$(cat "$PIDFILE")" 2>/dev/null || kill "$(cat "$PIDFILE")"
  rm -f "$PIDFILE"
  echo "Stopped"
  exit 0
fi

# The selection: copy it with Cmd-C in the frontmost app; fall back to the clipboard.
saved="$(pbpaste)"
osascript -e 'tell application "System Events" to keystroke "c" using command down' >/dev/null 2>&1
sleep 0.2
text="$(pbpaste)"
[ -n "$text" ] || text="$saved"
if [ -z "$(printf '%s' "$text" | tr -d '[:space:]')" ]; then
  echo "Nothing selected"
  exit 1
fi
printf '%s' "$saved" | pbcopy   # leave the clipboard as it was

if ! curl -fsS -m 2 "$KOKORO_URL/health" >/dev/null; then
  echo "Kokoro endpoint not running at $KOKORO_URL (make serve)"
  exit 1
fi

body_for() {  # the JSON request body for response format $1
  python3 -c 'import json, sys; print(json.dumps({"model": "kokoro", "input": sys.argv[1], "voice": sys.argv[2], "speed": float(sys.argv[3]), "response_format": sys.argv[4]}))' "$text" "$KOKORO_VOICE" "$KOKORO_SPEED" "$1"
}
body="$(body_for pcm)"
auth=()
[ -n "$KOKORO_API_KEY" ] && auth=(-H "Authorization: Bearer $KOKORO_API_KEY")

# Stream raw 24 kHz PCM into a player that starts on the first bytes: ffplay (brew
# install ffmpeg) or SoX's play (brew install sox). Without either, fetch the whole
# file as WAV and play it with afplay (starts only once everything is synthesized).
speak() {
  if command -v ffplay >/dev/null; then
    curl -sN "${auth[@]}" -H "Content-Type: application/json" -d "$body" "$KOKORO_URL/v1/audio/speech" |
      ffplay -nodisp -autoexit -loglevel error -f s16le -ar 24000 -ch_layout mono -i -
  elif command -v play >/dev/null; then
    curl -sN "${auth[@]}" -H "Content-Type: application/json" -d "$body" "$KOKORO_URL/v1/audio/speech" |
      play -q -t raw -r 24000 -e signed -b 16 -c 1 -
  else
    tmp="$(mktemp -t kokoro).wav"
    curl -s "${auth[@]}" -H "Content-Type: application/json" -d "$(body_for wav)" \
      "$KOKORO_URL/v1/audio/speech" -o "$tmp" && afplay "$tmp"
    rm -f "$tmp"
  fi
}

set -m  # its own process group, so a second run can stop the whole pipeline
speak >/dev/null 2>&1 &
echo $! > "$PIDFILE"
echo "Reading aloud (${#text} characters)"
