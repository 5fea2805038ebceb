#!/bin/sh
# (The team's shared Autobahn script, so `cargo xtask conformance` works in any checkout; the
# optional EXCLUDE argument was added for the permessage-deflate run.)
# Runs the Autobahn fuzzingclient against a WebSocket echo URL and summarises the verdicts.
# Usage: run.sh ws://127.0.0.1:PORT/mirror [OUTDIR] [CASES] [EXCLUDE]
#   CASES: JSON list of case patterns, default ["*"]
#   EXCLUDE: JSON list of case patterns left out, default ["12.*", "13.*"] (permessage-deflate)
# The agent's name in the reports and the summary is $AUTOBAHN_AGENT (default: server).
# Exit status: 0 when no case FAILED (or closed UNCLEAN), 1 otherwise. The HTML/JSON reports land in OUTDIR.
set -eu
URL=$1
OUT=${2:-$(mktemp -d)}
CASES=${3:-'["*"]'}
EXCLUDE=${4:-'["12.*", "13.*"]'}
HERE=$(cd "$(dirname "$0")" && pwd)
WSTEST=$("$HERE/setup.sh")
mkdir -p "$OUT"
cat > "$OUT/fuzzingclient.json" <<SPEC
{"outdir": "$OUT/reports", "servers": [{"agent": "${AUTOBAHN_AGENT:-server}", "url": "$URL"}],
 "cases": $CASES, "exclude-cases": $EXCLUDE, "exclude-agent-cases": {}}
SPEC
(cd "$OUT" && "$WSTEST" -m fuzzingclient -s "$OUT/fuzzingclient.json" > "$OUT/wstest.log" 2>&1)
python3 - "$OUT/reports/index.json" <<'PY'
import json, sys, collections
index = json.load(open(sys.argv[1]))
for agent, cases in index.items():
    counts = collections.Counter(r["behavior"] for r in cases.values())
    close = collections.Counter(r["behaviorClose"] for r in cases.values())
    # UNCLEAN: the server dropped TCP without its part of the closing handshake.
    failed = sorted((c for c, r in cases.items() if r["behavior"] == "FAILED" or r["behaviorClose"] in ("FAILED", "UNCLEAN")),
                    key=lambda c: [int(x) for x in c.split(".")])
    print(f"{agent}: {len(cases)} cases, behavior {dict(counts)}, close {dict(close)}")
    if failed:
        print("FAILED: " + " ".join(failed))
        sys.exit(1)
PY
