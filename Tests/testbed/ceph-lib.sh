# A one-mon, one-osd Ceph cluster inside the test-bed guest (memstore, cephx, pool size 1, on
# 127.0.0.1), shared by the ceph scenario and bench/guest/bench.sh (sourced by bash in the guest).
# Keys in DIR/keyring (named by ceph.conf): client.admin; client.other, whose caps allow pool
# "other" only; client.ghost, a key the cluster never hears of (the mon's mkfs imports a copy of
# the keyring made before it is added).
#
#   loopback_up              lo up, then one TCP connection alone (see below)
#   ceph_up DIR              the cluster under DIR (conf, mon, osd, logs), pool "rbd" created;
#                            exports CEPH_CONF, sets CEPH_MONPID, CEPH_OSDPID; returns 1 with a
#                            message on stderr if it does not come up (the caller fails)
#   ceph_logs                the tails of the cluster's logs (for a failure report)
#   ceph_down                kills the osd and the mon
#
# Needs ceph-mon, ceph-osd, rbd and $(dirname "$VDUSE_EXPORT")/ceph-mon-command (built by the
# package: `ceph` needs python modules the guest may lack, this talks to the mon through librados).
# CEPH_MEMSTORE_BYTES (default 2 GiB) is the osd's memory budget for object data.

CEPH_MONPID= CEPH_OSDPID= CEPH_DIR=
CEPH_MC=$(dirname "$VDUSE_EXPORT")/ceph-mon-command

# The guest's init leaves loopback down. Under TCG the first TCP connections of a boot make the
# kernel patch its own code; a thread racing that patch hit an int3 Oops once. So: one connection
# alone first.
loopback_up() {
    ip link set lo up
    timeout 60 python3 -c 'import socket; l=socket.socket(); l.bind(("127.0.0.1",0)); l.listen(1); c=socket.create_connection(l.getsockname()); a,_=l.accept(); c.sendall(b"x"); a.recv(1)'
}

ceph_key() { ceph-authtool "$CEPH_DIR/keyring" "$@" >/dev/null || { echo "ceph-authtool $* failed" >&2; return 1; }; }
ceph_retry() { local n=$1; shift; for _ in $(seq 1 "$n"); do "$@" && return 0; sleep 1; done; return 1; }
ceph_osd_up() { timeout 60 "$CEPH_MC" '{"prefix":"osd stat"}' 2>/dev/null | grep -q ' 1 up'; }

ceph_up() {
    local D=$1
    CEPH_DIR=$D
    [ -x "$CEPH_MC" ] || { echo "$CEPH_MC missing: swift build builds it" >&2; return 1; }
    export CEPH_CONF=$D/ceph.conf
    mkdir -p "$D/mon" "$D/osd" "$D/log" "$D/run"
    # memstore keeps data in the osd's memory; "page set" makes small writes cheap.
    cat >"$CEPH_CONF" <<EOC
[global]
fsid = $(cat /proc/sys/kernel/random/uuid)
mon host = 127.0.0.1
public addr = 127.0.0.1
cluster addr = 127.0.0.1
run dir = $D/run
log file = $D/log/\$name.log
keyring = $D/keyring
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon warn on pool no redundancy = false
mon warn on insecure global id reclaim allowed = false
mon mgr mkfs grace = 31536000
client mount timeout = 30
rbd default features = 1
[mon.a]
mon data = $D/mon
mon cluster log file = $D/log/cluster.log
mon data avail crit = 0
mon data avail warn = 0
[osd.0]
osd data = $D/osd
osd objectstore = memstore
memstore device bytes = ${CEPH_MEMSTORE_BYTES:-2147483648}
memstore page set = true
crush location = root=default host=node0
osd crush initial weight = 1
osd class load list = *
osd class default list = *
osd op num shards = 2
osd op num threads per shard = 1
EOC
    ceph_key --create-keyring --gen-key -n mon. --cap mon 'allow *' || return 1
    ceph_key --gen-key -n client.admin --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' || return 1
    ceph_key --gen-key -n osd.0 --cap mon 'allow profile osd' --cap osd 'allow *' || return 1
    ceph_key --gen-key -n client.other --cap mon 'profile rbd' --cap osd 'profile rbd pool=other' || return 1
    cp "$D/keyring" "$D/mon.keyring"
    ceph_key --gen-key -n client.ghost || return 1
    timeout 120 ceph-osd --id 0 --mkfs >"$D/log/osd-mkfs.out" 2>&1 &
    local mkfs=$!
    timeout 60 ceph-mon --id a --mkfs --keyring "$D/mon.keyring" >/dev/null 2>&1 || { echo "ceph-mon --mkfs failed" >&2; return 1; }
    ceph-mon -f --id a >"$D/log/mon.out" 2>&1 &
    CEPH_MONPID=$!
    wait $mkfs || { cat "$D/log/osd-mkfs.out" >&2; echo "ceph-osd --mkfs failed" >&2; return 1; }
    ceph_retry 60 timeout 60 "$CEPH_MC" '{"prefix":"mon stat"}' >/dev/null 2>&1 || { echo "the monitor does not answer" >&2; return 1; }
    [ "$(timeout 60 "$CEPH_MC" '{"prefix":"osd create"}' 2>/dev/null)" = 0 ] || { echo "osd create failed" >&2; return 1; }
    ceph-osd -f --id 0 >"$D/log/osd.out" 2>&1 &
    CEPH_OSDPID=$!
    ceph_retry 120 ceph_osd_up || { echo "the osd did not come up" >&2; return 1; }
    timeout 60 "$CEPH_MC" '{"prefix":"osd pool create","pool":"rbd","pg_num":8,"pgp_num":8}' \
        '{"prefix":"osd pool application enable","pool":"rbd","app":"rbd"}' >/dev/null 2>&1 || { echo "pool create failed" >&2; return 1; }
}

ceph_logs() {
    local f
    for f in "$CEPH_DIR"/log/*.log; do [ -f "$f" ] && { echo "---- tail $f"; tail -15 "$f"; }; done
}

ceph_down() {
    [ -n "$CEPH_OSDPID$CEPH_MONPID" ] || return 0
    kill $CEPH_OSDPID $CEPH_MONPID 2>/dev/null || true
    wait $CEPH_OSDPID $CEPH_MONPID 2>/dev/null || true
    CEPH_OSDPID= CEPH_MONPID=
}
