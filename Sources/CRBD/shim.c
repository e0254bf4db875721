#include "CRBD.h"
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <stdio.h>
#include <unistd.h>
#include <rados/librados.h>
#include <rbd/librbd.h>

/* librbd and librados are loaded when the first RBD image is opened, not at start: linking them
 * costs every server ~20 MiB of resident memory (libceph-common's relocations and static
 * initialisers) even when it serves a plain file. */
#define CRBD_SYMBOLS(X)                                                                          \
    X(rados, rados_create) X(rados, rados_conf_read_file) X(rados, rados_conf_set)              \
    X(rados, rados_connect) X(rados, rados_ioctx_create) X(rados, rados_ioctx_set_namespace)    \
    X(rados, rados_ioctx_destroy) X(rados, rados_shutdown)                                      \
    X(rbd, rbd_open) X(rbd, rbd_open_read_only) X(rbd, rbd_close) X(rbd, rbd_get_size)          \
    X(rbd, rbd_resize) X(rbd, rbd_aio_create_completion) X(rbd, rbd_aio_release)                \
    X(rbd, rbd_aio_get_return_value) X(rbd, rbd_aio_readv) X(rbd, rbd_aio_writev)               \
    X(rbd, rbd_aio_flush) X(rbd, rbd_aio_discard) X(rbd, rbd_aio_write_zeroes)

static struct {
#define CRBD_MEMBER(lib, name) __typeof__(name) *name;
    CRBD_SYMBOLS(CRBD_MEMBER)
#undef CRBD_MEMBER
} lib;
static pthread_once_t lib_once = PTHREAD_ONCE_INIT;
static char lib_error[256];

