"""The installed commands: every [project.scripts] entry is a `cli` of idpulse.commands, each
script of the clone runs that same command, and bundled files are found from any folder."""

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11")
ROOT = Path(__file__).resolve().parents[1]


def _entries() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]


def test_every_command_is_installed_and_every_script_is_a_command():
    entries = _entries()
    scripts = sorted(p.stem for p in (ROOT / "scripts").glob("*.py"))
    assert sorted(entries) == [f"idpulse-{s.replace('_', '-')}" for s in scripts]
    for name, target in entries.items():
        module, func = target.split(":")
        assert callable(getattr(importlib.import_module(module), func)), name
    for s in scripts:  # thin: no sys.path edits, only the command's cli()
        text = (ROOT / "scripts" / f"{s}.py").read_text()
        assert "sys.path" not in text and f"from idpulse.commands.{s} import cli" in text


def test_script_help_from_another_folder(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "upscale.py"), "--help"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "--dry-run" in r.stdout and "thumbnail" in r.stdout


def test_bundled_paths_resolve_from_the_clone_then_the_installed_copy(tmp_path, monkeypatch):
    from idpulse import paths

    monkeypatch.chdir(tmp_path)
    assert paths.resolve("checkpoints/generator.pt") == ROOT / "checkpoints" / "generator.pt"
    own = tmp_path / "checkpoints" / "generator.pt"  # a user's own file of that name wins
    own.parent.mkdir()
    own.write_bytes(b"x")
    assert paths.resolve("checkpoints/generator.pt") == Path("checkpoints/generator.pt")
    # a `pip install .`: no clone above the package, the data under <prefix>/share/idpulse
    share = tmp_path / "prefix" / "share" / "idpulse"
    (share / "configs").mkdir(parents=True)
    (share / "configs" / "upscale.yaml").write_text("device: cpu\n")
    monkeypatch.setattr(paths, "REPO", tmp_path / "site-packages")
    monkeypatch.setattr(paths, "installed_data", lambda: [share])
    assert paths.resolve("configs/upscale.yaml") == share / "configs" / "upscale.yaml"
    missing = paths.resolve("checkpoints/nothing.pt")  # not found: the clone's path, for the error to name
    assert missing == tmp_path / "site-packages" / "checkpoints" / "nothing.pt"


@pytest.mark.parametrize("pattern", ["configs/*.yaml", "configs/*/*.yaml", "checkpoints/*.pt",
                                     "checkpoints/judges/*.pt"])
def test_pip_install_carries_every_bundled_file(pattern):
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["data-files"]
    carried = {f for globs in data.values() for g in globs for f in ROOT.glob(g)}
    files = set(ROOT.glob(pattern))
    assert files and files <= carried, sorted(str(f.relative_to(ROOT)) for f in files - carried)
