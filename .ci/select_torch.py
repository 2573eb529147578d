#!/usr/bin/env python3
"""Install the right PyTorch build for this machine (called by ``make setup``; standard library only).

Which build
-----------
- A machine where ``nvidia-smi -L`` lists a GPU gets the default build from the default index
  (PyPI's Linux wheels are the CUDA build).
- A Linux machine without an NVIDIA driver gets the CPU build from the PyTorch project's CPU index
  (``https://download.pytorch.org/whl/cpu``), which is ~5x smaller and pulls no CUDA libraries.
- When that index cannot be reached within a few seconds (an offline mirror, a firewall), the
  default index is used instead and a warning says so (on Linux that may be the CUDA build).
- macOS and Windows wheels on PyPI are CPU builds already: the default index.

Overrides (environment variables, also accepted as ``make setup TORCH_SPEC=...``)
--------------------------------------------------------------------------------
``TORCH_SPEC``       the requirement to install (default ``torch==2.13.0``), e.g. ``torch==2.5.1``.
``TORCH_INDEX_URL``  the index to install it from, e.g. ``https://download.pytorch.org/whl/cu121``;
                     used as given (no probe). Set it to ``default`` to force the default index.

Usage::

    python .ci/select_torch.py --print                 # show the decision and the pip arguments
    python .ci/select_torch.py --python .venv/bin/python -- -q   # install (extra args go to pip)
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass

DEFAULT_SPEC = "torch==2.13.0"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
PROBE_TIMEOUT_S = 4.0


@dataclass(frozen=True)
class Choice:
    """The decision: pip arguments (after ``pip install``) and a one-line reason."""

    args: tuple[str, ...]
    reason: str
    warning: str | None = None


def choose(
    *,
    has_nvidia: bool,
    index_reachable: bool,
    system: str = "Linux",
    spec: str | None = None,
    index_url: str | None = None,
) -> Choice:
    """Pure decision function: which pip arguments install torch on this machine.

    Parameters
    ----------
    has_nvidia : bool
        ``nvidia-smi -L`` ran and listed a GPU.
    index_reachable : bool
        The CPU index answered (only consulted for a Linux machine without NVIDIA driver).
    system : str
        ``platform.system()``: ``Linux``, ``Darwin``, ``Windows``.
    spec : str, optional
        ``TORCH_SPEC`` (default `DEFAULT_SPEC`).
    index_url : str, optional
        ``TORCH_INDEX_URL``: an index to use as given, or ``default`` for the default index.
    """
    spec = (spec or "").strip() or DEFAULT_SPEC
    index_url = (index_url or "").strip() or None
    if index_url == "default":
        return Choice((spec,), "TORCH_INDEX_URL=default: the default index")
    if index_url is not None:
        return Choice((spec, "--index-url", index_url), f"TORCH_INDEX_URL={index_url}")
    if has_nvidia:
        return Choice((spec,), "NVIDIA driver found (nvidia-smi): the default (CUDA) build")
    if system != "Linux":
        return Choice((spec,), f"{system}: the default index holds CPU builds")
    if index_reachable:
        return Choice((spec, "--index-url", CPU_INDEX), f"no NVIDIA driver: the CPU build from {CPU_INDEX}")
    return Choice(
        (spec,),
        "no NVIDIA driver, CPU index unreachable: the default index",
        warning=(
            f"{CPU_INDEX} cannot be reached; installing {spec} from the default index, which on Linux "
            "is the CUDA build with its CUDA libraries; set TORCH_INDEX_URL to a reachable CPU index "
            "or mirror to avoid it"
        ),
    )


def has_nvidia_gpu() -> bool:
    """True when ``nvidia-smi -L`` exists, succeeds and lists at least one GPU."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return False
    try:
        out = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=15, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and "GPU" in out.stdout


def index_reachable(url: str | None = None, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """True when ``<url>/torch/`` (default `CPU_INDEX`) answers an HTTP request within `timeout` s."""
    probe = (url or CPU_INDEX).rstrip("/") + "/torch/"
    try:
        with urllib.request.urlopen(urllib.request.Request(probe, method="HEAD"), timeout=timeout) as r:
            return 200 <= r.status < 400
    except (urllib.error.URLError, OSError, ValueError):
        return False


def detect(env: dict[str, str] | None = None) -> Choice:
    """`choose` with this machine's facts and the environment's overrides."""
    env = dict(os.environ if env is None else env)
    spec, url = env.get("TORCH_SPEC"), env.get("TORCH_INDEX_URL")
    nvidia = has_nvidia_gpu()
    system = platform.system()
    needs_probe = not (url or "").strip() and not nvidia and system == "Linux"
    return choose(
        has_nvidia=nvidia,
        index_reachable=index_reachable() if needs_probe else False,
        system=system,
        spec=spec,
        index_url=url,
    )


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--python", default=sys.executable, help="interpreter whose pip installs torch")
    ap.add_argument(
        "--print", action="store_true", help="print the decision and pip arguments, install nothing"
    )
    ap.add_argument("pip_args", nargs="*", help="extra pip arguments (after --)")
    ns = ap.parse_args(argv)
    choice = detect()
    if choice.warning:
        print(f"select_torch: warning: {choice.warning}", file=sys.stderr)
    cmd = [ns.python, "-m", "pip", "install", *ns.pip_args, *choice.args]
    print(f"select_torch: {choice.reason}", file=sys.stderr)
    if ns.print:
        print(shlex.join(choice.args))
        return 0
    print(f"select_torch: {shlex.join(cmd)}", file=sys.stderr)
    return subprocess.call(cmd)


if __name__ == "__main__":
    sys.exit(main())
