"""One self-contained Python file that builds a registered network with torch alone (no srcaco2).

A bioimage.io ``pytorch_state_dict`` package ships the network's architecture as source code that
its consumers (bioimageio.core, deepImageJ's Python engine, napari and ilastik plugins) import from
the package. Our networks import shared helpers from srcaco2 (``_edsr_common``, ``_grl_blocks``,
``_interp``, ``_hparams``, ``_reach``, ``swinir``'s windows, the Triton-dispatched
``srcaco2.kernels.pixel_shuffle.PixelShuffle``), so the file embeds:

* the source of the network's module and of every ``srcaco2.trainers.models`` module it imports
  (found by reading their ``import`` statements, transitively), unchanged except that
  ``srcaco2.trainers.models.X`` imports become imports of a private package ``_PKG.X``;
* `srcaco2.trainers.export.border` (cutting the consumer's padding off at image borders);
* two stand-ins for what is not torch: ``registry`` (``register_model`` becomes a decorator that
  records nothing; the registry's facts live in the package's rdf, not in code) and
  ``pixel_shuffle`` (`torch.nn.functional.pixel_shuffle` + the fused parameter-free activation,
  what the dispatcher runs off CUDA; no parameters, so the state_dict is unchanged).

At import, the file creates the private modules in dependency order (each in its own namespace, as
in srcaco2, so helpers with equal names never collide) and exposes ``build_network(scale,
in_channels=1, border_halo=0, **overrides)``, the registry's builder, in ``eval()`` mode.
``tests/export/test_standalone_source.py`` imports a generated file in a process where srcaco2
cannot be imported and compares its outputs with `srcaco2.trainers.models.build_model`'s.
"""

from __future__ import annotations

import ast
import importlib.util
import textwrap
from pathlib import Path

__all__ = ["standalone_source", "vendored_modules", "ENTRY_POINT"]

ENTRY_POINT = "build_network"
"""Name of the callable the generated file defines (the rdf's ``architecture.callable``)."""

_MODELS = "srcaco2.trainers.models"
_STUBS = {
    f"{_MODELS}.registry": (
        "registry",
        '''"""Stand-in for srcaco2.trainers.models.registry: registration records nothing here."""


def register_model(name, **facts):
    def wrap(builder):
        return builder

    return wrap
''',
    ),
    "srcaco2.kernels.pixel_shuffle": (
        "pixel_shuffle",
        '''"""Stand-in for srcaco2.kernels.pixel_shuffle (its torch path): shuffle, then the activation."""

import torch
import torch.nn.functional as F
from torch import nn


class PixelShuffle(nn.Module):
    def __init__(self, upscale_factor, activation=None):
        super().__init__()
        self.upscale_factor = int(upscale_factor)
        self.activation = activation

    def forward(self, x):
        y = F.pixel_shuffle(x, self.upscale_factor)
        if self.activation == "relu":
            return F.relu(y)
        if self.activation == "gelu":
            return F.gelu(y)
        if self.activation == "sigmoid":
            return torch.sigmoid(y)
        return y
''',
    ),
}


def _srcaco2_imports(source: str) -> list[str]:
    """Module names of every ``from srcaco2... import`` / ``import srcaco2...`` in `source`."""
    names = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "srcaco2":
            names.append(node.module)
        elif isinstance(node, ast.Import):
            names += [a.name for a in node.names if a.name.split(".")[0] == "srcaco2"]
    return names


_BORDER = "srcaco2.trainers.export.border"


def _short(module: str) -> str:
    if module in _STUBS:
        return _STUBS[module][0]
    if module == _BORDER:
        return "border"
    if not module.startswith(_MODELS + "."):
        raise ValueError(
            f"{module} is neither a network module ({_MODELS}.*) nor one with a torch-only stand-in "
            f"({', '.join(_STUBS)}); add a stand-in to srcaco2.trainers.export.standalone_source"
        )
    return module[len(_MODELS) + 1 :]


def vendored_modules(method: str) -> list[tuple[str, str, str]]:
    """``(srcaco2 module, short name, source)`` the network needs, dependencies first.

    Raises
    ------
    ValueError
        The network imports something of srcaco2 that has neither a module file nor a stand-in.
    """
    order: list[tuple[str, str, str]] = []
    seen: set[str] = set()

    def visit(module: str, stack: tuple[str, ...]) -> None:
        if module in seen:
            return
        if module in stack:
            raise ValueError(f"import cycle {' -> '.join((*stack, module))}")
        if module in _STUBS:
            source = _STUBS[module][1]
        else:
            spec = importlib.util.find_spec(module)
            if spec is None or spec.origin is None:
                raise ValueError(f"cannot find the source of {module}")
            source = Path(spec.origin).read_text(encoding="utf-8")
        for dep in _srcaco2_imports(source):
            _short(dep)  # refuse what cannot be vendored
            visit(dep, (*stack, module))
        seen.add(module)
        order.append((module, _short(module), source))

    visit(_BORDER, ())
    visit(f"{_MODELS}.{method}", ())
    return order


