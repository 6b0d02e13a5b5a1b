#!/usr/bin/env bash
# Installs the Debian packages that tests, the bench and `make run` use,
# only when something is missing, and checks that Go is there.
set -euo pipefail

export PATH="/usr/local/go/bin:$PATH"

# command → Debian package that provides it
declare -A want=(
	[redis-server]=redis-server
	[redis-sentinel]=redis-sentinel
	[ss-server]=shadowsocks-libev
	[ss-local]=shadowsocks-libev
	[ss-manager]=shadowsocks-libev
	[ss-v2ray-plugin]=shadowsocks-v2ray-plugin
	[curl]=curl
	[openssl]=openssl
	[nginx]=nginx-light
	[redis-benchmark]=redis-tools
	# the console's browser test (e2e/console_test.go)
	[chromium]=chromium
)

missing=()
for cmd in "${!want[@]}"; do
	if ! command -v "$cmd" >/dev/null 2>&1; then
		pkg=${want[$cmd]}
		[[ " ${missing[*]-} " == *" $pkg "* ]] || missing+=("$pkg")
	fi
done

# The bench's nginx-tls peer proxies with nginx's stream module, which
# nginx-light does not build in.
if [[ ! -e /usr/lib/nginx/modules/ngx_stream_module.so ]]; then
	missing+=(libnginx-mod-stream)
fi

if ((${#missing[@]})); then
	if [[ $(id -u) -eq 0 ]]; then
		as_root=()
	elif command -v sudo >/dev/null 2>&1; then
		as_root=(sudo)
	else
		echo "deps: need root or sudo to install: ${missing[*]}" >&2
		exit 1
	fi
	echo "deps: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	"${as_root[@]}" apt-get update -q
	"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
	# The packages start system services; tests and the bench start their
	# own instances on loopback, so the system ones only take ports.
	for svc in redis-server redis-sentinel shadowsocks-libev nginx; do
		"${as_root[@]}" systemctl disable --now "$svc" >/dev/null 2>&1 || true
		"${as_root[@]}" service "$svc" stop >/dev/null 2>&1 || true
	done
fi

if ! command -v go >/dev/null 2>&1; then
	echo "deps: Go is not installed (looked in PATH and /usr/local/go/bin); install Go $(sed -n 's/^go //p' "$(dirname "$0")/../go.mod") or newer" >&2
	exit 1
fi
