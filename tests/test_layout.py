"""The house: folders that name the parts, lower parts never importing higher ones, no import cycle,
small modules, no dates in the code, the public names, and a README whose every command exists."""
import ast
import importlib
import importlib.util
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "ssl_min"
# The parts, lowest first: a module may import its own part and the parts before it, never after.
PARTS = ["augment", "models", "objectives", "runtime", "data", "evaluate", "visual"]
TOP = len(PARTS)                       # ssl_min/*.py: config, hear and the `python -m` entry points
ENTRY_POINTS = {"embed", "prepare", "demo", "plot", "neighbors"}


def modules():
    """{dotted name: path} of every module in ssl_min."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imports(path):
    """The ssl_min modules a file imports (names as written; `from ssl_min.x import y` also names ssl_min.x.y
    when that is a module)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names if a.name.startswith("ssl_min")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ssl_min"):
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
    return names


def rank(name):
    parts = name.split(".")
    return PARTS.index(parts[1]) if len(parts) > 1 and parts[1] in PARTS else TOP


def test_lower_parts_never_import_higher_ones_and_there_is_no_cycle():
    mods = modules()
    graph = {m: {i for i in imports(p) if i in mods and i != m} for m, p in mods.items()}
    upward = [(m, i) for m, deps in graph.items() for i in deps if rank(i) > rank(m)]
    assert upward == [], f"imports from a lower part up to a higher one: {upward}"
    state = {}

    def visit(m, stack):
        state[m] = "open"
        for d in graph[m]:
            if state.get(d) == "open":
                raise AssertionError(f"import cycle: {' -> '.join(stack[stack.index(d):] + [d])}")
            if d not in state:
                visit(d, stack + [d])
        state[m] = "done"

    for m in graph:
        if m not in state:
            visit(m, [m])


