#define _GNU_SOURCE
#include "CVDPANetlink.h"
#include <errno.h>
#include <stdint.h>
#include <netlink/netlink.h>
#include <netlink/genl/genl.h>
#include <netlink/genl/ctrl.h>
#include <linux/vdpa.h>

struct ack_state { int error; };

static int on_error(struct sockaddr_nl *who, struct nlmsgerr *err, void *arg) {
    (void)who;
    struct ack_state *st = arg;
    st->error = err->error;
    return NL_STOP;
}

static int on_ack(struct nl_msg *msg, void *arg) {
    (void)msg;
    ((struct ack_state *)arg)->error = 0;
    return NL_STOP;
}

static int on_valid(struct nl_msg *msg, void *arg) { (void)msg; (void)arg; return NL_OK; }

/* libnl error codes are not errnos; map the ones that can happen before the kernel answers. */
static int nl_to_errno(int e) {
    switch (-e) {
    case NLE_NOMEM: return -ENOMEM;
    case NLE_PERM: return -EPERM;
    case NLE_OBJ_NOTFOUND: return -ENOENT;
    default: return -EIO;
    }
}

/* Sends one vdpa command with the given string attributes and waits for the kernel's answer. */
static int vdpa_transact(uint8_t cmd, int attr1, const char *v1, int attr2, const char *v2, int flags) {
    struct nl_sock *sk = nl_socket_alloc();
    if (!sk) return -ENOMEM;
    int ret;
    if ((ret = genl_connect(sk)) < 0) { ret = nl_to_errno(ret); goto out; }
    int family = genl_ctrl_resolve(sk, VDPA_GENL_NAME);
    if (family < 0) { ret = -ENOENT; goto out; }
    struct nl_msg *msg = nlmsg_alloc();
    if (!msg) { ret = -ENOMEM; goto out; }
    if (!genlmsg_put(msg, NL_AUTO_PORT, NL_AUTO_SEQ, family, 0, flags, cmd, VDPA_GENL_VERSION)
        || (v1 && nla_put_string(msg, attr1, v1) < 0)
        || (v2 && nla_put_string(msg, attr2, v2) < 0)) {
        nlmsg_free(msg); ret = -ENOMEM; goto out;
    }
    struct ack_state st = { .error = 1 }; /* 1 = no answer yet */
    struct nl_cb *cb = nl_cb_alloc(NL_CB_DEFAULT);
    if (!cb) { nlmsg_free(msg); ret = -ENOMEM; goto out; }
    nl_cb_err(cb, NL_CB_CUSTOM, on_error, &st);
    nl_cb_set(cb, NL_CB_ACK, NL_CB_CUSTOM, on_ack, &st);
    nl_cb_set(cb, NL_CB_VALID, NL_CB_CUSTOM, on_valid, &st);
    ret = nl_send_auto(sk, msg);
    nlmsg_free(msg);
    if (ret < 0) { nl_cb_put(cb); ret = nl_to_errno(ret); goto out; }
    while (st.error == 1) {
        int r = nl_recvmsgs(sk, cb);
        if (r < 0) { if (st.error == 1) st.error = nl_to_errno(r); break; }
        /* A request with a reply (MGMTDEV_GET): the reply comes first, then the ack. */
    }
    nl_cb_put(cb);
    ret = st.error == 1 ? 0 : st.error;
out:
    nl_socket_free(sk);
    return ret;
}

int cvduse_vdpa_dev_new(const char *mgmtdev, const char *name) {
    return vdpa_transact(VDPA_CMD_DEV_NEW, VDPA_ATTR_MGMTDEV_DEV_NAME, mgmtdev, VDPA_ATTR_DEV_NAME, name,
                         NLM_F_REQUEST | NLM_F_ACK);
}

int cvduse_vdpa_dev_del(const char *name) {
    return vdpa_transact(VDPA_CMD_DEV_DEL, VDPA_ATTR_DEV_NAME, name, 0, NULL, NLM_F_REQUEST | NLM_F_ACK);
}

int cvduse_vdpa_mgmtdev_get(const char *mgmtdev) {
    return vdpa_transact(VDPA_CMD_MGMTDEV_GET, VDPA_ATTR_MGMTDEV_DEV_NAME, mgmtdev, 0, NULL,
                         NLM_F_REQUEST | NLM_F_ACK);
}
