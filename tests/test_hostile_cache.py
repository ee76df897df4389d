"""The cache folder is not trusted: it may be pointed at anything, restored from a CI cache
store, or planted with links and damage (issue 13). qcheck never deletes what it did not make,
never writes, truncates or reads through a link out of the cache, rebuilds whatever is damaged
(once, never an error), converts exactly the bytes it hashed, and says what is wrong with a
cache folder it cannot use."""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import FIXTURES, REAL, run_qcheck
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qcheck.cache import CACHEDIR_SIGNATURE, Cache, CacheFolderError, prepare
from qcheck.hashing import digest
from qcheck.tflite.convert import FloatReference, Quantized

HELLO_WORLD = REAL / "tflm" / "hello_world_int8.tflite"
KEYS = (digest("one"), digest("two"))


def _value(n: int) -> Quantized:
    outputs = {"zeta": np.arange(12, dtype=np.float32).reshape(3, 4) * n}
    return Quantized(f"TFL3 model {n}".encode(), FloatReference(outputs, ("zeta",)), False, b"float" * n)


def _same(a: Quantized, b: Quantized) -> bool:
    assert a.reference is not None and b.reference is not None
    fields = (a.tflite, a.float_tflite, a.reference.output_names)
    return fields == (b.tflite, b.float_tflite, b.reference.output_names) and all(
        np.array_equal(a.reference.outputs[k], b.reference.outputs[k]) for k in a.reference.outputs)


class Counting:
    """A ``make`` that counts its calls."""

    def __init__(self, n: int) -> None:
        self.n, self.calls = n, 0

    def __call__(self) -> Quantized:
        self.calls += 1
        return _value(self.n)


def _entry(root: Path, key: str) -> Path:
    return root / "entries" / key[:2] / key


def _snapshot(folder: Path) -> dict[str, Any]:
    """Every name under ``folder`` (links not followed) with its content, link target or kind."""
    found: dict[str, Any] = {}
    for parent, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(parent) / name
            rel = path.relative_to(folder).as_posix()
            if path.is_symlink():
                found[rel] = ("link", os.readlink(path))
            elif path.is_file():
                found[rel] = path.read_bytes()
            else:
                found[rel] = "folder" if path.is_dir() else "other"
    return found


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """The user's files next to the cache: what a planted link points at."""
    folder = tmp_path / "outside"
    (folder / "models").mkdir(parents=True)
    (folder / "model.keras").write_bytes(b"the user's model")
    (folder / "models" / "other.tflite").write_bytes(b"another model")
    return folder


# -- 1. clearing deletes only what qcheck made ---------------------------------------------------


@pytest.mark.parametrize("kind", ["cwd", "models", "home", "pytest_cache"])
def test_clearing_a_folder_qcheck_did_not_make_is_refused_and_touches_nothing(tmp_path: Path, kind: str) -> None:
    """``--qcheck-cache-dir=. --qcheck-cache-clear`` (or a models folder, a home folder, pytest's
    own cache folder, which has a CACHEDIR.TAG of pytest's) is a usage error; nothing is deleted."""
    cwd = tmp_path / "project"
    (cwd / "models").mkdir(parents=True)
    shutil.copy(FIXTURES / "digits_cnn.keras", cwd / "models" / "digits_cnn.keras")
    (cwd / "data.npz").write_bytes(b"user data")
    (cwd / "home" / ".ssh").mkdir(parents=True)
    (cwd / "home" / ".ssh" / "id_ed25519").write_text("a key")
    (cwd / ".pytest_cache" / "v").mkdir(parents=True)
    (cwd / ".pytest_cache" / "CACHEDIR.TAG").write_text(
        f"{CACHEDIR_SIGNATURE}\n# This file is a cache directory tag created by pytest.\n")
    folder = {"cwd": ".", "models": "models", "home": "home", "pytest_cache": ".pytest_cache"}[kind]
    before = _snapshot(cwd)

    run = run_qcheck(cwd, f"--qcheck-cache-dir={folder}", "--qcheck-cache-clear")

    assert run.returncode == 4, run.stdout
    assert f"qcheck: --qcheck-cache-dir: {(cwd / folder).resolve()}: is not a qcheck cache folder" in run.stdout
    assert "INTERNALERROR" not in run.stdout and "Traceback" not in run.stdout
    assert _snapshot(cwd) == before


