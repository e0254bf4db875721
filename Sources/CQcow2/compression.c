#include "CQcow2.h"
#include <string.h>
#include <zlib.h>
#include <zstd.h>

int cc_inflate_raw(const void *src, size_t src_len, void *dst, size_t dst_len) {
    z_stream s;
    memset(&s, 0, sizeof s);
    // qcow2 stores raw deflate (no zlib header) with a 4 KiB window.
    if (inflateInit2(&s, -12) != Z_OK) return -1;
    s.next_in = (Bytef *)src;
    s.avail_in = (uInt)src_len;
    s.next_out = (Bytef *)dst;
    s.avail_out = (uInt)dst_len;
    int ret = inflate(&s, Z_FINISH);
    size_t produced = dst_len - s.avail_out;
    inflateEnd(&s);
    // A full output buffer is success even when the stream has not signalled its end.
    if ((ret == Z_STREAM_END || ret == Z_BUF_ERROR || ret == Z_OK) && produced == dst_len) return 0;
    return -1;
}

int cc_zstd_decompress(const void *src, size_t src_len, void *dst, size_t dst_len) {
    ZSTD_DCtx *ctx = ZSTD_createDCtx();
    if (!ctx) return -1;
    ZSTD_inBuffer in = {src, src_len, 0};
    ZSTD_outBuffer out = {dst, dst_len, 0};
    int rc = 0;
    // A cluster may be split over several frames; stop as soon as the cluster is complete.
    while (out.pos < out.size) {
        size_t before_in = in.pos, before_out = out.pos;
        size_t r = ZSTD_decompressStream(ctx, &out, &in);
        if (ZSTD_isError(r)) { rc = -1; break; }
        if (in.pos == before_in && out.pos == before_out) { rc = -1; break; }
    }
    ZSTD_freeDCtx(ctx);
    return rc;
}
