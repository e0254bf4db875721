"""QEMU's own QMP library (qemu.qmp, from PyPI) against our QMP socket, as tooling written for
qemu-storage-daemon drives it. Each phase prints what it checked; any mismatch raises.

  qemu-tools.py SOCKET add IMAGE          versions, commands, a node and an iothread added at run
                                          time, an export on them; prints the new disk's path
  qemu-tools.py SOCKET remove             refusals while in use, block-export-del (event waited
                                          for), blockdev-del, object-del
"""
import asyncio
import glob
import os
import sys

from qemu.qmp import QMPClient, ExecuteError


def check(cond, what):
    if not cond:
        raise SystemExit(f"FAIL: {what}")
    print(f"ok: {what}")


async def refused(qmp, cmd, args, text):
    try:
        await qmp.execute(cmd, args)
    except ExecuteError as e:
        check(text in e.error.error.desc, f"{cmd} refused: {e.error.error.desc}")
        return
    raise SystemExit(f"FAIL: {cmd} {args} was accepted")


async def add(qmp, image):
    greeting = qmp.greeting
    version = greeting.QMP.version
    check(version["qemu"]["major"] == 11 and "vduse-export" in version["package"], f"greeting {version}")
    v = await qmp.execute("query-version")
    check(v["qemu"]["major"] == 11, f"query-version {v}")
    names = {c["name"] for c in await qmp.execute("query-commands")}
    for n in ("blockdev-add", "blockdev-del", "object-add", "object-del", "query-named-block-nodes",
              "block-export-add", "block-export-del", "query-block-exports", "block_resize", "query-blockstats"):
        check(n in names, f"query-commands lists {n}")
    await qmp.execute("object-add", {"qom-type": "iothread", "id": "io1"})
    await refused(qmp, "object-add", {"qom-type": "iothread", "id": "io1"}, "duplicate")
    await qmp.execute("blockdev-add", {"driver": "file", "node-name": "rf", "filename": image})
    await qmp.execute("blockdev-add", {"driver": "qcow2", "node-name": "rq", "file": "rf"})
    await refused(qmp, "blockdev-add", {"driver": "file", "node-name": "rf", "filename": image}, "Duplicate nodes with node-name='rf'")
    await refused(qmp, "blockdev-add", {"driver": "file", "node-name": "bad", "filename": "/nonexistent"}, "Could not open '/nonexistent'")
    nodes = {n["node-name"]: n for n in await qmp.execute("query-named-block-nodes", {"flat": True})}
    check(nodes["rq"]["drv"] == "qcow2" and nodes["rq"]["image"]["virtual-size"] == 64 << 20, f"query-named-block-nodes rq {nodes['rq']['image']}")
    check(nodes["rf"]["drv"] == "file" and nodes["rf"]["file"] == image, "query-named-block-nodes rf")
    await qmp.execute("block-export-add", {"type": "vduse-blk", "id": "rt", "node-name": "rq", "name": "runtime0",
                                           "writable": True, "iothread": "io1", "num-queues": 2})
    exports = await qmp.execute("query-block-exports")
    check(any(e["id"] == "rt" and e["node-name"] == "rq" for e in exports), "query-block-exports shows rt")
    disks = glob.glob("/sys/bus/vdpa/devices/runtime0/virtio*/block/vd*")
    check(len(disks) == 1, f"the disk exists: {disks}")
    print("/dev/" + os.path.basename(disks[0]))


async def remove(qmp):
    await refused(qmp, "blockdev-del", {"node-name": "rq"}, "Node rq is in use")
    await refused(qmp, "blockdev-del", {"node-name": "rf"}, "Block device rf is in use")
    await refused(qmp, "object-del", {"id": "io1"}, "object 'io1' is in use, can not be deleted")
    await refused(qmp, "blockdev-del", {"node-name": "nope"}, "Failed to find node with node-name='nope'")
    events = qmp.events
    await qmp.execute("block-export-del", {"id": "rt"})
    async with asyncio.timeout(30):
        async for ev in events:
            if ev["event"] == "BLOCK_EXPORT_DELETED" and ev["data"]["id"] == "rt":
                check(True, "BLOCK_EXPORT_DELETED received")
                break
    check(not glob.glob("/sys/bus/vdpa/devices/runtime0"), "the vdpa device is gone")
    await qmp.execute("blockdev-del", {"node-name": "rq"})
    await qmp.execute("blockdev-del", {"node-name": "rf"})
    await qmp.execute("object-del", {"id": "io1"})
    nodes = [n["node-name"] for n in await qmp.execute("query-named-block-nodes")]
    check("rq" not in nodes and "rf" not in nodes, f"nodes left: {nodes}")


async def main():
    sock, phase = sys.argv[1], sys.argv[2]
    qmp = QMPClient("vduse-export-test")
    await qmp.connect(sock)
    try:
        if phase == "add":
            await add(qmp, sys.argv[3])
        else:
            await remove(qmp)
    finally:
        await qmp.disconnect()


asyncio.run(main())
