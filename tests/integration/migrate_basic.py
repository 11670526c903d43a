#!/usr/bin/env python3
"""migrate_basic: a live migration of real processes, end to end.

Per transport (tcp: on 127.0.0.1 with a free port, then unix:): a source
`ferry host` with two ferry-dev-dma and one ferry-dev-vram (64 MiB) under
load and 256 MiB of guest memory (32 MiB of it filled), a destination `ferry host --incoming` with fresh
device servers of the same kinds; `migrate` over the control socket
(docs/control-protocol.md), then:
  - the done event says success, the report's verification says match;
  - the source says role "migrated", its devices are stopped;
  - the destination's workloads carry on (their counters grow past the
    source's) and `verify` finds 0 mismatches;
  - both hosts and every device server exit 0 on quit / SIGTERM.

usage: migrate_basic.py FERRY FERRY_DEV_DMA FERRY_DEV_VRAM
Exit status: 0 pass, 1 fail, 77 skip (a device that cannot migrate yet).
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

MEM = "256M"
VRAM = "64M"
FILL = "32M"
STEP_TIMEOUT = 60.0
# The devices, in order (FERRY_TEST_KINDS=vram,vram for a quick look by hand).
KINDS = os.environ.get("FERRY_TEST_KINDS", "dma,dma,vram").split(",")


class Skip(Exception):
    pass


class Fail(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Fail(what)


class Proc:
    """A child process with its stderr in a log file."""

    def __init__(self, name, argv, workdir):
        self.name = name
        self.log_path = os.path.join(workdir, name + ".log")
        self.log = open(self.log_path, "wb")
        self.p = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT)

    def alive(self):
        return self.p.poll() is None

    def wait(self, timeout):
        try:
            return self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, sig=signal.SIGTERM, timeout=15.0):
        """Signals the process (if alive) and returns its exit status."""
        if self.alive():
            self.p.send_signal(sig)
        rc = self.wait(timeout)
        if rc is None:
            self.p.kill()
            rc = self.p.wait()
            print(f"{self.name}: ignored {sig.name} for {timeout} s", file=sys.stderr)
            rc = -999
        self.log.close()
        return rc

    def tail(self, n=25):
        try:
            with open(self.log_path, "rb") as f:
                lines = f.read().decode(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(f"  [{self.name}] {l}" for l in lines[-n:])


class Control:
    """One connection to a host's control socket."""

    def __init__(self, path, timeout=STEP_TIMEOUT):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(timeout)
        self.s.connect(path)
        self.f = self.s.makefile("rwb")

    def send(self, obj):
        self.f.write((json.dumps(obj) + "\n").encode())
        self.f.flush()

    def recv(self):
        line = self.f.readline()
        check(line, "control connection closed without a reply")
        return json.loads(line)

    def request(self, obj):
        self.send(obj)
        return self.recv()

    def close(self):
        self.f.close()
        self.s.close()


def request(path, obj):
    c = Control(path)
    try:
        return c.request(obj)
    finally:
        c.close()


def wait_for(cond, what, timeout=STEP_TIMEOUT, procs=()):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        for p in procs:
            check(p.alive(), f"{p.name} exited early ({p.p.returncode}) while waiting for {what}")
        time.sleep(0.02)
    raise Fail(f"timed out waiting for {what}")


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def workload(status, kind):
    for w in status["workloads"]:
        if w["kind"] == kind:
            return w
    raise Fail(f"no {kind} workload in status")


