"""No mtfcdd module changes global state when imported: in a fresh interpreter, importing every module of the package
registers no OmegaConf resolver and leaves the warning filters, matplotlib's backend, the environment, the root
logger, the signal handlers and torch's global settings as they were. (What a command needs, its lifecycle sets up:
e.g. the sweep resolvers in ``mtfcdd.run.lifecycle``, the eval-mode warning filter around ``trainer.fit``.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "mtfcdd"

PROBE = r"""
import ast, importlib, json, logging, os, signal, sys, warnings
from pathlib import Path

package = Path(sys.argv[1])
modules = sorted(".".join(("mtfcdd", *p.relative_to(package).with_suffix("").parts)).removesuffix(".__init__")
                 for p in package.rglob("*.py"))
# the third-party modules mtfcdd imports come first: their own import-time effects are not mtfcdd's
third_party = set()
for path in package.rglob("*.py"):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
            [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else [])
        third_party.update(n for n in names if n.split(".")[0] != "mtfcdd")
for name in sorted(third_party):
    try:
        importlib.import_module(name)
    except ImportError:
        pass

import matplotlib, torch
from omegaconf.basecontainer import BaseContainer

def state():
    return {
        "resolvers": sorted(name for name in BaseContainer._resolvers if name.startswith("mtfcdd")),
        "warning filters": [repr(f) for f in warnings.filters],
        "matplotlib backend": repr(dict.__getitem__(matplotlib.rcParams, "backend")),
        "environment": dict(os.environ),
        "root logger": [logging.getLogger().level, [repr(h) for h in logging.getLogger().handlers]],
        "signal handlers": {s.name: repr(signal.getsignal(s)) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)},
        "torch": [torch.get_num_threads(), str(torch.get_default_dtype()), torch.get_float32_matmul_precision(),
                  torch.are_deterministic_algorithms_enabled()],
    }

before = state()
for name in modules:
    importlib.import_module(name)
after = state()
print(json.dumps({"modules": len(modules), "changed": {key: [before[key], after[key]] for key in before
                                                        if before[key] != after[key]}}))
"""


def test_importing_every_module_changes_no_global_state():
    done = subprocess.run([sys.executable, "-c", PROBE, str(PACKAGE)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["modules"] > 50  # every module was imported, not an empty package
    assert report["changed"] == {}
