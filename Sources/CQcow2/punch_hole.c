#define _GNU_SOURCE
#include "CQcow2.h"
#include <fcntl.h>

int cq_punch_hole(int fd, long long offset, long long length) {
    return fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length);
}
