#!/usr/bin/env bash
# `make molecule`: run one molecule scenario (extensions/molecule/SCENARIO) against its own
# lab: create = lab up, destroy = lab down (also when the scenario fails: molecule destroys
# on failure, and this script takes the lab down once more on exit).
#   tests/lab/molecule.sh default|fleet [molecule test args...]
# Environment: LINUXNS_LAB (default molecule-SCENARIO) and LINUXNS_LAB_BASE select the lab;
# MOLECULE_LAB_PURGE=1 also removes the lab's state folder at the end (for one-off labs).
set -euo pipefail

scenario=${1:?usage: molecule.sh SCENARIO [args...]}
shift
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export LINUXNS_LAB=${LINUXNS_LAB:-molecule-$scenario}
lab=("/usr/bin/python3" "$repo/tests/lab/lab.py")

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ "${MOLECULE_LAB_PURGE:-0}" = 1 ]; then
        "${lab[@]}" down --purge >/dev/null || rc=1
    else
        "${lab[@]}" down >/dev/null || rc=1
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

eval "$("${lab[@]}" env)"
unset ANSIBLE_CONFIG   # molecule writes its own; the lab's inventory comes from LAB_INVENTORY
export LAB_INVENTORY PATH="$repo/.venv/bin:$PATH"
cd "$repo"
molecule test -s "$scenario" "$@"