def test_modules_are_small_and_few_sit_at_the_top():
    lengths = {p.relative_to(ROOT): len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")}
    assert max(lengths.values()) <= 350, {p: n for p, n in lengths.items() if n > 350}
    top = [p for p, n in lengths.items() if p.parent == Path("ssl_min") and n > 40 and p.stem not in ENTRY_POINTS]
    assert len(top) <= 3, top
    for stem in ENTRY_POINTS:                              # thin: they import the part that does the work
        assert lengths[Path("ssl_min") / f"{stem}.py"] <= 50, stem
    for folder in PARTS:                                   # each part says what it is and exports its names
        doc = ast.get_docstring(ast.parse((PACKAGE / folder / "__init__.py").read_text()))
        assert doc and len(doc.splitlines()) >= 3, folder


def test_no_dated_line_in_the_code():
    files = [*PACKAGE.rglob("*.py"), ROOT / "train.py", ROOT / "probe.py"]
    dated = [f"{p.relative_to(ROOT)}:{i}" for p in files for i, line in enumerate(p.read_text().splitlines(), 1)
             if re.search(r"20\d\d-\d\d-\d\d", line)]
    assert dated == []


def test_the_public_names():
    from ssl_min.augment import (Augmentation, Compose, Delay, Gain, HighLowPass, Noise, PitchShift,
                                 PolarityInversion, RandomApply, Reverb, build_chain)
    from ssl_min.models import SampleCNN, build_model
    from ssl_min.objectives import NTXent
    import ssl_min.hear as hear
    assert callable(build_chain) and issubclass(SampleCNN, torch.nn.Module) and issubclass(NTXent, torch.nn.Module)
    assert isinstance(build_model(3, 0.125, "mean", 16, 8).encoder, SampleCNN)
    assert all(callable(getattr(hear, f)) for f in ("load_model", "get_scene_embeddings", "get_timestamp_embeddings"))
    effects = (Compose, Delay, Gain, HighLowPass, Noise, PitchShift, PolarityInversion, RandomApply, Reverb)
    assert all(issubclass(e, Augmentation) for e in effects)
    chain = build_chain(8000, lowpass=(1500, 3500))
    assert isinstance(chain, Compose) and chain(torch.zeros(2, 1, 800)).shape == (2, 1, 800)


@pytest.mark.parametrize("module", ["ssl_min.embed", "ssl_min.prepare", "ssl_min.demo", "ssl_min.plot",
                                    "ssl_min.neighbors"])
def test_python_dash_m_entry_points_run(module, tmp_path):
    log = tmp_path / "out.txt"
    with open(log, "w") as f:
        code = subprocess.call([sys.executable, "-m", module, "--help"], cwd=tmp_path, stdout=f, stderr=subprocess.STDOUT,
                               env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    text = log.read_text()
    assert code == 0 and "usage:" in text, text[-2000:]


def test_an_old_layout_checkpoint_loads_and_embeds_the_same():
    """tests/fixtures/old_layout.pt: a train.py checkpoint written by the code before the folders
    (one flat package, the fast formulation by default), with its encoder's output on a fixed input."""
    from ssl_min.config import Config
    from ssl_min.models import load_encoder
    saved = torch.load(ROOT / "tests" / "fixtures" / "old_layout.pt", weights_only=True)
    path = ROOT / "tests" / "fixtures" / "old_checkpoint.pt"
    try:
        torch.save(saved["checkpoint"], path)
        for conv in ("reference", "fast"):
            encoder, info = load_encoder(path, conv)
            with torch.no_grad():
                torch.testing.assert_close(encoder(saved["input"]), saved["output"], rtol=1e-5, atol=1e-6)
    finally:
        path.unlink(missing_ok=True)
    cfg = Config(**saved["checkpoint"]["config"])          # its config still reads (no `conv`: auto)
    assert cfg.conv == "auto" and info["chunk_samples"] == 2000


# ---- the README: short, the two commands first, every command it shows exists ----

README = ROOT / "README.md"


def fenced_commands():
    """Every command line of the README's ```bash blocks, with its continuation lines joined."""
    out, inside = [], False
    for line in README.read_text().splitlines():
        if line.startswith("```"):
            inside = line.strip() in ("```bash", "```sh") if not inside else False
            continue
        if inside and line.strip() and not line.lstrip().startswith("#"):
            out.append(line.split(" #")[0].strip())
    return out


def make_targets():
    return set(re.findall(r"^([a-z][a-z-]*):", (ROOT / "Makefile").read_text(), re.M))


def script_flags(targets):
    """{" ".join(argv): the --flags that script or module accepts}, read from each one's --help
    (all started at once: each is an interpreter importing torch)."""
    procs = {" ".join(argv): subprocess.Popen([sys.executable, *argv, "--help"], cwd=ROOT, text=True,
                                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for argv in targets}
    return {key: set(re.findall(r"(--[a-z_][a-z0-9_-]*)", proc.communicate()[0])) for key, proc in procs.items()}


def test_readme_is_a_short_front_door_with_the_two_commands_first():
    lines = README.read_text().splitlines()
    assert len(lines) <= 180, len(lines)
    first_screen = "\n".join(lines[:50])
    assert "make install test" in first_screen and "make pretrain probe" in first_screen


def test_the_readme_and_docs_name_no_internal_issue():
    """Readers have no access to our tracker: a page says what holds, not which issue asked for it."""
    for page in [README, *sorted((ROOT / "docs").glob("*.md"))]:
        found = re.findall(r"\b[Ii]ssues? #?\d+", page.read_text())
        assert not found, (page.name, found)


def readme_commands():
    """(tool, its arguments) for every command of the README's code blocks, VAR=value prefixes dropped."""
    for command in fenced_commands():
        words = shlex.split(command.replace("~", "HOME"))
        while words and "=" in words[0] and not words[0].startswith("-"):
            words = words[1:]                                     # VAR=value prefixes
        if not words:
            continue
        tool, args = words[0], words[1:]
        if tool == "torchrun":                                    # its own options, then the script
            args = args[next(i for i, a in enumerate(args) if not a.startswith("-")):]
        yield command, tool, args


def test_every_command_in_the_readme_names_what_exists():
    targets, checked = make_targets(), 0
    flags_of = script_flags({("-m", args[1]) if args[0] == "-m" else (args[0],)
                             for _, tool, args in readme_commands() if tool in ("python", "python3", "torchrun")})
    for command, tool, args in readme_commands():
        if tool == "make":
            named = [a for a in args if "=" not in a]
            assert set(named) <= targets, (command, set(named) - targets)
        elif tool in ("python", "python3", "torchrun"):
            if args[0] == "-m":
                target, rest = ["-m", args[1]], args[2:]
                assert importlib.util.find_spec(args[1]) is not None, command
            else:
                target, rest = [args[0]], args[1:]
                assert (ROOT / args[0]).exists(), command
            if "..." in rest:
                rest = rest[:rest.index("...")]
            key = " ".join(target)
            given = {a.split("=")[0] for a in rest if a.startswith("--")}
            assert given <= flags_of[key], (command, given - flags_of[key])
        elif tool in ("pip", "cd", "git", "apt-get", "dpkg", "ls", "cat", "chromium"):
            continue
        else:
            raise AssertionError(f"the README runs {tool!r}: teach this test what it is ({command})")
        checked += 1
    assert checked >= 8
