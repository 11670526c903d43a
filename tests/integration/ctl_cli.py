#!/usr/bin/env python3
"""`ferry migrate` and `ferry status` against a scripted fake host.

The fake host speaks docs/control-protocol.md on a UNIX socket and plays
one scenario per case: a clean migration with malformed and over-long lines
mixed into the progress events, a host that dies mid-migration, a failed
migration, a refused request, a cancel on SIGINT, and status / verify
replies good and bad. Each case checks the exit status and what the tool
printed. These cases need no `ferry host`: they pin the tools' side of the
contract.

usage: ctl_cli.py FERRY_BINARY
"""
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

FERRY = sys.argv[1]
TIMEOUT = 20

REPORT = {
    "outcome": "success", "error": None, "uri": "tcp:127.0.0.1:4444",
    "total_ms": 1234.5, "downtime_ms": 56.7, "downtime_budget_ms": 300,
    "switchover_reason": "converged",
    "rounds": [{"round": i, "bytes": 1 << 20, "pages": 256, "zero_pages": 3,
                "dirty_pages": 9, "device_bytes": 4096, "duration_ms": 1.5}
               for i in range(1, 4)],
    "devices": [{"index": 0, "kind": "dma", "bytes": 8192, "precopy_bytes": 0,
                 "stopcopy_bytes": 8192, "dirty_provider": "device-logging"},
                {"index": 1, "kind": "vram", "bytes": 1 << 24,
                 "precopy_bytes": 1 << 24, "stopcopy_bytes": 0,
                 "dirty_provider": None}],
    "bytes_total": 3 << 20, "bandwidth_bytes_per_s": 2.5e9,
    "verification": {"guest_memory": "match", "devices": "match"},
}

STATUS = {
    "ok": True, "role": "idle", "mem_bytes": 256 << 20,
    "devices": [{"index": 0, "kind": "dma", "socket": "/tmp/x/dma0.sock",
                 "state": "RUNNING", "mig_flags": ["STOP_COPY", "P2P", "PRE_COPY"],
                 "dirty_provider": "device-logging"}],
    "workloads": [{"device": 0, "kind": "dma", "running": True, "submitted": 10,
                   "completed": 9, "verified": 9, "errors": 0}],
    "migration": None, "last_migration": REPORT,
}


def progress(rnd, sent):
    return {"event": "progress", "phase": "precopy", "round": rnd,
            "bytes_sent": sent, "bytes_remaining": 1 << 20,
            "rate_bytes_per_s": 1 << 30, "predicted_downtime_ms": 12,
            "dirty_pages": 77}


class FakeHost:
    """Serves connections on PATH; @script(conn, request, host) answers."""

    def __init__(self, path, script):
        self.path = path
        self.script = script
        self.requests = []
        self.cancelled = threading.Event()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(8)
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def serve(self, conn):
        f = conn.makefile("rb")
        try:
            for line in f:
                req = json.loads(line)
                self.requests.append(req)
                if req.get("cmd") == "cancel":
                    self.cancelled.set()
                    send(conn, {"ok": True, "cancelled": True})
                    continue
                if self.script(conn, req, self) == "close":
                    break
        except (OSError, ValueError):
            pass
        finally:
            conn.close()

    def stop(self):
        self.sock.close()


def send(conn, obj):
    conn.sendall(json.dumps(obj).encode() + b"\n")


def run(args, host_script, sigint_after=None):
    d = tempfile.mkdtemp(prefix="ferry-ctl-cli.")
    path = os.path.join(d, "ctl.sock")
    host = FakeHost(path, host_script)
    argv = [FERRY] + [a.replace("CTL", path) for a in args]
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if sigint_after is not None:
        # only once the request is in: the handler is installed by then
        deadline = time.monotonic() + TIMEOUT
        while not host.requests and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(sigint_after)
        p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=TIMEOUT)
    host.stop()
    os.unlink(path)
    os.rmdir(d)
    return p.returncode, out.decode(), err.decode(), host


def expect(cond, what, out="", err=""):
    if not cond:
        print("FAIL:", what)
        print("--- stdout\n" + out + "--- stderr\n" + err)
        sys.exit(1)


