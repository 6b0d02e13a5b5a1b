#!/usr/bin/env bash
# Starts a working local single-node setup: an ss-server (standing in for the
# Outline server) with a random password, and `bin/httvps up` on the embedded
# store with that ss-server as its static pool member. httvps up's stdout is
# a file here, not a terminal, so it prints no secret: it writes the admin
# key to DATA_DIR/admin.key and a first client token, its ssconf:// and ss://
# keys and the exact ss-local + v2ray-plugin command that connects through
# the gateway (TLS, a leaf from the local CA kept in the data directory) to
# DATA_DIR/first-token.txt, both 0600. This prints its banner, and the
# token's keys when this script's own stdout is a terminal; then it waits
# until Ctrl-C.
#
# RUN_SELFTEST=1 instead starts everything on free ports, runs that saved
# ss-local command itself, fetches the node's /healthz (on the metrics
# listener) through it
# with curl --socks5-hostname (ss-local -> v2ray-plugin -> TLS -> gateway ->
# ss-server -> origin), prints OK or FAIL and exits (0 or 1).
#
# Overrides: GW_LISTEN (127.0.0.1:8443), CONTROL_LISTEN (127.0.0.1:9443),
# ADMIN_LISTEN (127.0.0.1:9090, /metrics), SOCKS_PORT (1080), SS_PORT
# (random), CIPHER (chacha20-ietf-poly1305), DATA_DIR (a temporary
# directory; set it to keep tokens across runs). A default port that is
# taken is replaced by a free one (and said). Ctrl-C stops everything and
# exits 0.
set -euo pipefail
export PATH="/usr/local/go/bin:$PATH"
cd "$(dirname "$0")/.."

selftest=${RUN_SELFTEST:-0}
cipher=${CIPHER:-chacha20-ietf-poly1305}

for cmd in ss-server ss-local ss-v2ray-plugin curl go; do
	command -v "$cmd" >/dev/null 2>&1 || { echo "run: $cmd not found; 'make run' installs it (scripts/deps.sh)" >&2; exit 1; }
done

