"""The documentation checked against the code: every ``python -m mtfcdd.<command>`` line in the code blocks of
README.md and docs/ composes with the command's real config (Hydra's compose API, in-process: a renamed key or
option fails here) or parses with its real argparse command line; the README's links lead somewhere; the
configuration reference fails on a key without a comment; ``--help`` names each command's page and main keys."""

from __future__ import annotations

import argparse
import importlib
import re
import shlex
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser

from helpers.processes import run_side_by_side
from mtfcdd.core.config import CONFIG_DIR
from mtfcdd.core.config_docs import UndocumentedKey, check_documented, parse_conf
from mtfcdd.run.help import register_help_resolver

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "docs" / "scripts"))
config_reference = importlib.import_module("config_reference")  # docs/scripts is not a package

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
ARGPARSE = {
    "balanced_epoch": "mtfcdd.balanced_epoch",
    "report": "mtfcdd.report.__main__",
    "data.synthetic": "mtfcdd.data.synthetic.__main__",
}
"""Commands that are plain argparse programs: their lines are parsed by the command's own parser."""
SKIPPED = {
    "python -m mtfcdd.data.synthetic": "the generator named in prose (what it writes), not a command line: its "
    "--out is required"
}
"""Documented command lines (as extracted) that are not checked, and why. Everything else is: shell placeholders
are made concrete (``_tokens``), Hydra sweeps are expanded into their jobs, and every command is either a Hydra
app with ``conf/<command>.yaml`` or in :data:`ARGPARSE`."""


def _code_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, text) of the lines inside fenced code blocks, with ``\\`` continuations joined."""
    lines, fence, pending, start = [], None, "", 0
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        stripped = raw.strip()
        if stripped.startswith("```"):
            fence = None if fence else stripped
            continue
        if not fence:
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append((start, pending + stripped))
        pending = ""
    return lines


def _inline_spans(path: Path) -> list[tuple[int, str]]:
    """(line number, text) of the inline code spans outside fenced blocks that mention ``python -m mtfcdd.``, a
    span wrapped over lines joined with spaces."""
    text = path.read_text(encoding="utf-8")
    blanked = re.sub(r"```.*?```", lambda m: re.sub(r"[^\n]", " ", m.group(0)), text, flags=re.S)
    spans = []
    for match in re.finditer(r"`([^`]*python\s+-m\s+mtfcdd\.[^`]*)`", blanked):
        spans.append((text.count("\n", 0, match.start()) + 1, " ".join(match.group(1).split())))
    return spans


def _tokens(text: str) -> list[str]:
    """Shell words of ``text`` with placeholders made concrete: ``$(...)`` and ``<...>`` -> ``X``, an optional
    part ``[...]`` (not a list value ``key=[...]``) -> its content, alternatives ``a|b`` -> ``a``, ``...``
    (more arguments) dropped; comments dropped."""
    text = re.sub(r"\$\([^()]*\)", "X", text)
    text = re.sub(r"<[^<>]*>", "X", text)
    text = re.sub(r"(?<![=\w\]])\[([^\[\]]*)\]", r"\1", text)
    words = shlex.split(text, comments=True)
    return [word.split("|")[0] if "|" in word and "{" not in word else word for word in words if word != "..."]


GENERIC = "python -m mtfcdd.<"
"""A mention of every command at once (``python -m mtfcdd.<command> --help``): no one command to check."""


def documented_commands() -> list[tuple[str, str, list[str]]]:
    """(``file:line``, command, arguments) of every code-block line of the pages that runs
    ``python -m mtfcdd.<command>`` (after any ``VAR=value``; a mention in a comment or a file tree is not one), and
    of every inline code span that does."""
    found = []
    for path in PAGES:
        for number, line in [*_code_lines(path), *_inline_spans(path)]:
            if "python -m mtfcdd." not in line or GENERIC in line:
                continue
            words = _tokens(line)
            i = 0
            while i < len(words) and re.fullmatch(r"[A-Z_]+=\S*", words[i]):  # VAR=value before the command
                i += 1
            if words[i : i + 2] == ["python", "-m"] and words[i + 2].startswith("mtfcdd."):
                where = f"{path.relative_to(ROOT)}:{number}"
                found.append((where, words[i + 2].removeprefix("mtfcdd."), words[i + 3 :]))
    return found


COMMANDS = documented_commands()


def test_the_pages_hold_commands_of_every_kind():
    lines = {" ".join(["python -m", f"mtfcdd.{command}", *arguments]) for _, command, arguments in COMMANDS}
    assert set(SKIPPED) <= lines, sorted(set(SKIPPED) - lines)  # no stale entry
    kinds = {command for _, command, _ in COMMANDS}
    assert {"train", "evaluate", "predict", "export", "benchmark", "balanced_epoch", "report"} <= kinds
    assert len(COMMANDS) > 40


HYDRA_FLAGS = {"-m", "--multirun", "--help", "--hydra-help", "--resolve"}
"""Hydra's own flags: not overrides."""


