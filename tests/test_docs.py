"""Every command in README.md and docs/*.md works as typed (issue 23), checked in seconds without running any.

Fenced ``bash`` blocks are read command by command (continuation lines joined, comments and leading ``NAME=value``
assignments dropped):

- ``python tools/X.py ARGS``: the script exists and ``parse_args(ARGS)`` of the tool accepts them (every tool
  exposes ``parse_args(argv)``, which parses and validates the command line without running anything);
- ``[bash] tools/X.sh ARGS``: the launcher exists, takes the positional arguments its header names
  (`LAUNCHERS`; ``GPUS`` a positive int, ``CONFIG`` an existing file) and its tool parses the rest;
- ``make TARGET``: the Makefile has the target; ``pip install -e '.[EXTRA]'``: setup.py has the extra;
- any ``configs/``, ``tools/``, ``docs/``, ``tests/`` or ``vt_backbones/`` path named exists.

Fenced ``python`` blocks run: a config snippet (it sets ``custom_imports``) has its ``model.backbone`` built and
the ``in_channels`` of its neck or head compared with the backbone's ``out_channels``; a block importing only
vt_backbones, torch and the standard library is executed (in a temporary directory). Other blocks are counted as
not run. Relative links must point at files that exist.
"""
from __future__ import annotations

import ast
import contextlib
import functools
import importlib.util
import io
import os
import re
import shlex
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Callable

import pytest

from conftest import ROOT

TOOLS = Path(ROOT) / 'tools'
DOCS = [Path(ROOT) / 'README.md', *sorted((Path(ROOT) / 'docs').glob('*.md'))]
SHELL = {'bash', 'sh', 'shell'}
REPO_PATH = re.compile(r'^(configs|tools|docs|tests|vt_backbones)/')
ASSIGNMENT = re.compile(r'^[A-Za-z_][A-Za-z0-9_]*=')
SEPARATORS = {'&&', '||', ';', '|'}
RUNNABLE_IMPORTS = {'vt_backbones', 'torch', *sys.stdlib_module_names}


@dataclass(frozen=True)
class Launcher:
    """A shell launcher: its positional arguments and the tool (in tools/) that gets ``tool_args(positionals)``
    followed by the remaining arguments."""
    positionals: tuple[str, ...] = ()
    tool: str | None = None
    tool_args: Callable[[dict[str, str]], list[str]] = lambda named: []
    takes_more: bool = True


LAUNCHERS = {
    'dist_train.sh': Launcher(('CONFIG', 'GPUS'), 'train.py', lambda a: [a['CONFIG']]),
    'dist_test.sh': Launcher(('CONFIG', 'CHECKPOINT', 'GPUS'), 'test.py', lambda a: [a['CONFIG'], a['CHECKPOINT']]),
    'torchrun.sh': Launcher(('TOOL', 'GPUS')),
    'demo.sh': Launcher(takes_more=False),
    'install.sh': Launcher(takes_more=False),
}
SOURCED = {'select_python.sh'}  # sourced by the launchers, never run


@dataclass
class Block:
    doc: Path
    line: int  # of the opening fence
    lang: str
    text: str

    def where(self, offset: int = 0) -> str:
        return f'{self.doc.name}:{self.line + 1 + offset}'


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def count(self, kind: str) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1


def fenced_blocks(doc: Path) -> list[Block]:
    blocks, open_block, body = [], None, []
    for number, line in enumerate(doc.read_text().splitlines(), 1):
        fence = re.match(r'^\s*```\s*(\w*)\s*$', line)
        if fence and open_block is None:
            open_block, body = Block(doc, number, fence.group(1).lower(), ''), []
        elif fence:
            open_block.text = '\n'.join(body)
            blocks.append(open_block)
            open_block = None
        elif open_block is not None:
            body.append(line)
    assert open_block is None, f'{doc.name}:{open_block.line}: unclosed code fence'
    return blocks


