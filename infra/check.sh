#!/usr/bin/env bash
# Validates infra/ without Azure (issue 13, point 5), as .ci/run does:
#   1. every .bicep / .bicepparam file parses with pycep-parser (syntax and structure; no schema checks);
#   2. checkov's Bicep checks pass offline (--skip-download, BC_SKIP_MAPPING, no update check); a check is skipped
#      only inline, next to the resource, as `// checkov:skip=CKV_...: <reason>`, and every skip must give a reason;
#   3. (in cargo test) tests/infra_consistency.rs checks the Bicep against the code.
# Tools are installed from PyPI into cached virtual environments, one per pinned version:
#   ${XDG_CACHE_HOME:-$HOME/.cache}/acr-autoattach/{pycep-parser-<v>,checkov-<v>}
# (two environments: checkov 3.3.30 pins pycep-parser 0.5.1, the parse gate uses the current 0.7.1).
# Exit status: 0 when everything passes; 1 on any parse error, failed check, parse error inside checkov, or a skip
# without a reason.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYCEP_VERSION="0.7.1"
CHECKOV_VERSION="3.3.30"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/acr-autoattach"

venv() { # venv DIR PACKAGE==VERSION: creates it once, reuses it afterwards
  local dir="$1" requirement="$2"
  if [ ! -f "$dir/.installed" ]; then
    rm -rf "$dir"
    python3 -m venv "$dir"
    "$dir/bin/python" -m pip install --quiet --disable-pip-version-check "$requirement"
    touch "$dir/.installed"
  fi
}

mkdir -p "$cache"
venv "$cache/pycep-parser-$PYCEP_VERSION" "pycep-parser==$PYCEP_VERSION"
venv "$cache/checkov-$CHECKOV_VERSION" "checkov==$CHECKOV_VERSION"

mapfile -t files < <(find infra -type f \( -name '*.bicep' -o -name '*.bicepparam' \) | LC_ALL=C sort)
if [ "${#files[@]}" -eq 0 ]; then
  echo "infra/check.sh: no Bicep files under infra/" >&2
  exit 1
fi

echo "-- pycep-parser $PYCEP_VERSION: parsing ${#files[@]} file(s)"
"$cache/pycep-parser-$PYCEP_VERSION/bin/python" - "${files[@]}" <<'PY'
import sys
from pathlib import Path
from pycep import BicepParser

failed = 0
for name in sys.argv[1:]:
    try:
        BicepParser().parse(file_path=Path(name))
        print(f"parsed  {name}")
    except Exception as e:  # the parser raises lark's exceptions; report them all
        failed += 1
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"FAILED  {name}: {type(e).__name__}: {first}")
sys.exit(1 if failed else 0)
PY

echo "-- checkov skips: each needs a reason"
bad_skips="$(grep -rn 'checkov:skip=' infra --include='*.bicep' | grep -Ev 'checkov:skip=CKV2?_[A-Z0-9_]+: .{20,}' || true)"
if [ -n "$bad_skips" ]; then
  echo "a checkov skip without a reason (write '// checkov:skip=CKV_X: why'):" >&2
  echo "$bad_skips" >&2
  exit 1
fi
grep -rhn -o 'checkov:skip=CKV2\?_[A-Z0-9_]*' infra --include='*.bicep' | sed 's/.*skip=/   skipped: /' | sort | uniq -c

echo "-- checkov $CHECKOV_VERSION --framework bicep (offline)"
report="$(mktemp -t checkov-infra.XXXXXX.json)"
trap 'rm -f "$report"' EXIT
set +e
BC_SKIP_MAPPING=TRUE CKV_SKIP_PACKAGE_UPDATE_CHECK=true \
  "$cache/checkov-$CHECKOV_VERSION/bin/checkov" --framework bicep --skip-download --quiet --compact \
  -d infra -o json >"$report" 2>"$report.stderr"
checkov_rc=$?
set -e
"$cache/checkov-$CHECKOV_VERSION/bin/python" - "$report" "$checkov_rc" "$report.stderr" <<'PY'
import json, sys
path, rc, stderr = sys.argv[1], int(sys.argv[2]), sys.argv[3]
try:
    data = json.load(open(path))
except Exception as e:
    print(f"checkov produced no JSON report (exit {rc}): {e}")
    print(open(stderr).read()[-4000:])
    sys.exit(1)
reports = data if isinstance(data, list) else [data]
failed = 0
for r in reports:
    s = r.get("summary", {})
    print(f"checkov {r.get('check_type')}: passed {s.get('passed')}, failed {s.get('failed')}, "
          f"skipped {s.get('skipped')}, parsing errors {s.get('parsing_errors')}, resources {s.get('resource_count')}")
    for c in r.get("results", {}).get("failed_checks", []):
        failed += 1
        print(f"FAILED  {c['check_id']} {c['check_name']}\n        {c['resource']} in {c['file_path']}:{c['file_line_range']}")
    errors = r.get("results", {}).get("parsing_errors") or r.get("parsing_errors") or []
    for p in errors:
        print(f"PARSE ERROR  {p}")
    if s.get("parsing_errors"):
        failed += 1
        print(f"checkov could not parse {s.get('parsing_errors')} file(s) (its pycep is older than the parse gate's): "
              "those files were not scanned; keep to the syntax both parse")
    if not s.get("passed") and not s.get("failed"):
        failed += 1
        print("checkov checked nothing: is the bicep framework still scanning infra/?")
sys.exit(1 if failed else 0)
PY
rm -f "$report.stderr"
echo "infra/check.sh: ok"
