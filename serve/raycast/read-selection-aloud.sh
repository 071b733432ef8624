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

# Settings: ~/.config/kokoro-lab/raycast.env (Raycast does not read your shell profile),
# one KEY=value a line, all optional (see serve/raycast/README.md):
#   KOKORO_LAB_DIR=~/src/kokoro-lab   the clone whose .venv/bin/labkit plays (default: two folders up)
#   KOKORO_URL=http://127.0.0.1:8880
#   KOKORO_VOICE=af_heart
#   KOKORO_SPEED=1.0
#   KOKORO_API_KEY=                   when the endpoint has serve.api_key set
set -u
# Raycast runs script commands without LANG: pbcopy and pbpaste then use "the standard C
# encoding" (pbcopy(1)) and mangle curly quotes, dashes and accents. UTF-8, as Terminal has.
export LANG=en_US.UTF-8 LC_ALL=en_US.UTF-8

CONFIG="${KOKORO_RAYCAST_CONFIG:-${XDG_CONFIG_HOME:-$HOME/.config}/kokoro-lab/raycast.env}"
KOKORO_LAB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
KOKORO_URL="http://127.0.0.1:8880"
KOKORO_VOICE="af_heart"
KOKORO_SPEED="1.0"
KOKORO_API_KEY=""

read_config() {  # KEY=value lines (known keys only; nothing is executed)
  local key value
  while IFS='=' read -r key value || [ -n "$key" ]; do
    key="${key//[[:space:]]/}"
    case "$key" in
      KOKORO_LAB_DIR|KOKORO_URL|KOKORO_VOICE|KOKORO_SPEED|KOKORO_API_KEY) ;;
      *) continue ;;
    esac
    value="${value%$'\r'}"
    value="${value#"${value%%[![:space:]]*}"}"
    value="${value%"${value##*[![:space:]]}"}"
    case "$value" in
      \"*\") value="${value:1:${#value}-2}" ;;
      \'*\') value="${value:1:${#value}-2}" ;;
    esac
    case "$value" in
      "~") value="$HOME" ;;
      "~/"*) value="$HOME/${value:2}" ;;
    esac
    printf -v "$key" '%s' "$value"
  done < "$1"
}
[ -f "$CONFIG" ] && read_config "$CONFIG"
[ -n "${1:-}" ] && KOKORO_VOICE="$1"
KOKORO_URL="${KOKORO_URL%/}"

LABKIT="$KOKORO_LAB_DIR/.venv/bin/labkit"
PYTHON="$KOKORO_LAB_DIR/.venv/bin/python"
if [ ! -x "$LABKIT" ]; then
  echo "No $LABKIT: set KOKORO_LAB_DIR in $CONFIG to your clone (and run make setup there)"
  exit 1
fi
TMP="${TMPDIR:-/tmp}"
TMP="${TMP%/}"
PIDFILE="$TMP/kokoro-read-aloud.pid"

# Running it while it speaks stops the speech (labkit say cuts the sound and closes the
# request, which stops the synthesis on the server).
if [ -f "$PIDFILE" ]; then
  pid="$(cat "$PIDFILE")"
  rm -f "$PIDFILE"
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && ps -p "$pid" -o command= | grep -q labkit; then
    kill -TERM "$pid"
    echo "Stopped"
    exit 0
  fi
fi

message_of() {  # the message in a JSON body ({"error": {"message"}} or /health's), else its start
  "$PYTHON" -c '
import json, sys
raw = sys.stdin.read()
try:
    d = json.loads(raw)
    e = d.get("error")
    print(e.get("message") if isinstance(e, dict) else e or d.get("status") or raw[:200])
except (ValueError, AttributeError):
    print(raw[:200])' 2>/dev/null
}

resp="$(curl -s -m 2 -w $'\n%{http_code}' "$KOKORO_URL/health")"
code="${resp##*$'\n'}"
case "$code" in
  200) ;;
  000|"")
    echo "Kokoro endpoint not running at $KOKORO_URL (start it: labkit serve, or labkit service install)"
    exit 1 ;;
  *)
    echo "Kokoro endpoint not ready (HTTP $code): $(printf '%s' "${resp%$'\n'*}" | message_of)"
    exit 1 ;;
esac

