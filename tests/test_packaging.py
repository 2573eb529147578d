"""Packaging: the five folders install under the ``srcaco2`` namespace, beside other distributions."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("srdata", "kernels", "trainers", "cli", "benchmarks")


DATA_DIRS = ("srdata/data", "srdata/data/real_sample", "trainers/data", "trainers/models/reference")
"""Folders of package data (no ``__init__.py``), installed as data-only packages."""


def test_listed_packages_are_the_tree():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert config["package-dir"] == {f"srcaco2.{f}": f for f in FOLDERS}
    code = {
        "srcaco2." + ".".join(p.parent.relative_to(ROOT).parts)
        for f in FOLDERS
        for p in (ROOT / f).rglob("__init__.py")
        if "__pycache__" not in p.parts
    }
    data = {"srcaco2." + d.replace("/", ".") for d in DATA_DIRS}
    assert all((ROOT / d).is_dir() and not (ROOT / d / "__init__.py").exists() for d in DATA_DIRS)
    assert sorted(config["packages"]) == sorted(code | data), "list new sub-packages in [tool.setuptools]"
    assert set(config["package-data"]) <= data


def test_no_module_imports_a_bare_top_level_name():
    names = "|".join(FOLDERS)
    bare_import = re.compile(rf"^\s*(from ({names})(\.|\s+import)|import ({names})(\.|\s|,|$))")
    bare = []
    for f in FOLDERS + ("tests",):
        for path in (ROOT / f).rglob("*.py"):
            for n, line in enumerate(path.read_text().splitlines(), 1):
                if bare_import.match(line):
                    bare.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not bare, "import through srcaco2.*:\n" + "\n".join(bare[:20])


def _wheel(src: Path, out: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
        + ["-w", str(out), str(src)],
        check=True,
        capture_output=True,
        text=True,
    )
    return out


@pytest.mark.slow
def test_wheel_installs_beside_a_distribution_with_a_top_level_kernels(tmp_path):
    dummy = tmp_path / "dummy"
    (dummy / "kernels").mkdir(parents=True)
    (dummy / "kernels" / "__init__.py").write_text('WHO = "another distribution"\n')
    (dummy / "pyproject.toml").write_text(
        textwrap.dedent(
            """\
            [build-system]
            requires = ["setuptools>=68"]
            build-backend = "setuptools.build_meta"
            [project]
            name = "kernels-dummy"
            version = "1.0"
            [tool.setuptools]
            packages = ["kernels"]
            """
        )
    )
    wheels = tmp_path / "wheels"
    _wheel(dummy, wheels)
    _wheel(ROOT, wheels)
    site = tmp_path / "site"  # a fresh, empty install location: only these two distributions
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target", str(site)]
        + [str(w) for w in sorted(wheels.glob("*.whl"))],
        check=True,
        capture_output=True,
        text=True,
    )
    # bin/ holds the console scripts
    top = sorted(p.name for p in site.iterdir() if not p.name.endswith((".dist-info", "__pycache__", "bin")))
    assert top == ["kernels", "srcaco2"]  # nothing generic of ours at the top level
    assert sorted(p.name for p in (site / "srcaco2").iterdir() if p.is_dir()) == sorted(FOLDERS)
    probe = textwrap.dedent(
        """\
        import importlib.util, kernels
        assert kernels.WHO == "another distribution", kernels.__file__
        spec = importlib.util.find_spec("srcaco2.kernels")
        assert spec is not None and spec.origin.endswith("srcaco2/kernels/__init__.py"), spec
        import srcaco2.trainers.config as config  # pure-Python module: imports without torch
        assert config.__file__.startswith(SITE), config.__file__
        print("ok")
        """
    ).replace("SITE", repr(str(site)))
    # -S: no site-packages of this environment (so no editable install of the checkout is seen)
    deps = [p for p in sys.path if p.endswith("site-packages")]
    run = subprocess.run(
        [sys.executable, "-S", "-c", probe],
        env={"PYTHONPATH": ":".join([str(site), *deps])},
        cwd=tmp_path,  # not the checkout: its folders would shadow the installed names
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr
