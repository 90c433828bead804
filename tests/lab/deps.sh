#!/usr/bin/env bash
# Install the Debian packages the tests, the lab and the demo need (run as root).
# Skips apt entirely when everything is installed already.
#
# Installing openssh-server on a machine without systemd would start the machine's own
# sshd from the package's maintainer script; a temporary policy-rc.d that answers 101
# ("action not allowed") keeps every service down while apt runs. The lab starts its own
# sshd processes inside lab hosts and never uses the machine's service.
set -euo pipefail

PACKAGES=(openssh-server iproute2 busybox-static catatonit tini python3-venv
          python3-pyroute2 util-linux procps psmisc rsync make sudo)

missing=()
for p in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
        missing+=("$p")
    fi
done
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "deps.sh: missing packages ${missing[*]}; run as root" >&2
    exit 1
fi

policy=/usr/sbin/policy-rc.d
made_policy=
cleanup() {
    if [ -n "$made_policy" ]; then
        rm -f "$policy"
    fi
}
trap cleanup EXIT
if [ ! -e "$policy" ]; then
    made_policy=1
    printf '#!/bin/sh\n# temporary, from linuxns.guests tests/lab/deps.sh\nexit 101\n' > "$policy"
    chmod 0755 "$policy"
fi

echo "deps.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null
