"""The tables `eval_tables` can make, by name: each a registered function with its renderer.

A table is one function `compute(run) -> Section` plus one `register_table` call; the config's
`tables:` lists which to run (a table's `needs` run with it). Each table draws its faces from its
own random stream, seeded by the config's seed and the table's name (`table_rng`), so a table's
faces are the same whichever other tables run.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import torch


@dataclass
class Section:
    """One table's part of the report: `table` under the table's name, the faces of its rows by
    strategy (`items`), and the fidelity of its rows (PSNR/SSIM; empty: none)."""

    table: dict
    items: dict[str, list[str]] | list[str] | None = None  # None: a table of no faces of its own
    fidelity: dict = field(default_factory=dict)
    fidelity_on: str = ""  # the faces the fidelity rows are on, for the report


@dataclass(frozen=True)
class TableSpec:
    compute: Callable  # (run: tables._Run) -> Section
    render: Callable[[dict], list[str]]  # the whole report dict -> this table's Markdown lines
    needs: tuple[str, ...] = ()  # tables whose results it reads (`run.sections`): run before it


TABLES: dict[str, TableSpec] = {}  # in the order they run and appear in the report


def register_table(name: str, render: Callable[[dict], list[str]], needs: tuple[str, ...] = ()):
    """Decorator: `compute` becomes the table `name` of `eval_tables` and of `tables:` in configs."""
    def deco(compute):
        TABLES[name] = TableSpec(compute, render, tuple(needs))
        return compute

    return deco


def table_names() -> list[str]:
    _register_builtins()
    return list(TABLES)


def selected(names: list[str]) -> list[str]:
    """`names` and every table they need, in registry order, each after what it needs."""
    _register_builtins()
    out: list[str] = []

    def add(name):
        if name not in out:
            for need in TABLES[name].needs:
                add(need)
            out.append(name)

    for name in sorted(set(names), key=list(TABLES).index):
        add(name)
    return out


def table_rng(seed: int, name: str) -> torch.Generator:
    """The random stream a table draws its faces from: fixed by the seed and the table's name."""
    return torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(name.encode()))


def _register_builtins() -> None:
    from . import tables_paper, tables_requests  # noqa: F401  (their register_table calls)
