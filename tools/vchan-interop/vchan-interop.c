/*
 * vchan-interop: dom0's libxenvchan end for the vchan scenarios, linked
 * against Debian's libxenvchan (libxenmisc4.17), with rings of any size
 * (vchan-socket-proxy always asks for libxenvchan's in-page default).
 *
 *   vchan-interop server PEER PATH BYTES RING
 *       libxenvchan_server_init(NULL, PEER, PATH, RING, RING), waits for
 *       the client, then streams;
 *   vchan-interop client PEER PATH BYTES
 *       libxenvchan_client_init(NULL, PEER, PATH), retried for 60 s
 *       until the server has published, then streams.
 *
 * Streaming is duplex: BYTES of a seeded pseudo-random payload out while
 * BYTES come in; then it waits until the peer has read everything and
 * closes. It prints, as the guest's vchan-cat does,
 *   vchan-interop: sent crc32 HEX N bytes; received crc32 HEX N bytes; T ms, R MiB/s
 * (CRC-32 as zlib's; MiB/s of the larger direction). Exit status: 0
 * streamed, 1 failed, 2 usage.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libxenvchan.h>

static uint32_t crc_table[256];

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ 0xedb88320u : c >> 1;
        crc_table[i] = c;
    }
}

struct crc {
    uint32_t crc;
    uint64_t len;
};

static void crc_update(struct crc *c, const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        c->crc = (c->crc >> 8) ^ crc_table[(c->crc ^ p[i]) & 0xff];
    c->len += n;
}

static uint64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* Duplex: `total` bytes out (xorshift64* from `seed`) and in. */
static int stream(struct libxenvchan *v, uint64_t total, uint64_t seed)
{
    struct crc sent = { ~0u, 0 }, got = { ~0u, 0 };
    unsigned char out[4096], in[8192];
    size_t at = sizeof out;
    uint64_t x = seed;
    int cap;

    v->blocking = 0;
    cap = libxenvchan_buffer_space(v);
    uint64_t t0 = now_ns();
    while (sent.len < total || got.len < total) {
        int moved = 0;
        if (sent.len < total) {
            if (at == sizeof out) {
                for (size_t i = 0; i < sizeof out; i += 8) {
                    x ^= x >> 12;
                    x ^= x << 25;
                    x ^= x >> 27;
                    uint64_t w = x * 0x2545f4914f6cdd1dull;
                    memcpy(out + i, &w, 8);
                }
                at = 0;
            }
            size_t k = sizeof out - at;
            if (k > total - sent.len)
                k = total - sent.len;
            int n = libxenvchan_write(v, out + at, k);
            if (n < 0) {
                fprintf(stderr, "vchan-interop: write: the peer closed\n");
                return 1;
            }
            crc_update(&sent, out + at, n);
            at += n;
            moved |= n > 0;
        }
        if (got.len < total) {
            size_t k = sizeof in;
            if (k > total - got.len)
                k = total - got.len;
            int n = libxenvchan_read(v, in, k);
            if (n < 0) {
                fprintf(stderr, "vchan-interop: read: the peer closed\n");
                return 1;
            }
            crc_update(&got, in, n);
            moved |= n > 0;
        }
        if (!moved && libxenvchan_wait(v) < 0) {
            fprintf(stderr, "vchan-interop: wait failed\n");
            return 1;
        }
    }
    while (libxenvchan_buffer_space(v) < cap && libxenvchan_is_open(v))
        libxenvchan_wait(v);
    uint64_t ns = now_ns() - t0;
    uint64_t kib_s = total * 1000000000ull / 1024 / (ns ? ns : 1);
    printf("vchan-interop: sent crc32 %08x %" PRIu64 " bytes; received crc32 %08x %" PRIu64
           " bytes; %" PRIu64 " ms, %" PRIu64 ".%03" PRIu64 " MiB/s\n",
           ~sent.crc, sent.len, ~got.crc, got.len, ns / 1000000, kib_s / 1024,
           (kib_s % 1024) * 1000 / 1024);
    return 0;
}

int main(int argc, char **argv)
{
    struct libxenvchan *v = NULL;

    if (argc < 5 || (strcmp(argv[1], "server") == 0 && argc != 6) ||
        (strcmp(argv[1], "client") == 0 && argc != 5)) {
        fprintf(stderr, "usage: %s server PEER PATH BYTES RING | client PEER PATH BYTES\n", argv[0]);
        return 2;
    }
    int peer = atoi(argv[2]);
    const char *path = argv[3];
    uint64_t total = strtoull(argv[4], NULL, 0);
    crc_init();
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (strcmp(argv[1], "server") == 0) {
        size_t ring = strtoull(argv[5], NULL, 0);
        v = libxenvchan_server_init(NULL, peer, path, ring, ring);
        if (!v) {
            perror("vchan-interop: libxenvchan_server_init");
            return 1;
        }
        printf("vchan-interop: server for domain %d at %s, rings of %zu bytes asked\n", peer, path, ring);
        while (libxenvchan_is_open(v) == 2)
            libxenvchan_wait(v);
    } else {
        for (int i = 0; i < 600 && !v; i++) {
            v = libxenvchan_client_init(NULL, peer, path);
            if (!v)
                usleep(100000);
        }
        if (!v) {
            perror("vchan-interop: libxenvchan_client_init");
            return 1;
        }
        printf("vchan-interop: client of domain %d at %s\n", peer, path);
    }
    int rc = stream(v, total, strcmp(argv[1], "server") == 0 ? 0x5eedcafef00d0002ull : 0x5eedcafef00d0003ull);
    libxenvchan_close(v);
    return rc;
}
