"""README and docs stay true: every relative link resolves, every `python -m ...` / `python benchmarks/...`
command they quote parses with the real argument parser (the module's own `main`, stopped right after
parsing), and every `dvc ... -S key=value` names a key of params.yaml."""
import argparse
import importlib
import importlib.util
import re
import runpy
import shlex
import sys

import pytest
import yaml

from conftest import ROOT

DOCUMENTS = sorted([ROOT / "README.md", ROOT / "benchmarks" / "README.md", *(ROOT / "docs").rglob("*.md")])
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")


def code_of(text: str) -> list[str]:
    """Shell lines from fenced blocks and inline code spans (an inline span may wrap onto the next line)."""
    lines, rest = [], []
    fenced = re.compile(r"^```[a-z]*\n(.*?)^```", re.S | re.M)
    for block in fenced.findall(text):
        for line in block.replace("\\\n", " ").splitlines():
            lines.append(line)
    rest = fenced.sub("", text)
    lines += [re.sub(r"\n\s*(?:>\s*)?", " ", span) for span in re.findall(r"`([^`]+)`", rest)]   # `> `: a quote
    return lines


def commands(text: str, start: str) -> list[str]:
    """Each command beginning with `start` (split at &&, ; and |, without its # comment)."""
    out = []
    for line in code_of(text):
        line = re.sub(r"(^|\s)#.*$", "", line)
        for piece in re.split(r"&&|;|\|", line):
            piece = piece.strip()
            if piece.startswith(start) and "..." not in piece and "<" not in piece:
                out.append(piece)
    return out


def test_every_relative_link_in_readme_and_docs_resolves():
    broken = []
    for doc in DOCUMENTS:
        for groups in LINK.findall(doc.read_text()):
            target = (groups[0] or groups[1]).split("#")[0]
            if not target or re.match(r"[a-z]+:", target):
                continue
            if not (doc.parent / target).exists():
                broken.append(f"{doc.relative_to(ROOT)}: {target}")
    assert broken == []


class Parsed(Exception):
    pass


def parse_only(monkeypatch, argv_main, argv: list[str]):
    """Run `argv_main(argv)` until its argparse parser has parsed `argv`; argparse errors fail the test."""
    original = argparse.ArgumentParser.parse_known_args

    def stop(self, args=None, namespace=None):
        result = original(self, args, namespace)
        raise Parsed(result)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_known_args", stop)
    with pytest.raises(Parsed) as parsed:
        argv_main(argv)
    _, unknown = parsed.value.args[0]
    assert unknown == [], f"unrecognised arguments {unknown}"


def quoted(start: str) -> dict[str, list[str]]:
    found = {}
    for doc in DOCUMENTS:
        for c in commands(doc.read_text(), start):
            found.setdefault(c, []).append(str(doc.relative_to(ROOT)))
    return found


PYTHON_M = quoted("python -m ")
BENCHMARKS = quoted("python benchmarks/")


def test_the_documents_quote_commands():
    assert len(PYTHON_M) > 20 and len(BENCHMARKS) > 3


@pytest.mark.parametrize("command", sorted(PYTHON_M))
def test_every_quoted_python_module_command_parses(command, monkeypatch):
    argv = shlex.split(command)[2:]
    module = argv.pop(0)
    assert importlib.util.find_spec(module) is not None, f"{command}: no module {module} ({PYTHON_M[command]})"
    if not module.startswith("pipeline.") or not argv:
        return                                        # pytest, or the tool named in prose: the module exists
    mod = importlib.import_module(module)
    if not hasattr(mod, "main"):
        return                                        # a stage: run by dvc, takes no arguments
    parse_only(monkeypatch, mod.main, argv)


@pytest.mark.parametrize("command", sorted(BENCHMARKS))
def test_every_quoted_benchmark_command_parses(command, monkeypatch):
    argv = shlex.split(command)[1:]
    script = ROOT / argv[0]
    assert script.is_file(), f"{command}: no {argv[0]} ({BENCHMARKS[command]})"
    if script.suffix != ".py" or "ArgumentParser" not in script.read_text():
        return                                        # a script without arguments: it exists
    monkeypatch.setattr(sys, "argv", argv)
    monkeypatch.syspath_prepend(str(script.parent))
    parse_only(monkeypatch, lambda _: runpy.run_path(str(script), run_name="__main__"), argv)


def test_every_param_a_quoted_dvc_command_sets_exists():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    missing = []
    for doc in DOCUMENTS:
        for c in commands(doc.read_text(), "dvc "):
            for key in re.findall(r"(?:-S|--set-param)\s+'?([A-Za-z_][\w.]*)=", c):
                if key == "key":                      # the placeholder of `-S key=value`
                    continue
                node = params
                for part in key.split("."):
                    node = node.get(part) if isinstance(node, dict) and part in node else KeyError
                if node is KeyError:
                    missing.append(f"{doc.relative_to(ROOT)}: {c}")
    assert missing == []


def test_the_preset_table_counts_each_presets_keys():
    """docs/parameters.md's table of presets: each row's count is what `python -m pipeline.preset --list` says."""
    from pipeline import preset

    rows = re.findall(r"^\| `(\w+)` \| .*? \| (\d+)(?: keys over `config.py`)? \|$",
                      (ROOT / "docs" / "parameters.md").read_text(), re.M)
    assert {name: int(n) for name, n in rows} == {n: len(preset.changed_keys(n)) for n in preset.names()}