# ---- migrate ---------------------------------------------------------------

def migrate_ok(conn, req, host):
    for i in range(1, 4):
        send(conn, progress(i, i << 20))
    conn.sendall(b"this is not json\n")
    conn.sendall(b"[1,2,3]\n")
    conn.sendall(b"{\"event\":\"progress\",\"phase\":7}\n")
    conn.sendall(b"x" * (70 * 1024) + b"\n")
    send(conn, {"event": "something-new", "x": 1})
    send(conn, {"ok": True, "event": "done", "report": REPORT})
    return "close"


def case_migrate_success():
    rc, out, err, host = run(["migrate", "--control", "CTL", "--to", "tcp:127.0.0.1:4444",
                              "--downtime-ms", "150", "--max-rounds", "7"], migrate_ok)
    expect(rc == 0, "migrate success exits 0 (rc %d)" % rc, out, err)
    req = host.requests[0]
    expect(req == {"cmd": "migrate", "to": "tcp:127.0.0.1:4444", "downtime_ms": 150,
                   "max_rounds": 7}, "migrate request %r" % req)
    for s in ("tcp:127.0.0.1:4444: success", "56.7 ms (budget 300 ms)",
              "converged after 3 rounds", "device-logging", "2.33 GiB/s",
              "guest memory match, devices match"):
        expect(s in out, "report shows %r" % s, out, err)
    expect("precopy" in err and "round 3" in err, "progress lines on stderr", out, err)
    expect("longer than 65536" in err, "over-long line reported", out, err)


def case_migrate_json():
    rc, out, err, _ = run(["migrate", "--control", "CTL", "--to", "tcp:127.0.0.1:4444",
                           "--json"], migrate_ok)
    expect(rc == 0, "migrate --json exits 0", out, err)
    expect(json.loads(out) == REPORT, "--json prints the report object", out, err)


def host_dies(conn, req, host):
    send(conn, progress(1, 1 << 20))
    conn.sendall(b"{\"event\":\"progress\",\"pha")  # and dies mid-line
    return "close"


def case_host_dies():
    rc, out, err, _ = run(["migrate", "--control", "CTL", "--to", "tcp:h:1"], host_dies)
    expect(rc == 1, "host death: exit 1 (rc %d)" % rc, out, err)
    expect("closed the control connection before the migration finished" in err,
           "host death explained", out, err)
    rc, out, err, _ = run(["migrate", "--control", "CTL", "--to", "tcp:h:1", "--json"],
                          host_dies)
    expect(rc == 1, "host death --json: exit 1", out, err)
    j = json.loads(out)
    expect(j["outcome"] == "failed" and "closed" in j["error"], "failure object", out, err)


def migrate_fails(conn, req, host):
    send(conn, progress(1, 1 << 20))
    r = dict(REPORT, outcome="failed", error="destination refused: memory size differs",
             switchover_reason=None, verification=None)
    send(conn, {"ok": False, "event": "done", "error": r["error"], "report": r})
    return "close"


def case_migrate_failed():
    rc, out, err, _ = run(["migrate", "--control", "CTL", "--to", "tcp:h:1"], migrate_fails)
    expect(rc == 1, "failed migration: exit 1", out, err)
    expect("memory size differs" in out and "memory size differs" in err,
           "failure reason shown", out, err)
    expect("not reached" in out, "no switchover shown", out, err)


def busy(conn, req, host):
    send(conn, {"ok": False, "errno": 16, "error": "a migration is already running"})
    return "close"


def case_busy():
    rc, out, err, _ = run(["migrate", "--control", "CTL", "--to", "tcp:h:1"], busy)
    expect(rc == 1, "refused request: exit 1", out, err)
    expect("already running" in err, "refusal shown", out, err)


def slow_then_cancel(conn, req, host):
    for i in range(200):
        send(conn, progress(1, i << 20))
        if host.cancelled.wait(0.05):
            break
    r = dict(REPORT, outcome="cancelled", error="cancelled by the user")
    send(conn, {"ok": False, "event": "done", "error": r["error"], "report": r})
    return "close"