# The selection: Cmd-C in the frontmost app, read from the pasteboard as UTF-8, then every
# item the pasteboard held before put back with every type it had (text, rich text, an
# image, files): pbcopy could only put back plain text. Nothing copied (no selection): the
# clipboard is untouched and read as it is. Exit 3: System Events refused the keystroke.
read_selection() {  # $1: the file the selection is written to (UTF-8)
  osascript -l JavaScript - "$1" <<'JXA'
ObjC.import("AppKit");
ObjC.import("stdlib");

function snapshot(pb) {  // a copy of every item, with the data of each of its types
  const items = pb.pasteboardItems;
  const copies = [];
  if (items.isNil()) return copies;
  for (let i = 0; i < items.count; i++) {
    const item = items.objectAtIndex(i);
    const copy = $.NSPasteboardItem.alloc.init;
    const types = item.types;
    for (let j = 0; j < types.count; j++) {
      const type = types.objectAtIndex(j);
      const data = item.dataForType(type);
      if (!data.isNil()) copy.setDataForType(data, type);
    }
    copies.push(copy);
  }
  return copies;
}

function run(argv) {
  const pb = $.NSPasteboard.generalPasteboard;
  const before = pb.changeCount;
  const saved = snapshot(pb);
  try {
    Application("System Events").keystroke("c", {using: "command down"});
  } catch (e) {
    console.log(`${e.message} (${e.errorNumber})`);
    $.exit(3);
  }
  let waited = 0;
  while (pb.changeCount === before && waited < 0.5) { delay(0.01); waited += 0.01; }
  if (pb.changeCount === before) $.exit(4);  // nothing was copied: the clipboard is as it was
  let text = pb.stringForType($.NSPasteboardTypeString);
  for (let i = 0; i < 30 && text.isNil(); i++) {  // the app may still be writing its types
    delay(0.01);
    text = pb.stringForType($.NSPasteboardTypeString);
  }
  (text.isNil() ? $("") : text).writeToFileAtomicallyEncodingError(argv[0], true,
                                                                   $.NSUTF8StringEncoding, null);
  pb.clearContents;
  if (saved.length) pb.writeObjects($(saved));
  return "";
}
JXA
}

selection="$(mktemp "$TMP/kokoro-selection.XXXXXX")"
refused="$(read_selection "$selection" 2>&1 >/dev/null)"
rc=$?
text="$(cat "$selection")"
rm -f "$selection"
case "$rc" in
  0) ;;
  4) text="$(pbpaste)" ;;  # no selection: what is on the clipboard
  3)
    case "$refused" in
      *-1743*|*"Not authorized to send Apple events"*)
        echo "Raycast may not control System Events: System Settings > Privacy & Security > Automation > Raycast, turn on System Events ($refused)" ;;
      *)
        echo "Raycast needs the Accessibility permission to copy the selection: System Settings > Privacy & Security > Accessibility, turn on Raycast ($refused)" ;;
    esac
    exit 1 ;;
  *)
    echo "Could not read the selection (osascript exit $rc): ${refused:-no message}"
    exit 1 ;;
esac
if [ -z "$(printf '%s' "$text" | tr -d '[:space:]')" ]; then
  echo "Nothing selected"
  exit 1
fi

# Stream: labkit plays raw PCM through one output stream as it arrives; an error status
# comes back as "labkit say: HTTP 4xx: <the server's message>" and is shown here.
log="$(mktemp "$TMP/kokoro-say.XXXXXX")"
KOKORO_LAB_API_KEY="$KOKORO_API_KEY" "$LABKIT" say --server "$KOKORO_URL" \
  --voice "$KOKORO_VOICE" --speed "$KOKORO_SPEED" - <<<"$text" >/dev/null 2>"$log" &
pid=$!
echo "$pid" > "$PIDFILE"

for _ in $(seq 20); do  # an error answers within a moment; speech keeps it running
  if ! kill -0 "$pid" 2>/dev/null; then
    wait "$pid"
    rc=$?
    msg="$(grep '^labkit say: ' "$log" | tail -n 1)"
    rm -f "$log" "$PIDFILE"
    if [ "$rc" -ne 0 ]; then
      if [ -n "$msg" ]; then echo "${msg#labkit say: }"; else echo "labkit say failed (exit $rc)"; fi
      exit 1
    fi
    echo "Read aloud"
    exit 0
  fi
  sleep 0.1
done

# Still speaking: clean up after it ends, and return to Raycast now.
(
  while kill -0 "$pid" 2>/dev/null && ! ps -p "$pid" -o stat= | grep -q Z; do sleep 0.5; done
  rm -f "$log"
  [ "$(cat "$PIDFILE" 2>/dev/null)" = "$pid" ] && rm -f "$PIDFILE"
) >/dev/null 2>&1 </dev/null &
echo "Reading aloud (${#text} characters)"
