#include "CNBD.h"
#include <dlfcn.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>

#define CNBD_SYMBOLS(X)                                                                          \
    X(nbd_create) X(nbd_close) X(nbd_get_error) X(nbd_get_errno) X(nbd_set_export_name)         \
    X(nbd_aio_connect_tcp) X(nbd_aio_connect_unix) X(nbd_aio_get_fd) X(nbd_aio_get_direction)   \
    X(nbd_aio_is_ready) X(nbd_aio_is_dead) X(nbd_aio_is_closed) X(nbd_aio_notify_read)          \
    X(nbd_aio_notify_write) X(nbd_aio_peek_command_completed) X(nbd_aio_command_completed)      \
    X(nbd_get_size) X(nbd_is_read_only) X(nbd_can_flush) X(nbd_can_trim) X(nbd_can_zero)        \
    X(nbd_can_fast_zero) X(nbd_can_multi_conn) X(nbd_get_block_size) X(nbd_aio_pread)           \
    X(nbd_aio_pwrite) X(nbd_aio_flush) X(nbd_aio_trim) X(nbd_aio_zero)

static struct {
#define CNBD_MEMBER(name) __typeof__(name) *name;
    CNBD_SYMBOLS(CNBD_MEMBER)
#undef CNBD_MEMBER
} lib;
static pthread_once_t lib_once = PTHREAD_ONCE_INIT;
static char lib_error[256];

static void load_library(void)
{
    void *nbd = dlopen("libnbd.so.0", RTLD_NOW | RTLD_LOCAL);
    if (!nbd) {
        const char *e = dlerror();
        snprintf(lib_error, sizeof lib_error, "%s", e ? e : "dlopen failed");
        return;
    }
#define CNBD_LOAD(name)                                                                          \
    if (!(lib.name = (__typeof__(name) *)dlsym(nbd, #name))) {                                   \
        snprintf(lib_error, sizeof lib_error, "libnbd.so.0: no symbol %s", #name);               \
        return;                                                                                  \
    }
    CNBD_SYMBOLS(CNBD_LOAD)
#undef CNBD_LOAD
}

const char *cnbd_load(void)
{
    pthread_once(&lib_once, load_library);
    return lib_error[0] ? lib_error : NULL;
}

/* Every wrapper below runs only after cnbd_load() returned NULL (NBDHandle checks it first). */
struct nbd_handle *cnbd_create(void) { return lib.nbd_create(); }
void cnbd_close(struct nbd_handle *h) { lib.nbd_close(h); }
const char *cnbd_get_error(void) { return lib.nbd_get_error(); }
int cnbd_get_errno(void) { return lib.nbd_get_errno(); }
int cnbd_set_export_name(struct nbd_handle *h, const char *name) { return lib.nbd_set_export_name(h, name); }
int cnbd_aio_connect_tcp(struct nbd_handle *h, const char *host, const char *port)
{
    return lib.nbd_aio_connect_tcp(h, host, port);
}
int cnbd_aio_connect_unix(struct nbd_handle *h, const char *path) { return lib.nbd_aio_connect_unix(h, path); }
int cnbd_aio_get_fd(struct nbd_handle *h) { return lib.nbd_aio_get_fd(h); }
unsigned cnbd_aio_get_direction(struct nbd_handle *h) { return lib.nbd_aio_get_direction(h); }
int cnbd_aio_is_ready(struct nbd_handle *h) { return lib.nbd_aio_is_ready(h); }
int cnbd_aio_is_dead(struct nbd_handle *h) { return lib.nbd_aio_is_dead(h); }
int cnbd_aio_is_closed(struct nbd_handle *h) { return lib.nbd_aio_is_closed(h); }
int cnbd_aio_notify_read(struct nbd_handle *h) { return lib.nbd_aio_notify_read(h); }
int cnbd_aio_notify_write(struct nbd_handle *h) { return lib.nbd_aio_notify_write(h); }
int64_t cnbd_aio_peek_command_completed(struct nbd_handle *h) { return lib.nbd_aio_peek_command_completed(h); }
int cnbd_aio_command_completed(struct nbd_handle *h, uint64_t cookie) { return lib.nbd_aio_command_completed(h, cookie); }
int64_t cnbd_get_size(struct nbd_handle *h) { return lib.nbd_get_size(h); }
int cnbd_is_read_only(struct nbd_handle *h) { return lib.nbd_is_read_only(h); }
int cnbd_can_flush(struct nbd_handle *h) { return lib.nbd_can_flush(h); }
int cnbd_can_trim(struct nbd_handle *h) { return lib.nbd_can_trim(h); }
int cnbd_can_zero(struct nbd_handle *h) { return lib.nbd_can_zero(h); }
int cnbd_can_fast_zero(struct nbd_handle *h) { return lib.nbd_can_fast_zero(h); }
int cnbd_can_multi_conn(struct nbd_handle *h) { return lib.nbd_can_multi_conn(h); }
int64_t cnbd_get_block_size(struct nbd_handle *h, int size_type) { return lib.nbd_get_block_size(h, size_type); }

int64_t cnbd_pread(struct nbd_handle *h, void *buf, size_t count, uint64_t offset)
{
    return lib.nbd_aio_pread(h, buf, count, offset, NBD_NULL_COMPLETION, 0);
}

int64_t cnbd_pwrite(struct nbd_handle *h, const void *buf, size_t count, uint64_t offset)
{
    return lib.nbd_aio_pwrite(h, buf, count, offset, NBD_NULL_COMPLETION, 0);
}

int64_t cnbd_flush(struct nbd_handle *h)
{
    return lib.nbd_aio_flush(h, NBD_NULL_COMPLETION, 0);
}

int64_t cnbd_trim(struct nbd_handle *h, uint64_t count, uint64_t offset)
{
    return lib.nbd_aio_trim(h, count, offset, NBD_NULL_COMPLETION, 0);
}

int64_t cnbd_zero(struct nbd_handle *h, uint64_t count, uint64_t offset, uint32_t flags)
{
    return lib.nbd_aio_zero(h, count, offset, NBD_NULL_COMPLETION, flags);
}
