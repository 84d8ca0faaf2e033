#!/usr/bin/env bash
# The one test command of homelab.gpu (the README's "run the tests").
#
#   tests/run.sh                 # set up from nothing if needed, then run every layer
#   tests/run.sh unit sanity     # only the named layers (setup always runs)
#
# Layers: lint (ansible-lint, production profile; the changelog and doc markup linters; the
# generated docs current), sanity (ansible-test sanity from an ansible_collections/homelab/gpu
# tree), unit (pytest), build (galaxy build with no warning + install + ansible-doc of every
# module; the execution environment definition through ansible-builder create and introspect),
# molecule (every scenario under molecule/, in order), demo (the
# README's main-job command, lab/demo.sh, twice: the second run must change nothing).
#
# Set-up is part of the command: Debian packages, a Docker engine (started by hand when none
# answers: CI has no systemd), the pinned virtualenv .venv/, and the lab images (built by
# lab/build-images.sh, cached by content). A second run reuses all of them.
# Exits non-zero when anything fails; the last line is a pytest-style summary.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 2
CACHE="$ROOT/.cache"
# shellcheck disable=SC2034  # used by lab/setup.sh, sourced below
VENV="$ROOT/.venv"
LOGDIR="$ROOT/tests/output/logs"
mkdir -p "$CACHE" "$LOGDIR"
START=$(date +%s)

# shellcheck source=../lab/setup.sh
. "$ROOT/lab/setup.sh"

# --- result bookkeeping -------------------------------------------------------------------
PASSED=0; FAILED=0; FAILURES=()
record() {  # record <name> <rc>
  if [ "$2" -eq 0 ]; then PASSED=$((PASSED + 1)); printf 'PASSED %s\n' "$1"
  else FAILED=$((FAILED + 1)); FAILURES+=("$1"); printf 'FAILED %s (rc=%s)\n' "$1" "$2"; fi
}
step() {  # step <name> <command...>: one counted check, output to the terminal and a log
  local name=$1; shift
  local log="$LOGDIR/${name//[^A-Za-z0-9_.-]/_}.log"
  say "$name"
  "$@" 2>&1 | tee "$log"
  record "$name" "${PIPESTATUS[0]}"
}

# --- layers ---------------------------------------------------------------------------------
layer_lint() {
  # ansible-lint installs the collection under test into ANSIBLE_HOME once and reuses that copy later; one left by
  # an earlier run would lack what changed since (a new module), so it goes first.
  rm -rf "${ANSIBLE_HOME:?}/collections/ansible_collections/homelab"
  step "ansible-lint" ansible-lint --profile production --offline
  step "antsibull-changelog lint" bash -c "antsibull-changelog lint && antsibull-changelog lint-changelog-yaml changelogs/changelog.yaml"
  # Markup of DOCUMENTATION/EXAMPLES/RETURN, the filters' docs and the role argument specs.
  step "antsibull-docs lint-collection-docs --plugin-docs" antsibull-docs lint-collection-docs --plugin-docs .
  # docs/collection/ must be what antsibull-docs makes of the tree now (regenerate: docs/build.sh).
  step "docs/collection is current (docs/build.sh --check)" "$ROOT/docs/build.sh" --check
}

layer_sanity() {
  # Outside the repository: inside it, ansible-test would list files with the outer git and skip all.
  local tree="${TMPDIR:-/tmp}/homelab-gpu-sanity/ansible_collections/homelab/gpu"
  mkdir -p "$tree"
  # A clean copy of exactly the tracked and new (not ignored) files, so nothing stale is tested.
  rm -rf "$tree.new" && mkdir -p "$tree.new"
  git ls-files -co --exclude-standard -z | rsync -a --from0 --files-from=- ./ "$tree.new/"
  rm -rf "$tree" && mv "$tree.new" "$tree"
  # ansible-test downloads its pip bootstrap from a host CI cannot reach: give it our stand-in.
  local pipver; pipver=$(python - <<'PY'
import re, ansible_test, pathlib
src = pathlib.Path(ansible_test.__file__).parent.joinpath('_internal/python_requirements.py').read_text()
print(re.search(r"pip='([0-9.]+)'", src).group(1))
PY
)
  mkdir -p "$HOME/.ansible/test/cache"
  cp "$ROOT/tests/sanity/get_pip_standin.py" "$HOME/.ansible/test/cache/get_pip_${pipver//./_}.py"
  step "ansible-test sanity" bash -c "cd '$tree' && ansible-test sanity --python 3.11 --requirements --color no"
}