def shell_commands(block: Block) -> list[tuple[int, list[str]]]:
    """``(line offset, argv)`` of each command: continuation lines joined, comments and assignments dropped."""
    commands, pending, start = [], '', 0
    for offset, line in enumerate(block.text.splitlines()):
        if not pending:
            start = offset
        if line.rstrip().endswith('\\'):
            pending += line.rstrip()[:-1] + ' '
            continue
        # A command substitution is one word for the checks (shlex would split it).
        words = shlex.split(re.sub(r'\$\([^)]*\)', 'SUBSTITUTED', pending + line), comments=True)
        pending = ''
        command: list[str] = []
        for word in [*words, ';']:
            if word in SEPARATORS:
                while command and ASSIGNMENT.match(command[0]):
                    command.pop(0)
                if command:
                    commands.append((start, command))
                command = []
            else:
                command.append(word)
    return commands


# ---- the tools -----------------------------------------------------------------------------------------------
@functools.cache
def tool_module(name: str) -> ModuleType:
    """tools/<name> imported as a module (tools/ on sys.path, as when a tool runs)."""
    if str(TOOLS) not in sys.path:
        sys.path.insert(0, str(TOOLS))
    spec = importlib.util.spec_from_file_location(f'vtb_docs_tool_{Path(name).stem}', TOOLS / name)
    module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def parse_problem(tool: str, args: list[str]) -> str | None:
    """Why ``tools/<tool> ARGS`` is refused by the tool's ``parse_args`` (``None``: accepted, or ``--help``)."""
    parse_args = getattr(tool_module(tool), 'parse_args', None)
    if parse_args is None:
        return f'tools/{tool} has no parse_args(argv) to check its arguments with'
    stderr = io.StringIO()
    try:  # from the repository root, where the docs' commands are typed
        with contextlib.chdir(ROOT), contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            parse_args(list(args))
    except SystemExit as exit_:
        if exit_.code not in (0, None):
            lines = stderr.getvalue().strip().splitlines() or [f'exit {exit_.code}']
            return re.sub(r'^.*?error: ', '', lines[-1])  # argparse's "PROG: error: " names pytest
    return None


@functools.cache
def make_targets() -> frozenset[str]:
    text = (Path(ROOT) / 'Makefile').read_text()
    return frozenset(re.findall(r'^([A-Za-z0-9_.-]+):', text, re.M))


