"""What a program binary is: dynamic or static, its build-id, its load layout.

The shim is an LD_PRELOAD library, so it only loads into dynamically linked programs
(those with a ``PT_INTERP`` program header). We tell statically linked binaries apart
before running them instead of silently producing an empty profile.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from placer.errors import InvalidInputError


@dataclass(frozen=True)
class ElfInfo:
    path: str
    elf_type: str  # ET_EXEC | ET_DYN | ...
    interpreter: str | None
    dynamic: bool
    build_id: str
    first_load_vaddr: int

    @property
    def is_static(self) -> bool:
        """No PT_INTERP: no dynamic loader runs, so nothing is preloaded (static-pie too)."""
        return self.interpreter is None


def resolve_command(name: str) -> str:
    """Absolute path of ``name`` as execvp would find it; NotFound as a one-line error."""
    if os.sep in name:
        path = Path(name)
        if not path.exists():
            raise InvalidInputError(f"command not found: {name}")
        if not os.access(path, os.X_OK) or path.is_dir():
            raise InvalidInputError(f"not an executable file: {name}")
        return str(path.resolve())
    found = shutil.which(name)
    if found is None:
        raise InvalidInputError(f"command not found: {name}")
    return str(Path(found).resolve())


def read_elf(path: str) -> ElfInfo | None:
    """ELF facts of ``path``, or None if it is not an ELF file (a script, say)."""
    from elftools.common.exceptions import ELFError  # lazy: heavy
    from elftools.elf.elffile import ELFFile  # lazy: heavy

    try:
        with open(path, "rb") as fh:
            if fh.read(4) != b"\x7fELF":
                return None
            fh.seek(0)
            elf = ELFFile(fh)
            interp: str | None = None
            dynamic = False
            first_load: int | None = None
            for seg in elf.iter_segments():
                kind = seg["p_type"]
                if kind == "PT_INTERP":
                    interp = seg.get_interp_name()  # type: ignore[attr-defined]
                elif kind == "PT_DYNAMIC":
                    dynamic = True
                elif kind == "PT_LOAD" and first_load is None:
                    first_load = int(seg["p_vaddr"]) - int(seg["p_offset"])
            build_id = ""
            for sec in elf.iter_sections():
                if sec["sh_type"] != "SHT_NOTE":
                    continue
                for note in sec.iter_notes():  # type: ignore[attr-defined]
                    if note["n_type"] == "NT_GNU_BUILD_ID":
                        build_id = str(note["n_desc"])
            return ElfInfo(
                path=path,
                elf_type=str(elf["e_type"]),
                interpreter=interp,
                dynamic=dynamic,
                build_id=build_id,
                first_load_vaddr=max(first_load or 0, 0),
            )
    except (OSError, ELFError) as exc:
        raise InvalidInputError(f"cannot read {path}: {exc}") from None


def script_interpreter(path: str) -> list[str] | None:
    """The ``#!`` line of a script as argv words, or None."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(256)
    except OSError:
        return None
    if not head.startswith(b"#!"):
        return None
    line = head[2:].split(b"\n", 1)[0].decode("utf-8", "replace").strip()
    return line.split() or None
