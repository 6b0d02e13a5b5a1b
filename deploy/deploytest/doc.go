// Package deploytest holds no code: its tests check the files in deploy/
// (Dockerfiles, Kubernetes manifests, the secrets example and the Grafana
// dashboard) against the real binaries, since neither Docker nor a
// Kubernetes cluster is available where the tests run.
//
// The tests build cmd/httvps-gateway and cmd/httvps-control, compare every
// flag and HTTVPS_* variable the deployment files use with the binaries' -h
// output, start both binaries with the manifests' own arguments (paths and
// ports rewritten to a temporary directory and loopback ports, Redis from
// redis-server when it is installed), hit the probes' endpoints, and check
// every metric and label the dashboard queries against the binaries' real
// /metrics output.
package deploytest
