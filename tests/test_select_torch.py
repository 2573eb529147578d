"""`make setup`'s torch choice (.ci/select_torch.py): decision table, the index probe, and pip's answer.

The pip test builds a tiny local index holding a fake ``torch-2.13.0+cpu`` wheel, serves it over HTTP
on localhost, points the script's CPU index at it, and asks ``pip install --dry-run --report`` what it
would install with the arguments the script chose: the CPU build from that index, nothing else.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import http.server
import importlib.util
import json
import os
import socket
import stat
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / ".ci" / "select_torch.py"


@pytest.fixture(scope="module")
def sel():
    spec = importlib.util.spec_from_file_location("select_torch", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    sys.modules["select_torch"] = mod  # dataclasses look their module up there
    try:
        spec.loader.exec_module(mod)
        yield mod
    finally:
        sys.modules.pop("select_torch", None)


CPU = "https://download.pytorch.org/whl/cpu"


@pytest.mark.parametrize(
    ("facts", "args", "warns"),
    [
        # Linux without NVIDIA driver: CPU index when reachable, default index (warning) when not.
        ({"has_nvidia": False, "index_reachable": True}, ("torch==2.13.0", "--index-url", CPU), False),
        ({"has_nvidia": False, "index_reachable": False}, ("torch==2.13.0",), True),
        # NVIDIA driver: the default (CUDA) build, whatever the probe says.
        ({"has_nvidia": True, "index_reachable": True}, ("torch==2.13.0",), False),
        ({"has_nvidia": True, "index_reachable": False}, ("torch==2.13.0",), False),
        # macOS / Windows wheels on PyPI are CPU builds.
        ({"has_nvidia": False, "index_reachable": True, "system": "Darwin"}, ("torch==2.13.0",), False),
        # Overrides.
        (
            {"has_nvidia": False, "index_reachable": True, "spec": "torch==2.5.1"},
            ("torch==2.5.1", "--index-url", CPU),
            False,
        ),
        (
            {
                "has_nvidia": True,
                "index_reachable": False,
                "index_url": "https://download.pytorch.org/whl/cu121",
            },
            ("torch==2.13.0", "--index-url", "https://download.pytorch.org/whl/cu121"),
            False,
        ),
        ({"has_nvidia": False, "index_reachable": True, "index_url": "default"}, ("torch==2.13.0",), False),
        (
            {"has_nvidia": False, "index_reachable": True, "spec": " ", "index_url": ""},
            ("torch==2.13.0", "--index-url", CPU),
            False,
        ),  # fmt: skip
    ],
)
def test_choice_table(sel, facts, args, warns):
    choice = sel.choose(**facts)
    assert choice.args == args
    assert (choice.warning is not None) == warns
    assert choice.reason


@contextlib.contextmanager
def _serve(directory: Path) -> Iterator[str]:
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(directory))
    handler.log_message = lambda *a, **k: None  # type: ignore[method-assign]
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def _fake_wheel(index: Path, version: str = "2.13.0+cpu") -> Path:
    """A minimal valid wheel named torch (no code) under ``index/torch/``."""
    (index / "torch").mkdir(parents=True)
    name = f"torch-{version}-py3-none-any.whl"
    dist = f"torch-{version}.dist-info"
    files = {
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: torch\nVersion: {version}\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    record.append(f"{dist}/RECORD,,")
    files[f"{dist}/RECORD"] = "\n".join(record) + "\n"
    out = index / "torch" / name
    with zipfile.ZipFile(out, "w") as zf:
        for path, text in files.items():
            zf.writestr(path, text)
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_probe_reachable_and_not(sel, tmp_path):
    (tmp_path / "torch").mkdir()
    with _serve(tmp_path) as url:
        assert sel.index_reachable(url, timeout=5)
    assert not sel.index_reachable(f"http://127.0.0.1:{_free_port()}", timeout=2)  # nothing listens
    assert not sel.index_reachable("not a url", timeout=2)


def _fake_nvidia_smi(bin_dir: Path, listing: str, rc: int = 0) -> None:
    exe = bin_dir / "nvidia-smi"
    exe.write_text(f"#!/bin/sh\necho '{listing}'\nexit {rc}\n")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)


@pytest.mark.parametrize(
    ("listing", "rc", "expect_cpu"),
    [(None, 0, True), ("GPU 0: NVIDIA H200 (UUID: GPU-1)", 0, False), ("", 9, True)],
)
def test_detect_reads_nvidia_smi(sel, tmp_path, monkeypatch, listing, rc, expect_cpu):
    """No nvidia-smi, a working one, a failing one (driver missing): CPU only when no GPU is listed."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    if listing is not None:
        _fake_nvidia_smi(bin_dir, listing, rc)
    (tmp_path / "idx" / "torch").mkdir(parents=True)
    with _serve(tmp_path / "idx") as url:
        monkeypatch.setattr(sel, "CPU_INDEX", url)
        monkeypatch.setattr(sel.platform, "system", lambda: "Linux")
        monkeypatch.setenv("PATH", str(bin_dir))
        choice = sel.detect({"PATH": str(bin_dir)})
    assert choice.args == (("torch==2.13.0", "--index-url", url) if expect_cpu else ("torch==2.13.0",))


def test_script_print_honours_environment(tmp_path):
    env = {**os.environ, "TORCH_SPEC": "torch==2.5.1", "TORCH_INDEX_URL": "https://example.invalid/cu121"}
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--print"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )
    assert out.stdout.split() == ["torch==2.5.1", "--index-url", "https://example.invalid/cu121"]
    assert "TORCH_INDEX_URL" in out.stderr


def test_pip_dry_run_installs_the_cpu_build_from_the_chosen_index(sel, tmp_path, monkeypatch):
    """What ``make setup`` runs on a machine without nvidia-smi, up to pip's resolution (offline)."""
    _fake_wheel(tmp_path / "idx")
    empty = tmp_path / "bin"
    empty.mkdir()
    report = tmp_path / "report.json"
    with _serve(tmp_path / "idx") as url:
        monkeypatch.setattr(sel, "CPU_INDEX", url)
        monkeypatch.setattr(sel.platform, "system", lambda: "Linux")
        monkeypatch.setenv("PATH", str(empty))
        choice = sel.detect({})
        assert choice.args == ("torch==2.13.0", "--index-url", url)
        cmd = [
            *(sys.executable, "-m", "pip", "--isolated", "install", "--dry-run", "--ignore-installed"),
            *("--quiet", "--report", str(report), *choice.args),
        ]
        # --isolated: ignore this machine's pip configuration (local wheel folders, extra indexes)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
        subprocess.run(cmd, check=True, env=env, timeout=120, capture_output=True)
    got = json.loads(report.read_text())["install"]
    assert [(p["metadata"]["name"], p["metadata"]["version"]) for p in got] == [("torch", "2.13.0+cpu")]
    assert got[0]["download_info"]["url"].startswith(url + "/torch/")
