"""Objects are named by their first user frame (skipping allocator and container frames)."""

from __future__ import annotations

from placer.contracts.naming import object_name, site_label, user_frames

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