def test_a_new_or_empty_folder_becomes_a_marked_cache_and_clearing_it_keeps_the_mark(tmp_path: Path) -> None:
    new, empty = tmp_path / "new" / "cache", tmp_path / "empty"
    empty.mkdir()
    for root in (new, empty):
        cache = Cache(root)
        cache.get_or_make(KEYS[0], Counting(1))
        tag = (root / "CACHEDIR.TAG").read_text()
        assert tag.startswith(CACHEDIR_SIGNATURE + "\n# This file is a cache directory tag created by qcheck.")
        assert "qcheck" in (root / "README.md").read_text() and (root / ".gitignore").read_text().endswith("*\n")
        cache.clear()
        assert sorted(p.name for p in root.iterdir()) == [".gitignore", "CACHEDIR.TAG", "README.md"]
        assert cache.get_or_make(KEYS[0], Counting(1))[1] is False  # cleared: made again


def test_clearing_a_qcheck_cache_that_holds_other_files_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    Cache(root).get_or_make(KEYS[0], Counting(1))
    (root / "my_model.keras").write_bytes(b"put here by the user")

    with pytest.raises(CacheFolderError) as info:
        Cache(root).clear()

    assert str(info.value).startswith(f"{root}: holds files qcheck did not make (my_model.keras), so qcheck "
                                      "will not clear it")
    assert (root / "my_model.keras").read_bytes() == b"put here by the user"
    assert Cache(root).get_or_make(KEYS[0], Counting(1))[1] is True  # the entry is still there


def test_clearing_follows_no_link_out_of_the_cache(tmp_path: Path, outside: Path) -> None:
    root = tmp_path / "cache"
    cache = Cache(root)
    cache.get_or_make(KEYS[0], Counting(1))
    (root / "entries" / "zz").symlink_to(outside)
    shutil.rmtree(root / "locks")
    (root / "locks").symlink_to(outside / "models")
    before = _snapshot(outside)

    cache.clear()

    assert _snapshot(outside) == before
    assert not (root / "entries").exists() and not (root / "locks").is_symlink()


def test_a_cache_of_an_older_qcheck_or_with_a_lost_tag_is_taken_back(tmp_path: Path) -> None:
    """A folder laid out as qcheck lays out its cache, unmarked, is qcheck's: marked, not refused."""
    root = tmp_path / "cache"
    Cache(root).get_or_make(KEYS[0], Counting(1))
    for name in ("CACHEDIR.TAG", "README.md", ".gitignore"):  # as a qcheck before the marker left it
        (root / name).unlink()
    assert Cache(root).get_or_make(KEYS[0], Counting(1))[1] is True
    (root / "CACHEDIR.TAG").write_text("damaged")  # README and .gitignore are qcheck's, word for word
    Cache(root).clear()
    assert (root / "CACHEDIR.TAG").read_text().startswith(CACHEDIR_SIGNATURE)


