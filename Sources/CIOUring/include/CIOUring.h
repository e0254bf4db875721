/*
 * io_uring through liburing, whose API is static inline and so cannot be called from Swift.
 */
#pragma once
#include <stdint.h>
#include <sys/uio.h>

/* ---- io_uring (liburing's API is static inline, so it is wrapped here) ---- */
typedef struct cvduse_ring cvduse_ring;
/* Returns NULL and sets *error (-errno) on failure. The ring signals `eventfd` on completions. */
cvduse_ring *cvduse_ring_create(unsigned entries, int eventfd, int *error);
void cvduse_ring_destroy(cvduse_ring *ring);
/* Each prep returns 0, or -EBUSY when the submission queue is full (submit, then retry). */
int cvduse_ring_prep_readv(cvduse_ring *ring, int fd, const struct iovec *iov, unsigned count, uint64_t offset, uint64_t tag);
int cvduse_ring_prep_writev(cvduse_ring *ring, int fd, const struct iovec *iov, unsigned count, uint64_t offset, uint64_t tag);
int cvduse_ring_prep_fdatasync(cvduse_ring *ring, int fd, uint64_t tag);
int cvduse_ring_prep_fallocate(cvduse_ring *ring, int fd, int mode, uint64_t offset, uint64_t length, uint64_t tag);
/* Submits what was prepared; returns the count or -errno. */
int cvduse_ring_submit(cvduse_ring *ring);
/* Takes up to `max` completions without blocking; returns how many. */
unsigned cvduse_ring_reap(cvduse_ring *ring, uint64_t *tags, int32_t *results, unsigned max);
/* Completions waiting in the ring (no system call). */
unsigned cvduse_ring_ready(cvduse_ring *ring);
/* Blocks for one completion (used only while draining on reset/teardown). 0 or -errno. */
int cvduse_ring_wait(cvduse_ring *ring, uint64_t *tag, int32_t *result);
