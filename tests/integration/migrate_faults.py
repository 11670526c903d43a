#!/usr/bin/env python3
"""Live migration between real `ferry host` processes, with faults injected.

Each case runs its own device servers and hosts (1 dma + 1 vram device,
MEM of guest memory; PINGPONG_MEM for the 20 hops) and stops them all at
the end:

  dest_killed   the destination is SIGKILLed mid-stream (a proxy cuts the
                stream after CUT bytes): the source resumes intact
  src_killed    the source is SIGKILLed mid-stream: the destination
                discards everything and exits non-zero, never resuming;
                ferry migrate reports the lost host and fails
  refuse_kind   the destination's devices are of other kinds: refused
  refuse_mem    the destination's guest memory differs: refused
  file_restore  save to a file:, the source goes on; a fresh host restores
                the file and its workloads verify clean
  file_corrupt  the saved file truncated, then one byte flipped: each
                restore fails (the flip on a checksum) and exits non-zero
  pingpong      HOPS migrations A -> B -> A ..., each to a host with fresh
                device servers; the guest's data verifies clean at the end

"Intact" after any source-side failure: every device RUNNING, workloads
running and advancing, `verify` reports 0 mismatches.

usage: migrate_faults.py FERRY FERRY_DEV_DMA FERRY_DEV_VRAM CASE...
"""
import os
import signal
import struct
import sys
import time

from ferry_cluster import Cluster, CutProxy, Failure, check

MEM = "256M"           # guest memory per host
PINGPONG_MEM = "64M"   # 20 hops: small, to stay within the suite's time
VRAM = "4M"            # each vram device's memory
# FERRY_TEST_KINDS=vram,vram runs the cases with other device kinds
KINDS = tuple(os.environ.get("FERRY_TEST_KINDS", "dma,vram").split(","))
CUT = 4 << 20          # stream bytes before a kill
HOPS = 20
RUN_S = 0.3            # workloads run this long before a migration


def source_and_dest(c, dest_kinds=KINDS, dest_mem=MEM):
    src = c.host("src", MEM, c.devices(KINDS, VRAM))
    dst = c.host("dst", dest_mem, c.devices(dest_kinds, VRAM), incoming="tcp:127.0.0.1:0")
    time.sleep(RUN_S)
    return src, dst


def case_dest_killed(c):
    src, dst = source_and_dest(c)
    proxy = CutProxy(dst.uri, CUT, lambda: dst.proc.send_signal(signal.SIGKILL))
    rc, report, err = c.migrate(src, proxy.uri)
    check(proxy.cut.is_set(), "the stream ended before the cut (%d bytes)" % proxy.forwarded)
    check(rc != 0 and report["outcome"] == "failed",
          "migration to a killed destination: exit %d, outcome %r" % (rc, report["outcome"]))
    c.expect_source_intact(src, len(KINDS))


def case_src_killed(c):
    src, dst = source_and_dest(c)
    proxy = CutProxy(dst.uri, CUT, lambda: src.proc.send_signal(signal.SIGKILL))
    rc, report, err = c.migrate(src, proxy.uri)
    check(proxy.cut.is_set(), "the stream ended before the cut")
    check(rc != 0 and report["outcome"] == "failed"
          and "closed the control connection" in (report.get("error") or ""),
          "ferry migrate with its host killed: exit %d, %r" % (rc, report))
    code = c.wait_exit(dst)
    check(code != 0, "the destination exited %d after losing its source" % code)
    check("the guest runs here" not in dst.log_text(),
          "the destination resumed a partial guest:\n" + dst.log_text())


def refused(c, dest_kinds, dest_mem):
    src, dst = source_and_dest(c, dest_kinds, dest_mem)
    rc, report, err = c.migrate(src, dst.uri)
    check(rc != 0 and report["outcome"] == "failed",
          "refusing destination: exit %d, outcome %r" % (rc, report["outcome"]))
    code = c.wait_exit(dst)
    check(code != 0, "the refusing destination exited %d" % code)
    c.expect_source_intact(src, len(KINDS))
    return report


def case_refuse_kind(c):
    other = tuple(reversed(KINDS)) if KINDS[0] != KINDS[-1] else KINDS[:-1] + ("none",)
    refused(c, other, MEM)


def case_refuse_mem(c):
    refused(c, KINDS, "128M")


def save(c):
    """A source saved to a file; returns (source, path)."""
    src = c.host("src", MEM, c.devices(KINDS, VRAM))
    time.sleep(RUN_S)
    path = os.path.join(c.dir, "guest.ferry")
    rc, report, err = c.migrate(src, "file:" + path)
    check(rc == 0 and report["outcome"] in ("saved", "success"),
          "save to a file: exit %d, %r\n%s" % (rc, report, err))
    check(os.path.getsize(path) > 0, "the saved file is empty")
    return src, path