def test_a_folder_with_only_a_readme_of_the_user_is_not_taken(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("my project")
    with pytest.raises(CacheFolderError, match="is not a qcheck cache folder"):
        prepare(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md"]
    assert (tmp_path / "README.md").read_text() == "my project"


@pytest.mark.parametrize("planted", ["link", "file"])
def test_qcheck_s_place_in_pytest_s_cache_is_repaired_when_it_is_a_link_or_a_file(tmp_path: Path, outside: Path,
                                                                                  planted: str) -> None:
    """The default cache folder is qcheck's own; a link there (to the user's files) or a file is
    damage: the link is removed, not followed, and the run goes on."""
    place = tmp_path / "project" / ".pytest_cache" / "d" / "qcheck"
    place.parent.mkdir(parents=True)
    if planted == "link":
        place.symlink_to(outside)
    else:
        place.write_text("not a folder")
    before = _snapshot(outside)
    args = (f"--qcheck-model={HELLO_WORLD}", "--qcheck-cache-clear", "-k", "size")
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", *args], cwd=place.parents[2], text=True,
                         capture_output=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert _snapshot(outside) == before
    assert place.is_dir() and not place.is_symlink() and (place / "CACHEDIR.TAG").is_file()


# -- 13. a cache folder qcheck cannot use is a usage error -----------------------------------------


@contextlib.contextmanager
def _read_only(folder: Path) -> Iterator[None]:
    """A folder nobody may write to, root included (root ignores permission bits)."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)
        return
    if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
        pytest.skip("running as root where no folder can be made read-only (chattr +i failed)")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


@pytest.mark.parametrize("kind", ["file", "under_a_file", "read_only"])
def test_a_cache_folder_qcheck_cannot_use_is_a_usage_error_naming_it(tmp_path: Path, kind: str) -> None:
    afile = tmp_path / "afile.txt"
    afile.write_text("notes")
    read_only = tmp_path / "read_only"
    read_only.mkdir()
    folder, problem = {"file": (afile, "is not a folder"),
                       "under_a_file": (afile / "cache", "cannot be created: Not a directory"),
                       "read_only": (read_only, "is not writable")}[kind]
    with _read_only(read_only):
        run = run_qcheck(tmp_path / "run", f"--qcheck-model={HELLO_WORLD}", f"--qcheck-cache-dir={folder}")
    assert run.returncode == 4, run.stdout
    assert f"qcheck: --qcheck-cache-dir: {folder}: {problem}" in run.stdout
    assert "internal error" not in run.stdout.lower() and "Traceback" not in run.stdout
    assert afile.read_text() == "notes" and list(read_only.iterdir()) == []


# -- 3. nothing planted in the cache is followed out of it ---------------------------------------


def test_a_lock_linked_to_a_user_file_never_truncates_it(tmp_path: Path, outside: Path) -> None:
    root = tmp_path / "cache"
    prepare(root)  # qcheck's cache, planted in afterwards
    (root / "locks").mkdir()
    (root / "locks" / f"{KEYS[0]}.lock").symlink_to(outside / "model.keras")
    before = _snapshot(outside)

    value, hit = Cache(root).get_or_make(KEYS[0], Counting(1))

    assert not hit and _same(value, _value(1))
    assert _snapshot(outside) == before
    assert (root / "locks" / f"{KEYS[0]}.lock").is_file() and not (root / "locks" / f"{KEYS[0]}.lock").is_symlink()


@pytest.mark.parametrize("where", ["entries", "shard"])
def test_a_cache_folder_linked_out_of_the_cache_is_never_written_into(tmp_path: Path, outside: Path,
                                                                      where: str) -> None:
    root = tmp_path / "cache"
    prepare(root)
    link = root / "entries" if where == "entries" else root / "entries" / KEYS[0][:2]
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(outside / "models")
    before = _snapshot(outside)

    cache = Cache(root)
    value, hit = cache.get_or_make(KEYS[0], Counting(1))

    assert not hit and _same(value, _value(1))
    assert _snapshot(outside) == before
    assert cache.get_or_make(KEYS[0], Counting(1))[1] is True  # stored in the cache itself


def test_an_entry_linked_out_of_the_cache_is_never_read(tmp_path: Path) -> None:
    """A well-formed entry elsewhere (another cache's, or forged) linked in is not a hit."""
    elsewhere = tmp_path / "elsewhere"
    Cache(elsewhere).get_or_make(KEYS[0], Counting(7))
    root = tmp_path / "cache"
    prepare(root)
    _entry(root, KEYS[0]).parent.mkdir(parents=True)
    _entry(root, KEYS[0]).symlink_to(_entry(elsewhere, KEYS[0]))
    before = _snapshot(elsewhere)

    value, hit = Cache(root).get_or_make(KEYS[0], Counting(1))

    assert not hit and _same(value, _value(1))
    assert _snapshot(elsewhere) == before


@pytest.mark.parametrize("name", ["manifest.json", "value.json", "arrays.npz"])
def test_an_entry_file_linked_out_of_the_cache_is_never_read_or_written(tmp_path: Path, outside: Path,
                                                                        name: str) -> None:
    root = tmp_path / "cache"
    Cache(root).get_or_make(KEYS[0], Counting(1))
    target = outside / name
    shutil.copy(_entry(root, KEYS[0]) / name, target)  # the very bytes: only the link is wrong
    (_entry(root, KEYS[0]) / name).unlink()
    (_entry(root, KEYS[0]) / name).symlink_to(target)
    before = _snapshot(outside)

    value, hit = Cache(root).get_or_make(KEYS[0], Counting(1))

    assert not hit and _same(value, _value(1))
    assert _snapshot(outside) == before


def _get_in_child(root: Path) -> None:
    value, _ = Cache(root).get_or_make(KEYS[0], Counting(1))
    assert _same(value, _value(1))


@pytest.mark.parametrize("where", ["manifest", "lock"])
def test_a_fifo_planted_in_the_cache_never_blocks(tmp_path: Path, where: str) -> None:
    root = tmp_path / "cache"
    Cache(root).get_or_make(KEYS[0], Counting(1))
    planted = _entry(root, KEYS[0]) / "manifest.json" if where == "manifest" else root / "locks" / f"{KEYS[0]}.lock"
    planted.unlink()
    os.mkfifo(planted)
    if where == "lock":
        shutil.rmtree(_entry(root, KEYS[0]))  # a miss, so the lock is taken
    child = multiprocessing.get_context("fork").Process(target=_get_in_child, args=(root,))
    child.start()
    child.join(timeout=30)
    if child.is_alive():
        child.kill()
        child.join()
        pytest.fail(f"blocked on a FIFO planted as {planted.name}")
    assert child.exitcode == 0


# -- 8. a cache of the wrong shape is rebuilt, once ----------------------------------------------


def _damage(root: Path, key: str, kind: str, outside: Path) -> None:
    entry = _entry(root, key)
    manifest = entry / "manifest.json"
    meta = json.loads(manifest.read_text())
    if kind == "files_list":
        manifest.write_text('{"files": []}')
    elif kind == "not_a_dict":
        manifest.write_text("[1, 2]")
    elif kind == "missing_hash":  # and the file that lost its hash is damaged
        del meta["files"]["arrays.npz"]
        manifest.write_text(json.dumps(meta))
        (entry / "arrays.npz").write_bytes(b"PK\x03\x04 not an archive")
    elif kind == "hash_not_text":
        meta["files"]["value.json"] = 5
        manifest.write_text(json.dumps(meta))
    elif kind == "other_key":
        meta["key"] = KEYS[1]
        manifest.write_text(json.dumps(meta))
    elif kind == "deep_json":
        manifest.write_text("[" * 100_000 + "]" * 100_000)
    elif kind == "manifest_folder":
        manifest.unlink()
        manifest.mkdir()
    elif kind == "entry_file":
        shutil.rmtree(entry)
        entry.write_text("not a folder")
    elif kind == "shard_file":
        shutil.rmtree(entry.parent)
        entry.parent.write_text("not a folder")
    elif kind == "entries_file":
        shutil.rmtree(root / "entries")
        (root / "entries").write_text("not a folder")
    elif kind == "entries_link":
        shutil.rmtree(root / "entries")
        (root / "entries").symlink_to(outside / "model.keras")
    elif kind == "locks_file":
        shutil.rmtree(root / "locks")
        (root / "locks").write_text("not a folder")
        shutil.rmtree(entry)  # a miss, so the lock is needed
    else:
        raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["files_list", "not_a_dict", "missing_hash", "hash_not_text", "other_key",
                                  "deep_json", "manifest_folder", "entry_file", "shard_file", "entries_file",
                                  "entries_link", "locks_file"])
def test_a_cache_of_the_wrong_shape_is_rebuilt_once(tmp_path: Path, outside: Path, kind: str) -> None:
    root = tmp_path / "cache"
    Cache(root).get_or_make(KEYS[0], Counting(1))
    _damage(root, KEYS[0], kind, outside)
    before = _snapshot(outside)

    cache, make = Cache(root), Counting(1)  # the next run
    first = cache.get_or_make(KEYS[0], make)
    second = Cache(root).get_or_make(KEYS[0], make)  # and the one after

    assert (first[1], second[1], make.calls) == (False, True, 1)
    assert _same(first[0], _value(1)) and _same(second[0], _value(1))
    assert _snapshot(outside) == before


# -- fuzzing: random damage, only a rebuild and the right value ----------------------------------

_KINDS = ("flip", "truncate", "delete", "file", "folder", "link_file", "link_folder", "dangling", "fifo",
          "json")
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.text(max_size=4) | st.sampled_from(KEYS),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.sampled_from(["key", "files", "value.json", "arrays.npz"]) | st.text(max_size=3), inner,
                      max_size=3),
    max_leaves=8)


