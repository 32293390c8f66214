"""Summarises an Autobahn TestSuite report (reports/index.json): cases per
section and agent by outcome, as Markdown. Exits 1 when a case of the
sections asked for is neither OK, NON-STRICT nor INFORMATIONAL (or when a
case is missing).

    python3 conformance/summary.py REPORTS/index.json "1 2 3 ..." [--doc]
"""
import json
import sys
from collections import Counter, OrderedDict

PASSING = ("OK", "NON-STRICT", "INFORMATIONAL")


def section_of(case):
    return case.split(".")[0]


def main():
    index_path, sections = sys.argv[1], sys.argv[2].split()
    doc = "--doc" in sys.argv[3:]
    with open(index_path) as f:
        index = json.load(f, object_pairs_hook=OrderedDict)
    agents = sorted(index)
    out, bad = [], []
    if doc:
        out += doc_header()
    out.append("| section | " + " | ".join(agents) + " |")
    out.append("|---|" + "---|" * len(agents))
    totals = {a: Counter() for a in agents}
    for s in sections:
        cells = []
        for a in agents:
            c = Counter()
            for case, r in index[a].items():
                if section_of(case) != s:
                    continue
                c[r["behavior"]] += 1
                if r["behavior"] not in PASSING:
                    bad.append("%s %s: %s (close %s)" % (a, case, r["behavior"], r.get("behaviorClose")))
            totals[a].update(c)
            cells.append(fmt(c))
        out.append("| %s | %s |" % (s, " | ".join(cells)))
    out.append("| **all** | %s |" % " | ".join("**%s**" % fmt(totals[a]) for a in agents))
    counts = set(sum(totals[a].values()) for a in agents)
    if len(counts) != 1:
        bad.append("agents ran different numbers of cases: %s" % sorted(counts))
    out.append("")
    if bad:
        out.append("Not passing:")
        out += ["- " + b for b in bad]
    else:
        out.append("Every case: OK, NON-STRICT or INFORMATIONAL.")
    print("\n".join(out))
    return 1 if bad else 0


def fmt(c):
    if not c:
        return "-"
    order = ["OK", "NON-STRICT", "INFORMATIONAL", "FAILED", "WRONG CODE", "UNCLEAN", "UNIMPLEMENTED"]
    keys = sorted(c, key=lambda k: order.index(k) if k in order else len(order))
    return ", ".join("%d %s" % (c[k], k) for k in keys)


def doc_header():
    return [
        "# WebSocket conformance (Autobahn TestSuite)",
        "",
        "redcast writes its own WebSocket frames on the direct path (plain TCP) and",
        "reads every client frame with tungstenite. The [Autobahn TestSuite](https://github.com/crossbario/autobahn-testsuite)",
        "fuzzing client (`wstest` 25.10.1, Python 2.7) runs against the `/echo` route,",
        "which `server.conformance_echo = true` turns on: it echoes every text and",
        "binary message through the same reader, outbox and writers as `/ws`.",
        "",
        "- `redcast-direct`: plain TCP, `server.direct_writes = true` (the default):",
        "  echoes are written straight to the socket from the outbox.",
        "- `redcast-queued`: plain TCP, `server.direct_writes = false`: the",
        "  session's writer task drains the outbox (the path TLS uses).",
        "- `redcast-tls`: `wss://` with a self-signed certificate: the queued",
        "  path under TLS.",
        "",
        "Sections 12 and 13 (permessage-deflate) are left out: redcast does not",
        "negotiate compression. The suite's NON-STRICT verdict is a pass: 6.4.3",
        "and 6.4.4 send invalid UTF-8 in the middle of a fragmented text message,",
        "and redcast closes with 1007 once it has the frame holding the bad byte,",
        "not at the byte itself (the RFC allows both). INFORMATIONAL cases only",
        "record what the server did: 7.1.6 (a close after a large message: 1000),",
        "7.13.1 and 7.13.2 (close codes 5000 and 65536, outside the registered",
        "ranges: answered with 1002).",
        "",
        "Regenerate (builds redcast in release mode and installs `wstest` into a",
        "Python 2.7 virtualenv on first use; about 6 minutes on 2 cores, 5 of",
        "them in section 9):",
        "",
        "```sh",
        "DOC=docs/conformance.md bash conformance/run.sh",
        "```",
        "",
        "CI runs `SECTIONS=\"1 2 3 4 5 6 7 10\" bash conformance/run.sh` on every",
        "change (247 cases per agent, about 35 seconds; section 9, the",
        "performance cases with messages up to 16 MiB, is left to the command",
        "above) and fails on any case that does not pass.",
        "",
        "Cases per section and agent, by outcome:",
        "",
    ]


if __name__ == "__main__":
    sys.exit(main())
