/*
 * The vdpa generic netlink family through libnl-genl-3 (what `vdpa dev add/del` sends). libnl's
 * headers stay inside vdpa.c.
 */
#pragma once

/* ---- vdpa generic netlink (libnl-genl-3) ---- */
/* Each returns 0 or the kernel's -errno (-ENOENT when the vdpa family does not exist). */
int cvduse_vdpa_dev_new(const char *mgmtdev, const char *name);
int cvduse_vdpa_dev_del(const char *name);
/* 0 when the management device exists, -errno otherwise (-ENOENT: no vdpa family or no such mgmtdev). */
int cvduse_vdpa_mgmtdev_get(const char *mgmtdev);