def _nodes(root: Path) -> list[Path]:
    """Everything in the cache but its tag (a lost tag is tested on its own), links not followed."""
    found = []
    for parent, dirs, files in os.walk(root):
        found += [Path(parent) / name for name in dirs + files]
    return sorted(p for p in found if p.name != "CACHEDIR.TAG" or p.parent != root)


def _apply(node: Path, kind: str, blob: bytes, doc: Any, outside: Path) -> None:
    regular = node.is_file() and not node.is_symlink()
    if kind in ("flip", "truncate") and regular:
        data = node.read_bytes()
        at = int.from_bytes(blob[:4] or b"\0", "little") % max(len(data), 1)
        node.write_bytes(data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:] if kind == "flip" and data
                         else data[:at])
        return
    if kind == "json" and regular:
        node.write_text(json.dumps(doc))
        return
    if node.is_dir() and not node.is_symlink():
        shutil.rmtree(node)
    else:
        node.unlink()
    if kind == "file":
        node.write_bytes(blob)
    elif kind == "folder":
        (node / "junk").mkdir(parents=True)
    elif kind == "link_file":
        node.symlink_to(outside / "model.keras")
    elif kind == "link_folder":
        node.symlink_to(outside / "models")
    elif kind == "dangling":
        node.symlink_to(outside / "missing")
    elif kind == "fifo":
        os.mkfifo(node)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(damages=st.lists(st.tuples(st.integers(0, 1000), st.sampled_from(_KINDS), st.binary(max_size=8), _JSON),
                        min_size=1, max_size=4))
