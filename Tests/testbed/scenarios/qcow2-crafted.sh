# Hand-crafted hostile qcow2 images against the real kernel. Each is either refused by `add` with a
# clear message, or served with I/O errors where it is broken; never a crash or hang, and never a
# write outside the image or onto its own tables: after each, the file has its size and every byte
# but the header's feature bits (where the corrupt bit goes) as before.
# timeout: 300
source "$PROJECT/Tests/testbed/scenario-lib.sh"
X=$VDUSE_EXPORT
[ -x "$X" ] || fail "$X missing: swift build on the host first"
command -v qemu-img >/dev/null && command -v python3 >/dev/null || fail "qemu-img and python3 needed"

# craft.py IMAGE FIELD=VALUE...: patches a qemu-img made image. Fields: header fields by offset
# (h40=1099511627776), l1[N], l2[N] (entries of the first L2 table), rb[N] (16-bit refcounts of
# the first refcount block), name@OFFSET=TEXT; values may name l1/l2/rt/rb (table offsets) and
# d0 (the data cluster of l2[0]), C (copied flag), Z (compressed flag), joined by '|'. `layout` prints the offsets.
cat >craft.py <<'EOF'
import struct, sys
path, edits = sys.argv[1], sys.argv[2:]
f = open(path, 'r+b')
def be(off, n):
    f.seek(off); return int.from_bytes(f.read(n), 'big')
def put(off, n, v):
    f.seek(off); f.write(v.to_bytes(n, 'big'))
l1 = be(40, 8); rt = be(48, 8); rb = be(rt, 8); l2 = be(l1, 8) & 0x00fffffffffffe00
d0 = be(l2, 8) & 0x00fffffffffffe00
names = {'l1': l1, 'l2': l2, 'rt': rt, 'rb': rb, 'd0': d0, 'C': 1 << 63, 'Z': 1 << 62}
def value(s):
    return sum(names[p] if p in names else int(p, 0) for p in s.split('|'))
for e in edits:
    k, v = e.split('=', 1)
    if k == 'layout':
        print(l1, l2, rt, rb)
    elif k.startswith('name@'):
        put(int(k[5:]), len(v), int.from_bytes(v.encode(), 'big')); put(8, 8, int(k[5:])); put(16, 4, len(v))
    elif k[0] == 'h':
        off = int(k[1:]); put(off, 4 if off in (20, 32, 36, 56, 60, 96, 100, 16) else 8, value(v))
    else:
        table, i = k[:-1].split('['); i = int(i)
        if table == 'rb': put(rb + 2 * i, 2, value(v))
        else: put({'l1': l1, 'l2': l2}[table] + 8 * i, 8, value(v))
EOF

# A 4 MiB image, 64 KiB clusters, its first 256 KiB written: header 0, refcount table 64K,
# refcount block 128K, L1 192K, L2 256K, data from 320K.
qemu-img create -q -f qcow2 base.qcow2 4M
qemu-io -f qcow2 -c "write -P 0x5a 0 256k" base.qcow2 >/dev/null
read -r L1 L2 RT RB < <(python3 craft.py base.qcow2 layout=)
note "layout: L1 $L1, L2 $L2, refcount table $RT, refcount block $RB"

fingerprint() {
    python3 -c 'import hashlib, sys; d = open(sys.argv[1], "rb").read(); print(len(d), hashlib.sha256(d[:72] + d[80:]).hexdigest())' "$1"
}
craft() { cp base.qcow2 "$1"; python3 craft.py "$@"; BEFORE=$(fingerprint "$1"); }
unchanged() { [ "$(fingerprint "$1")" = "$BEFORE" ] || fail "$1 changed: size or bytes outside the feature bits"; }

refuse() {  # refuse LABEL EXPECTED-TEXT IMAGE [add options]
    local label=$1 want=$2 img=$3; shift 3
    local rc=0
    timeout 60 $X add "$img" --name bad "$@" >bad.out 2>bad.err || rc=$?
    [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] || { cat bad.err; fail "$label: add exit $rc (wanted a refusal)"; }
    grep -qF -- "$want" bad.err || { cat bad.err; fail "$label: message lacks '$want'"; }
    [ ! -e /dev/vduse/bad ] || fail "$label: device left behind"
    unchanged "$img"
    note "[${SECONDS}s] $label: refused: $(head -1 bad.err | cut -c1-140)"
}