def restore(c, name, path):
    """A fresh host restoring @path; returns it (it may have exited)."""
    return c.host(name, MEM, c.devices(KINDS, VRAM), incoming="file:" + path)


def case_file_restore(c):
    src, path = save(c)
    st = c.status(src)
    check([d["state"] for d in st["devices"]] == ["RUNNING"] * len(KINDS),
          "source devices after a save: %r" % [d["state"] for d in st["devices"]])
    c.quit(src)
    dst = restore(c, "dst", path)
    deadline = time.monotonic() + 30
    while True:
        st = c.status(dst)
        if st["devices"] and all(d["state"] == "RUNNING" for d in st["devices"]) and \
           all(w["running"] for w in st["workloads"]):
            break
        check(dst.proc.poll() is None, "the restoring host exited:\n" + dst.log_text())
        check(time.monotonic() < deadline, "restore did not finish: %r" % st)
        time.sleep(0.05)
    time.sleep(RUN_S)
    rc, v = c.verify(dst)
    check(rc == 0 and v["mismatches"] == 0, "verify after restore: %r" % v)


def payload_byte_near(data, offset):
    """The offset of a byte in the middle of the payload of the section
    that holds @offset (docs/stream-format.md: a 16-byte stream header,
    then sections of a 16-byte header, u32 length at +4, and the payload),
    so a flip there can only be caught by the section's CRC."""
    pos = 16
    while pos + 16 <= len(data):
        length = struct.unpack_from("<I", data, pos + 4)[0]
        end = pos + 16 + length
        if end > offset and length > 0:
            return pos + 16 + length // 2
        pos = end
    raise Failure("no section payload near offset %d of the saved stream" % offset)


def case_file_corrupt(c):
    src, path = save(c)
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        data = f.read()
    flip = payload_byte_near(data, size // 2)
    broken = [("truncated", data[:size // 2]),
              ("flipped", data[:flip] + bytes([data[flip] ^ 0x40]) + data[flip + 1:])]
    for what, content in broken:
        bad = os.path.join(c.dir, what + ".ferry")
        with open(bad, "wb") as f:
            f.write(content)
        try:
            dst = restore(c, what, bad)
        except Failure:
            continue  # refused before even serving its control socket: fine
        code = c.wait_exit(dst)
        log = dst.log_text()
        check(code != 0, "restoring a %s file: exit %d\n%s" % (what, code, log))
        check("the guest runs here" not in log, "a %s file was resumed" % what)
        if what == "flipped":
            check("crc" in log.lower() or "checksum" in log.lower(),
                  "a flipped byte not reported as a checksum error:\n" + log)
    c.expect_source_intact(src, len(KINDS))


def case_pingpong(c):
    cur = c.host("h0", PINGPONG_MEM, c.devices(KINDS, VRAM))
    time.sleep(RUN_S)
    downtimes = []
    for hop in range(1, HOPS + 1):
        nxt = c.host("h%d" % hop, PINGPONG_MEM, c.devices(KINDS, VRAM),
                     incoming="tcp:127.0.0.1:0")
        # the control socket directly: a ferry process per hop costs time
        # under ASan, and the other cases run ferry migrate already
        done = c.migrate_ctl(cur, nxt.uri)
        report = done.get("report") or {}
        check(done.get("ok") is True and report.get("outcome") == "success",
              "hop %d: %r" % (hop, done.get("error")))
        downtimes.append(report["downtime_ms"])
        check(c.quit(cur) == 0, "hop %d: the old host did not quit cleanly" % hop)
        cur = nxt
    rc, v = c.verify(cur)
    check(rc == 0 and v["mismatches"] == 0, "verify after %d hops: %r" % (HOPS, v))
    print("    downtime per hop: min %.1f ms, max %.1f ms"
          % (min(downtimes), max(downtimes)))


CASES = {n[5:]: f for n, f in globals().items() if n.startswith("case_")}


def main():
    ferry, dev_dma, dev_vram = sys.argv[1:4]
    names = sys.argv[4:] or sorted(CASES)
    failed = 0
    for name in names:
        c = Cluster(ferry, dev_dma, dev_vram, name)
        t0 = time.monotonic()
        try:
            CASES[name](c)
            print("ok   %-14s %.1f s" % (name, time.monotonic() - t0), flush=True)
        except Failure as e:
            failed += 1
            print("FAIL %-14s %s" % (name, e), flush=True)
        finally:
            c.close()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
