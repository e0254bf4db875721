# `stats`: the counters match what fio did (requests and bytes within 1 %), per queue (a job
# pinned to each vCPU uses both queues), with no errors, nothing in flight afterwards, and
# interrupts; query-blockstats over QMP has the same totals; after kill -9 the new server counts
# from 0, restarts is 1 and the disk's age goes on; unknown and stopped names fail.
# timeout: 600
source "$PROJECT/Tests/testbed/scenario-lib.sh"
X=$VDUSE_EXPORT
py() { python3 -c "import json,sys; $1"; }
truncate -s 256M st.img
dev=$($X add st.img --name st0 --num-queues 2)
sleep 1  # udev's probe of the new disk is over before the first snapshot
$X stats st0 --json >before.json
$X stats st0  # the table, for the log

cat >jobs.fio <<JOBS
[global]
filename=$dev
ioengine=io_uring
direct=1
size=64M
[mixed4k]
rw=randrw
bs=4k
iodepth=16
io_size=24M
cpus_allowed=0
[write64k]
rw=randwrite
bs=64k
iodepth=8
io_size=32M
offset=128M
cpus_allowed=1
JOBS
fio --output-format=json --output=fio.json jobs.fio || { cat fio.json; fail "fio failed"; }
$X stats st0 --json >after.json
$X stats st0
cp fio.json before.json after.json "$RESULTS/"

python3 - <<'PY' || fail "counters do not match fio"
import json
fio = json.load(open("fio.json"))["jobs"]
want = {"reads": sum(j["read"]["total_ios"] for j in fio), "writes": sum(j["write"]["total_ios"] for j in fio),
        "bytesRead": sum(j["read"]["io_bytes"] for j in fio), "bytesWritten": sum(j["write"]["io_bytes"] for j in fio)}
b, a = json.load(open("before.json"))[0], json.load(open("after.json"))[0]
ok = True
for k, w in want.items():
    got = a["total"][k] - b["total"][k]
    off = abs(got - w) / w
    print(f"-- {k}: fio {w}, stats {got} ({off * 100:.3f} % off)")
    ok &= off <= 0.01
t = a["total"]
for k in ["reads", "writes", "bytesRead", "bytesWritten", "interrupts", "requests"]:
    s = sum(q[k] for q in a["queues"])
    if s != t[k]: print(f"total {k} {t[k]} is not the sum of the queues {s}"); ok = False
used = [q["queue"] for q in a["queues"] if q["requests"] - next(p for p in b["queues"] if p["queue"] == q["queue"])["requests"] > 100]
print(f"-- queues with requests: {used}; interrupts {t['interrupts']}; errors {t['errors']}; in flight {t['inFlight']}")
ok &= len(a["queues"]) == 2 and used == [0, 1] and t["errors"] == 0 and t["inFlight"] == 0 and t["interrupts"] > 0
ok &= a["restarts"] == 0 and a["uptime"] > 0 and a["age"] >= a["uptime"] - 1
raise SystemExit(0 if ok else 1)
PY

# query-blockstats: QEMU's shape, the same totals.
python3 "$PROJECT/Tests/testbed/qmp-client.py" /run/vduse-export/st0.sock '{"execute":"qmp_capabilities"}' \
    '{"execute":"query-blockstats"}' '{"execute":"x-query-export-stats","arguments":{"id":"nosuch"}}' >qmp.out
$X stats st0 --json >now.json
python3 - <<'PY' || { cat qmp.out; fail "query-blockstats"; }
import json
lines = [json.loads(l) for l in open("qmp.out")]
bs = lines[1]["return"]
assert len(bs) == 1 and bs[0]["node-name"] == "disk0", bs
s, now = bs[0]["stats"], json.load(open("now.json"))[0]["total"]
# The disk is idle: both reads see the same numbers.
assert (s["rd_operations"], s["wr_operations"], s["rd_bytes"], s["wr_bytes"]) == \
       (now["reads"], now["writes"] + now["writeZeroes"], now["bytesRead"], now["bytesWritten"]), (s, now)
assert s["failed_rd_operations"] == 0 and s["account_failed"] is True and "timed_stats" in s
assert lines[2]["error"]["desc"] == "Export 'nosuch' is not found", lines[2]
print(f"-- query-blockstats: rd_operations {s['rd_operations']}, wr_operations {s['wr_operations']}, rd_bytes {s['rd_bytes']}, wr_bytes {s['wr_bytes']}")
PY

# After kill -9 the supervisor's new server takes over: counters from 0, restarts 1, age kept.
age0=$(py 'print(json.load(open("now.json"))[0]["age"])')
pid=$($X list --json | py 'print([e["pid"] for e in json.load(sys.stdin) if e["name"] == "st0"][0])')
kill -KILL "$pid"
for _ in $(seq 1 100); do
    $X stats st0 --json >restarted.json 2>/dev/null && [ "$(py 'print(json.load(open("restarted.json"))[0]["restarts"])')" = 1 ] && break
    sleep 0.1
done
dd if="$dev" of=/dev/null bs=4k count=10 iflag=direct status=none
$X stats st0 --json >restarted.json
python3 - "$age0" <<'PY' || { cat restarted.json; fail "stats after the takeover"; }
import json, sys
r = json.load(open("restarted.json"))[0]
assert r["restarts"] == 1, r["restarts"]
assert r["total"]["reads"] >= 10 and r["total"]["reads"] < 1000, r["total"]
assert r["age"] >= float(sys.argv[1]) and r["uptime"] < r["age"], (r["age"], r["uptime"])
print(f"-- after kill -9: restarts {r['restarts']}, reads {r['total']['reads']}, uptime {r['uptime']:.1f} s, age {r['age']:.1f} s")
PY

rc=0; $X stats nosuch 2>err || rc=$?
[ "$rc" = 6 ] || fail "stats of an unknown name: exit $rc ($(cat err))"
all=$($X stats)
echo "$all" | grep -q "^st0 $dev: up " || fail "stats without a name does not show st0: $all"
$X del st0
expect_exit 6 '' -- $X stats st0
[ -z "$($X stats)" ] || fail "stats with no exports printed something"
expect_no_disks
note "stats: fio's requests and bytes, both queues, QMP, restarts and age checked"
