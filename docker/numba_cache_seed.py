"""Seed numba's on-disk cache from the image at interpreter start (installed as a .pth hook).

pymatting (imported by rembg) JIT-compiles about 30 s of numba code on import. numba only uses a cache
directory it can write, and the root filesystem is read-only, so the cache warmed at build time in
/opt/numba-cache is copied into NUMBA_CACHE_DIR (on the writable /tmp) the first time Python starts in a
container. A cache that does not match this CPU or these sources is ignored by numba (it recompiles).
"""

import os
import shutil


def seed(src: str = "/opt/numba-cache") -> None:
    dst = os.environ.get("NUMBA_CACHE_DIR")
    # Root only runs at build time (the image runs as UID 1000): never seed the image's own /tmp.
    if os.getuid() == 0 or not dst or dst == src or not os.path.isdir(src) or os.path.exists(dst):
        return
    try:
        shutil.copytree(src, dst)
    except OSError:
        pass  # another process seeded it first, or /tmp is full: numba compiles instead


seed()