def _jobs(arguments: list[str]) -> list[list[str]]:
    """The override lists of the jobs a command line runs (a ``-m`` sweep: every combination)."""
    overrides = [arg for arg in arguments if arg not in HYDRA_FLAGS]
    parsed = OverridesParser.create().parse_overrides(overrides)
    return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]


@pytest.mark.parametrize(("where", "command", "arguments"), COMMANDS, ids=[c[0] for c in COMMANDS])
def test_a_documented_command_line_composes(where, command, arguments):
    line = " ".join(["python -m", f"mtfcdd.{command}", *arguments])
    if line in SKIPPED:  # not composed, for the reason SKIPPED gives
        return
    if command in ARGPARSE:
        _parse_with_argparse(ARGPARSE[command], arguments, where)
        return
    assert (CONFIG_DIR / f"{command}.yaml").is_file(), f"{where}: no conf/{command}.yaml for mtfcdd.{command}"
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        for job in _jobs(arguments):
            try:
                compose(config_name=command, overrides=job, return_hydra_config=True)
            except Exception as err:
                pytest.fail(f"{where}: python -m mtfcdd.{command} {' '.join(job)}: {type(err).__name__}: {err}")


class _Parsed(Exception):
    """Raised by the patched parse_args once the command line has parsed: the command itself never runs."""


def _parse_with_argparse(module: str, arguments: list[str], where: str) -> None:
    original = argparse.ArgumentParser.parse_args

    def parse_only(self, args=None, namespace=None):
        original(self, args, namespace)
        raise _Parsed

    main = importlib.import_module(module).main
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(argparse.ArgumentParser, "parse_args", parse_only)
        try:
            main(arguments)
        except _Parsed:
            return
        except SystemExit as err:
            if err.code == 0 and "--help" in arguments:
                return
            pytest.fail(f"{where}: {module} {' '.join(arguments)}: argparse refused it (exit {err.code})")
    pytest.fail(f"{where}: {module} returned without parsing its command line")


def _slug(heading: str) -> str:
    """MkDocs' anchor of a heading (Python-Markdown's toc slugify)."""
    text = re.sub(r"[^\w\s-]", "", heading.replace("`", "")).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def test_the_readme_links_lead_to_pages_and_headings():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    local = [link for link in links if not link.startswith(("http://", "https://"))]
    assert len(local) > 20
    for link in local:
        target, _, anchor = link.partition("#")
        path = ROOT / target
        assert path.is_file(), f"README.md links to {link}: no such file"
        if anchor:
            headings = re.findall(r"^#+ (.+)$", path.read_text(encoding="utf-8"), flags=re.M)
            assert anchor in {_slug(h) for h in headings}, f"README.md links to {link}: no such heading"


def test_the_readme_is_short():
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 170


def test_every_key_of_conf_is_documented():
    check_documented(parse_conf(CONFIG_DIR))
    page = config_reference.render()
    assert "| `data.root` |" in page and "| `trainer.max_epochs` |" in page and "#### `model=patchcore`" in page


