#!/usr/bin/env bash
# Starts a working local setup: an ss-server (standing in for the Outline
# server) with a random password, and bin/httvps-gateway in front of it with a
# random secret. Prints the ss-local + v2ray-plugin command that connects
# through the gateway, then waits until Ctrl-C.
#
# RUN_SELFTEST=1 instead runs that ss-local itself, fetches the gateway's
# /healthz through it with curl --socks5-hostname, prints OK or FAIL and exits
# (0 or 1).
#
# Overrides: GW_LISTEN (127.0.0.1:8080), ADMIN_LISTEN (127.0.0.1:9090),
# SOCKS_PORT (1080), SS_PORT (random), CIPHER (chacha20-ietf-poly1305).
set -euo pipefail
export PATH="/usr/local/go/bin:$PATH"
cd "$(dirname "$0")/.."

selftest=${RUN_SELFTEST:-0}
cipher=${CIPHER:-chacha20-ietf-poly1305}

for cmd in ss-server ss-local ss-v2ray-plugin curl go; do
	command -v "$cmd" >/dev/null 2>&1 || { echo "run: $cmd not found; run 'make deps'" >&2; exit 1; }
done

# free_port prints a TCP port on 127.0.0.1 that nothing listens on.
free_port() {
	local p i
	for i in $(seq 1 100); do
		p=$((20000 + RANDOM % 40000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return 0
		fi
	done
	echo "run: no free port found" >&2
	return 1
}

# random_token prints 24 URL-safe characters from /dev/urandom.
random_token() { head -c 18 /dev/urandom | base64 | tr '+/' '-_'; }

if [[ $selftest == 1 ]]; then
	# Random ports so a selftest never collides with a running `make run`.
	gw_listen=${GW_LISTEN:-127.0.0.1:$(free_port)}
	admin_listen=${ADMIN_LISTEN:-127.0.0.1:$(free_port)}
	socks_port=${SOCKS_PORT:-$(free_port)}
else
	gw_listen=${GW_LISTEN:-127.0.0.1:8080}
	admin_listen=${ADMIN_LISTEN:-127.0.0.1:9090}
	socks_port=${SOCKS_PORT:-1080}
fi
ss_port=${SS_PORT:-$(free_port)}
gw_host=${gw_listen%:*}
gw_port=${gw_listen##*:}
password=$(random_token)
secret=$(random_token)

go build -o bin/ ./cmd/httvps-gateway

work=$(mktemp -d "${TMPDIR:-/tmp}/httvps-run.XXXXXX")
pids=()
cleanup() {
	local pid
	for pid in "${pids[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	for pid in "${pids[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

show_logs() {
	local f
	for f in "$work"/*.log; do
		echo "--- $(basename "$f")"
		tail -n 20 "$f"
	done >&2
}

# wait_for URL_OR_PORT waits up to 10s for an HTTP 200 or a listening port.
wait_http() {
	local i
	for i in $(seq 1 100); do
		curl -fsS -o /dev/null --max-time 1 "$1" 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}
wait_port() {
	local i
	for i in $(seq 1 100); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}

ss-server -s 127.0.0.1 -p "$ss_port" -k "$password" -m "$cipher" -u >"$work/ss-server.log" 2>&1 &
pids+=($!)

bin/httvps-gateway -listen "$gw_listen" -admin-listen "$admin_listen" \
	-drain-timeout 5s -route "$secret=127.0.0.1:$ss_port" >"$work/gateway.log" 2>&1 &
pids+=($!)

if ! wait_port "$ss_port" || ! wait_http "http://$admin_listen/readyz"; then
	echo "run: ss-server or gateway did not come up" >&2
	show_logs
	exit 1
fi

plugin_opts="mode=websocket;mux=0;path=/$secret/tcp;host=$gw_host"
ss_local=(ss-local -s "$gw_host" -p "$gw_port" -l "$socks_port" -k "$password" -m "$cipher"
	--plugin ss-v2ray-plugin --plugin-opts "$plugin_opts")

if [[ $selftest == 1 ]]; then
	"${ss_local[@]}" >"$work/ss-local.log" 2>&1 &
	pids+=($!)
	if wait_port "$socks_port" &&
		body=$(curl -fsS --max-time 10 --socks5-hostname "127.0.0.1:$socks_port" "http://$admin_listen/healthz") &&
		[[ $body == ok* ]]; then
		echo "OK: fetched http://$admin_listen/healthz through ss-local -> v2ray-plugin -> httvps-gateway -> ss-server"
		exit 0
	fi
	echo "FAIL: could not fetch http://$admin_listen/healthz through the gateway" >&2
	show_logs
	exit 1
fi

cat <<EOM
HTTVPS local setup is running (logs in $work):
  ss-server       127.0.0.1:$ss_port  ($cipher, password $password)
  httvps-gateway  $gw_listen  (route /$secret/tcp and /udp -> 127.0.0.1:$ss_port)
  admin           http://$admin_listen/metrics  /healthz  /readyz

Connect through the gateway (in another terminal):
  ss-local -s $gw_host -p $gw_port -l $socks_port -k '$password' -m $cipher --plugin ss-v2ray-plugin --plugin-opts "$plugin_opts"

Then fetch a page through it:
  curl --socks5-hostname 127.0.0.1:$socks_port http://$admin_listen/healthz

Press Ctrl-C to stop.
EOM

# Wait for Ctrl-C or for either process to exit.
wait -n "${pids[@]}" || true
echo "run: a process exited; stopping" >&2
show_logs
exit 1
