"""Scripts whose memory peaks and is freed before they end, for ``hivemem run --profile``.

Each shape is a template with ``{mib}`` (the size of the peak in MiB) and one
line marked ``# PEAK``: the line that allocates the peak, which the profile
must list first. ``files`` are extra modules written next to the script. Used
by ``tests/test_cli.py`` (a few shapes, small) and
``benchmarks/bench_peak_sites.py`` (every shape, several sizes).
"""

from __future__ import annotations

import os

SHAPES: dict[str, dict[str, object]] = {
    "early_small_blocks": {
        "doc": "1 KiB bytes objects built in a function, freed, then unrelated imports and work",
        "script": """
import time
def build():
    return [bytes(1000) for _ in range({mib} * 1024)]  # PEAK
data = build()
del data
import csv, decimal, email.mime.text
names = [str(i) for i in range(20_000)]
time.sleep(0.2)
""",
    },
    "late_big_brief": {
        "doc": "imports and a dict first, then one big bytearray touched and freed within milliseconds",
        "script": """
import csv, decimal, email.mime.text
names = {{i: str(i) for i in range(30_000)}}
buf = bytearray({mib} * 2**20)  # PEAK
for i in range(0, len(buf), 4096):
    buf[i] = 1
del buf
""",
    },
    "thread_dicts": {
        "doc": "a worker thread builds small dicts and drops them; the main thread only waits",
        "script": """
import threading
def work():
    rows = [{{"id": i, "name": "n"}} for i in range({mib} * 4000)]  # PEAK
    return len(rows)
t = threading.Thread(target=work)
t.start(); t.join()
import csv, decimal
""",
    },
    "big_hashed": {
        "doc": "one big bytes object, hashed in C, then freed",
        "script": """
import hashlib
data = bytes(range(256)) * ({mib} * 4096)  # PEAK
digest = hashlib.sha256(data).hexdigest()
del data
import csv, decimal
""",
    },
    "tiny_strings_loop": {
        "doc": "an explicit loop appending tiny strings (the most traces per MiB), then cleared",
        "script": """
out = []
for i in range({mib} * 9000):
    out.append(str(i) * 2)  # PEAK
out.clear()
import csv, decimal
""",
    },
    "two_phases": {
        "doc": "a 60% phase then a 40% phase, both alive at the peak, then freed: the bigger line first",
        "script": """
first = [bytearray(4000) for _ in range({mib} * 150)]  # PEAK
second = [bytearray(4000) for _ in range({mib} * 100)]
del first, second
import csv, decimal
""",
    },
    "in_a_module": {
        "doc": "the allocation is in a module the script imports",
        "files": {
            "helper.py": """
def load(mib):
    return [bytes(2000) for _ in range(mib * 512)]  # PEAK
"""
        },
        "script": """
import helper
rows = helper.load({mib})
total = sum(len(r) for r in rows)
del rows
import csv, decimal
""",
    },
    "alive_at_exit": {
        "doc": "the peak is still alive when the script ends",
        "script": """
import csv, decimal
cache = {{i: bytes(1500) for i in range({mib} * 680)}}  # PEAK
""",
    },
}


def write(shape: str, directory: str, mib: int) -> tuple[str, str]:
    """Write *shape* at *mib* MiB into *directory*; returns the script's path and the ``file:line``
    (relative to *directory*) that allocates the peak."""
    spec = SHAPES[shape]
    expected = ""
    files = dict(spec.get("files") or {})  # type: ignore[call-overload]
    files["script.py"] = str(spec["script"]).format(mib=mib)
    for name, text in files.items():
        text = text.lstrip("\n")
        with open(os.path.join(directory, name), "w") as f:
            f.write(text)
        for number, line in enumerate(text.splitlines(), 1):
            if "# PEAK" in line:
                expected = f"{name}:{number}"
    return os.path.join(directory, "script.py"), expected
