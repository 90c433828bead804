#!/usr/bin/env bash
# `make demo`: bring up lab hosts, run playbooks/demo.yml against them over real ssh,
# and take the lab down again, also when the playbook fails or the run is interrupted.
# Environment: HOSTS (default 2), LINUXNS_LAB (another lab), DEMO_PLAYBOOK, DEMO_ARGS.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
lab=("/usr/bin/python3" "$repo/tests/lab/lab.py")
playbook=${DEMO_PLAYBOOK:-$repo/playbooks/demo.yml}
ansible_playbook=$repo/.venv/bin/ansible-playbook

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    echo "demo: taking the lab down"
    "${lab[@]}" down || rc=1
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

"${lab[@]}" up --hosts "${HOSTS:-2}"
eval "$("${lab[@]}" env)"
cd "$repo"
# shellcheck disable=SC2086
"$ansible_playbook" -i "$LAB_INVENTORY" "$playbook" ${DEMO_ARGS:-}
