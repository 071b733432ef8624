// The fake Mac's general pasteboard, shared by its pbcopy, pbpaste and osascript.
//
// State: $FAKE_MAC/pasteboard.json = {"changeCount": n, "items": [{type: base64 data}]},
// NSPasteboard's shape (Apple's NSPasteboard reference: a change count that grows when the
// contents are replaced; items, each holding data under one or more type identifiers such
// as public.utf8-plain-text, public.rtf, public.png, public.file-url).
//
// Encoding, after pbcopy(1) "Encoding": pbcopy and pbpaste take the encoding from the
// locale environment (LC_ALL, then LC_CTYPE, then LANG); "if an encoding cannot be
// determined from the locale, the standard C encoding will be used": NSString's default C
// string encoding, Mac OS Roman, where a character it lacks is lost ("?").
"use strict";
const fs = require("fs");
const path = require("path");

const TEXT = "public.utf8-plain-text";
const file = () => path.join(process.env.FAKE_MAC, "pasteboard.json");
const load = () => JSON.parse(fs.readFileSync(file(), "utf8"));
const save = (state) => fs.writeFileSync(file(), JSON.stringify(state));

function utf8Locale() {
  const value = ["LC_ALL", "LC_CTYPE", "LANG"].map((v) => process.env[v]).find((v) => v);
  return Boolean(value) && /utf-?8$/i.test(value);
}

const MAC_ROMAN = new TextDecoder("macintosh");
const FROM_MAC_ROMAN = new Map(
  [...MAC_ROMAN.decode(Uint8Array.from({length: 256}, (_, i) => i))].map((ch, i) => [ch, i]));

function decode(bytes) {  // standard input as pbcopy reads it
  return utf8Locale() ? bytes.toString("utf8") : MAC_ROMAN.decode(bytes);
}

function encode(text) {  // text as pbpaste writes it
  if (utf8Locale()) return Buffer.from(text, "utf8");
  return Buffer.from([...text].map((ch) => FROM_MAC_ROMAN.get(ch) ?? 0x3f));
}

function text() {  // the first item's plain text, or null (pbpaste writes nothing)
  const found = load().items.find((item) => TEXT in item);
  return found ? Buffer.from(found[TEXT], "base64").toString("utf8") : null;
}

function replace(items) {  // new contents: the change count grows
  const state = load();
  state.changeCount += 1;
  state.items = items;
  save(state);
}

module.exports = {TEXT, load, save, decode, encode, text, replace};
