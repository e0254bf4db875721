/* ceph-mon-command JSON...: sends monitor commands through librados and prints the replies.
 * The test bed's stand-in for the python `ceph` CLI, which costs seconds per call under TCG.
 * Configuration from $CEPH_CONF (or ceph's default search). Exit 1 if a command failed. */
#include <rados/librados.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    rados_t cluster;
    int r, rc = 0;
    if (argc < 2) {
        fprintf(stderr, "usage: ceph-mon-command JSON...\n");
        return 2;
    }
    if ((r = rados_create(&cluster, NULL)) < 0 || (r = rados_conf_read_file(cluster, NULL)) < 0
        || (r = rados_conf_parse_env(cluster, NULL)) < 0 || (r = rados_connect(cluster)) < 0) {
        fprintf(stderr, "ceph-mon-command: connect: %s\n", strerror(-r));
        return 1;
    }
    for (int i = 1; i < argc; i++) {
        const char *cmd[1] = {argv[i]};
        char *out = NULL, *status = NULL;
        size_t outlen = 0, statuslen = 0;
        r = rados_mon_command(cluster, cmd, 1, "", 0, &out, &outlen, &status, &statuslen);
        if (outlen) {
            fwrite(out, 1, outlen, stdout);
            if (out[outlen - 1] != '\n') putchar('\n');
        }
        if (statuslen) fprintf(stderr, "%.*s\n", (int)statuslen, status);
        if (r < 0) {
            fprintf(stderr, "ceph-mon-command: %s: %s\n", argv[i], strerror(-r));
            rc = 1;
        }
        rados_buffer_free(out);
        rados_buffer_free(status);
    }
    rados_shutdown(cluster);
    return rc;
}