@functools.cache
def setup_extras() -> frozenset[str]:
    tree = ast.parse((Path(ROOT) / 'setup.py').read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == 'extras_require':
            return frozenset(ast.literal_eval(node.value))
    return frozenset()


def check_paths(argv: list[str]) -> list[str]:
    named = [word.split('=', 1)[-1] for word in argv]
    return [f'{path} does not exist' for path in named
            if REPO_PATH.match(path) and not any(c in path for c in '*?<') and not (Path(ROOT) / path).exists()]


def check_launcher(script: str, args: list[str]) -> list[str]:
    launcher = LAUNCHERS.get(script)
    if launcher is None:
        return [f'tools/{script}: not a known launcher (add it to LAUNCHERS in tests/test_docs.py)']
    if len(args) < len(launcher.positionals) or (not launcher.takes_more and len(args) > len(launcher.positionals)):
        return [f'tools/{script} takes {" ".join(launcher.positionals) or "no arguments"}'
                f'{" [options]" if launcher.takes_more else ""}, got {args}']
    named = dict(zip(launcher.positionals, args))
    rest = args[len(launcher.positionals):]
    problems = []
    if 'GPUS' in named and not (named['GPUS'].isdigit() and int(named['GPUS']) > 0):
        problems.append(f'tools/{script}: GPUS must be a positive int, got {named["GPUS"]!r}')
    if 'CONFIG' in named and not (Path(ROOT) / named['CONFIG']).is_file():
        problems.append(f'{named["CONFIG"]} does not exist')
    tool = launcher.tool or named.get('TOOL')
    if tool is not None:
        if not (TOOLS / tool).is_file():
            problems.append(f'tools/{script}: its tool tools/{tool} does not exist')
        elif not problems and (problem := parse_problem(tool, [*launcher.tool_args(named), *rest])):
            problems.append(f'tools/{tool} (via {script}): {problem}')
    return problems


def check_command(argv: list[str], report: Report) -> list[str]:
    return list(dict.fromkeys(command_problems(argv, report)))  # a path may be reported twice


def command_problems(argv: list[str], report: Report) -> list[str]:
    problems = check_paths(argv)
    program, args = argv[0], argv[1:]
    if program == 'bash' and args:
        program, args = args[0], args[1:]
    if program in ('python', 'python3') and args and args[0].endswith('.py'):
        script, args = args[0], args[1:]
        if not (Path(ROOT) / script).is_file():
            return problems + [f'{script} does not exist']
        if script.startswith('tools/'):
            report.count('tool commands')
            problem = parse_problem(script.removeprefix('tools/'), args)
            return problems + ([f'{script}: {problem}'] if problem else [])
    elif program.endswith('.sh'):
        report.count('launcher commands')
        if not (Path(ROOT) / program).is_file():
            return problems + [f'{program} does not exist']
        return problems + check_launcher(Path(program).name, args)
    elif program == 'make':
        report.count('make commands')
        return problems + [f'make {target}: no such target in the Makefile' for target in args
                           if not ASSIGNMENT.match(target) and target not in make_targets()]
    elif program == 'pip' and '-e' in args:
        report.count('pip commands')
        extras = [e for word in args for e in re.findall(r'^\.\[(.*)\]$', word) for e in e.split(',')]
        return problems + [f'pip extra [{e}]: not in setup.py extras_require' for e in extras
                           if e not in setup_extras()]
    report.count('other shell commands (paths only)')
    return problems


# ---- python blocks -------------------------------------------------------------------------------------------
def imported_packages(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split('.')[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.split('.')[0])
    return names


def check_config_snippet(namespace: dict) -> list[str]:
    import vt_backbones
    imports = namespace['custom_imports'].get('imports', [])
    if 'vt_backbones' not in imports:
        return [f"custom_imports must import 'vt_backbones', got {imports}"]
    model = namespace.get('model', {})
    backbone_cfg = {k: v for k, v in model.get('backbone', {}).items() if k != '_delete_'}
    backbone = vt_backbones.MODELS.build(backbone_cfg)
    problems = []
    for part, cfg in model.items():
        channels = cfg.get('in_channels') if isinstance(cfg, dict) and part != 'backbone' else None
        if isinstance(channels, (list, tuple)) and list(channels) != list(backbone.out_channels):
            problems.append(f'model.{part}.in_channels {list(channels)} != the backbone\'s out_channels '
                            f'{list(backbone.out_channels)}')
    return problems


def check_python(block: Block, report: Report) -> list[str]:
    tree = ast.parse(block.text)
    assigned = {t.id for node in ast.walk(tree) if isinstance(node, ast.Assign)
                for t in node.targets if isinstance(t, ast.Name)}
    config = 'custom_imports' in assigned
    if not config and not imported_packages(tree) <= RUNNABLE_IMPORTS:
        report.count('python blocks not run (other packages)')
        return []
    namespace: dict = {'__name__': '__docs__'}
    try:  # in a temporary directory: a snippet may write files
        with tempfile.TemporaryDirectory() as tmp, contextlib.chdir(tmp), contextlib.redirect_stdout(io.StringIO()):
            exec(compile(tree, block.where(), 'exec'), namespace)
        problems = check_config_snippet(namespace) if config else []
    except Exception as err:  # noqa: BLE001  (any failure of a documented snippet is the finding)
        problems = [f'{type(err).__name__}: {err}']
    report.count('config snippets built' if config else 'python blocks run')
    return [f'{block.where()}: python block: {p}' for p in problems]


# ---- a whole page --------------------------------------------------------------------------------------------
def check_links(doc: Path) -> list[str]:
    text = re.sub(r'```.*?```', '', doc.read_text(), flags=re.S)
    targets = re.findall(r'\]\(([^)#\s]+)(?:#[^)]*)?\)', text)
    return [f'{doc.name}: link {target} does not exist' for target in targets
            if '://' not in target and not (doc.parent / target).exists()]


@functools.cache
def check_doc(doc: Path) -> Report:
    report = Report(problems=check_links(doc))
    for block in fenced_blocks(doc):
        if block.lang in SHELL:
            for offset, argv in shell_commands(block):
                report.problems += [f'{block.where(offset)}: {p}' for p in check_command(argv, report)]
        elif block.lang == 'python':
            report.problems += check_python(block, report)
    return report


@pytest.mark.parametrize('doc', DOCS, ids=[d.name for d in DOCS])
def test_commands_in_the_docs_work_as_typed(doc: Path) -> None:
    report = check_doc(doc)
    assert not report.problems, '\n'.join(report.problems)


def test_every_page_is_checked() -> None:
    reports = {doc.name: check_doc(doc).counts for doc in DOCS}
    checked = {name: sum(n for kind, n in counts.items() if 'not run' not in kind and 'other' not in kind)
               for name, counts in reports.items()}
    assert checked['README.md'] >= 6, reports  # make demo, make test, the quick starts
    for page in ('training.md', 'weights.md', 'deployment.md', 'performance.md'):
        assert checked.get(page, 0) >= 2, f'docs/{page}: too few checked commands: {reports.get(page)}'


def test_readme_is_a_five_minute_read() -> None:
    readme = (Path(ROOT) / 'README.md').read_text()
    assert len(readme.splitlines()) <= 150
    assert 'make demo' in readme and 'make test' in readme


def test_every_tool_and_launcher_can_be_checked() -> None:
    """Each tool a doc may run exposes parse_args(argv); each launcher is in LAUNCHERS, with the usage its header
    states."""
    plugins = {'cli_common.py', 'official_references.py'}  # imported by tools, never run
    for path in sorted(TOOLS.glob('*.py')):
        if path.name not in plugins:
            assert callable(getattr(tool_module(path.name), 'parse_args', None)), f'{path.name} lacks parse_args'
    for path in sorted(TOOLS.glob('*.sh')):
        if path.name in SOURCED:
            continue
        assert path.name in LAUNCHERS, f'tools/{path.name} is not in LAUNCHERS'
        usage = ' '.join([f'tools/{path.name}', *LAUNCHERS[path.name].positionals])
        header = path.read_text().split('\nset ')[0]
        if LAUNCHERS[path.name].positionals:
            assert usage in header, f'tools/{path.name}: its header does not state the usage {usage!r}'


DRIFTED = '''\
See [the guide](docs/no_such_page.md).

```bash
python tools/no_such_tool.py swin_t
python tools/train.py configs/maskrcnn_swin_t.py --no-such-option
python tools/benchmark.py swin_x --size 224
tools/dist_train.sh configs/no_such_config.py 8
bash tools/dist_train.sh configs/maskrcnn_swin_t.py eight
NNODES=2 tools/dist_test.sh configs/maskrcnn_swin_t.py ckpt.pth 8 --out
python tools/export_onnx.py swin_t out.onnx --check-sizes 16x16
make no-such-target
pip install -e '.[no_such_extra]'
python tools/convert_weights.py a.pth b.pth --model swin_t  # fine
```

```python
import vt_backbones
vt_backbones.create_backbone('swin_x')
```

```python
custom_imports = dict(imports=['vt_backbones'], allow_failed_imports=False)
model = dict(backbone=dict(type='vt_backbones.SwinTransformer', arch='tiny'), neck=dict(in_channels=[96, 192, 384]))
```
'''


def test_a_drifted_page_fails(tmp_path: Path) -> None:
    doc = tmp_path / 'drifted.md'
    doc.write_text(DRIFTED)
    problems = check_doc(doc).problems
    expected = ['docs/no_such_page.md does not exist', 'tools/no_such_tool.py does not exist',
                'unrecognized arguments: --no-such-option', "invalid choice: 'swin_x'",
                'configs/no_such_config.py does not exist', 'GPUS must be a positive int',
                'tools/test.py (via dist_test.sh): argument --out: expected one argument', 'check sizes must be at least 32x32', 'make no-such-target',
                'pip extra [no_such_extra]', "unknown model 'swin_x'", 'model.neck.in_channels [96, 192, 384]']
    for text in expected:
        assert sum(text in p for p in problems) == 1, f'{text!r} not reported once in:\n' + '\n'.join(problems)
    assert len(problems) == len(expected), '\n'.join(problems)
