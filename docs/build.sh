#!/usr/bin/env bash
# Generate the collection's reference pages in docs/collection/ with antsibull-docs: one page per
# module, filter and role, and an index, all from the collection itself (DOCUMENTATION, EXAMPLES and
# RETURN of the modules, the filters' YAML docs, each role's meta/argument_specs.yml).
#
#   docs/build.sh           # rewrite docs/collection/ (run it after changing any of the above)
#   docs/build.sh --check   # change nothing; exit 1 and show the diff when the pages are stale
#
# The pages are never edited by hand. The format is antsibull-docs' simplified RST: a repository
# host renders it as it is, with no build step (docs/README.md says why this format). The output
# depends only on the tree and on the pinned antsibull-docs and ansible-core: no dates, no tool
# version, so --check is stable. The first call makes .venv/ from requirements-dev.txt if needed.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd -P)  # -P: the real tree, never the .cache/collections link
CACHE="$ROOT/.cache"
# shellcheck disable=SC2034  # used by lab/setup.sh, sourced below
VENV="$ROOT/.venv"
LOGDIR="$ROOT/tests/output/logs"
DEST="$ROOT/docs/collection"
mkdir -p "$CACHE" "$LOGDIR"
cd "$ROOT"

# shellcheck source=../lab/setup.sh
. "$ROOT/lab/setup.sh"
setup_venv
setup_tree

CHECK=false
case "${1:-}" in
  --check) CHECK=true ;;
  '') ;;
  *) die "usage: docs/build.sh [--check]" ;;
esac

# antsibull-docs writes only into a directory that no one else can write to.
OUT=$(mktemp -d "${TMPDIR:-/tmp}/homelab-gpu-docs.XXXXXX")
trap 'rm -rf "$OUT"' EXIT
antsibull-docs collection --use-current --squash-hierarchy --output-format simplified-rst \
  --no-add-antsibull-docs-version --fail-on-error --dest-dir "$OUT" homelab.gpu >"$OUT.log" 2>&1 \
  || { cat "$OUT.log" >&2; rm -f "$OUT.log"; die "antsibull-docs failed"; }
rm -f "$OUT.log"

if $CHECK; then
  if ! diff -ruN "$DEST" "$OUT" >"$LOGDIR/docs-stale.diff"; then
    sed "s|$OUT|(generated)|g" "$LOGDIR/docs-stale.diff" | head -n 60
    echo "docs/collection/ is stale: run docs/build.sh and commit the result" >&2
    exit 1
  fi
  echo "docs/collection/ is current"
else
  rm -rf "$DEST" && mkdir -p "$DEST"
  cp -p "$OUT"/*.rst "$DEST/"
  chmod 644 "$DEST"/*.rst
  echo "wrote $(find "$DEST" -name '*.rst' | wc -l) pages to docs/collection/"
fi
