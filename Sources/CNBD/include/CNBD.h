#ifndef CNBD_H
#define CNBD_H
/* libnbd for Swift: the header as is, plus the asynchronous calls without a completion
 * callback (NBD_NULL_COMPLETION is a compound literal Swift cannot import). Commands are
 * retired by polling nbd_aio_peek_command_completed / nbd_aio_command_completed instead. */
#include <libnbd.h>
#include <stdint.h>

int64_t cnbd_pread(struct nbd_handle *h, void *buf, size_t count, uint64_t offset);
int64_t cnbd_pwrite(struct nbd_handle *h, const void *buf, size_t count, uint64_t offset);
int64_t cnbd_flush(struct nbd_handle *h);
int64_t cnbd_trim(struct nbd_handle *h, uint64_t count, uint64_t offset);
int64_t cnbd_zero(struct nbd_handle *h, uint64_t count, uint64_t offset, uint32_t flags);

#endif
