"""Real ferry processes for the migration tests: device servers, hosts, the
ferry command, a TCP proxy that can cut a stream, and clean-up that stops
every process it started (by pid) whatever happens.

Only the standard library; every wait has a timeout so a hung process fails
one test instead of hanging the suite.
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

START_TIMEOUT = 15.0   # a process to create its socket (ASan builds are slow)
CALL_TIMEOUT = 60.0    # one control request, one ferry command


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)


class Host:
    def __init__(self, name, proc, ctl, log, uri=None):
        self.name, self.proc, self.ctl, self.log, self.uri = name, proc, ctl, log, uri

    def log_text(self):
        with open(self.log, errors="replace") as f:
            return f.read()


class Cluster:
    """Processes of one test case, in one temporary directory."""

    def __init__(self, ferry, dev_dma, dev_vram, name):
        self.ferry, self.dev_dma, self.dev_vram = ferry, dev_dma, dev_vram
        self.dir = tempfile.mkdtemp(prefix="ferry-%s." % name)
        self.procs = []
        self.serial = 0

    # ---- processes ----

    def _spawn(self, name, argv):
        log = os.path.join(self.dir, name + ".log")
        with open(log, "wb") as f:
            p = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL)
        self.procs.append(p)
        return p, log

    def _wait_socket(self, path, proc, log):
        deadline = time.monotonic() + START_TIMEOUT
        while not os.path.exists(path):
            if proc.poll() is not None:
                raise Failure("%s exited (%d) before creating %s:\n%s"
                              % (os.path.basename(log), proc.returncode, path, tail(log)))
            if time.monotonic() > deadline:
                raise Failure("%s did not appear:\n%s" % (path, tail(log)))
            time.sleep(0.02)

    def _start_device(self, kind, size):
        self.serial += 1
        name = "%s%d" % (kind, self.serial)
        sock = os.path.join(self.dir, name + ".sock")
        if kind == "dma":
            argv = [self.dev_dma, "--socket", sock]
        else:
            argv = [self.dev_vram, "--socket", sock, "--size", size]
        p, log = self._spawn(name, argv)
        return (kind, sock, p, log)

    def devices(self, kinds, vram_size="16M"):
        """Starts fresh device servers (all at once) and returns their
        [(kind, socket path)]. Kind "none" (a device without a workload)
        gets a vram server."""
        started = [self._start_device(k, vram_size) for k in kinds]
        for kind, sock, p, log in started:
            self._wait_socket(sock, p, log)
        return [(kind, sock) for kind, sock, _, _ in started]

    def host(self, name, mem, devices, incoming=None, extra=()):
        ctl = os.path.join(self.dir, name + ".ctl")
        argv = [self.ferry, "host", "--mem", mem, "--control", ctl]
        for kind, sock in devices:
            argv += ["--device", "%s:%s" % (kind, sock)]
        if incoming:
            argv += ["--incoming", incoming]
        argv += list(extra)
        p, log = self._spawn(name, argv)
        self._wait_socket(ctl, p, log)
        h = Host(name, p, ctl, log)
        if incoming and incoming.startswith("tcp:"):
            m = re.search(r"incoming migration on (tcp:\S+)", h.log_text())
            check(m, "%s did not say where it listens:\n%s" % (name, tail(log)))
            h.uri = m.group(1)
        else:
            h.uri = incoming
        return h

    def wait_exit(self, host, timeout=CALL_TIMEOUT):
        try:
            return host.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise Failure("%s did not exit within %.0f s:\n%s"
                          % (host.name, timeout, tail(host.log)))

    def close(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                pass
        shutil.rmtree(self.dir, ignore_errors=True)

    # ---- the ferry command and the control socket ----

    def migrate(self, host, uri, extra=()):
        """ferry migrate --json: (exit status, report dict, stderr)."""
        p = subprocess.run([self.ferry, "migrate", "--control", host.ctl, "--to", uri,
                            "--json"] + list(extra),
                           capture_output=True, timeout=CALL_TIMEOUT)
        err = p.stderr.decode(errors="replace")
        try:
            report = json.loads(p.stdout)
        except ValueError:
            raise Failure("ferry migrate --json printed no JSON (exit %d):\n%s\n%s"
                          % (p.returncode, p.stdout.decode(errors="replace"), err))
        return p.returncode, report, err

    def migrate_ctl(self, host, uri):
        """The migrate request straight on the control socket (no ferry
        process): the done line."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(CALL_TIMEOUT)
        try:
            s.connect(host.ctl)
            s.sendall(json.dumps({"cmd": "migrate", "to": uri}).encode() + b"\n")
            for line in s.makefile("rb"):
                msg = json.loads(line)
                if msg.get("event") != "progress":
                    return msg
            raise Failure("%s closed the control connection mid-migration" % host.name)
        finally:
            s.close()

    def status(self, host):
        """ferry status --json: the status object."""
        p = subprocess.run([self.ferry, "status", "--control", host.ctl, "--json"],
                           capture_output=True, timeout=CALL_TIMEOUT)
        check(p.returncode == 0, "ferry status failed on %s: %s"
              % (host.name, p.stderr.decode(errors="replace")))
        return json.loads(p.stdout)

    def verify(self, host):
        """ferry status --verify --json: (exit status, verify reply)."""
        p = subprocess.run([self.ferry, "status", "--control", host.ctl, "--json",
                            "--verify"], capture_output=True, timeout=CALL_TIMEOUT)
        out = json.loads(p.stdout) if p.stdout.strip() else {}
        return p.returncode, out.get("verify")

    def quit(self, host):
        try:
            ctl_call(host.ctl, {"cmd": "quit"})
        except OSError:
            pass
        return self.wait_exit(host)

    # ---- what every failed migration must leave behind ----

    def expect_source_intact(self, host, ndev):
        """All devices RUNNING, workloads running and advancing, verify clean."""
        st = self.status(host)
        check(st["role"] in ("idle", "source"), "source role after failure: %r" % st["role"])
        states = [d["state"] for d in st["devices"]]
        check(len(states) == ndev and all(s == "RUNNING" for s in states),
              "source devices after failure: %r" % states)
        done0 = [w["completed"] for w in st["workloads"]]
        check(all(w["running"] for w in st["workloads"]), "workloads stopped: %r"
              % st["workloads"])
        time.sleep(0.3)
        done1 = [w["completed"] for w in self.status(host)["workloads"]]
        check(all(b > a for a, b in zip(done0, done1)),
              "workloads not advancing after the failed migration: %r -> %r"
              % (done0, done1))
        rc, v = self.verify(host)
        check(rc == 0 and v and v["mismatches"] == 0,
              "verify on the source after the failure: exit %d, %r" % (rc, v))


