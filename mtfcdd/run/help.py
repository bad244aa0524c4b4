"""What ``python -m mtfcdd.<command> --help`` prints: what the command does, the docs page to read, its keys with
their defaults and comments (read from ``conf/<command>.yaml`` by ``mtfcdd.core.config_docs``) and its config
groups. Hydra prints ``hydra.help.template``, which ``conf/hydra/default.yaml`` sets to
``${mtfcdd.help:${hydra.job.name}}``: the text is chosen by the command's name, so a new command's config needs no
help key of its own (only an entry in ``COMMANDS`` for its summary and page).
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from mtfcdd.core.config import config_dir
from mtfcdd.core.config_docs import parse_file

WIDTH = 120
DOCS_SITE = "make docs-serve: the site at http://127.0.0.1:8001"


@dataclass(frozen=True)
class CommandHelp:
    """A command's one-line ``summary`` and the docs ``pages`` to read (paths below the checkout), first the main."""

    summary: str
    pages: tuple[str, ...]


COMMANDS = {
    "train": CommandHelp(
        "fit and test one run, or with -m a sweep of runs",
        ("docs/train-realiad.md", "docs/own-images.md", "docs/sweeps.md", "docs/resume.md"),
    ),
    "evaluate": CommandHelp(
        "test a trained checkpoint: results.json / results.md, predictions, heatmaps", ("docs/evaluation.md",)
    ),
    "predict": CommandHelp(
        "run a trained checkpoint on new images: predictions.csv / .jsonl, overlays", ("docs/predict.md",)
    ),
    "export": CommandHelp(
        "a self-contained ONNX model (fp32 or int8) of the inference pipeline", ("docs/deployment.md",)
    ),
    "benchmark": CommandHelp(
        "the paper's Table 6 for this machine: every inference engine timed against eager fp32", ("docs/deployment.md",)
    ),
    "serve": CommandHelp("serve a trained checkpoint over HTTP, with an inspection page", ("docs/serve.md",)),
    # plain argparse commands: their --help ends with argparse_epilog(name)
    "report": CommandHelp("one report over a sweep or run directories", ("docs/sweeps.md",)),
    "balanced_epoch": CommandHelp(
        "the balanced-epoch length (paper Table 2)", ("docs/train-realiad.md#balanced-sampling-and-the-balanced-epoch",)
    ),
}
"""Command name (``hydra.job.name``, or the module of an argparse command) -> its summary and pages."""


def _escape(text: str) -> str:
    """``text`` for Hydra's ``string.Template`` (``$`` doubled)."""
    return text.replace("$", "$$")


def _wrap(text: str, indent: str) -> str:
    return textwrap.fill(text, WIDTH, initial_indent=indent, subsequent_indent=indent, break_on_hyphens=False)


def help_text(command: str, conf: Path | None = None) -> str:
    """The ``--help`` page of ``python -m mtfcdd.<command>`` (Hydra template syntax: ``$APP_CONFIG_GROUPS`` stays,
    other ``$`` are escaped). An unknown command gets its config's keys and the documentation index."""
    conf = Path(config_dir()) if conf is None else conf
    entry = COMMANDS.get(command, CommandHelp("", ("docs/index.md",)))
    config = parse_file(conf, conf / f"{command}.yaml")
    lines = [f"python -m mtfcdd.{command}" + (f": {entry.summary}" if entry.summary else "")]
    if config.header:
        lines += ["", _wrap(config.header, "")]
    every_key = "every key: the site's configuration reference, or python docs/scripts/config_reference.py"
    lines += ["", _wrap(f"Read: {', '.join(entry.pages)} ({DOCS_SITE}); {every_key}.", "")]
    lines += ["", f"== Keys (key=value; defaults from conf/{command}.yaml) =="]
    for key in config.keys:
        if key.mapping or key.path == "task_name":
            continue
        default = "(required)" if key.default == "???" else key.default
        lines.append(f"  {key.path}={default}")
        if key.comment:
            lines.append(_wrap(key.comment, "      "))
    lines += [
        "",
        "== Config groups (group=option) ==",
        "$APP_CONFIG_GROUPS",
        f"The composed config: python -m mtfcdd.{command} --cfg job [overrides]; Hydra's own flags: --hydra-help.",
    ]
    return "\n".join(_escape(line) if "$APP_CONFIG_GROUPS" not in line else line for line in lines)


def argparse_epilog(command: str) -> str:
    """The end of an argparse command's ``--help``: the docs pages to read."""
    return f"Read: {', '.join(COMMANDS[command].pages)} ({DOCS_SITE})."


def register_help_resolver() -> None:
    """``${mtfcdd.help:<command>}``, the ``hydra.help.template`` of ``conf/hydra/default.yaml``."""
    OmegaConf.register_new_resolver("mtfcdd.help", help_text, replace=True)