def test_the_config_reference_fails_on_a_key_without_a_comment(tmp_path):
    (tmp_path / "train.yaml").write_text("# which split trains\nalpha: 0.2\nmode: multi\n")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "mine.yaml").write_text("# where the images are\nroot: /data\nbatch_size: 8\n")
    with pytest.raises(UndocumentedKey) as err:
        config_reference.render(tmp_path)
    message = str(err.value)
    assert "conf/train.yaml:3 mode" in message and "conf/data/mine.yaml:3 batch_size" in message
    assert "alpha" not in message and "root" not in message
    assert config_reference.main([], tmp_path) == 1


def test_a_group_key_borrows_its_comment_from_a_sibling_option_never_from_an_override(tmp_path):
    (tmp_path / "train.yaml").write_text("# how long\nepochs: 1\n")
    for group in ("trainer", "experiment"):
        (tmp_path / group).mkdir()
    (tmp_path / "trainer" / "default.yaml").write_text("max_epochs: 10\nprecision: 32\n")
    (tmp_path / "trainer" / "gpu.yaml").write_text("# 16-mixed on a GPU\nprecision: 16-mixed\n")
    (tmp_path / "experiment" / "x.yaml").write_text(
        "# @package _global_\ntrainer:\n  # a short run for this experiment\n  max_epochs: 2\n  precision: 32\n"
    )
    with pytest.raises(UndocumentedKey) as err:
        config_reference.render(tmp_path)
    # max_epochs is only commented by the experiment's override: not a description of the key
    assert str(err.value).count("conf/") == 1 and "conf/trainer/default.yaml:1 max_epochs" in str(err.value)
    (tmp_path / "trainer" / "default.yaml").write_text("# epochs to train\nmax_epochs: 10\nprecision: 32\n")
    page = config_reference.render(tmp_path)
    # precision: from the sibling option gpu.yaml; the experiment's keys: from the group's own comments
    borrowed = "| 16-mixed on a GPU *(as in `conf/trainer/gpu.yaml`)* |"
    assert page.count(borrowed) == 2 and "| `trainer.max_epochs` | `2` | a short run for this experiment |" in page


HELP = {
    "train": ("docs/train-realiad.md", "alpha="),
    "evaluate": ("docs/evaluation.md", "ckpt_path="),
    "predict": ("docs/predict.md", "input="),
    "export": ("docs/deployment.md", "format="),
    "benchmark": ("docs/deployment.md", "run="),
    "serve": ("docs/serve.md", "ckpt_path="),
    "report": ("docs/sweeps.md", "--out"),
    "balanced_epoch": ("docs/train-realiad.md", "--counts"),
    "data.synthetic": ("docs/realiad-format.md", "--layout"),
}
"""Command -> (its page, a main key) that ``--help`` must print."""


def _check_help(name: str, out: str) -> None:
    page, key = HELP[name]
    assert page in out and key in out, f"{name} --help lacks {page} or {key}:\n{out}"
    if name not in ARGPARSE:
        assert "== Config groups (group=option) ==" in out and f"python -m mtfcdd.{name}:" in out


@pytest.mark.parametrize("name", sorted(HELP))
def test_help_names_the_page_and_the_main_keys(name, capsys):
    """In-process: Hydra's help template of the command's config (chosen by the job name, as the command line
    names it), or the argparse command's own --help."""
    if name in ARGPARSE:
        with pytest.raises(SystemExit) as done:
            importlib.import_module(ARGPARSE[name]).main(["--help"])
        assert done.value.code == 0
        _check_help(name, capsys.readouterr().out)
        return
    register_help_resolver()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3", job_name=name):
        cfg = compose(config_name=name, return_hydra_config=True)
    _check_help(name, cfg.hydra.help.template)


@pytest.mark.slow
def test_help_on_the_command_line():
    """``python -m mtfcdd.<command> --help`` for every command, as a user runs it (processes run side by side)."""
    for name, proc in run_side_by_side({name: ["--help"] for name in HELP}, cwd=ROOT).items():
        assert proc.returncode == 0, f"{name} --help: {proc.stderr[-2000:]}"
        _check_help(name, proc.stdout)