def ctl_call(path, req, timeout=CALL_TIMEOUT):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path)
        s.sendall(json.dumps(req).encode() + b"\n")
        buf = b""
        while b"\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                raise OSError("connection closed")
            buf += chunk
        return json.loads(buf.split(b"\n", 1)[0])
    finally:
        s.close()


def tail(path, n=25):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


class CutProxy:
    """A TCP proxy 127.0.0.1:port -> target that calls @on_cut() once
    @cut_after bytes went from the client to the target, then stops
    forwarding (the victim's side is left to the test)."""

    def __init__(self, target_uri, cut_after, on_cut):
        m = re.match(r"tcp:([^:]+):(\d+)$", target_uri)
        self.target = (m.group(1), int(m.group(2)))
        self.cut_after, self.on_cut = cut_after, on_cut
        self.forwarded = 0
        self.cut = threading.Event()
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(1)
        self.uri = "tcp:127.0.0.1:%d" % self.lsock.getsockname()[1]
        threading.Thread(target=self._run, daemon=True).start()

    def _pump(self, a, b, counted):
        try:
            while True:
                data = a.recv(1 << 20)
                if not data:
                    break
                if counted and not self.cut.is_set():
                    room = self.cut_after - self.forwarded
                    if len(data) >= room:
                        b.sendall(data[:room])
                        self.forwarded += room
                        self.cut.set()
                        self.on_cut()
                        break
                    self.forwarded += len(data)
                if self.cut.is_set():
                    break
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _run(self):
        try:
            c, _ = self.lsock.accept()
        except OSError:
            return
        t = socket.create_connection(self.target)
        threading.Thread(target=self._pump, args=(t, c, False), daemon=True).start()
        self._pump(c, t, True)

    def close(self):
        self.lsock.close()