def _rewrite(source: str, package: str) -> str:
    """`source` with its srcaco2 imports pointed at the private `package` (line by line, by the AST)."""
    lines = source.splitlines(keepends=True)
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "srcaco2":
            i = node.lineno - 1
            old = f"from {node.module} import"
            if old not in lines[i]:
                raise ValueError(f"cannot rewrite the import of {node.module} on line {node.lineno}")
            lines[i] = lines[i].replace(old, f"from {package}.{_short(node.module)} import", 1)
    return "".join(lines)


def standalone_source(method: str, *, builder: str = "build", title: str = "") -> str:
    """The text of a Python file that builds `method` with torch alone.

    Parameters
    ----------
    method : str
        Registry name (``"swinir"``).
    builder : str
        The builder's name in the network's module (the function `register_model` decorates).
    title : str
        First line of the file's docstring.

    Returns
    -------
    str
        Python source defining ``build_network(scale, in_channels=1, **overrides) -> torch.nn.Module``
        (eval mode), which maps ``(B, C, h, w)`` float32 in [0, 1] to ``(B, C, s*h, s*w)``.
    """
    package = f"_srcaco2_{method}_standalone"
    modules = vendored_modules(method)
    parts = [
        f'"""{title or method + " (SR-CACO-2 benchmark network)"}\n\n'
        "Self-contained: needs torch only. Generated by `srtrain export` (srcaco2) from the toolkit's\n"
        "network modules, embedded below unchanged except for their imports, which point at a private\n"
        f"package {package!r} created at import. Build with ``{ENTRY_POINT}(scale, in_channels=1,\n"
        '**overrides)``; the weights are a plain state_dict (``load_state_dict(strict=True)``).\n"""\n\n',
        "import sys\nimport types\n\nimport torch\n\n",
        f"_PKG = {package!r}\n_SOURCES = {{}}\n\n",
    ]
    for module, short, source in modules:
        body = ",\n".join(f"    {line!r}" for line in _rewrite(source, package).splitlines())
        parts.append(f"# ---- {module}\n_SOURCES[{short!r}] = '\\n'.join([\n{body},\n])\n\n")
    parts.append(
        textwrap.dedent(
            f'''
            def _load():
                """The private package's modules, created once per process (dependencies first)."""
                if _PKG + "." + {method!r} in sys.modules:
                    return sys.modules[_PKG + "." + {method!r}]
                pkg = types.ModuleType(_PKG)
                pkg.__path__ = []
                sys.modules[_PKG] = pkg
                for short, source in _SOURCES.items():
                    name = _PKG + "." + short
                    mod = types.ModuleType(name)
                    mod.__file__ = __file__
                    sys.modules[name] = mod
                    setattr(pkg, short, mod)
                    exec(compile(source, __file__ + "::" + short, "exec"), mod.__dict__)
                return sys.modules[_PKG + "." + {method!r}]


            def {ENTRY_POINT}(scale, in_channels=1, border_halo=0, border_threshold=None, **overrides):
                """The network, in eval mode: (B, C, h, w) float32 in [0, 1] -> (B, C, scale*h, scale*w).

                Each forward runs under torch seed 0 (a network drawing random numbers repeats itself).
                With border_halo > 0 (LR px), edge rows / columns holding only the package's padding
                value are cut off before the network (embedded module 'border'; border_threshold: that
                value after the pre-processing, default the 8-bit one). The state_dict is the network's own.
                """
                net = _load().{builder}(int(scale), in_channels=int(in_channels), **overrides)
                assert isinstance(net, torch.nn.Module)
                border = sys.modules[_PKG + ".border"]
                plain = net.forward

                _t = border.THRESHOLD if border_threshold is None else float(border_threshold)

                def forward(x, _plain=plain, _h=int(border_halo), _s=int(scale), _t=_t):
                    # a fixed seed: networks that draw random numbers (NLSN's hashing) repeat their output
                    with torch.random.fork_rng(devices=[x.device] if x.is_cuda else []):
                        torch.manual_seed(0)
                        if _h:
                            return border.cut_and_run(_plain, x, _h, _s, _t)
                        return _plain(x)

                net.forward = forward
                return net.eval()
            '''
        ).lstrip("\n")
    )
    return "".join(parts)