static void load_libraries(void)
{
    void *rados = dlopen("librados.so.2", RTLD_NOW | RTLD_LOCAL);
    void *rbd = rados ? dlopen("librbd.so.1", RTLD_NOW | RTLD_LOCAL) : NULL;
    if (!rbd) {
        const char *e = dlerror();
        snprintf(lib_error, sizeof lib_error, "%s", e ? e : "dlopen failed");
        return;
    }
#define CRBD_LOAD(l, name)                                                                       \
    if (!(lib.name = (__typeof__(name) *)dlsym(l, #name))) {                                     \
        snprintf(lib_error, sizeof lib_error, "%s: no symbol %s", #l, #name);                    \
        return;                                                                                  \
    }
    CRBD_SYMBOLS(CRBD_LOAD)
#undef CRBD_LOAD
}

const char *crbd_load(void)
{
    pthread_once(&lib_once, load_libraries);
    return lib_error[0] ? lib_error : NULL;
}

struct crbd_image {
    rados_t cluster;
    rados_ioctx_t io;
    rbd_image_t image;
};

int crbd_open(const char *conf, const char *user, const char *pool, const char *ns, const char *image,
              const char *snapshot, int read_only, struct crbd_image **out, const char **step)
{
    *step = "library";
    if (crbd_load()) return -ELIBACC;
    struct crbd_image *img = calloc(1, sizeof *img);
    if (!img) return -ENOMEM;
    int r;
    *step = "connect";
    if ((r = lib.rados_create(&img->cluster, user)) < 0) { free(img); return r; }
    /* conf NULL: ceph's default search (CEPH_CONF, /etc/ceph/ceph.conf, ...). */
    if ((r = lib.rados_conf_read_file(img->cluster, conf)) < 0 && conf) goto fail;
    /* An unreachable monitor fails the open in seconds, not after ceph's default of 300 s. */
    lib.rados_conf_set(img->cluster, "client_mount_timeout", "20");
    if ((r = lib.rados_connect(img->cluster)) < 0) goto fail;
    *step = "pool";
    if ((r = lib.rados_ioctx_create(img->cluster, pool, &img->io)) < 0) goto fail;
    if (ns && *ns) lib.rados_ioctx_set_namespace(img->io, ns);
    *step = "image";
    r = read_only || snapshot ? lib.rbd_open_read_only(img->io, image, &img->image, snapshot)
                              : lib.rbd_open(img->io, image, &img->image, NULL);
    if (r < 0) goto fail;
    *out = img;
    return 0;
fail:
    if (img->io) lib.rados_ioctx_destroy(img->io);
    lib.rados_shutdown(img->cluster);
    free(img);
    return r;
}

void crbd_close(struct crbd_image *img)
{
    lib.rbd_close(img->image);
    lib.rados_ioctx_destroy(img->io);
    lib.rados_shutdown(img->cluster);
    free(img);
}

int crbd_size(struct crbd_image *img, uint64_t *size) { return lib.rbd_get_size(img->image, size); }
int crbd_resize(struct crbd_image *img, uint64_t size) { return lib.rbd_resize(img->image, size); }

struct crbd_op {
    struct crbd_queue *q;
    uint16_t tag;
};

struct crbd_queue {
    struct crbd_image *img;
    int efd;
    pthread_mutex_t lock;
    struct crbd_op *ops;
    uint16_t *done_tags;
    int64_t *done_results;
    size_t done, depth;
};

struct crbd_queue *crbd_queue_create(struct crbd_image *img, int depth, int efd)
{
    struct crbd_queue *q = calloc(1, sizeof *q);
    if (!q) return NULL;
    q->img = img;
    q->efd = efd;
    q->depth = (size_t)depth;
    pthread_mutex_init(&q->lock, NULL);
    q->ops = calloc((size_t)depth, sizeof *q->ops);
    q->done_tags = calloc((size_t)depth, sizeof *q->done_tags);
    q->done_results = calloc((size_t)depth, sizeof *q->done_results);
    if (!q->ops || !q->done_tags || !q->done_results) { crbd_queue_destroy(q); return NULL; }
    for (int i = 0; i < depth; i++) { q->ops[i].q = q; q->ops[i].tag = (uint16_t)i; }
    return q;
}

void crbd_queue_destroy(struct crbd_queue *q)
{
    pthread_mutex_destroy(&q->lock);
    free(q->ops);
    free(q->done_tags);
    free(q->done_results);
    free(q);
}

/* On a librbd thread: queue the result, wake the iothread. At most one request per tag is in
 * flight, so `depth` slots always suffice. */
static void completed(rbd_completion_t c, void *arg)
{
    struct crbd_op *op = arg;
    struct crbd_queue *q = op->q;
    int64_t r = lib.rbd_aio_get_return_value(c);
    lib.rbd_aio_release(c);
    pthread_mutex_lock(&q->lock);
    q->done_tags[q->done] = op->tag;
    q->done_results[q->done] = r;
    q->done++;
    pthread_mutex_unlock(&q->lock);
    uint64_t one = 1;
    ssize_t n = write(q->efd, &one, sizeof one);
    (void)n;
}

#define START(call)                                                              \
    rbd_completion_t c;                                                          \
    int r = lib.rbd_aio_create_completion(&q->ops[tag], completed, &c);          \
    if (r < 0) return r;                                                         \
    r = (call);                                                                  \
    if (r < 0) lib.rbd_aio_release(c);                                           \
    return r < 0 ? r : 0;

int crbd_readv(struct crbd_queue *q, uint16_t tag, const struct iovec *iov, int iovcnt, uint64_t off)
{
    START(lib.rbd_aio_readv(q->img->image, iov, iovcnt, off, c))
}

int crbd_writev(struct crbd_queue *q, uint16_t tag, const struct iovec *iov, int iovcnt, uint64_t off)
{
    START(lib.rbd_aio_writev(q->img->image, iov, iovcnt, off, c))
}

int crbd_flush(struct crbd_queue *q, uint16_t tag) { START(lib.rbd_aio_flush(q->img->image, c)) }

int crbd_discard(struct crbd_queue *q, uint16_t tag, uint64_t off, uint64_t len)
{
    START(lib.rbd_aio_discard(q->img->image, off, len, c))
}

int crbd_write_zeroes(struct crbd_queue *q, uint16_t tag, uint64_t off, uint64_t len)
{
    START(lib.rbd_aio_write_zeroes(q->img->image, off, len, c, 0, 0))
}

size_t crbd_reap(struct crbd_queue *q, uint16_t *tags, int64_t *results, size_t max)
{
    pthread_mutex_lock(&q->lock);
    size_t n = q->done < max ? q->done : max;
    for (size_t i = 0; i < n; i++) { tags[i] = q->done_tags[i]; results[i] = q->done_results[i]; }
    for (size_t i = n; i < q->done; i++) {
        q->done_tags[i - n] = q->done_tags[i];
        q->done_results[i - n] = q->done_results[i];
    }
    q->done -= n;
    pthread_mutex_unlock(&q->lock);
    return n;
}
