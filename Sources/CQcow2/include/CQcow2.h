#ifndef CQCOW2_H
#define CQCOW2_H
#include <stddef.h>

// Both decompress one qcow2 compressed cluster: they stop once `dst_len` bytes are produced and
// ignore trailing input (the next compressed cluster may share the last sector).
// Return 0 on success, -1 if the input is corrupt or yields fewer than `dst_len` bytes.
int cc_inflate_raw(const void *src, size_t src_len, void *dst, size_t dst_len);
int cc_zstd_decompress(const void *src, size_t src_len, void *dst, size_t dst_len);

// Frees the file space of [offset, offset + length) keeping the file size; 0 or -1 (errno).
int cq_punch_hole(int fd, long long offset, long long length);

#endif
