#define _GNU_SOURCE
#include "CIOUring.h"
#include <errno.h>
#include <stdlib.h>
#include <liburing.h>

struct cvduse_ring { struct io_uring ring; };

cvduse_ring *cvduse_ring_create(unsigned entries, int eventfd, int *error) {
    cvduse_ring *r = calloc(1, sizeof(*r));
    if (!r) { *error = -ENOMEM; return NULL; }
    int e = io_uring_queue_init(entries, &r->ring, 0);
    if (e < 0) { free(r); *error = e; return NULL; }
    if (eventfd >= 0) {
        e = io_uring_register_eventfd(&r->ring, eventfd);
        if (e < 0) { io_uring_queue_exit(&r->ring); free(r); *error = e; return NULL; }
    }
    *error = 0;
    return r;
}

void cvduse_ring_destroy(cvduse_ring *r) {
    if (!r) return;
    io_uring_queue_exit(&r->ring);
    free(r);
}

static struct io_uring_sqe *next_sqe(cvduse_ring *r) { return io_uring_get_sqe(&r->ring); }

int cvduse_ring_prep_readv(cvduse_ring *r, int fd, const struct iovec *iov, unsigned n, uint64_t off, uint64_t tag) {
    struct io_uring_sqe *s = next_sqe(r);
    if (!s) return -EBUSY;
    io_uring_prep_readv(s, fd, iov, n, off);
    io_uring_sqe_set_data64(s, tag);
    return 0;
}

int cvduse_ring_prep_writev(cvduse_ring *r, int fd, const struct iovec *iov, unsigned n, uint64_t off, uint64_t tag) {
    struct io_uring_sqe *s = next_sqe(r);
    if (!s) return -EBUSY;
    io_uring_prep_writev(s, fd, iov, n, off);
    io_uring_sqe_set_data64(s, tag);
    return 0;
}

int cvduse_ring_prep_fdatasync(cvduse_ring *r, int fd, uint64_t tag) {
    struct io_uring_sqe *s = next_sqe(r);
    if (!s) return -EBUSY;
    io_uring_prep_fsync(s, fd, IORING_FSYNC_DATASYNC);
    io_uring_sqe_set_data64(s, tag);
    return 0;
}

int cvduse_ring_prep_fallocate(cvduse_ring *r, int fd, int mode, uint64_t off, uint64_t len, uint64_t tag) {
    struct io_uring_sqe *s = next_sqe(r);
    if (!s) return -EBUSY;
    io_uring_prep_fallocate(s, fd, mode, off, len);
    io_uring_sqe_set_data64(s, tag);
    return 0;
}

int cvduse_ring_submit(cvduse_ring *r) {
    int e;
    do { e = io_uring_submit(&r->ring); } while (e == -EINTR);
    return e;
}

unsigned cvduse_ring_reap(cvduse_ring *r, uint64_t *tags, int32_t *results, unsigned max) {
    unsigned n = 0;
    struct io_uring_cqe *cqe;
    while (n < max && io_uring_peek_cqe(&r->ring, &cqe) == 0) {
        tags[n] = io_uring_cqe_get_data64(cqe);
        results[n] = cqe->res;
        io_uring_cqe_seen(&r->ring, cqe);
        n++;
    }
    return n;
}

unsigned cvduse_ring_ready(cvduse_ring *r) { return io_uring_cq_ready(&r->ring); }


int cvduse_ring_wait(cvduse_ring *r, uint64_t *tag, int32_t *result) {
    struct io_uring_cqe *cqe;
    int e;
    do { e = io_uring_wait_cqe(&r->ring, &cqe); } while (e == -EINTR);
    if (e < 0) return e;
    *tag = io_uring_cqe_get_data64(cqe);
    *result = cqe->res;
    io_uring_cqe_seen(&r->ring, cqe);
    return 0;
}
