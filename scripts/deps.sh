#!/bin/sh
# Install the Debian packages klab needs, only those that are missing.
#   scripts/deps.sh          what "klab up" needs (netns provider)
#   scripts/deps.sh test     also what the tests need (captures, BIRD, VMs …)
set -eu

core="iproute2 util-linux iputils-ping busybox-static containernetworking-plugins nftables bird2"
test="openssh-server openssh-client traceroute bird2 tshark tcpdump iperf3 tmux"

want=$core
[ "${1:-}" = test ] && want="$core $test"

missing=""
for p in $want; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
	echo "deps: installing$missing"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
