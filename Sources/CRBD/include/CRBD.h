#ifndef CRBD_H
#define CRBD_H
/* librbd for Swift: opening an image (cluster, pool, namespace, image, snapshot) and
 * asynchronous requests whose completions, which librbd delivers on its own threads, are
 * queued here and announced through an eventfd the iothread watches. */
#include <stdint.h>
#include <stddef.h>
#include <sys/uio.h>

struct crbd_image;
struct crbd_queue;

/* Loads librados and librbd (once); returns NULL, or why they could not be loaded. */
const char *crbd_load(void);

/* Opens the image. On failure returns -errno and names the step that failed in *step
 * ("library", "connect", "pool", "image"; static strings). */
int crbd_open(const char *conf, const char *user, const char *pool, const char *ns, const char *image,
              const char *snapshot, int read_only, struct crbd_image **out, const char **step);
void crbd_close(struct crbd_image *img);
int crbd_size(struct crbd_image *img, uint64_t *size);
int crbd_resize(struct crbd_image *img, uint64_t size);

/* A queue of `depth` tags whose completions are announced on `efd`. */
struct crbd_queue *crbd_queue_create(struct crbd_image *img, int depth, int efd);
void crbd_queue_destroy(struct crbd_queue *q);
/* Each returns 0 once the request is under way, or -errno. */
int crbd_readv(struct crbd_queue *q, uint16_t tag, const struct iovec *iov, int iovcnt, uint64_t off);
int crbd_writev(struct crbd_queue *q, uint16_t tag, const struct iovec *iov, int iovcnt, uint64_t off);
int crbd_flush(struct crbd_queue *q, uint16_t tag);
int crbd_discard(struct crbd_queue *q, uint16_t tag, uint64_t off, uint64_t len);
int crbd_write_zeroes(struct crbd_queue *q, uint16_t tag, uint64_t off, uint64_t len);
/* Takes up to `max` finished requests: their tags and results (bytes or 0, or -errno). */
size_t crbd_reap(struct crbd_queue *q, uint16_t *tags, int64_t *results, size_t max);

#endif
