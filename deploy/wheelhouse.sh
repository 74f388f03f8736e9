#!/usr/bin/env bash
# Build the wheelhouse that image builds install from (`pip install --no-index --find-links`), on the
# host, so that image builds need neither network nor certificates. One wheelhouse serves all images:
# it is resolved once for the base dependencies plus every service extra, so all five images get the
# same versions. Rebuilt only when pyproject.toml or constraints.txt change (a stamp holds their hash).
# Usage: deploy/wheelhouse.sh <wheelhouse-dir> [python]
set -euo pipefail
dest=${1:?wheelhouse dir}
python=${2:-python3}
want_py=${WHEELHOUSE_PYTHON_VERSION:-3.11}

have_py=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
if [[ "$have_py" != "$want_py" ]]; then
  echo "wheelhouse: $python is Python $have_py but the images run Python $want_py (bookworm's python3);" \
       "set WHEELHOUSE_PYTHON to a Python $want_py interpreter" >&2
  exit 2
fi

stamp_value=$({ cat pyproject.toml constraints.txt docker/requirements.py; echo "python $have_py"; } | sha256sum | cut -c1-16)
if [[ -f "$dest/INDEX" && "$(head -n1 "$dest/INDEX")" == "stamp $stamp_value" ]]; then
  echo "wheelhouse: $dest is current ($stamp_value, $(($(wc -l <"$dest/INDEX") - 1)) wheels)"
  exit 0
fi

tmp="$dest.tmp"
rm -rf "$tmp"
mkdir -p "$tmp"
"$python" docker/requirements.py --all >"$tmp/requirements.txt"
echo "wheelhouse: resolving $(wc -l <"$tmp/requirements.txt") requirements into $dest"
# pip wheel downloads binary wheels where they exist and builds the rest; constraints.txt pins torch to
# the CPU build found through pip's find-links (an unpinned torch would pull gigabytes of CUDA).
"$python" -m pip wheel --quiet --disable-pip-version-check --progress-bar off \
  --wheel-dir "$tmp" -c constraints.txt -r "$tmp/requirements.txt" 2> >(grep -v "is ignored: it is neither" >&2)
# INDEX: a stamp line, then the wheel names. Dockerfiles COPY it before installing, so the dependency
# layer's cache key changes whenever the wheelhouse does.
{ echo "stamp $stamp_value"; (cd "$tmp" && ls -1 ./*.whl | sed 's|^\./||' | sort); } >"$tmp/INDEX"
rm -rf "$dest"
mv "$tmp" "$dest"
echo "wheelhouse: $dest ready ($(($(wc -l <"$dest/INDEX") - 1)) wheels, $(du -sh "$dest" | cut -f1))"
