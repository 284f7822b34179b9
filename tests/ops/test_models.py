"""Versioned bundles per route: install, the atomic ``current`` switch, the decision log,
and the ``promote`` and ``models`` commands."""

from __future__ import annotations

import math
import os
import threading
from pathlib import Path

import pytest
import torch

from sensord.cli.main import main
from sensord.core.bundle import Bundle, load_bundle
from sensord.errors import BundleError, ConfigError, SensordError
from sensord.ops.models import (
    CURRENT,
    VERSIONS,
    current_version,
    install,
    log_decision,
    managed_route_dir,
    read_decisions,
    route_lock,
    switch,
    versions,
    write_bundle,
)
from sensord.training.options import TrainOptions
from sensord.training.train import train_bundle
from tests.trained import SMALL

pytestmark = pytest.mark.slow  # its module fixture trains a bundle with torch


@pytest.fixture(scope="module")
def small_bundle(tmp_path_factory: pytest.TempPathFactory, history_csv: Path) -> Bundle:
    """conftest's tiny bundle, trained on one thread: quick even when both cores are busy."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = tmp_path_factory.mktemp("models") / "small"
        return train_bundle(history_csv, out, TrainOptions(name="small", fit=SMALL)).bundle
    finally:
        torch.set_num_threads(threads)


def variant(bundle: Bundle, folder: Path, version: str, seed: int | None = None) -> Bundle:
    """The same graph under another version (and, with ``seed``, another manifest)."""
    manifest = bundle.manifest.model_copy(update={"version": version})
    if seed is not None:
        training = manifest.training.model_copy(update={"seed": seed})
        manifest = manifest.model_copy(update={"training": training})
    return write_bundle(folder / f"{version}-{seed}", manifest, bundle.graph_bytes)


@pytest.fixture
def two(small_bundle: Bundle, tmp_path: Path) -> tuple[Bundle, Bundle]:
    return variant(small_bundle, tmp_path, "one"), variant(small_bundle, tmp_path, "two")


def test_install_and_switch_make_a_relative_current_link(
    tmp_path: Path, two: tuple[Bundle, Bundle]
) -> None:
    route_dir = tmp_path / "models" / "boiler"
    assert current_version(route_dir) is None and versions(route_dir) == []
    for bundle in two:
        assert install(route_dir, bundle.path) == route_dir / VERSIONS / bundle.manifest.version
    switch(route_dir, "one")
    switch(route_dir, "two")
    link = route_dir / CURRENT
    assert os.readlink(link) == "versions/two"  # relative: the tree can move or be mounted
    assert load_bundle(link).manifest.version == "two"
    assert current_version(route_dir) == "two"
    assert [(v.version, v.current) for v in versions(route_dir)] == [
        ("one", False),
        ("two", True),
    ]
    assert sorted(p.name for p in route_dir.iterdir()) == [CURRENT, VERSIONS]  # no temps


def test_switch_never_leaves_current_missing(
    tmp_path: Path, two: tuple[Bundle, Bundle], monkeypatch: pytest.MonkeyPatch
) -> None:
    route_dir = tmp_path / "boiler"
    for bundle in two:
        install(route_dir, bundle.path)
    switch(route_dir, "one")
    link, real_replace, replaced = route_dir / CURRENT, os.replace, []

    def spy(src: str | Path, dst: str | Path) -> None:
        assert link.is_symlink()  # the old link is still there until the rename
        replaced.append(Path(dst))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    monkeypatch.setattr(os, "unlink", lambda *_: pytest.fail("current was unlinked"))
    seen_missing = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            if not os.path.lexists(link):
                seen_missing.append(True)

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    try:
        for i in range(100):
            switch(route_dir, ("one", "two")[i % 2])
    finally:
        stop.set()
        thread.join()
    assert replaced == [link] * 100 and not seen_missing
    assert current_version(route_dir) == "two"


def test_install_is_idempotent_and_refuses_a_clashing_version(
    tmp_path: Path, small_bundle: Bundle
) -> None:
    route_dir = tmp_path / "boiler"
    first = variant(small_bundle, tmp_path, "v1", seed=1)
    target = install(route_dir, first.path)
    assert install(route_dir, first.path) == target  # the same bundle again: nothing to do
    clash = variant(small_bundle, tmp_path, "v1", seed=2)
    with pytest.raises(BundleError, match="a different bundle is already installed as version v1"):
        install(route_dir, clash.path)
    assert load_bundle(target).manifest.training.seed == 1


def test_install_refuses_a_version_that_is_no_directory_name(
    tmp_path: Path, small_bundle: Bundle
) -> None:
    evil = variant(small_bundle, tmp_path, "../../etc")
    with pytest.raises(BundleError, match=r"version '\.\./\.\./etc' cannot name a directory"):
        install(tmp_path / "boiler", evil.path)
    assert not (tmp_path / "etc").exists()


def test_switch_refuses_a_tampered_version_and_keeps_current(
    tmp_path: Path, two: tuple[Bundle, Bundle]
) -> None:
    route_dir = tmp_path / "boiler"
    for bundle in two:
        install(route_dir, bundle.path)
    switch(route_dir, "one")
    graph = route_dir / VERSIONS / "two" / "model.onnx"
    graph.write_bytes(graph.read_bytes() + b"\0")
    with pytest.raises(BundleError, match=r"does not match graph\.sha256"):
        switch(route_dir, "two")
    assert current_version(route_dir) == "one"


def test_decisions_are_appended_and_read_back(tmp_path: Path) -> None:
    route_dir = tmp_path / "boiler"
    log_decision(route_dir, {"decision": "skipped", "reasons": ["too little data"]})
    with (route_dir / "decisions.jsonl").open("ab") as handle:
        handle.write(b'{"decision": "promo')  # a crash mid-append: a torn line
        handle.write(b"\n")
    log_decision(route_dir, {"decision": "refused", "live": {"mae": math.nan}})
    assert read_decisions(route_dir) == [
        {"decision": "skipped", "reasons": ["too little data"]},
        {"decision": "refused", "live": {"mae": None}},
    ]


def test_route_lock_is_exclusive(tmp_path: Path) -> None:
    with (
        route_lock(tmp_path),
        pytest.raises(SensordError, match="another retrain or promote"),
        route_lock(tmp_path),
    ):
        pass
    with route_lock(tmp_path):  # released
        pass


def test_a_route_not_on_current_is_not_managed(tmp_path: Path, small_bundle: Bundle) -> None:
    with pytest.raises(ConfigError, match=r"run 'sensord promote .* --route boiler' first"):
        managed_route_dir(tmp_path / "models", "boiler", small_bundle.path)
    link = tmp_path / "models" / "boiler" / CURRENT
    with pytest.raises(ConfigError, match=r"does not exist yet; .*'sensord promote BUNDLE"):
        managed_route_dir(tmp_path / "models", "boiler", link)
    install(link.parent, small_bundle.path)
    switch(link.parent, small_bundle.manifest.version)
    assert managed_route_dir(tmp_path / "models", "boiler", link) == link.parent


def write_config(tmp_path: Path, bundle: Path) -> Path:
    config = tmp_path / "sensord.toml"
    config.write_text(
        f'[state]\ndir = "{tmp_path / "state"}"\n\n'
        f'[[routes]]\ntopic = "sensors/#"\nname = "boiler"\nbundle = "{bundle}"\n'
    )
    return config


def test_promote_then_roll_back_and_list(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, two: tuple[Bundle, Bundle]
) -> None:
    route_dir = tmp_path / "state" / "models" / "boiler"
    config = str(write_config(tmp_path, route_dir / CURRENT))
    assert main(["promote", str(two[0].path), "--route", "boiler", "--config", config]) == 0
    assert main(["promote", str(two[1].path), "--route", "boiler", "--config", config]) == 0
    assert main(["promote", "one", "--route", "boiler", "--config", config]) == 0  # rollback
    out, err = capsys.readouterr()
    assert "route boiler: version one in service (was two)" in out
    assert "note:" not in err  # the route already follows current
    assert current_version(route_dir) == "one"
    decisions = read_decisions(route_dir)
    assert [(d["decision"], d["live"], d["candidate"]) for d in decisions] == [
        ("manual", None, {"version": "one"}),
        ("manual", {"version": "one"}, {"version": "two"}),
        ("manual", {"version": "two"}, {"version": "one"}),
    ]
    assert main(["models", "--config", config]) == 0
    out = capsys.readouterr().out
    assert "* one" in out and "  two" in out and out.count("manual") == 3


def test_promote_notes_a_route_that_does_not_follow_current(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, small_bundle: Bundle
) -> None:
    config = str(write_config(tmp_path, small_bundle.path))
    assert main(["promote", str(small_bundle.path), "--route", "boiler", "--config", config]) == 0
    assert "set it to" in capsys.readouterr().err
    assert main(["promote", "nothing", "--route", "boiler", "--config", config]) == 65
    assert main(["promote", str(small_bundle.path), "--route", "other", "--config", config]) == 78
    err = capsys.readouterr().err
    assert "no route named 'other' (routes: boiler)" in err
