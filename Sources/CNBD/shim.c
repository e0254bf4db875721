#include <stddef.h>
#include "CNBD.h"

int64_t cnbd_pread(struct nbd_handle *h, void *buf, size_t count, uint64_t offset)
{
    return nbd_aio_pread(h, buf, count, offset, NBD_NULL_COMPLETION, 0);
}

int64_t cnbd_pwrite(struct nbd_handle *h, const void *buf, size_t count, uint64_t offset)
{
    return nbd_aio_pwrite(h, buf, count, offset, NBD_NULL_COMPLETION, 0);
}

int64_t cnbd_flush(struct nbd_handle *h)
{
    return nbd_aio_flush(h, NBD_NULL_COMPLETION, 0);
}

int64_t cnbd_trim(struct nbd_handle *h, uint64_t count, uint64_t offset)
{
    return nbd_aio_trim(h, count, offset, NBD_NULL_COMPLETION, 0);
}

int64_t cnbd_zero(struct nbd_handle *h, uint64_t count, uint64_t offset, uint32_t flags)
{
    return nbd_aio_zero(h, count, offset, NBD_NULL_COMPLETION, flags);
}