class Scenario:
    def __init__(self, bins, workdir, transport):
        self.ferry, self.dev_dma, self.dev_vram = bins
        self.dir = workdir
        self.transport = transport
        self.procs = []

    def spawn(self, name, argv):
        p = Proc(name, argv, self.dir)
        self.procs.append(p)
        return p

    def path(self, name):
        return os.path.join(self.dir, name)

    def devices(self, side):
        args = []
        for i, kind in enumerate(KINDS):
            sock = self.path(f"{side}-{kind}{i}.sock")
            argv = ([self.dev_dma, "--socket", sock] if kind == "dma" else
                    [self.dev_vram, "--socket", sock, "--size", VRAM])
            self.spawn(f"{side}-{kind}{i}", argv)
            args += ["--device", f"{kind}:{sock}"]
        return args

    def host(self, side, devs, extra):
        ctl = self.path(f"{side}.ctl")
        p = self.spawn(f"{side}-host", [self.ferry, "host", "--mem", MEM, *devs,
                                        "--control", ctl, *extra])
        wait_for(lambda: os.path.exists(ctl), f"the {side} host's control socket", procs=[p])
        return p, ctl

    def run(self):
        uri = (f"tcp:127.0.0.1:{free_port()}" if self.transport == "tcp"
               else f"unix:{self.path('mig.sock')}")
        src, src_ctl = self.host("src", self.devices("src"), ["--fill", FILL])
        st = request(src_ctl, {"cmd": "status"})
        check(st["ok"] and st["role"] == "idle", f"source status: {st}")
        for d in st["devices"]:
            if "STOP_COPY" not in d["mig_flags"]:
                raise Skip(f"device {d['index']} ({d['kind']}) cannot migrate yet")
        # One destination with its memory preallocated: the stream lands in
        # pages that are resident but zero, which the checksums must agree on.
        prealloc = ["--prealloc"] if self.transport == "unix" else []
        dst, dst_ctl = self.host("dst", self.devices("dst"), ["--incoming", uri, *prealloc])
        st = request(dst_ctl, {"cmd": "status"})
        check(st["role"] == "destination", f"destination status: {st}")

        # Under load: let the workloads get going first.
        wait_for(lambda: all(w["completed"] > 200 for w in
                             request(src_ctl, {"cmd": "status"})["workloads"]),
                 "the source workloads to make progress", procs=[src])
        before = request(src_ctl, {"cmd": "status"})

        c = Control(src_ctl, timeout=120)
        c.send({"cmd": "migrate", "to": uri, "downtime_ms": 300})
        events = []
        while True:
            e = c.recv()
            events.append(e)
            if e.get("event") != "progress":
                break
        c.close()
        done = events[-1]
        rep = done.get("report") or {}
        print(f"  {self.transport}: {rep.get('outcome')}, {len(rep.get('rounds', []))} rounds "
              f"({rep.get('switchover_reason')}), total {rep.get('total_ms')} ms, downtime "
              f"{rep.get('downtime_ms')} ms (predicted {rep.get('predicted_downtime_ms')}), "
              f"{rep.get('bytes_total', 0) / 1e6:.1f} MB at "
              f"{rep.get('bandwidth_bytes_per_s', 0) / 1e6:.0f} MB/s")
        print(f"  {self.transport}: downtime steps: " + ", ".join(
            f"{s['step']} {s['ms']}" for s in rep.get("downtime_steps", [])))
        if os.environ.get("FERRY_TEST_VERBOSE"):
            print(json.dumps(rep, indent=1))
        check(done.get("event") == "done", f"last event is not done: {done}")
        check(done.get("ok") is True, f"migration failed: {done.get('error')}")
        check(rep["outcome"] == "success", f"outcome {rep['outcome']}")
        check(rep["verification"] == {"guest_memory": "match", "devices": "match"},
              f"verification {rep['verification']}")
        check(any(e.get("phase") == "precopy" for e in events[:-1]), "no precopy progress event")
        check(rep["rounds"] and rep["rounds"][0]["pages"] + rep["hole_pages"] == 65536,
              f"round 1 did not cover guest memory: {rep['rounds'][:1]}, "
              f"{rep['hole_pages']} holes")
        check(all(d["bytes"] > 0 for d in rep["devices"]), f"device bytes {rep['devices']}")
        check(rep.get("measured_bandwidth_bytes_per_s", 0) > 0,
              "no bandwidth measured in the rounds")

        st = request(src_ctl, {"cmd": "status"})
        check(st["role"] == "migrated", f"source role after success: {st['role']}")
        check(all(not w["running"] for w in st["workloads"]), "source workloads still run")
        check(all(d["state"] == "STOP" for d in st["devices"]),
              f"source devices: {[d['state'] for d in st['devices']]}")
        check(st["last_migration"]["outcome"] == "success", "source last_migration")
        r = request(src_ctl, {"cmd": "migrate", "to": uri})
        check(not r["ok"], "a migrated host migrated again")

        # The destination carries on from where the source stopped.
        src_done = {k: workload(st, k)["completed"] for k in set(KINDS) - {"none"}}
        check(all(v >= workload(before, k)["completed"] for k, v in src_done.items()),
              "source counters went backwards")

        def dst_moved():
            s = request(dst_ctl, {"cmd": "status"})
            return s["migration"] is None and all(
                w["running"] and w["completed"] > src_done[w["kind"]] + 100
                for w in s["workloads"])
        wait_for(dst_moved, "the destination workloads to carry on", procs=[dst])
        st = request(dst_ctl, {"cmd": "status"})
        check(st["role"] == "destination", f"destination role {st['role']}")
        check(all(d["state"] == "RUNNING" for d in st["devices"]),
              f"destination devices: {[d['state'] for d in st['devices']]}")
        lm = st["last_migration"]
        check(lm and lm["outcome"] == "success" and lm["role"] == "destination",
              f"destination last_migration {lm}")
        print(f"  {self.transport}: destination downtime {lm['downtime_ms']} ms: " + ", ".join(
            f"{s['step']} {s['ms']}" for s in lm.get("downtime_steps", [])))
        v = request(dst_ctl, {"cmd": "verify"})
        check(v["ok"] and v["mismatches"] == 0, f"destination verify: {v}")
        check(all(w["errors"] == 0 for w in v["workloads"]), f"workload errors: {v}")

        check(request(dst_ctl, {"cmd": "quit"})["ok"], "quit (destination)")
        check(request(src_ctl, {"cmd": "quit"})["ok"], "quit (source)")
        check(dst.wait(STEP_TIMEOUT) == 0, f"destination host exit {dst.p.returncode}")
        check(src.wait(STEP_TIMEOUT) == 0, f"source host exit {src.p.returncode}")

    def cleanup(self, failed):
        bad = []
        for p in reversed(self.procs):
            rc = p.stop()
            if rc != 0:
                bad.append(f"{p.name} exited {rc}")
        if failed or bad:
            for p in self.procs:
                print(p.tail(), file=sys.stderr)
        return bad


def main():
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    bins = sys.argv[1:4]
    status = 0
    for transport in ("tcp", "unix"):
        workdir = tempfile.mkdtemp(prefix=f"ferry-mig-{transport}-")
        sc = Scenario(bins, workdir, transport)
        failed = True
        try:
            sc.run()
            failed = False
        except Skip as e:
            print(f"SKIP: {e}")
            sc.cleanup(False)
            shutil.rmtree(workdir, ignore_errors=True)
            return 77
        except (Fail, OSError, KeyError, ValueError) as e:
            print(f"FAIL ({transport}): {type(e).__name__}: {e}", file=sys.stderr)
        bad = sc.cleanup(failed)
        if bad:
            print(f"FAIL ({transport}): " + "; ".join(bad), file=sys.stderr)
        if failed or bad:
            status = 1
        else:
            shutil.rmtree(workdir, ignore_errors=True)
            print(f"ok: migrate over {transport}")
    return status


if __name__ == "__main__":
    sys.exit(main())
