"""The gateway's per-process caches stay bounded: a long-running gateway keeps the most recent entries
only, whatever it has served (an entry it forgot is looked up again, never answered differently)."""

from __future__ import annotations

from pathlib import Path

from modelshield.gateway.app import CACHE_ENTRIES, Config, Gateway, Recent


def test_recent_keeps_the_most_recently_used_entries() -> None:
    cache: Recent[str, int] = Recent(2)
    cache["a"], cache["b"] = 1, 2
    assert cache.get("a") == 1  # read: now the most recent
    cache["c"] = 3
    assert list(cache) == ["a", "c"] and cache.get("b") is None
    assert cache.setdefault("d", 4) == 4 and list(cache) == ["c", "d"]
    assert cache.setdefault("c", 9) == 3 and list(cache) == ["d", "c"]


def test_every_cache_of_a_gateway_is_bounded(tmp_path: Path) -> None:
    gateway = Gateway(Config("http://127.0.0.1:9", f"sqlite:///{tmp_path / 'db.sqlite'}", str(tmp_path / "store")))
    caches = {name: value for name, value in vars(gateway).items() if isinstance(value, dict)}
    unbounded = [name for name, value in caches.items() if not isinstance(value, Recent)]
    # in flight only (an entry leaves when its refresh is done), and counts by (action, decision)
    assert sorted(unbounded) == ["_refreshing", "decisions"], unbounded
    for name, value in caches.items():
        if isinstance(value, Recent):
            for index in range(value.size + 10):
                value[index] = index
            assert len(value) == value.size <= 16 * CACHE_ENTRIES, name