# free_port prints a TCP port on 127.0.0.1 that nothing listens on. It is
# drawn from below the kernel's ephemeral range, which outgoing connections
# use: a port from inside it can be taken by any connect() before the
# process it is meant for binds it (seen once in CI: ss-local's
# "bind: Address already in use").
free_port() {
	local p i lo
	lo=$(awk '{print $1}' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
	[[ $lo =~ ^[0-9]+$ && $lo -gt 11000 ]] || lo=32768
	for i in $(seq 1 100); do
		p=$((10000 + RANDOM % (lo - 10000)))
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
	control_listen=${CONTROL_LISTEN:-127.0.0.1:$(free_port)}
	socks_port=${SOCKS_PORT:-$(free_port)}
else
	# The usual ports, or free ones if they are taken (and say so).
	port_or_free() { # NAME DEFAULT
		if (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null; then
			local p
			p=$(free_port)
			echo "run: port $2 ($1) is taken; using $p" >&2
			echo "$p"
		else
			echo "$2"
		fi
	}
	gw_listen=${GW_LISTEN:-127.0.0.1:$(port_or_free gateway 8443)}
	control_listen=${CONTROL_LISTEN:-127.0.0.1:$(port_or_free "control API" 9443)}
	socks_port=${SOCKS_PORT:-$(port_or_free SOCKS 1080)}
	admin_listen=${ADMIN_LISTEN:-127.0.0.1:$(port_or_free metrics 9090)}
fi
admin_listen=${admin_listen:-${ADMIN_LISTEN:-127.0.0.1:$(free_port)}}
ss_port=${SS_PORT:-$(free_port)}
password=$(random_token)

make -s build # with the version stamp (make run has just built; this is quick)

work=$(mktemp -d "${TMPDIR:-/tmp}/httvps-run.XXXXXX")
data_dir=${DATA_DIR:-$work/data}
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
	if [[ ${stopping:-0} == 1 ]]; then
		echo "Stopped. Bye."
	fi
}
trap cleanup EXIT
# Ctrl-C is how a run ends: a goodbye and exit 0, not make's "Error 130".
stopping=0
trap 'stopping=1' INT
trap 'exit 143' TERM

show_logs() {
	local f
	for f in "$work"/*.log; do
		echo "--- $(basename "$f")"
		tail -n 20 "$f"
	done >&2
}

wait_port() {
	local i
	for i in $(seq 1 100); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}

# wait_banner waits up to 20s for httvps up's banner.
wait_banner() {
	local i
	for i in $(seq 1 200); do
		grep -q '^Stop with Ctrl-C' "$work/up.out" 2>/dev/null && return 0
		kill -0 "${pids[1]}" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}

ss-server -s 127.0.0.1 -p "$ss_port" -k "$password" -m "$cipher" -u >"$work/ss-server.log" 2>&1 &
pids+=($!)
if ! wait_port "$ss_port"; then
	echo "run: ss-server did not come up" >&2
	show_logs
	exit 1
fi

bin/httvps up -data-dir "$data_dir" -listen "$gw_listen" -control-listen "$control_listen" \
	-admin-listen "$admin_listen" -public-host 127.0.0.1 -drain-timeout 5s \
	-member "static:127.0.0.1:$ss_port:$cipher:$password" >"$work/up.out" 2>"$work/httvps-up.log" &
pids+=($!)

if ! wait_banner; then
	echo "run: httvps up did not come up" >&2
	cat "$work/up.out" >&2 2>/dev/null || true
	show_logs
	exit 1
fi

# The stock-client command httvps up saved (shell-quoted by it), with our
# SOCKS port. Only a file its banner names was written by this run: a kept
# DATA_DIR may hold an older one.
token_file=$data_dir/first-token.txt
stock=
if grep -qxF "  $token_file" "$work/up.out"; then
	stock=$(grep -m1 '^  ss-local ' "$token_file" || true)
fi
stock=${stock/ -l 1080 / -l $socks_port }
stock=${stock#  }
# The node's health page, on its metrics listener: plain HTTP on loopback,
# so the fetch works offline (the control API answers strangers, as the
# gateway does, with the nginx decoy).
healthz="http://$admin_listen/healthz"

if [[ $selftest == 1 ]]; then
	if [[ -z $stock ]]; then
		echo "FAIL: httvps up saved no client command in $token_file" >&2
		cat "$work/up.out" >&2
		show_logs
		exit 1
	fi
	# exec: the background job is ss-local itself, so cleanup can stop it
	# (ss-local stops its plugin on SIGTERM).
	# A port another process took in the meantime is retried on a new one.
	for _ in 1 2 3; do
		eval "exec $stock -b 127.0.0.1" >"$work/ss-local.log" 2>&1 &
		pids+=($!)
		sleep 0.3
		grep -q 'bind() error' "$work/ss-local.log" || break
		kill "${pids[-1]}" 2>/dev/null || true
		old_port=$socks_port
		socks_port=$(free_port)
		stock=${stock/ -l $old_port / -l $socks_port }
	done
	body=
	if wait_port "$socks_port"; then
		# v2ray-plugin starts after ss-local listens; retry briefly.
		for _ in $(seq 1 30); do
			body=$(curl -fsS --max-time 5 --socks5-hostname "127.0.0.1:$socks_port" \
				"$healthz" 2>/dev/null) && break
			sleep 0.2
		done
	fi
	if [[ $body != ok ]]; then
		echo "FAIL: could not fetch $healthz through ss-local and the gateway" >&2
		cat "$work/up.out" >&2
		show_logs
		exit 1
	fi
	echo "OK: fetched $healthz through ss-local -> v2ray-plugin -> TLS -> httvps up gateway -> ss-server"

	# The Outline dynamic key (ssconf://) is served on the gateway's port.
	ssconf=$(grep -m1 '^  ssconf ' "$token_file" | awk '{print $2}')
	doc_url=${ssconf/ssconf:\/\//https://}
	doc_url=${doc_url%%#*}
	if [[ $doc_url != "https://127.0.0.1:${gw_listen##*:}/"* ]] ||
		! curl -fsS --max-time 5 --cacert "$data_dir/ca.pem" "$doc_url" | grep -q 'url: wss://'; then
		echo "FAIL: the ssconf:// key $ssconf is not served by the gateway $gw_listen" >&2
		show_logs
		exit 1
	fi
	echo "OK: fetched the ssconf:// document from the gateway's port"

	# The reference client with the httvps:// key up saved: native tunnel,
	# the local CA pinned by the key (no CA file).
	key=$(grep -m1 '^  httvps ' "$token_file" | awk '{print $2}')
	native_port=$(free_port)
	bin/httvps connect -listen "127.0.0.1:$native_port" -json "$key" >"$work/connect.log" 2>&1 &
	pids+=($!)
	body=
	if wait_port "$native_port"; then
		for _ in $(seq 1 30); do
			body=$(curl -fsS --max-time 5 --socks5-hostname "127.0.0.1:$native_port" \
				"$healthz" 2>/dev/null) && break
			sleep 0.2
		done
	fi
	if [[ $body == ok ]]; then
		echo "OK: fetched $healthz through httvps connect -> native tunnel -> TLS -> httvps up gateway -> ss-server"
		exit 0
	fi
	echo "FAIL: could not fetch $healthz through httvps connect and the gateway" >&2
	cat "$work/connect.log" >&2
	cat "$work/up.out" >&2
	show_logs
	exit 1
fi

# The banner's status lines (its own instructions are replaced by the one
# set below, with the binary as bin/httvps).
if [[ -t 1 ]]; then
	# Its admin key line says "not printed"; the key is printed below.
	sed '/^$/q' "$work/up.out" | sed -e '$d' -e '/^  admin key/d'
else
	sed '/^$/q' "$work/up.out" | sed '$d'
fi
admin="bin/httvps admin -control https://$control_listen -data-dir $data_dir"
# httvps up printed no secret (its stdout is a file); a human at a terminal
# gets them from the 0600 files, anything else only their names.
if [[ -t 1 ]]; then
	echo "  admin key     $(cat "$data_dir/admin.key") (from $data_dir/admin.key)"
	# The console's sign-in page is a secret derived from the admin key.
	echo "  console       $($admin console url) (sign in with the admin key)"
	if [[ -n $stock ]]; then
		echo
		echo "First client token (from $token_file):"
		# The keys and which client each is for (not the file's commands).
		sed -n '/^  token id /,/^  httvps  httvps connect/p' "$token_file"
	fi
	connect="bin/httvps connect -listen 127.0.0.1:$socks_port '$(grep -m1 '^  httvps ' "$token_file" | awk '{print $2}')'
  or the stock client: $stock"
else
	echo
	echo "The admin key is in $data_dir/admin.key and the first token's keys in $token_file"
	echo "(not printed: stdout is not a terminal). The operator console's sign-in URL: $admin console url"
	connect="bin/httvps connect -listen 127.0.0.1:$socks_port with the httvps key in $token_file
  (or the ss-local command there, with -l $socks_port)"
fi
[[ -n $stock ]] || connect="(no first token was issued; see the log in $work)"
cat <<EOM

Local setup (logs in $work):
  ss-server   127.0.0.1:$ss_port  ($cipher, the pool member)
  httvps up   gateway $gw_listen (all a client needs: sessions, ssconf:// keys, client config),
              control API $control_listen (admin, loopback), metrics http://$admin_listen/metrics

1. Connect through the gateway (in another terminal):
  $connect

2. Fetch a page through it (this node's health page: works offline):
  curl --socks5-hostname 127.0.0.1:$socks_port $healthz

3. Manage it:
  $admin tokens list
  $admin tokens create --label NAME
  or in a browser: the console URL ($admin console url; the browser
  warns about the local CA unless it trusts $data_dir/ca.pem)

Press Ctrl-C to stop.
EOM

# Wait for Ctrl-C or for either process to exit.
wait -n "${pids[@]}" || true
if [[ $stopping == 1 ]]; then
	echo
	echo "Stopping (open sessions are drained)..."
	exit 0
fi
echo "run: a process exited; stopping" >&2
show_logs
exit 1
