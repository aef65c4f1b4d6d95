#!/usr/bin/env bash
# make e2e: a single-node cluster (hack/cluster), the scenarios of
# test/e2e against it, one line per scenario and "N passed, M failed", then
# teardown (E2E_KEEP=1 keeps the cluster; `make cluster-down` removes it).
set -uo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
t0=$(date +%s)
bin/cluster up || { echo "cluster up failed"; [ "${E2E_KEEP:-}" = 1 ] || bin/cluster down; exit 1; }
t1=$(date +%s)
$GO test -c -tags e2e -o bin/e2e.test ./test/e2e || { [ "${E2E_KEEP:-}" = 1 ] || bin/cluster down; exit 1; }
bin/cluster exec -- bin/e2e.test -test.v -test.timeout "${E2E_TIMEOUT:-45m}" ${E2E_RUN:+-test.run "$E2E_RUN"} > bin/e2e.log 2>&1
t2=$(date +%s)
grep -E '^--- (PASS|FAIL)' bin/e2e.log | sed -E 's/^--- (PASS|FAIL): (\S+) \((.*)\)/\1  \2  \3/'
passed=$(grep -cE '^--- PASS' bin/e2e.log)
failed=$(grep -cE '^--- FAIL' bin/e2e.log)
if ! grep -qE '^(ok|PASS|FAIL)' bin/e2e.log || grep -qE '^panic:' bin/e2e.log; then
  echo "the scenarios did not finish (see bin/e2e.log)"; failed=$((failed + 1))
fi
if [ "${E2E_KEEP:-}" = 1 ]; then
  echo "cluster kept: bin/cluster exec -- kubectl get pods -A; make cluster-down removes it"
else
  bin/cluster down || failed=$((failed + 1))
fi
t3=$(date +%s)
echo "times: cluster up $((t1 - t0))s, scenarios $((t2 - t1))s, down $((t3 - t2))s; log: bin/e2e.log"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
