#!/usr/bin/env python3
"""Drives blockdev-mirror over a QMP socket the way a QEMU client does, for bench/mirror.

  qmp_mirror.py SOCKET DEVICE TARGET NODE complete
      blockdev-add a file node and a raw node NODE over TARGET (an existing file), mirror DEVICE
      (sync=full) to it, job-complete on BLOCK_JOB_READY; prints the seconds from blockdev-mirror
      to BLOCK_JOB_COMPLETED and the bytes copied.
  qmp_mirror.py SOCKET DEVICE TARGET NODE loop STOPFILE
      mirrors DEVICE to TARGET again and again (job-cancel on READY, so the disk stays put; the
      nodes deleted and TARGET truncated between copies) until STOPFILE exists; prints the number
      of full copies, the seconds they took and the bytes copied.
Works with vduse-export and qemu-storage-daemon alike (both speak QEMU's job interface)."""
import json
import os
import socket
import sys
import time


class QMP:
    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.stream = self.sock.makefile("rwb")
        self.events = []
        greeting = self._read()
        assert "QMP" in greeting, greeting
        self.execute("qmp_capabilities")

    def _read(self):
        line = self.stream.readline()
        if not line:
            raise SystemExit("QMP connection closed")
        return json.loads(line)

    def execute(self, command, **arguments):
        msg = {"execute": command}
        if arguments:
            msg["arguments"] = arguments
        self.stream.write(json.dumps(msg).encode() + b"\n")
        self.stream.flush()
        while True:
            reply = self._read()
            if "event" in reply:
                self.events.append(reply)
                continue
            if "error" in reply:
                raise SystemExit(f"{command}: {reply['error']}")
            return reply["return"]

    def wait(self, name, job):
        while True:
            while self.events:
                e = self.events.pop(0)
                if e["event"] == name and e.get("data", {}).get("device") == job:
                    return e["data"]
                if e["event"] == "BLOCK_JOB_COMPLETED" and e.get("data", {}).get("error"):
                    raise SystemExit(f"job {job} failed: {e['data']['error']}")
            self.events.append(self._read())


def add_target(q, target, node):
    q.execute("blockdev-add", driver="file", **{"node-name": node + "-file"}, filename=target)
    q.execute("blockdev-add", driver="raw", **{"node-name": node}, file=node + "-file")


def drop_target(q, node):
    for n in (node, node + "-file"):
        q.execute("blockdev-del", **{"node-name": n})


def main():
    sock, device, target, node, mode = sys.argv[1:6]
    q = QMP(sock)
    job = "bench-" + node
    if mode == "complete":
        add_target(q, target, node)
        t0 = time.monotonic()
        q.execute("blockdev-mirror", **{"job-id": job}, device=device, target=node, sync="full")
        q.wait("BLOCK_JOB_READY", job)
        q.execute("job-complete", id=job)
        done = q.wait("BLOCK_JOB_COMPLETED", job)
        print(f"{time.monotonic() - t0:.4f} {done['offset']}")
        return
    stop = sys.argv[6]
    size = os.path.getsize(target)
    copies, seconds, copied, n = 0, 0.0, 0, 0
    while not os.path.exists(stop):
        n += 1
        name = f"{node}{n}"
        os.truncate(target, 0)
        os.truncate(target, size)
        add_target(q, target, name)
        t0 = time.monotonic()
        q.execute("blockdev-mirror", **{"job-id": job}, device=device, target=name, sync="full")
        ready = q.wait("BLOCK_JOB_READY", job)
        seconds += time.monotonic() - t0
        copies += 1
        copied += ready["offset"]
        q.execute("job-cancel", id=job)
        q.wait("BLOCK_JOB_CANCELLED", job)
        drop_target(q, name)
    print(f"{copies} {seconds:.4f} {copied}")


main()
