"""macOS privacy protection (TCC) where it touches the lab.

* Folders: macOS keeps ~/Desktop, ~/Documents and ~/Downloads from any process the user
  did not grant access. Terminal asks once and remembers; a process launchd starts (the
  login agent) is refused with "Operation not permitted" and, restarted on failure, loops.
  A clone there works by hand and fails as a login service: the lab says so before it
  installs one.
* Accessibility: the Raycast script presses Cmd-C in the frontmost app through System
  Events, which needs Raycast to hold the Accessibility permission. macOS records it in
  TCC's system database (``/Library/Application Support/com.apple.TCC/TCC.db``, table
  ``access``: ``service``, ``client``, ``auth_value`` 0 denied / 2 allowed), which only
  processes with Full Disk Access may read; elsewhere it cannot be known from outside, and
  the script reports the refusal itself.
"""
from __future__ import annotations

import sqlite3
from pathlib import Path

#: the folders a process needs the user's grant to read (relative to the home folder)
PROTECTED_FOLDERS = ("Desktop", "Documents", "Downloads")
TCC_DB = Path("/Library/Application Support/com.apple.TCC/TCC.db")
ACCESSIBILITY = "kTCCServiceAccessibility"
RAYCAST_BUNDLE = "com.raycast.macos"
RAYCAST_APP = Path("/Applications/Raycast.app")
#: TCC's auth_value for a granted permission
ALLOWED = 2


def protected_folder(path: str | Path, home: Path | None = None) -> str | None:
    """``~/Documents`` (or Desktop, Downloads) when ``path`` lies inside it, else None."""
    p = Path(path).expanduser().resolve()
    home = (home or Path.home()).resolve()
    for name in PROTECTED_FOLDERS:
        folder = (home / name).resolve()
        if p == folder or folder in p.parents:
            return f"~/{name}"
    return None


def accessibility_granted(bundle: str = RAYCAST_BUNDLE, db: Path = TCC_DB) -> bool | None:
    """Whether ``bundle`` holds the Accessibility permission by TCC's database; None where
    the database cannot be read (no Full Disk Access, not a Mac, another schema)."""
    try:
        con = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)
    except (sqlite3.Error, ValueError):
        return None
    try:
        rows = con.execute("SELECT auth_value FROM access WHERE service = ? AND client = ?",
                           (ACCESSIBILITY, bundle)).fetchall()
    except sqlite3.Error:
        return None
    finally:
        con.close()
    return any(value == ALLOWED for (value,) in rows)