def test_random_damage_to_the_cache_folder_gives_a_rebuild_and_the_right_value(damages: list[Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root, outside = Path(tmp) / "cache", Path(tmp) / "outside"
        (outside / "models").mkdir(parents=True)
        (outside / "model.keras").write_bytes(b"the user's model")
        (outside / "models" / "other.tflite").write_bytes(b"another model")
        for n, key in enumerate(KEYS, 1):
            Cache(root).get_or_make(key, Counting(n))
        for index, kind, blob, doc in damages:
            nodes = _nodes(root)
            if nodes:
                _apply(nodes[index % len(nodes)], kind, blob, doc, outside)
        before = _snapshot(outside)

        for n, key in enumerate(KEYS, 1):
            make = Counting(n)
            first, _ = Cache(root).get_or_make(key, make)  # a hit if the damage spared it, else a rebuild
            second, hit = Cache(root).get_or_make(key, make)
            assert _same(first, _value(n)) and _same(second, _value(n))
            assert hit and make.calls <= 1

        assert _snapshot(outside) == before
        assert (root / "CACHEDIR.TAG").read_text().startswith(CACHEDIR_SIGNATURE)


# -- end to end: a damaged, linked cache gives a rebuild and the right verdict --------------------


def test_a_damaged_and_linked_cache_gives_a_rebuild_and_the_same_verdict(tmp_path: Path) -> None:
    victim = tmp_path / "user" / "digits_cnn.keras"  # the user's model, a link's target
    victim.parent.mkdir()
    shutil.copy(FIXTURES / "digits_cnn.keras", victim)
    args = (f"--qcheck-model={victim}", f"--qcheck-data={FIXTURES / 'digits.npz'}",
            f"--qcheck-cache-dir={tmp_path / 'cache'}", "-k", "fully_quantized or accuracy_drop")
    cold = run_qcheck(tmp_path / "cold", *args)
    assert cold.returncode == 0, cold.stdout
    locks = sorted((tmp_path / "cache" / "locks").iterdir())
    assert locks
    for lock in locks:
        lock.unlink()
        lock.symlink_to(victim)
    for manifest in (tmp_path / "cache" / "entries").glob("*/*/manifest.json"):
        manifest.write_text('{"files": []}')
    model_bytes = victim.read_bytes()

    warm = run_qcheck(tmp_path / "warm", *args)

    assert warm.returncode == 0, warm.stdout
    assert "INTERNALERROR" not in warm.stdout
    assert warm.report["models"][0]["checks"] == cold.report["models"][0]["checks"]
    assert not any("from the cache" in note for note in warm.report["models"][0]["notes"])  # rebuilt
    assert victim.read_bytes() == model_bytes
    again = run_qcheck(tmp_path / "again", *args)
    assert any("from the cache" in note for note in again.report["models"][0]["notes"])  # rebuilt once, kept


# -- 6. what is converted is what was hashed -------------------------------------------------------

# Run in every process of the test's qcheck run: the first conversion child, once started,
# replaces the model file, as a user or an attacker could between hashing and converting.
_SWAP = """
import os, sys
if "qcheck.worker" in sys.orig_argv and os.environ.get("QCHECK_TEST_SWAP"):
    target, replacement, flag = os.environ["QCHECK_TEST_SWAP"].split(os.pathsep)
    try:
        os.close(os.open(flag, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        pass
    else:
        os.replace(replacement, target)
"""


def test_a_model_replaced_during_its_conversion_cannot_poison_the_cache(tmp_path: Path) -> None:
    """The model's file is hashed, then replaced by a good model before the conversion child
    reads it. The run must judge the bytes it hashed (float_op.keras fails fully_quantized),
    and the entry stored under their key must hold their conversion, not the good model's."""
    model = tmp_path / "model.keras"
    shutil.copy(FIXTURES / "float_op.keras", model)
    good = tmp_path / "good.keras"
    shutil.copy(FIXTURES / "digits_cnn.keras", good)
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(_SWAP)
    env = {"PYTHONPATH": os.pathsep.join([str(hooks), os.environ.get("PYTHONPATH", "")]),
           "QCHECK_TEST_SWAP": os.pathsep.join([str(model), str(good), str(tmp_path / "swapped")])}
    args = (f"--qcheck-model={model}", f"--qcheck-data={FIXTURES / 'digits.npz'}",
            f"--qcheck-cache-dir={tmp_path / 'cache'}", "-k", "fully_quantized")

    during = run_qcheck(tmp_path / "during", *args, env=env)

    assert (tmp_path / "swapped").exists() and model.read_bytes() == (FIXTURES / "digits_cnn.keras").read_bytes()
    assert during.returncode == 1, during.stdout
    assert during.check("model.keras", "fully_quantized")["passed"] is False
    shutil.copy(FIXTURES / "float_op.keras", model)  # the model that must fail, again
    after = run_qcheck(tmp_path / "after", *args)
    assert any("from the cache" in note for note in after.model("model.keras")["notes"])
    assert after.returncode == 1, after.stdout
    assert after.check("model.keras", "fully_quantized")["passed"] is False


def test_errors_and_names_of_a_converted_copy_name_the_user_s_files(tmp_path: Path) -> None:
    """The conversion reads a private copy; what the user sees names their model, and the
    converted model's tensors carry no trace of the copy's folder."""
    broken = tmp_path / "models" / "broken.keras"
    broken.parent.mkdir()
    with zipfile.ZipFile(broken, "w") as archive:  # a config naming a layer Keras does not know
        archive.writestr("config.json", json.dumps({"class_name": "NoSuchLayer", "config": {}}))
        archive.writestr("metadata.json", json.dumps({"keras_version": "3.15.0"}))
    saved = tmp_path / "models" / "digits_savedmodel"
    subprocess.run([sys.executable, "-c", "import sys, keras; keras.saving.load_model(sys.argv[1], compile=False)"
                    ".export(sys.argv[2], verbose=False)", str(FIXTURES / "digits_cnn.keras"), str(saved)],
                   check=True, capture_output=True, timeout=300)
    # A SavedModel runs its own code when loaded: it needs the opt-in.
    run = run_qcheck(tmp_path / "run", f"--qcheck-model={broken}", f"--qcheck-model={saved}", "--qcheck-no-cache",
                     "--qcheck-unsafe-deserialization", "-k", "fully_quantized")

    message = run.check("broken.keras", "fully_quantized")["message"]
    assert f"{broken}: needs the Python class of its custom layer or object 'NoSuchLayer'" in message, message
    assert run.check("digits_savedmodel", "fully_quantized")["passed"] is True
    assert "qcheck-model-" not in run.stdout + json.dumps(run.report)
    assert "qcheck-model-" not in (run.out_dir / "digits_savedmodel_quantization_info.json").read_text()



def test_a_tflite_replaced_before_vela_runs_cannot_poison_the_cache(tmp_path: Path) -> None:
    """A .tflite is read (and hashed) when the pipeline starts and compiled by Vela later; a
    file replaced in between must not be what Vela compiles under the first file's key."""
    from qcheck.config import RunSpec
    from qcheck.pipeline import DataSource, ModelRun
    from qcheck.tflite.inspect import inspect_model
    from qcheck.vela import VelaConfig

    model = tmp_path / "model.tflite"
    shutil.copy(HELLO_WORLD, model)
    run = ModelRun(RunSpec(str(model)), "model", tmp_path / "out", DataSource(None, None, 1), 300.0,
                   Cache(tmp_path / "cache"))
    run.info()  # the bytes are read
    shutil.copy(REAL / "mlperf_tiny" / "kws_ref_model.tflite", model)  # and then the file is replaced

    result = run.vela(VelaConfig.default_for("ethos-u55-128"))

    assert result.compiled_model is not None
    compiled = inspect_model(Path(result.compiled_model).read_bytes())
    hashed = inspect_model(HELLO_WORLD.read_bytes())
    assert [t.tensor.shape for t in compiled.inputs] == [t.tensor.shape for t in hashed.inputs]