# --- refused by add -------------------------------------------------------------------------------
craft trunc.qcow2; truncate -s $((L1 + 4)) trunc.qcow2; BEFORE=$(fingerprint trunc.qcow2)
refuse "truncated L1 table" "L1 table extends past the end of the file" trunc.qcow2
craft rtlong.qcow2 h56=16
refuse "refcount table longer than the file" "refcount table extends past the end of the file" rtlong.qcow2
craft l1far.qcow2 h40=$((1 << 40))
refuse "L1 table past the end" "L1 table extends past the end of the file" l1far.qcow2
craft l1huge.qcow2 h36=0x7fffffff
refuse "huge l1_size" "entries is above 32 MiB" l1huge.qcow2
craft rthuge.qcow2 h56=0x80000000
refuse "huge refcount table" "refcount table of 2147483648 clusters is above 32 MiB" rthuge.qcow2
craft l1entry.qcow2 "l1[0]=$((1 << 40))|C"
refuse "L2 table past the end" "L1 entry 0 points past the end of the file" l1entry.qcow2
craft l1meta.qcow2 "l1[0]=rt|C"
refuse "L2 table on the refcount table" "overlaps the refcount table" l1meta.qcow2
craft rbfar.qcow2 h$RT=$((1 << 40))
refuse "refcount block past the end" "refcount block 0 at 1099511627776 is past the end" rbfar.qcow2
qemu-img create -q -f qcow2 loopb.qcow2 4M
qemu-img create -q -f qcow2 -b loopb.qcow2 -F qcow2 loopa.qcow2
qemu-img rebase -u -f qcow2 -b loopa.qcow2 -F qcow2 loopb.qcow2
BEFORE=$(fingerprint loopa.qcow2)
refuse "backing loop" "backing chain loop" loopa.qcow2
craft longname.qcow2 "name@32768=$(printf 'x%.0s' $(seq 1 1023))"
refuse "1023-byte backing name" "File name too long" longname.qcow2
craft toolong.qcow2 "name@32768=$(printf 'y%.0s' $(seq 1 1500))"
refuse "1500-byte backing name" "backing file name out of bounds" toolong.qcow2
# Refcount overflow: a dirty lazy-refcounts image with 1-bit refcounts whose two L2 entries share
# one cluster; rebuilding the counts would need a 2.
qemu-img create -q -f qcow2 -o lazy_refcounts=on,refcount_bits=1 ovf.qcow2 4M
qemu-io -f qcow2 -c "write -P 0x5a 0 128k" ovf.qcow2 >/dev/null
python3 craft.py ovf.qcow2 "l2[1]=d0|C" h72=1
BEFORE=$(fingerprint ovf.qcow2)
refuse "refcount overflow" "refcount above 1" ovf.qcow2

# --- served, broken parts answer I/O errors -------------------------------------------------------
# serve IMAGE [add options]: exports it as disk "c"; sets DEV.
serve() { DEV=$(timeout 60 $X add "$@" --name c) || fail "add $1 failed"; }
io_fails() {  # io_fails LABEL read|write OFFSET-KIB
    local label=$1 op=$2 at=$3 rc=0
    if [ "$op" = read ]; then
        timeout 30 dd if="$DEV" of=/dev/null bs=4k count=1 skip=$((at / 4)) iflag=direct status=none 2>io.err || rc=$?
    else
        head -c 4096 /dev/urandom | timeout 30 dd of="$DEV" bs=4k count=1 seek=$((at / 4)) oflag=direct status=none 2>io.err || rc=$?
    fi
    [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] || fail "$label: $op at ${at}K: exit $rc (wanted an I/O error)"
    grep -q "Input/output error" io.err || { cat io.err; fail "$label: $op error is not EIO"; }
}
finish() {  # finish LABEL IMAGE: server alive, one log line, clean del, image intact
    local label=$1 img=$2
    $X list | grep -q "^c .*running" || { $X list; fail "$label: server not running after the errors"; }
    local log=/run/vduse-export/c.log n
    [ -f $log ] || fail "$label: no server log at $log"
    n=$(grep -c "corrupt qcow2 image" $log || true)
    [ "$n" = 1 ] || { cat $log; fail "$label: $n corruption lines in the log (wanted 1)"; }
    note "$label: $(grep -m1 'corrupt qcow2 image' $log | cut -c1-150)"
    timeout 60 $X del c || fail "$label: del failed"
    unchanged "$img"
}

for target in l1 rt; do  # (the refcount block: Tests/QCOW2Tests)
    craft into$target.qcow2 "l2[1]=$target|C"
    serve into$target.qcow2
    io_fails "L2 entry into $target" write 64
    io_fails "L2 entry into $target" write 68
    cmp -n 4096 <(dd if="$DEV" bs=4k count=1 iflag=direct status=none) <(head -c 4096 /dev/zero | tr '\0' 'Z') \
        || fail "into $target: the sound cluster 0 no longer reads back"
    finish "L2 entry into $target" into$target.qcow2
    qemu-img info into$target.qcow2 | grep -q "corrupt: true" || fail "into $target: corrupt bit not set"
    [ $target = rt ] || refuse "re-add of an image marked corrupt" "the corrupt bit is set" into$target.qcow2
done

craft far.qcow2 "l2[2]=$((1 << 40))|C" "l2[3]=$((2 << 40))"
serve far.qcow2
io_fails "L2 entries past the end" write 128
io_fails "L2 entries past the end (copy-on-write)" write 196
finish "L2 entries past the end" far.qcow2
[ "$(stat -c %s far.qcow2)" -lt $((1 << 30)) ] || fail "far.qcow2 grew"

craft headerfree.qcow2 "rb[0]=0"
serve headerfree.qcow2
io_fails "refcounts call the header free" write 1024
finish "refcounts call the header free" headerfree.qcow2

craft comp.qcow2 "l2[1]=$((1 << 40))|Z"
serve comp.qcow2 --read-only
io_fails "compressed cluster past the end" read 64
finish "compressed cluster past the end" comp.qcow2

note "every crafted image refused or served with I/O errors; no image changed outside its feature bits"
