"""Presets: small files of changes, rendered into a complete params.yaml.

    python -m pipeline.preset shapes32      # params.yaml = the default run with presets/shapes32.yaml's changes
    python -m pipeline.preset default       # back to the default run
    python -m pipeline.preset --list        # the presets, one line each

One place for each default: every key's value and comment live in `config.py`
(the library defaults); `presets/default.yaml` holds what the default run
changes there (the 2-core CPU budget); any other preset holds only what it
changes over the default run. `params.yaml` stays complete, every key with
its comment, so `dvc exp run -S key=value` can set any of them; the committed
one is exactly this module's rendering of `default` (a test checks it).

A preset file is plain YAML: nested keys as in params.yaml, a comment after a
value says why (it replaces the library comment in the rendering), and the
comment block at the top becomes params.yaml's header.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import re
import sys
from pathlib import Path

import yaml

from . import config, io
from .config import ConfigError

PRESETS = Path(__file__).resolve().parent / "presets"
DEFAULT = "default"
COMMENT_COLUMN = 26
KEY_LINE = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_][A-Za-z_0-9]*):(?P<rest>.*)$")
# A comment starts at a '#' after whitespace and outside quotes (YAML's rule): `path: "/a # b"` has none.
COMMENT = re.compile(r"""^(?:[^'"#]|'[^']*'|"(?:[^"\\]|\\.)*"|(?<=\S)#)*?\s#\s?(?P<comment>.*)$""")


@dataclasses.dataclass
class Preset:
    """A preset read from its file: the header comment, the changed values (nested) and their comments."""
    path: Path
    header: list[str]
    values: dict
    comments: dict[str, str]


def path_of(name: str | Path) -> Path:
    """A preset's file from its name (`shapes32`) or its path."""
    path = Path(name)
    if path.suffix != ".yaml":
        path = PRESETS / f"{name}.yaml"
    elif not path.is_file() and (PRESETS / path.name).is_file() and path.parent == Path("."):
        path = PRESETS / path.name                                   # `shapes32.yaml` from anywhere
    if not path.is_file():
        raise ConfigError(f"{path}: no such preset (presets: {', '.join(names())})")
    return path


def names() -> list[str]:
    return sorted(p.stem for p in PRESETS.glob("*.yaml"))


def read(path: Path) -> Preset:
    """Parse a preset file: YAML values, and the comments `yaml` drops (after a key, and the lines under it)."""
    try:
        text = config.read_text(path)
    except OSError as e:
        raise ConfigError(f"{path}: {e.strerror or e}") from None
    try:
        values = config.load_yaml(text) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: not valid YAML ({getattr(e, 'problem', None) or e})") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: must hold a mapping of parameters")
    header, comments, stack, last = [], {}, [], None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            if not stack and last is None:
                header.append(stripped[1:].strip())
            elif last is not None and len(line) - len(line.lstrip()) > last[1]:
                comments[last[0]] += "\n" + stripped[1:].strip()          # a comment's continuation line
            continue
        match = KEY_LINE.match(line)
        if not match:
            last = None
            continue
        indent = len(match["indent"])
        while stack and stack[-1][1] >= indent:
            stack.pop()
        key = ".".join([k for k, _ in stack] + [match["key"]])
        stack.append((match["key"], indent))
        last = None
        comment = COMMENT.match(match["rest"])
        if comment and comment["comment"].strip():
            comments[key] = comment["comment"].strip()
            last = (key, indent)
    return Preset(path, header, values, comments)


def _plain(value):
    """Config values as YAML writes them back (tuples as lists)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _merge(base: dict, changes: dict, path: Path, prefix: str = "") -> None:
    """Apply `changes` to `base` in place; a key the config does not have is an error naming it and the file."""
    for key, value in changes.items():
        dotted = prefix + str(key)
        if key not in base:
            raise ConfigError(f"{path}: {dotted}: unknown key (known: {', '.join(map(str, base))})")
        if isinstance(base[key], dict):
            if not isinstance(value, dict):
                raise ConfigError(f"{path}: {dotted}: must be a mapping, got {value!r}")
            _merge(base[key], value, path, dotted + ".")
        else:
            base[key] = value


def compose(name: str | Path = DEFAULT) -> tuple[config.Config, dict, dict[str, str], list[str]]:
    """The config of a preset: the library defaults, then presets/default.yaml, then the preset's changes.

    Returns the validated Config, its values as a nested dict (in config order), the comment of each
    key (the preset's where it gives one, else the default run's, else config.py's) and the header."""
    raw = _plain(config.to_dict(config.Config()))
    library = config.docs()
    comments = dict(library)
    chain = [path_of(DEFAULT)]
    path = path_of(name)
    if path.resolve() != chain[0].resolve():
        chain.append(path)
    header: list[str] = []
    for p in chain:
        preset = read(p)
        _merge(raw, preset.values, p)
        # A value changed without a reason gets config.py's comment, not the one the layer below gave its own value.
        comments.update({key: library.get(key) for key in dotted(preset.values)})
        comments.update(preset.comments)
        header = preset.header
    try:
        cfg = config.from_dict(copy.deepcopy(raw))
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    return cfg, raw, comments, header


def load(name: str | Path = DEFAULT) -> config.Config:
    return compose(name)[0]


def _scalar(value) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=10 ** 6).strip()
    return text[:-3].strip() if text.endswith("\n...") else text