def case_cancel():
    rc, out, err, host = run(["migrate", "--control", "CTL", "--to", "tcp:h:1"],
                             slow_then_cancel, sigint_after=0.2)
    expect(host.cancelled.is_set(), "SIGINT sends cancel", out, err)
    expect(rc == 1 and "cancelled" in out, "cancelled migration: exit 1", out, err)


def case_usage():
    for args in (["migrate"], ["migrate", "--control", "x"],
                 ["migrate", "--control", "x", "--to", "y", "--downtime-ms", "0"],
                 ["migrate", "--control", "x", "--to", "y", "--bogus"],
                 ["status"], ["status", "--control"]):
        p = subprocess.run([FERRY] + args, capture_output=True, timeout=TIMEOUT)
        expect(p.returncode == 2, "usage error for %r" % args, p.stdout.decode(),
               p.stderr.decode())
    p = subprocess.run([FERRY, "migrate", "--control", "/nonexistent/ctl", "--to", "tcp:h:1"],
                       capture_output=True, timeout=TIMEOUT)
    expect(p.returncode == 1, "no host: exit 1", "", p.stderr.decode())


# ---- status ----------------------------------------------------------------

def status_script(verify_reply):
    def script(conn, req, host):
        if req["cmd"] == "status":
            send(conn, STATUS)
        elif req["cmd"] == "verify":
            send(conn, verify_reply)
    return script


def case_status():
    good = {"ok": True, "workloads": STATUS["workloads"], "mismatches": 0}
    rc, out, err, _ = run(["status", "--control", "CTL"], status_script(good))
    expect(rc == 0, "status exits 0", out, err)
    for s in ("Host: idle, guest memory 256 MiB", "RUNNING", "STOP_COPY,P2P,PRE_COPY",
              "device-logging", "success, tcp:127.0.0.1:4444"):
        expect(s in out, "status shows %r" % s, out, err)
    rc, out, err, _ = run(["status", "--control", "CTL", "--json"], status_script(good))
    expect(rc == 0 and json.loads(out) == STATUS, "status --json passes the object", out, err)
    rc, out, err, _ = run(["status", "--control", "CTL", "--verify"], status_script(good))
    expect(rc == 0 and "0 mismatches" in out, "verify, no mismatch: exit 0", out, err)
    rc, out, err, _ = run(["status", "--control", "CTL", "--verify", "--json"],
                          status_script(good))
    expect(rc == 0 and json.loads(out)["verify"] == good, "verify --json", out, err)
    bad = dict(good, ok=False, mismatches=2)
    rc, out, err, _ = run(["status", "--control", "CTL", "--verify"], status_script(bad))
    expect(rc == 1 and "2 mismatches" in err, "verify with mismatches: exit 1", out, err)


def case_status_malformed():
    def script(conn, req, host):
        conn.sendall(b'{"ok":true,"role":5,"mem_bytes":"x","devices":[1,{"index":-1}],'
                     b'"workloads":{},"migration":[],"last_migration":7}\n')
    rc, out, err, _ = run(["status", "--control", "CTL"], script)
    expect(rc == 0 and "missing or malformed" in out, "malformed status shown as such",
           out, err)

    def garbage(conn, req, host):
        conn.sendall(b"garbage\n")
    rc, out, err, _ = run(["status", "--control", "CTL"], garbage)
    expect(rc == 1, "garbage status reply: exit 1", out, err)

    def refuse(conn, req, host):
        send(conn, {"ok": False, "errno": 22, "error": "nope"})
    rc, out, err, _ = run(["status", "--control", "CTL"], refuse)
    expect(rc == 1 and "nope" in err, "refused status: exit 1", out, err)


CASES = {name[5:]: fn for name, fn in globals().items() if name.startswith("case_")}

if __name__ == "__main__":
    todo = sys.argv[2:] or sorted(CASES)
    for name in todo:
        t0 = time.monotonic()
        CASES[name]()
        print("ok  %-20s %.2f s" % (name, time.monotonic() - t0))
