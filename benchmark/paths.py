"""Names that become file names in a run directory must stay inside it.

Task, trial and split names are joined to the run directory's path (`trials/<trial id>`, `<task>.safetensors`,
`submission/<split>.tsv`); they can also come from files in a run directory, which anyone may have edited. A
name that is not a single plain path component could write outside the directory, so it is refused.
"""

from __future__ import annotations

from benchmark.errors import InputError


def check_name(name, where: str, what: str = "name") -> str:
    if (not isinstance(name, str) or name in ("", ".", "..") or any(c in name for c in "/\\\0")
            or len(name.encode("utf-8", "surrogatepass")) > 255):
        raise InputError(where, f"{what} {name!r} is not a plain file name (no '/', '\\', NUL, '.' or '..'; at most "
                         "255 bytes), so it could write outside the run directory")
    return name