def render(raw: dict, comments: dict[str, str], header: list[str]) -> str:
    """params.yaml's text: the header, then every key in config order with its comment."""
    lines = [f"# {h}".rstrip() for h in header]

    def emit(mapping: dict, prefix: str, depth: int):
        for key, value in mapping.items():
            dotted = prefix + key
            if depth == 0 and isinstance(value, dict):
                lines.append("")
            text = "  " * depth + f"{key}:" + ("" if isinstance(value, dict) else f" {_scalar(value)}")
            comment = comments.get(dotted)
            if comment:
                column = max(len(text) + 2, COMMENT_COLUMN)
                first, *rest = comment.split("\n")
                lines.append(text.ljust(column) + f"# {first}".rstrip())
                lines.extend(" " * column + f"# {more}".rstrip() for more in rest)
            else:
                lines.append(text)
            if isinstance(value, dict):
                emit(value, dotted + ".", depth + 1)
    emit(raw, "", 0)
    return "\n".join(lines) + "\n"


def rendered(name: str | Path = DEFAULT) -> str:
    """params.yaml for a preset: its header, a line saying how it was made, every key."""
    _, raw, comments, header = compose(name)
    path = path_of(name)
    stem = DEFAULT if is_default(path) else path.stem
    shipped = path.resolve().parent == PRESETS.resolve()
    label = f"presets/{path.name}" if shipped else str(path)
    over = "config.py's defaults" + ("" if stem == DEFAULT else " and the default run")
    called = stem if shipped else name     # `preset pipeline/presets/x.yaml` is preset x
    made = [f"Written by `python -m pipeline.preset {called}`: {label}'s changes over {over}.",
            "Every key is here, so `dvc exp run -S key=value` can set any of them."]
    header = [h for h in header if not h.startswith(("Written by `python -m pipeline.preset", made[1]))]
    return render(raw, comments, header + made)


def is_default(path: Path) -> bool:
    return path.resolve() == path_of(DEFAULT).resolve()


def dotted(d: dict, prefix: str = "") -> list[str]:
    """The dotted keys of the leaves of a nested mapping."""
    return [k for key, v in d.items() for k in (dotted(v, f"{prefix}{key}.") if isinstance(v, dict) else [prefix + key])]


def changed_keys(name: str | Path) -> list[str]:
    """The dotted keys a preset sets (itself, not the default run under it)."""
    return dotted(read(path_of(name)).values)


def main(argv: list[str] | None = None) -> int:
    a = argparse.ArgumentParser(prog="python -m pipeline.preset", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    a.add_argument("name", nargs="?", help="a preset's name (pipeline/presets/NAME.yaml) or a preset file")
    a.add_argument("--out", type=Path, default=Path("params.yaml"), help="where to write (default: params.yaml)")
    a.add_argument("--list", action="store_true", help="list the presets and what each changes")
    a.add_argument("--check", action="store_true", help="exit 1 if --out is not the preset's rendering")
    args = a.parse_args(argv)
    try:
        if args.check and not args.name:
            raise ConfigError("--check: name the preset to check --out against (e.g. python -m pipeline.preset "
                              "default --check)")
        if args.list or not args.name:
            for n in names():
                first = read(path_of(n)).header[:1]
                print(f"{n:12s} {len(changed_keys(n)):3d} keys  {first[0] if first else ''}")
            return 0
        path = path_of(args.name)
        if path.resolve() == args.out.resolve():
            raise ConfigError(f"{args.out}: is the file to write; name a preset (python -m pipeline.preset --list)")
        text = rendered(args.name)
        why = io.not_replaceable(args.out, links=True)
        if why is not None and not args.check:
            raise ConfigError(f"--out {args.out}: {why}")
        if args.check:
            same = args.out.is_file() and args.out.read_text() == text
            print(f"{args.out}: {'is' if same else 'is not'} the rendering of preset {args.name}")
            return 0 if same else 1
        io.save_text(args.out, text)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"error: --out {args.out}: {e.strerror or e}", file=sys.stderr)
        return 2
    extra = "" if is_default(path) else f" ({len(changed_keys(path))} keys set over the default run)"
    print(f"{args.out}: preset {path.stem}{extra}")
    return 0


def _main() -> int:
    """The command: Ctrl-C at any point is one line and exit 130 (io.save_text writes atomically, so
    params.yaml is either the old or the new rendering)."""
    try:
        return main()
    except KeyboardInterrupt:
        print("interrupted: --out is as it was, or fully written (writes are atomic)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(_main())
