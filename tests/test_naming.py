"""Objects are named by their first user frame (skipping allocator and container frames)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from placer.contracts.naming import (
    is_wrapper_function,
    object_name,
    site_label,
    user_frames,
    wrapper_frames,
)

# Recorded from `placer profile` of a C++ program (g++ 12, libstdc++ without debug info).
VECTOR = [
    "libstdc++.so.6.0.30+0xa958c",
    "/usr/include/c++/12/bits/new_allocator.h:137",
    "/usr/include/c++/12/bits/alloc_traits.h:464",
    "/usr/include/c++/12/bits/stl_vector.h:378",
    "/usr/include/c++/12/bits/stl_vector.h:566",
    "/tmp/cxx/app.cc:5",
    "/tmp/cxx/app.cc:7",
    "./csu/../sysdeps/x86/libc-start.c:58",
    "./csu/../csu/libc-start.c:360",
    "app+0x14d1",
]
HASHMAP = [
    "libstdc++.so.6.0.30+0xa958c",
    "/usr/include/c++/12/bits/new_allocator.h:137",
    "/usr/include/c++/12/bits/hashtable.h:443",
    "/usr/include/c++/12/bits/unordered_map.h:1127",
    "/tmp/cxx/app.cc:9",
    "./csu/../csu/libc-start.c:360",
]


def test_cxx_objects_are_named_by_the_first_user_frame() -> None:
    assert object_name(VECTOR) == "app.cc:5"
    assert object_name(HASHMAP) == "app.cc:9"
    assert site_label(VECTOR) == "app.cc:5 ← app.cc:7 ← app+0x14d1"


def test_c_programs_and_unsymbolized_user_code_keep_their_frames() -> None:
    assert object_name(["/src/graph.c:120", "/src/pr.c:40"]) == "graph.c:120"
    assert object_name(["libc.so.6+0x9a0f1", "pr+0x1234"]) == "pr+0x1234"
    assert object_name(["/work/emb.py:14"]) == "emb.py:14"


def test_a_chain_of_runtime_frames_only_is_kept_rather_than_lost() -> None:
    chain = ["libstdc++.so.6.0.30+0xa958c", "/usr/include/c++/12/bits/new_allocator.h:137"]
    assert user_frames(chain) == chain
    assert object_name([], fallback="d6f3") == "d6f3"


# Chains as `placer profile` stores them for third-party programs: (frame, function) pairs.
def _split(pairs: list[tuple[str, str]]) -> tuple[list[str], list[str]]:
    return [f for f, _ in pairs], [fn for _, fn in pairs]


SQLITE = [
    ("/src/sqlite/sqlite3.c:25501", "sqlite3MemMalloc"),
    ("/src/sqlite/sqlite3.c:29230", "mallocWithAlarm"),
    ("/src/sqlite/sqlite3.c:29262", "sqlite3Malloc"),
    ("/src/sqlite/sqlite3.c:29700", "dbMallocRawFinish"),
    ("/src/sqlite/sqlite3.c:29755", "sqlite3DbMallocRawNN"),
    ("/src/sqlite/sqlite3.c:115102", "sqlite3VdbeCreate"),
    ("/src/sqlite/sqlite3.c:140011", "sqlite3GetVdbe"),
]
JQ = [
    ("/src/jq/src/jv_alloc.c:122", "jv_mem_alloc"),
    ("/src/jq/src/jv.c:1101", "jvp_string_alloc"),
    ("/src/jq/src/jv.c:1125", "jvp_string_new"),
]
REDIS = [
    ("/src/redis/src/zmalloc.c:202", "ztrymalloc_usable_internal"),
    ("/src/redis/src/zmalloc.c:226", "zmalloc_usable"),
    ("/src/redis/src/sds.c:120", "_sdsnewlen"),
    ("/src/redis/src/object.c:97", "createRawStringObject"),
]
GNU = [
    ("/src/grep/lib/xmalloc.c:38", "xmalloc"),
    ("/src/grep/lib/xmalloc.c:250", "xcharalloc"),
    ("/src/grep/src/grep.c:2950", "main"),
]
GLIB = [
    ("libglib-2.0.so.0+0x5e0c1", "g_malloc0"),
    ("/src/app/tree.c:31", "tree_node_new"),
    ("/src/app/tree.c:88", "tree_insert"),
]


def test_known_allocation_wrappers_are_skipped_to_their_caller() -> None:
    chain, functions = _split(SQLITE)
    assert object_name(chain, functions=functions) == "sqlite3.c:115102"
    assert object_name(_split(JQ)[0], functions=_split(JQ)[1]) == "jv.c:1101"
    assert object_name(_split(REDIS)[0], functions=_split(REDIS)[1]) == "sds.c:120"
    assert object_name(_split(GNU)[0], functions=_split(GNU)[1]) == "grep.c:2950"
    assert object_name(_split(GLIB)[0], functions=_split(GLIB)[1]) == "tree.c:31"
    chain, functions = _split(REDIS)
    assert site_label(chain, functions=functions) == "sds.c:120 ← object.c:97"


def test_wrapper_names_cover_the_common_families_and_spare_typed_allocators() -> None:
    for name in [
        "xmalloc", "xcalloc", "xrealloc", "xstrdup", "x2nrealloc", "xzalloc", "g_malloc",
        "g_malloc0_n", "g_try_realloc", "g_strdup", "zmalloc", "zcalloc", "ztrymalloc_usable",
        "jv_mem_alloc", "jv_mem_calloc_unguarded", "sqlite3Malloc", "sqlite3MemMalloc",
        "sqlite3DbMallocZero", "sqlite3_malloc64", "PyMem_Malloc", "PyObject_Malloc",
        "PyMem_RawCalloc", "av_mallocz", "CRYPTO_zalloc", "emalloc", "safe_malloc",
        "operator new(unsigned long)", "operator new[](unsigned long)",
        "mem::Pool<int>::my_malloc(unsigned long) const",
    ]:  # fmt: skip
        assert is_wrapper_function(name), name
    for name in [
        "graph_alloc", "node_alloc", "alloc_matrix", "tree_node_new", "main", "build_graph",
        "std::vector<int, std::allocator<int> >::_M_realloc_insert(int const&)", "",
    ]:  # fmt: skip
        assert not is_wrapper_function(name), name


def test_a_user_function_named_like_an_allocator_keeps_its_name() -> None:
    chain = ["/src/gap/graph.c:57", "/src/gap/main.c:12"]
    assert object_name(chain, functions=["graph_alloc", "main"]) == "graph.c:57"
    # only leading frames are plumbing: a wrapper name further out is kept
    chain = ["/src/app/a.c:5", "/src/app/pool.c:9"]
    assert object_name(chain, functions=["build", "pool_malloc"]) == "a.c:5"


def test_stripped_runtime_and_shared_library_frames_are_allocator_plumbing() -> None:
    # libstdc++ under any basename, stripped: operator new, std::string internals
    for lib in ["libstdc++.so.6", "libstdc++.so.6.0.30", "libstdc++", "libc++.so.1"]:
        chain = [f"{lib}+0xa958c", f"{lib}+0x14a1f2", "ninja+0x4e2d1", "ninja+0x51a80"]
        assert object_name(chain) == "ninja+0x4e2d1", lib
    # a stripped shared library (not the program) before the first user frame
    chain = ["libsqlite3.so.0+0x2f6e1", "libsqlite3.so.0+0x3a010", "/src/app/db.c:44"]
    assert object_name(chain) == "db.c:44"
    # ... but the program's own code in a stripped library is still a name when nothing else is
    assert object_name(["_ext.cpython-311-x86_64-linux-gnu.so+0x1f00", "libpython3.11.so+0x9"]) == (
        "_ext.cpython-311-x86_64-linux-gnu.so+0x1f00"
    )


def test_when_everything_is_a_wrapper_the_first_user_frame_names_it() -> None:
    # stack depth cut the chain inside sqlite's allocator layers
    chain, functions = _split(SQLITE[:3])
    assert object_name(chain, functions=functions) == "sqlite3.c:25501"


def test_sites_stored_without_function_names_still_read() -> None:
    chain, _ = _split(GNU)
    assert object_name(chain) == "xmalloc.c:38"  # as before: no function, no name rule
    assert object_name(chain, functions=["xmalloc"]) == "xmalloc.c:250"  # shorter list is fine


def _wrapped(line: int, caller: int) -> tuple[list[str], list[str]]:
    return ["/src/app/util.c:9", f"/src/app/{caller}.c:{line}", "/src/app/main.c:3"], []


def test_a_function_allocating_for_three_callers_is_a_wrapper_by_structure() -> None:
    sites = [_wrapped(10, 1), _wrapped(20, 2), _wrapped(30, 3)]
    wrappers = wrapper_frames(sites)
    assert wrappers == {"/src/app/util.c:9"}
    names = [object_name(c, functions=f, wrappers=wrappers) for c, f in sites]
    assert names == ["1.c:10", "2.c:20", "3.c:30"]
    # two callers are not enough: a constructor used twice keeps its own line
    assert wrapper_frames(sites[:2]) == frozenset()
    # container code between the allocator and the frame: not a direct allocation
    vec = ["libstdc++.so.6+0x1", "/usr/include/c++/12/bits/stl_vector.h:378", "/src/app/util.c:9"]
    assert wrapper_frames([(vec + [f"/src/app/{i}.c:1"], []) for i in range(3)]) == frozenset()
    # one level only: the callers of a known wrapper are not wrappers themselves
    chain = ["/src/lib/xmalloc.c:38", "/src/app/graph.c:57", "/src/app/main.c:1"]
    many = [(chain[:2] + [f"/src/app/m{i}.c:1"], ["xmalloc", "graph_alloc", "f"]) for i in range(3)]
    assert wrapper_frames(many) == {"/src/app/graph.c:57"}
    assert wrapper_frames([(chain, ["xmalloc", "graph_alloc", "main"])]) == frozenset()


WRAPPED = r"""
#include <stdlib.h>
#include <string.h>

