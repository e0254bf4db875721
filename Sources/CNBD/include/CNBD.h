#ifndef CNBD_H
#define CNBD_H
/* libnbd for Swift, loaded on first use (cnbd_load) instead of linked: libnbd pulls in GnuTLS,
 * libxml2 and ICU, about 3.5 MiB of resident memory in every server, most of which serve a
 * file. libnbd.h is included for its types only; Swift calls the cnbd_ wrappers (calling an
 * nbd_ function directly would not link). The asynchronous calls take no completion callback
 * (NBD_NULL_COMPLETION is a compound literal Swift cannot import): commands are retired by
 * polling cnbd_aio_peek_command_completed / cnbd_aio_command_completed. */
#include <libnbd.h>
#include <stdint.h>

/* Loads libnbd.so.0 once; NULL when it is usable, else why not (dlerror's text). */
const char *cnbd_load(void);

struct nbd_handle *cnbd_create(void);
void cnbd_close(struct nbd_handle *h);
const char *cnbd_get_error(void);
int cnbd_get_errno(void);
int cnbd_set_export_name(struct nbd_handle *h, const char *name);
int cnbd_aio_connect_tcp(struct nbd_handle *h, const char *host, const char *port);
int cnbd_aio_connect_unix(struct nbd_handle *h, const char *path);
int cnbd_aio_get_fd(struct nbd_handle *h);
unsigned cnbd_aio_get_direction(struct nbd_handle *h);
int cnbd_aio_is_ready(struct nbd_handle *h);
int cnbd_aio_is_dead(struct nbd_handle *h);
int cnbd_aio_is_closed(struct nbd_handle *h);
int cnbd_aio_notify_read(struct nbd_handle *h);
int cnbd_aio_notify_write(struct nbd_handle *h);
int64_t cnbd_aio_peek_command_completed(struct nbd_handle *h);
int cnbd_aio_command_completed(struct nbd_handle *h, uint64_t cookie);
int64_t cnbd_get_size(struct nbd_handle *h);
int cnbd_is_read_only(struct nbd_handle *h);
int cnbd_can_flush(struct nbd_handle *h);
int cnbd_can_trim(struct nbd_handle *h);
int cnbd_can_zero(struct nbd_handle *h);
int cnbd_can_fast_zero(struct nbd_handle *h);
int cnbd_can_multi_conn(struct nbd_handle *h);
int64_t cnbd_get_block_size(struct nbd_handle *h, int size_type);

int64_t cnbd_pread(struct nbd_handle *h, void *buf, size_t count, uint64_t offset);
int64_t cnbd_pwrite(struct nbd_handle *h, const void *buf, size_t count, uint64_t offset);
int64_t cnbd_flush(struct nbd_handle *h);
int64_t cnbd_trim(struct nbd_handle *h, uint64_t count, uint64_t offset);
int64_t cnbd_zero(struct nbd_handle *h, uint64_t count, uint64_t offset, uint32_t flags);

#endif
