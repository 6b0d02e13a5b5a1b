#!/usr/bin/env bash
# Runs every fuzz target in the given packages for FUZZTIME each; go test
# allows only one -fuzz target per run, so they run one after another.
set -euo pipefail
export PATH="/usr/local/go/bin:$PATH"
fuzztime=${FUZZTIME:-30s}
(($#)) || set -- ./codec

for pkg in "$@"; do
	targets=$(go test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true)
	if [[ -z $targets ]]; then
		echo "fuzz: no fuzz targets in $pkg"
		continue
	fi
	for t in $targets; do
		echo "fuzz: $pkg $t for $fuzztime"
		go test -run='^$' -fuzz="^${t}\$" -fuzztime="$fuzztime" "$pkg"
	done
done