static void *xmalloc(size_t n) {
    void *p = malloc(n);                                   /* line 6 */
    if (!p) abort();
    return p;
}

int main(void) {
    char *table = xmalloc(1 << 20);                        /* line 12 */
    char *index = xmalloc(1 << 16);                        /* line 13 */
    memset(table, 1, 1 << 20);
    memset(index, 2, 1 << 16);
    int s = table[7] + index[9];
    free(index);
    free(table);
    return s == 3 ? 0 : 1;
}
"""


def test_profiled_objects_are_named_by_the_callers_of_their_wrapper(
    run_placer,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    """``placer profile`` of a C program with an ``xmalloc`` wrapper names its two
    objects by the two calling lines, not by the ``malloc`` line inside the wrapper."""
    from placer.collectors.shim.library import shim_path  # type: ignore[attr-defined,unused-ignore]

    if shutil.which("cc") is None or shutil.which("addr2line") is None:
        pytest.skip("needs cc and addr2line")
    try:
        shim_path()
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"the allocation shim is not available: {exc}")
    (tmp_path / "wrap.c").write_text(WRAPPED)
    cmd = ["cc", "-g", "-O1", "-fno-inline", "-fno-omit-frame-pointer", "-o", "wrap", "wrap.c"]
    subprocess.run(cmd, cwd=tmp_path, check=True)
    r = run_placer("profile", "--name", "wrap", "--", str(tmp_path / "wrap"))
    assert r.returncode == 0, r.stderr
    run_id = next(
        int(line.split()[2])
        for line in r.stderr.splitlines()
        if line.startswith("placer: run ") and "profiling" in line
    )
    out = run_placer("objects", str(run_id), "--format", "json", "--limit", "0", check=True)
    sites = {o["size_bytes"]: o["site"] for o in json.loads(out.stdout)["objects"]}
    table, index = sites[1 << 20], sites[1 << 16]
    # the stored chain still starts inside the wrapper, with its function kept beside it
    assert Path(table["chain"][0]).name == "wrap.c:6" and table["functions"][0] == "xmalloc"
    assert table["label"].startswith("wrap.c:12")
    assert index["label"].startswith("wrap.c:13")
    text = run_placer("objects", str(run_id), check=True).stdout
    assert "wrap.c:12" in text and "wrap.c:13" in text and "wrap.c:6" not in text
