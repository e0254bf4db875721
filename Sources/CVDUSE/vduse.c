#define _GNU_SOURCE
#include "CVDUSE.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>

long cvduse_ioctl(int fd, unsigned long request, void *arg) {
    long r;
    do { r = ioctl(fd, request, arg); } while (r < 0 && errno == EINTR);
    return r < 0 ? -errno : r;
}

void cvduse_zero_fill(void *dst, size_t len) {
    unsigned char *p = dst;
    for (; len > 0 && ((uintptr_t)p & 7) != 0; len--) *p++ = 0;
    for (; len >= 32; len -= 32, p += 32) {
        uint64_t *q = (uint64_t *)(void *)p;
        q[0] = 0; q[1] = 0; q[2] = 0; q[3] = 0;
        __asm__ volatile("" : : "r"(p) : "memory");  /* keeps the compiler from making this loop a memset call */
    }
    for (; len > 0; len--) *p++ = 0;
}

long cvduse_create_dev(int control_fd, const char *name, uint32_t device_id, uint64_t features,
                       uint32_t vq_num, uint32_t vq_align, const void *config, uint32_t config_size) {
    struct vduse_dev_config *c = calloc(1, sizeof(*c) + config_size);
    if (!c) return -ENOMEM;
    strncpy(c->name, name, VDUSE_NAME_MAX - 1);
    c->device_id = device_id;
    c->vendor_id = 0;
    c->features = features;
    c->vq_num = vq_num;
    c->vq_align = vq_align;
    c->config_size = config_size;
    memcpy(c->config, config, config_size);
    long r = cvduse_ioctl(control_fd, VDUSE_CREATE_DEV, c);
    free(c);
    return r;
}

long cvduse_set_config(int dev_fd, uint32_t offset, const void *buffer, uint32_t length) {
    struct vduse_config_data *d = calloc(1, sizeof(*d) + length);
    if (!d) return -ENOMEM;
    d->offset = offset;
    d->length = length;
    memcpy(d->buffer, buffer, length);
    long r = cvduse_ioctl(dev_fd, VDUSE_DEV_SET_CONFIG, d);
    free(d);
    return r;
}

const int cvduse_o_direct = O_DIRECT;

#include <fcntl.h>
int cvduse_fallocate(int fd, int mode, uint64_t offset, uint64_t length) {
    return fallocate(fd, mode, (off_t)offset, (off_t)length) < 0 ? -errno : 0;
}
