"""RunPod's serverless GPUs in the user's words: a choice of pool ids (`ADA_24`), GPU type ids
(`NVIDIA GeForce RTX 4090`) or sizes (`24gb`) becomes an endpoint's `gpu.pools` and
`gpu.excludedTypes`, read against the catalog (`GET /v2/catalog/gpus`, or the dated snapshot
beside this file where RunPod cannot be asked, such as an offline plan)."""

import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

SNAPSHOT = Path(__file__).with_name("catalog-snapshot.json")
AVAILABILITY_ORDER = {"HIGH": 0, "MEDIUM": 1, "LOW": 2, None: 3, "NONE": 4}


class UnknownGpu(ValueError):
    """A word that names no pool, GPU type or size of the catalog."""


@cache
def snapshot() -> dict[str, Any]:
    """The dated snapshot: `date`, `source` and `gpus` (the catalog's shape)."""
    return json.loads(SNAPSHOT.read_text())


@dataclass(frozen=True)
class Selection:
    """An endpoint's GPUs: pools in order of preference and the types of them left out."""

    pools: list[str]
    excluded_types: list[str]

    def types(self, gpus: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The catalog's GPU types this selection runs on."""
        return [
            gpu
            for gpu in gpus
            if gpu.get("pool") in self.pools and gpu["id"] not in self.excluded_types
        ]


def pools(gpus: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The catalog's serverless pools and their GPU types."""
    found: dict[str, list[dict[str, Any]]] = {}
    for gpu in gpus:
        if gpu.get("pool"):
            found.setdefault(gpu["pool"], []).append(gpu)
    return found


def pool_memory(types: list[dict[str, Any]]) -> int:
    """A pool's size (GB), as RunPod names it (`ADA_24`: 24), whatever its cards' own memory
    (AMPERE_16 holds a 20 GB card); the largest card's where the name has none."""
    found = re.search(r"_(\d+)", types[0]["pool"])
    return int(found.group(1)) if found else max(gpu["memory"] for gpu in types)


def size_of(word: str) -> int | None:
    """`24gb` (any case) as 24; None for anything else."""
    word = word.strip().lower()
    return int(word[:-2]) if word.endswith("gb") and word[:-2].isdigit() else None


def select(words: list[str], gpus: list[dict[str, Any]]) -> Selection:
    """The pools `words` name, in order, and the types to leave out where a word names one card
    of a pool (the pool's cards no word names). UnknownGpu names the choices."""
    by_pool = pools(gpus)
    by_id = {gpu["id"].lower(): gpu for gpu in gpus if gpu.get("pool")}
    chosen: dict[str, set[str] | None] = {}  # pool -> the types named (None: the whole pool)
    for word in words:
        if word in by_pool:
            chosen[word] = None
        elif word.lower() in by_id:
            gpu = by_id[word.lower()]
            named = chosen.setdefault(gpu["pool"], set())
            if named is not None:
                named.add(gpu["id"])
        elif (size := size_of(word)) is not None:
            sized = [pool for pool, types in by_pool.items() if pool_memory(types) == size]
            if not sized:
                sizes = sorted({pool_memory(types) for types in by_pool.values()})
                raise UnknownGpu(
                    f"no serverless pool has {size} GB: sizes are "
                    + ", ".join(f"{s}gb" for s in sizes)
                )
            for pool in sized:
                chosen[pool] = None
        else:
            types = ", ".join(gpu["id"] for gpu in gpus if gpu.get("pool"))
            raise UnknownGpu(
                f"{word!r} is no RunPod serverless pool, GPU type or size: give a pool "
                f"({', '.join(by_pool)}), a GPU type ({types}) or a size such as 24gb"
            )
    excluded = [
        gpu["id"]
        for pool, named in chosen.items()
        if named is not None
        for gpu in by_pool[pool]
        if gpu["id"] not in named
    ]
    return Selection(list(chosen), excluded)


def fitting(
    selection: Selection, gpus: list[dict[str, Any]], need_gb: float
) -> list[tuple[str, list[dict[str, Any]]]]:
    """The selection's pools whose every selected card holds `need_gb`, each with those cards:
    available ones first, then the smallest, then in the selection's order."""
    found = []
    for order, pool in enumerate(selection.pools):
        types = [g for g in selection.types(gpus) if g["pool"] == pool]
        if types and min(g["memory"] for g in types) >= need_gb:
            best = min(AVAILABILITY_ORDER[g.get("availability")] for g in types)
            found.append((best, pool_memory(types), order, pool, types))
    return [(pool, types) for *_, pool, types in sorted(found, key=lambda f: f[:3])]


def has_capacity(types: list[dict[str, Any]]) -> bool:
    """Whether any of these cards is available (a catalog read without availability: unknown,
    taken as yes)."""
    return any(gpu.get("availability", "HIGH") != "NONE" for gpu in types)


def price_per_second(types: list[dict[str, Any]]) -> float | None:
    """USD a second of serverless work on the dearest of these cards (a request may be placed on
    any of them), so an estimate never falls short; None when a card has no price (never $0)."""
    prices = [(gpu.get("price") or {}).get("serverless") or 0.0 for gpu in types]
    if not prices or not all(prices):
        return None
    return float(max(prices)) / 3600


def selection_price(words: list[str], gpus: list[dict[str, Any]]) -> float | None:
    """USD a second on the GPUs `words` name (pools, types or sizes; UnknownGpu otherwise)."""
    return price_per_second(select(words, gpus).types(gpus))