layer_unit() {
  say "pytest unit tests"
  local xml="$ROOT/tests/output/junit-unit.xml"
  (cd "$CACHE/collections/ansible_collections/homelab/gpu" \
     && PYTHONPATH="$CACHE/collections" python -m pytest tests/unit -p no:cacheprovider -q \
        --junitxml="$xml") 2>&1 | tee "$LOGDIR/unit.log"
  local rc=${PIPESTATUS[0]}
  # Count each test case, not the layer, so the summary says how many unit tests ran.
  local counts; counts=$(python3 - "$xml" <<'PY'
import sys, xml.etree.ElementTree as ET
try:
    root = ET.parse(sys.argv[1]).getroot()
except Exception:
    print("0 0"); sys.exit()
suites = [root] if root.tag == "testsuite" else list(root)
tests = sum(int(s.get("tests", 0)) for s in suites)
bad = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
skipped = sum(int(s.get("skipped", 0)) for s in suites)
print(tests - bad - skipped, bad)
PY
)
  local ok=${counts% *} bad=${counts#* }
  PASSED=$((PASSED + ok)); FAILED=$((FAILED + bad))
  if [ "$rc" -ne 0 ] && [ "$bad" -eq 0 ]; then record "pytest (collection or run error)" "$rc"; fi
  [ "$bad" -gt 0 ] && FAILURES+=("pytest: $bad unit test(s)")
}

layer_build() {
  local out="$CACHE/build"; rm -rf "$out" && mkdir -p "$out/collections"
  step "ansible-galaxy collection build" ansible-galaxy collection build --force --output-path "$out" .
  # The build must print no warning (a skipped symlink, a file it cannot read, a deprecation).
  step "ansible-galaxy collection build printed no warning" bash -c \
    "! grep -inE 'warn|deprecat' '$LOGDIR/ansible-galaxy_collection_build.log'"
  step "ansible-galaxy collection install (empty path)" \
    ansible-galaxy collection install --force -p "$out/collections" "$out"/homelab-gpu-*.tar.gz
  layer_build_ee "$out"
  local m name
  for m in plugins/modules/*.py; do
    name=$(basename "$m" .py)
    step "ansible-doc homelab.gpu.$name (installed tarball)" bash -c \
      "ANSIBLE_COLLECTIONS_PATH='$out/collections' ansible-doc homelab.gpu.$name >/dev/null"
  done
}

# meta/execution-environment.yml, from the installed tarball (so its files are not build_ignored),
# with no network (unshare -n) and no image built: ansible-builder create must write the build
# context with the collection's needs in it, and introspection (what ansible-builder does with every
# collection it installs into an image) must find them in the installed collection.
layer_build_ee() {
  local out=$1 inst="$1/collections/ansible_collections/homelab/gpu" ctx="$1/ee-context"
  ln -sfn meta/execution-environment.yml "$inst/execution-environment.yml"  # its paths are from the collection root
  mkdir -p "$inst/.ee" && cp "$out"/homelab-gpu-*.tar.gz "$inst/.ee/homelab-gpu.tar.gz"  # as the docs say to
  step "ansible-builder create (meta/execution-environment.yml, no network)" bash -c \
    "cd '$inst' && unshare -n ansible-builder create --context '$ctx' &&
     grep -qx 'openssh-client \[platform:dpkg\]' '$ctx/_build/bindep.txt' &&
     grep -qx -- '- name: collections/homelab-gpu.tar.gz' '$ctx/_build/requirements.yml' &&
     cmp '$inst/.ee/homelab-gpu.tar.gz' '$ctx/_build/collections/homelab-gpu.tar.gz' &&
     grep -q 'ansible-core>=2.19' '$ctx/'*file"
  rm -rf "$inst/execution-environment.yml" "$inst/.ee"
  step "ansible-builder introspect (installed collection)" bash -c \
    "unshare -n ansible-builder introspect --sanitize '$out/collections' | tee '$out/introspect.txt' &&
     grep -q 'openssh-client \[platform:dpkg\]  # from collection homelab.gpu' '$out/introspect.txt'"
}

layer_molecule() {
  "$ROOT/lab/build-images.sh" || { record "lab images" 1; return; }
  local s
  for s in ${MOLECULE_SCENARIOS:-$(ls molecule)}; do
    [ -f "molecule/$s/molecule.yml" ] || continue
    # A scenario names its lab image (lab/images/<name>) in molecule/<s>/lab-image; default debian12.
    LAB_IMAGE=$(cat "molecule/$s/lab-image" 2>/dev/null || echo debian12)
    export LAB_IMAGE
    step "molecule test -s $s" molecule test -s "$s"
  done
}

# The main job end to end: the README's first command, twice. The second run must change nothing on
# any host, and both must end with a prediction.
layer_demo() {
  "$ROOT/lab/demo.sh" down >/dev/null
  step "demo: lab/demo.sh (first run)" "$ROOT/lab/demo.sh"
  step "demo: the prediction came back" grep -qx '"hello from your home lab"' "$CACHE/demo/demo-gpu-1.prediction.json"
  step "demo: the status report was written" bash -c "grep -q 'hello_cog' '$CACHE/demo/status/status.md' && grep -q 'RTX 3050' '$CACHE/demo/status/status.md'"
  # The HTML page as a browser builds it: the model, its health and the GPU's memory bar must be there.
  step "demo: status.html renders in headless Chromium" bash -c "chromium --headless --no-sandbox --disable-gpu \
      --disable-background-networking --disable-component-update --disable-sync --no-first-run \
      --user-data-dir='$CACHE/demo/chromium' --dump-dom 'file://$CACHE/demo/status/status.html' 2>/dev/null >'$CACHE/demo/status/dom.html' &&
    grep -q 'hello_cog' '$CACHE/demo/status/dom.html' && grep -q 'READY' '$CACHE/demo/status/dom.html' && grep -q 'NVIDIA GeForce RTX 3050' '$CACHE/demo/status/dom.html' &&
    grep -q 'class=\"fill' '$CACHE/demo/status/dom.html'"
  step "demo: lab/demo.sh (second run)" "$ROOT/lab/demo.sh"
  step "demo: the second site run changed nothing" bash -c \
    "grep -A5 '^PLAY RECAP' '$CACHE/demo/site.log' | grep -q '^demo-gpu-1 .*changed=0 .*failed=0' &&
     ! grep -A5 '^PLAY RECAP' '$CACHE/demo/site.log' | grep -E 'changed=[1-9]|failed=[1-9]|unreachable=[1-9]'"
  "$ROOT/lab/demo.sh" down >/dev/null
}

LAYERS=("$@")
[ ${#LAYERS[@]} -eq 0 ] && LAYERS=(lint sanity unit build molecule demo)

say "setting up"
setup_packages
setup_docker
setup_venv
setup_tree
for layer in "${LAYERS[@]}"; do
  case "$layer" in
    lint|sanity|unit|build|molecule|demo) "layer_$layer" ;;
    *) die "unknown layer '$layer' (lint, sanity, unit, build, molecule, demo)" ;;
  esac
done

ELAPSED=$(( $(date +%s) - START ))
if [ ${#FAILURES[@]} -gt 0 ]; then
  printf '\nFailures:\n'; printf '  - %s\n' "${FAILURES[@]}"
fi
printf '\n============ %d passed, %d failed in %dm%02ds ============\n' \
  "$PASSED" "$FAILED" $((ELAPSED / 60)) $((ELAPSED % 60))
[ "$FAILED" -eq 0 ]
