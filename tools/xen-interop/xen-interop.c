/*
 * xen-interop: dom0's side of the xenguest share protocol (docs/share-protocol.md),
 * built on Xen's own libxengnttab, libxenevtchn and libxenstore, so that our
 * guest kernel can be tested against a peer none of us wrote.
 *
 *   xen-interop [-t SECONDS] [-g] share PEER_DOMID N SEED
 *       dom0 is the sharer: grants N pages to PEER and waits for it to map,
 *       verify, answer and unmap them.
 *   xen-interop [-t SECONDS] [-g] [-b ROUNDS] map PEER_DOMID
 *       dom0 is the mapper: waits for PEER to publish a share, maps it,
 *       verifies it, answers and unmaps. With -b (scripts/bench), it first
 *       times Linux's gntdev: for each N of 1, 16, 256, ... 65536 up to
 *       the share's size, ROUNDS times, it maps the first N grants with
 *       xengnttab_map_domain_grant_refs, reads one word of every page and
 *       unmaps them, printing one line per round:
 *       "BENCH map way=linux n=N round=R ns=NS faults=F" (CLOCK_MONOTONIC;
 *       F: the minor faults the reads took, from getrusage).
 *   xen-interop [-t SECONDS] selftest N [SEED]
 *       both roles inside dom0 (two processes), against domain 0 itself.
 *
 * With -g (share and map only), the roles speak the protocol's gntdev
 * variant, the one our guest's user programs gnt-share and gnt-map speak:
 *   -g share: after checking the reply words, waits (woken by events on its
 *       port) until the last byte of page N-1 reads 0 - the mapper's unmap
 *       notify - instead of waiting for "unmapped", then unshares and writes
 *       "done". SEED must leave that byte non-zero in the pattern.
 *   -g map: maps page N-1 a second time with xengnttab_map_grant_ref_notify
 *       (libxengnttab offers an unmap notify on single pages only): clear
 *       byte 4095, signal our bound port. After "verified" it unmaps all N,
 *       then that page, which fires the notify; it never writes "unmapped",
 *       and waits for the sharer's "done".
 *
 * Every wait ends after SECONDS (default 30). Each step prints one line
 * ("share: ..." / "map: ..."), and each role ends with
 * "RESULT interop-share PASS", "RESULT interop-gntdev-map FAIL reason", ...
 * Exit status: 0 passed, 1 failed, 2 usage.
 */
#define _GNU_SOURCE
#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <xenevtchn.h>
#include <xengnttab.h>
#include <xenstore.h>

#define PAGE_BYTES 4096u
#define PAGE_WORDS (PAGE_BYTES / 4u)
#define REFS_PER_CHUNK 256u
/* The protocol has no limit; this one only keeps allocations sane. */
#define MAX_PAGES (1u << 20)
#define POLL_TICK_MS 250
#define WATCH_TOKEN "xen-interop"

/* One role's state: what it holds, so every exit path can release it. */
struct side {
    const char *role;           /* "share" or "map" */
    unsigned int peer;          /* the other domain */
    unsigned int timeout_ms;    /* limit of every single wait */
    bool gntdev;                /* the protocol's gntdev variant */
    struct xs_handle *xs;
    xenevtchn_handle *xce;
    int port;                   /* our local port, -1 when none */
    unsigned long events;       /* events received on any port */
    char home[96];              /* HOME(0)/share or HOME(0)/map */
    char peer_home[96];         /* HOME(peer)/map or HOME(peer)/share */
    bool published;             /* we wrote nodes under home */
    char reason[512];           /* why it failed */
    uint32_t count, seed;       /* the share's, once known (COUNTERS) */
};

static void say(const struct side *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int failf(struct side *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void say(const struct side *s, const char *fmt, ...)
{
    va_list ap;
    printf("%s: ", s->role);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
}

/* failf: records the first reason only (later ones are consequences). */
static int failf(struct side *s, const char *fmt, ...)
{
    if (s->reason[0] == '\0') {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(s->reason, sizeof(s->reason), fmt, ap);
        va_end(ap);
    }
    return -1;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- parsing ------------------------------------------------------------ */

/* parse_u32: a decimal string with nothing else (the protocol's format). */
static bool parse_u32(const char *text, const char **end, uint32_t *out)
{
    const char *p = text;
    uint64_t v = 0;
    if (*p < '0' || *p > '9')
        return false;
    while (*p >= '0' && *p <= '9') {
        v = v * 10u + (uint64_t)(*p - '0');
        if (v > UINT32_MAX)
            return false;
        p++;
    }
    *out = (uint32_t)v;
    if (end)
        *end = p;
    else if (*p != '\0')
        return false;
    return true;
}

/* parse_arg: a command-line number, decimal or 0x-hex. */
static bool parse_arg(const char *text, uint32_t *out)
{
    char *end;
    unsigned long long v;
    if (text[0] == '-' || text[0] == '\0')
        return false;
    errno = 0;
    v = strtoull(text, &end, 0);
    if (errno != 0 || *end != '\0' || v > UINT32_MAX)
        return false;
    *out = (uint32_t)v;
    return true;
}

/* ---- xenstore ----------------------------------------------------------- */

/* set_perms: owner dom0 with no access for others, PEER may read. */
static int set_perms(struct side *s, const char *path)
{
    struct xs_permissions perms[2] = {
        { .id = 0, .perms = XS_PERM_NONE },
        { .id = s->peer, .perms = XS_PERM_READ },
    };
    /* dom0 owns the node: as the peer it needs no second entry. */
    unsigned int n = s->peer == 0 ? 1 : 2;
    if (!xs_set_permissions(s->xs, XBT_NULL, path, perms, n))
        return failf(s, "xs_set_permissions %s: %s", path, strerror(errno));
    return 0;
}

/* make_dir: creates a directory node and gives the peer read access first,
 * so that every node written below it inherits that permission from the
 * moment it exists (a watch event is only delivered to a domain that may
 * read the node). */
static int make_dir(struct side *s, const char *path)
{
    if (!xs_mkdir(s->xs, XBT_NULL, path))
        return failf(s, "xs_mkdir %s: %s", path, strerror(errno));
    return set_perms(s, path);
}

/* put: writes HOME/rel = value, then sets its permissions explicitly. */
static int put(struct side *s, const char *rel, const char *value)
{
    char path[160];
    snprintf(path, sizeof(path), "%s/%s", s->home, rel);
    s->published = true;
    if (!xs_write(s->xs, XBT_NULL, path, value, (unsigned int)strlen(value)))
        return failf(s, "xs_write %s: %s", path, strerror(errno));
    return set_perms(s, path);
}

/* get: the value of PATH (malloc'd, NUL-terminated), or NULL. */
static char *get(struct side *s, const char *path)
{
    unsigned int len;
    return xs_read(s->xs, XBT_NULL, path, &len);
}

static void remove_home(struct side *s)
{
    /* Missing is fine. */
    xs_rm(s->xs, XBT_NULL, s->home);
}

/* pump: waits up to MS for a watch event or an event-channel event and
 * consumes whatever arrived. Values are always re-read by the caller, so a
 * lost or coalesced notification costs at most one tick. */
static void pump(struct side *s, int ms)
{
    struct pollfd fds[2] = {
        { .fd = xs_fileno(s->xs), .events = POLLIN },
        { .fd = xenevtchn_fd(s->xce), .events = POLLIN },
    };
    if (poll(fds, 2, ms) <= 0)
        return;
    if (fds[0].revents & POLLIN) {
        char **w;
        while ((w = xs_check_watch(s->xs)) != NULL)
            free(w);
    }
    if (fds[1].revents & POLLIN) {
        xenevtchn_port_or_error_t p = xenevtchn_pending(s->xce);
        if (p >= 0) {
            xenevtchn_unmask(s->xce, (evtchn_port_t)p);
            s->events++;
        }
    }
}

typedef bool (*state_pred)(const char *value);

/* wait_node: watches PATH until PRED accepts its value (stored in *VALUE,
 * to be freed) or the time limit passes. */
static int wait_node(struct side *s, const char *path, state_pred pred,
                     const char *what, char **value)
{
    uint64_t deadline = now_ms() + s->timeout_ms;
    char *last = NULL;
    int rc = -1;

    *value = NULL;
    if (!xs_watch(s->xs, path, WATCH_TOKEN))
        return failf(s, "xs_watch %s: %s", path, strerror(errno));
    for (;;) {
        char *v = get(s, path);
        if (v && pred(v)) {
            *value = v;
            rc = 0;
            break;
        }
        if (v) {
            free(last);
            last = v;
        }
        uint64_t now = now_ms();
        if (now >= deadline) {
            failf(s, "timed out after %u s waiting for %s to be %s (last value: %s)",
                  s->timeout_ms / 1000, path, what, last ? last : "none");
            break;
        }
        uint64_t left = deadline - now;
        pump(s, left < POLL_TICK_MS ? (int)left : POLL_TICK_MS);
    }
    free(last);
    xs_unwatch(s->xs, path, WATCH_TOKEN);
    return rc;
}

/* wait_events: waits until more than BASE events have arrived. */
static int wait_events(struct side *s, unsigned long base, const char *what)
{
    uint64_t deadline = now_ms() + s->timeout_ms;
    while (s->events <= base) {
        uint64_t now = now_ms();
        if (now >= deadline)
            return failf(s, "timed out after %u s waiting for %s",
                         s->timeout_ms / 1000, what);
        uint64_t left = deadline - now;
        pump(s, left < POLL_TICK_MS ? (int)left : POLL_TICK_MS);
    }
    return 0;
}

/* wait_cleared: waits, woken by events on our port, until the byte at P
 * (in memory the peer maps) reads 0. */
static int wait_cleared(struct side *s, const volatile uint8_t *p, const char *what)
{
    uint64_t deadline = now_ms() + s->timeout_ms;
    while (*p != 0) {
        uint64_t now = now_ms();
        if (now >= deadline)
            return failf(s, "timed out after %u s waiting for %s (still 0x%02x, %lu events)",
                         s->timeout_ms / 1000, what, (unsigned int)*p, s->events);
        uint64_t left = deadline - now;
        pump(s, left < POLL_TICK_MS ? (int)left : POLL_TICK_MS);
    }
    return 0;
}

static bool is_ready(const char *v) { return strcmp(v, "ready") == 0; }
static bool is_done(const char *v) { return strcmp(v, "done") == 0; }
static bool is_unmapped(const char *v) { return strcmp(v, "unmapped") == 0; }
static bool is_verdict(const char *v)
{
    return strcmp(v, "verified") == 0 || strncmp(v, "failed:", 7) == 0;
}
static bool is_answer(const char *v)
{
    /* The mapper may already have moved on to "unmapped" when we look. */
    return is_verdict(v) || is_unmapped(v);
}

/* ---- handles ------------------------------------------------------------ */

static int open_common(struct side *s)
{
    s->port = -1;
    s->xs = xs_open(0);
    if (!s->xs)
        return failf(s, "xs_open: %s", strerror(errno));
    /* Create the watch pipe before any watch exists. */
    if (xs_fileno(s->xs) < 0)
        return failf(s, "xs_fileno: %s", strerror(errno));
    s->xce = xenevtchn_open(NULL, 0);
    if (!s->xce)
        return failf(s, "xenevtchn_open: %s", strerror(errno));
    return 0;
}

static void close_common(struct side *s)
{
    if (s->port >= 0) {
        xenevtchn_unbind(s->xce, (evtchn_port_t)s->port);
        s->port = -1;
    }
    if (s->xce)
        xenevtchn_close(s->xce);
    if (s->xs)
        xs_close(s->xs);
    s->xce = NULL;
    s->xs = NULL;
}

static void notify(struct side *s)
{
    if (s->port >= 0 && xenevtchn_notify(s->xce, (evtchn_port_t)s->port) < 0)
        say(s, "warning: xenevtchn_notify port %d: %s", s->port, strerror(errno));
}

static void init_side(struct side *s, const char *role, unsigned int peer,
                      unsigned int timeout_ms, bool gntdev)
{
    memset(s, 0, sizeof(*s));
    s->role = role;
    s->peer = peer;
    s->timeout_ms = timeout_ms;
    s->gntdev = gntdev;
    s->port = -1;
    bool sharer = strcmp(role, "share") == 0;
    snprintf(s->home, sizeof(s->home), "/local/domain/0/data/xenguest/%s",
             sharer ? "share" : "map");
    snprintf(s->peer_home, sizeof(s->peer_home), "/local/domain/%u/data/xenguest/%s",
             peer, sharer ? "map" : "share");
}

static int result(struct side *s, int rc)
{
    const char *variant = s->gntdev ? "gntdev-" : "";
    /* The numbers for the scripts: one line of key=value (scripts/lib/xl.sh). */
    printf("COUNTERS interop role=interop-%s%s pages=%" PRIu32 " seed=%" PRIu32
           " events=%lu\n", variant, s->role, s->count, s->seed, s->events);
    if (rc == 0 && s->reason[0] == '\0')
        printf("RESULT interop-%s%s PASS\n", variant, s->role);
    else
        printf("RESULT interop-%s%s FAIL %s\n", variant, s->role,
               s->reason[0] ? s->reason : "unknown error");
    fflush(stdout);
    return rc == 0 && s->reason[0] == '\0' ? 0 : 1;
}

static void format_refs(char *buf, size_t size, const uint32_t *refs, uint32_t n)
{
    size_t off = 0;
    buf[0] = '\0';
    for (uint32_t i = 0; i < n && i < 8 && off < size; i++)
        off += (size_t)snprintf(buf + off, size - off, "%s%" PRIu32, i ? " " : "", refs[i]);
    if (n > 8 && off < size)
        snprintf(buf + off, size - off, " ...");
}

static uint32_t *word_ptr(void *pages, uint32_t page, uint32_t word)
{
    return (uint32_t *)((char *)pages + (size_t)page * PAGE_BYTES) + word;
}

/* ---- sharer ------------------------------------------------------------- */

static int run_share(unsigned int peer, uint32_t count, uint32_t seed, unsigned int timeout_ms,
                     bool gntdev)
{
    struct side s;
    xengntshr_handle *gs = NULL;
    void *pages = NULL;
    uint32_t *refs = NULL;
    char *chunk = NULL, *state = NULL;
    char path[160], value[32], shown[128];
    xenevtchn_port_or_error_t port;
    uint32_t chunks, bad = 0, first_bad = 0;
    int rc = -1;

    init_side(&s, "share", peer, timeout_ms, gntdev);
    s.count = count;
    s.seed = seed;
    /* The top byte of the last word: the notify byte of the gntdev variant. */
    if (gntdev && (seed + count * PAGE_WORDS - 1u) >> 24 == 0) {
        failf(&s, "seed %" PRIu32 " leaves the last byte of page %" PRIu32
              " zero: the mapper's unmap notify could not be seen", seed, count - 1);
        goto out;
    }
    if (open_common(&s) < 0)
        goto out;
    gs = xengntshr_open(NULL, 0);
    if (!gs) {
        failf(&s, "xengntshr_open: %s", strerror(errno));
        goto out;
    }
    /* A previous run's nodes must not be mistaken for this one's. */
    remove_home(&s);

    refs = calloc(count, sizeof(*refs));
    chunk = malloc(REFS_PER_CHUNK * 11u + 1u);
    if (!refs || !chunk) {
        failf(&s, "out of memory");
        goto out;
    }
    pages = xengntshr_share_pages(gs, peer, (int)count, refs, 1);
    if (!pages) {
        failf(&s, "xengntshr_share_pages(domain %u, %" PRIu32 " pages): %s", peer, count,
              strerror(errno));
        goto out;
    }
    format_refs(shown, sizeof(shown), refs, count);
    say(&s, "granted %" PRIu32 " pages to domain %u read-write, refs %s", count, peer, shown);

    for (uint32_t i = 0; i < count; i++)
        for (uint32_t k = 0; k < PAGE_WORDS; k++)
            *word_ptr(pages, i, k) = htole32(seed + i * PAGE_WORDS + k);
    say(&s, "filled %" PRIu32 " pages with the pattern, seed %" PRIu32, count, seed);

    port = xenevtchn_bind_unbound_port(s.xce, peer);
    if (port < 0) {
        failf(&s, "xenevtchn_bind_unbound_port(domain %u): %s", peer, strerror(errno));
        goto out;
    }
    s.port = port;
    say(&s, "allocated unbound event channel %d for domain %u", port, peer);

    /* Publish: directories first (permissions inherited), state last. */
    s.published = true;
    if (make_dir(&s, "/local/domain/0/data/xenguest") < 0 || make_dir(&s, s.home) < 0)
        goto out;
    snprintf(path, sizeof(path), "%s/refs", s.home);
    if (make_dir(&s, path) < 0)
        goto out;
    snprintf(value, sizeof(value), "%" PRIu32, count);
    if (put(&s, "count", value) < 0)
        goto out;
    snprintf(value, sizeof(value), "%" PRIu32, seed);
    if (put(&s, "seed", value) < 0)
        goto out;
    snprintf(value, sizeof(value), "%d", port);
    if (put(&s, "evtchn", value) < 0)
        goto out;
    chunks = (count + REFS_PER_CHUNK - 1) / REFS_PER_CHUNK;
    for (uint32_t j = 0; j < chunks; j++) {
        size_t off = 0;
        for (uint32_t i = j * REFS_PER_CHUNK; i < count && i < (j + 1) * REFS_PER_CHUNK; i++)
            off += (size_t)sprintf(chunk + off, "%s%" PRIu32, off ? " " : "", refs[i]);
        snprintf(path, sizeof(path), "refs/%" PRIu32, j);
        if (put(&s, path, chunk) < 0)
            goto out;
    }
    if (put(&s, "state", "ready") < 0)
        goto out;
    say(&s, "published %s: count=%" PRIu32 " seed=%" PRIu32 " evtchn=%d refs/0..%" PRIu32
        " state=ready (domain %u may read)", s.home, count, seed, port, chunks - 1, peer);

    /* Step 3: the mapper's answer. */
    snprintf(path, sizeof(path), "%s/state", s.peer_home);
    say(&s, "waiting up to %u s for %s", timeout_ms / 1000, path);
    if (gntdev) {
        /* The mapper exits without ever writing "unmapped". */
        if (wait_node(&s, path, is_verdict, "verified or failed:", &state) < 0)
            goto out;
    } else if (wait_node(&s, path, is_answer, "verified, failed: or unmapped", &state) < 0) {
        goto out;
    }
    say(&s, "mapper state: %s (%lu events so far)", state, s.events);
    if (strncmp(state, "failed:", 7) == 0)
        failf(&s, "mapper reported %s", state);
    else if (is_unmapped(state))
        say(&s, "mapper was already past verified: its reply words decide");

    for (uint32_t i = 0; i < count; i++) {
        uint32_t want = ~(seed + i * PAGE_WORDS);
        if (le32toh(*word_ptr(pages, i, 0)) != want) {
            if (bad++ == 0)
                first_bad = i;
        }
    }
    if (bad == 0) {
        say(&s, "reply words of all %" PRIu32 " pages correct", count);
    } else {
        uint32_t got = le32toh(*word_ptr(pages, first_bad, 0));
        failf(&s, "%" PRIu32 " of %" PRIu32 " reply words wrong, first page %" PRIu32
              ": 0x%08" PRIx32 " instead of 0x%08" PRIx32, bad, count, first_bad, got,
              ~(seed + first_bad * PAGE_WORDS));
        say(&s, "%s", s.reason);
    }

    if (gntdev) {
        /* Step 4 of the variant: the unmap notify. After a failure there is
         * nothing left to prove, and gntalloc keeps any page still mapped. */
        if (s.reason[0] == '\0') {
            const volatile uint8_t *last =
                (const volatile uint8_t *)pages + (size_t)count * PAGE_BYTES - 1u;
            snprintf(shown, sizeof(shown), "the unmap notify (last byte of page %" PRIu32
                     " cleared)", count - 1);
            if (wait_cleared(&s, last, shown) < 0)
                goto out;
            say(&s, "unmap notify seen: last byte of page %" PRIu32 " cleared, %lu event(s)"
                " received from the mapper", count - 1, s.events);
        }
    } else {
        /* Step 4: the unmap. */
        if (!is_unmapped(state)) {
            free(state);
            state = NULL;
            if (wait_node(&s, path, is_unmapped, "unmapped", &state) < 0)
                goto out;
        }
        say(&s, "mapper state: unmapped");
        /* The protocol's events (coalesced into one if we were slow). When
         * the answer already failed, there is nothing left to prove. */
        if (s.events == 0 && s.reason[0] == '\0') {
            if (wait_events(&s, 0, "an event from the mapper (state is written, none came)") < 0)
                goto out;
        }
        say(&s, "%lu event(s) received from the mapper", s.events);
    }

    /* Step 5: end access, free, close, done. */
    if (xengntshr_unshare(gs, pages, count) < 0) {
        pages = NULL;
        failf(&s, "xengntshr_unshare: %s", strerror(errno));
        goto out;
    }
    pages = NULL;
    /* In the variant the mapper's kernel may unmap just after its notify;
     * gntalloc then ends those grants once it has. */
    say(&s, "unshared %" PRIu32 " pages (%s)", count,
        gntdev ? "grants end once unmapped" : "grants ended");
    xenevtchn_unbind(s.xce, (evtchn_port_t)s.port);
    say(&s, "closed event channel %d", s.port);
    s.port = -1;
    if (put(&s, "state", "done") < 0)
        goto out;
    say(&s, "state=done");
    s.published = false; /* the final state stays for the peer to read */
    rc = 0;

out:
    if (pages)
        xengntshr_unshare(gs, pages, count);
    if (s.published && s.xs) {
        remove_home(&s);
        say(&s, "removed %s", s.home);
    }
    if (gs)
        xengntshr_close(gs);
    close_common(&s);
    free(state);
    free(chunk);
    free(refs);
    return result(&s, rc);
}

/* ---- mapper ------------------------------------------------------------- */

/* read_share: count, seed, evtchn and refs as the sharer published them. */
static int read_share(struct side *s, uint32_t *count, uint32_t *seed, uint32_t *port,
                      uint32_t **refs_out)
{
    char path[160];
    char *v;
    uint32_t *refs = NULL;
    struct { const char *name; uint32_t *out; } fields[] = {
        { "count", count }, { "seed", seed }, { "evtchn", port },
    };
    for (size_t f = 0; f < sizeof(fields) / sizeof(fields[0]); f++) {
        snprintf(path, sizeof(path), "%s/%s", s->peer_home, fields[f].name);
        v = get(s, path);
        if (!v)
            return failf(s, "cannot read %s: %s", path, strerror(errno));
        bool ok = parse_u32(v, NULL, fields[f].out);
        if (!ok)
            failf(s, "%s is not a decimal number: \"%s\"", path, v);
        free(v);
        if (!ok)
            return -1;
    }
    if (*count == 0 || *count > MAX_PAGES)
        return failf(s, "count %" PRIu32 " out of range", *count);
    refs = calloc(*count, sizeof(*refs));
    if (!refs)
        return failf(s, "out of memory");
    uint32_t chunks = (*count + REFS_PER_CHUNK - 1) / REFS_PER_CHUNK;
    for (uint32_t j = 0; j < chunks; j++) {
        uint32_t first = j * REFS_PER_CHUNK;
        uint32_t n = *count - first < REFS_PER_CHUNK ? *count - first : REFS_PER_CHUNK;
        snprintf(path, sizeof(path), "%s/refs/%" PRIu32, s->peer_home, j);
        v = get(s, path);
        if (!v) {
            free(refs);
            return failf(s, "cannot read %s: %s", path, strerror(errno));
        }
        const char *p = v;
        uint32_t got = 0;
        bool ok = true;
        while (ok && got < n) {
            if (got > 0 && *p++ != ' ')
                ok = false;
            else if (!parse_u32(p, &p, &refs[first + got]))
                ok = false;
            else
                got++;
        }
        if (ok && *p != '\0')
            ok = false;
        if (!ok)
            failf(s, "%s does not hold %" PRIu32 " space-separated refs: \"%.80s\"", path, n, v);
        free(v);
        if (!ok) {
            free(refs);
            return -1;
        }
    }
    *refs_out = refs;
    return 0;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static long minor_faults(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_minflt;
}

/* The map sweep of -b (the usage at the top): Linux's gntdev through
 * libxengnttab, as scripts/bench compares it with ours. */
static int bench_sweep(struct side *s, xengnttab_handle *gt, uint32_t *refs,
                       uint32_t count, uint32_t rounds)
{
    static const uint32_t sweep[] = { 1, 16, 256, 1024, 4096, 16384, 65536 };
    for (size_t j = 0; j < sizeof(sweep) / sizeof(sweep[0]) && sweep[j] <= count; j++) {
        uint32_t n = sweep[j];
        for (uint32_t r = 0; r < rounds; r++) {
            uint64_t t0 = now_ns();
            void *pages = xengnttab_map_domain_grant_refs(gt, n, s->peer, refs,
                                                          PROT_READ | PROT_WRITE);
            if (!pages)
                return failf(s, "bench: xengnttab_map_domain_grant_refs(%" PRIu32 "): %s", n,
                             strerror(errno));
            long f0 = minor_faults();
            volatile uint32_t sum = 0;
            for (uint32_t i = 0; i < n; i++)
                sum += *(volatile uint32_t *)word_ptr(pages, i, 0);
            long f1 = minor_faults();
            if (xengnttab_unmap(gt, pages, n) != 0)
                return failf(s, "bench: xengnttab_unmap(%" PRIu32 "): %s", n, strerror(errno));
            uint64_t t1 = now_ns();
            printf("BENCH map way=linux n=%" PRIu32 " round=%" PRIu32 " ns=%" PRIu64
                   " faults=%ld\n", n, r, t1 - t0, f1 - f0);
        }
    }
    return 0;
}

static int run_map(unsigned int peer, unsigned int timeout_ms, bool gntdev, uint32_t bench_rounds)
{
    struct side s;
    xengnttab_handle *gt = NULL;
    void *pages = NULL;
    void *last = NULL;  /* gntdev variant: page N-1 again, with the notify */
    uint32_t *refs = NULL;
    uint32_t count = 0, seed = 0, remote_port = 0;
    char *state = NULL;
    char path[160], shown[128];
    bool told = false;  /* the sharer has our answer */
    xenevtchn_port_or_error_t port;
    int rc = -1;

    init_side(&s, "map", peer, timeout_ms, gntdev);
    if (open_common(&s) < 0)
        goto out;
    gt = xengnttab_open(NULL, 0);
    if (!gt) {
        failf(&s, "xengnttab_open: %s", strerror(errno));
        goto out;
    }
    remove_home(&s);

    snprintf(path, sizeof(path), "%s/state", s.peer_home);
    say(&s, "waiting up to %u s for %s = ready", timeout_ms / 1000, path);
    if (wait_node(&s, path, is_ready, "ready", &state) < 0)
        goto out;
    free(state);
    state = NULL;
    if (read_share(&s, &count, &seed, &remote_port, &refs) < 0)
        goto answer;
    s.count = count;
    s.seed = seed;
    format_refs(shown, sizeof(shown), refs, count);
    say(&s, "share of domain %u: count=%" PRIu32 " seed=%" PRIu32 " evtchn=%" PRIu32
        " refs %s", peer, count, seed, remote_port, shown);
    if (bench_rounds > 0 && bench_sweep(&s, gt, refs, count, bench_rounds) < 0)
        goto answer;

    port = xenevtchn_bind_interdomain(s.xce, peer, remote_port);
    if (port < 0) {
        failf(&s, "xenevtchn_bind_interdomain(domain %u, port %" PRIu32 "): %s", peer,
              remote_port, strerror(errno));
        goto answer;
    }
    s.port = port;
    say(&s, "bound event channel: remote port %" PRIu32 ", local port %d", remote_port, port);

    pages = xengnttab_map_domain_grant_refs(gt, count, peer, refs, PROT_READ | PROT_WRITE);
    if (!pages) {
        failf(&s, "xengnttab_map_domain_grant_refs(domain %u, %" PRIu32 " refs): %s", peer,
              count, strerror(errno));
        goto answer;
    }
    say(&s, "mapped %" PRIu32 " grants read-write in one call", count);
    if (gntdev) {
        /* The notify is on page N-1's own mapping: it fires when that goes. */
        last = xengnttab_map_grant_ref_notify(gt, peer, refs[count - 1], PROT_READ | PROT_WRITE,
                                              PAGE_BYTES - 1u, (evtchn_port_t)s.port);
        if (!last) {
            failf(&s, "xengnttab_map_grant_ref_notify(domain %u, ref %" PRIu32 "): %s", peer,
                  refs[count - 1], strerror(errno));
            goto answer;
        }
        say(&s, "mapped page %" PRIu32 " (ref %" PRIu32 ") again with an unmap notify: clear"
            " byte %u, signal port %d", count - 1, refs[count - 1], PAGE_BYTES - 1u, s.port);
    }

    for (uint32_t i = 0; i < count && s.reason[0] == '\0'; i++) {
        for (uint32_t k = 0; k < PAGE_WORDS; k++) {
            uint32_t want = seed + i * PAGE_WORDS + k;
            uint32_t got = le32toh(*word_ptr(pages, i, k));
            if (got != want) {
                failf(&s, "page %" PRIu32 " word %" PRIu32 " is 0x%08" PRIx32
                      " instead of 0x%08" PRIx32, i, k, got, want);
                break;
            }
        }
    }
    if (s.reason[0] != '\0')
        goto answer;
    say(&s, "verified all %" PRIu32 " words of %" PRIu32 " pages", count * PAGE_WORDS, count);
    for (uint32_t i = 0; i < count; i++)
        *word_ptr(pages, i, 0) = htole32(~(seed + i * PAGE_WORDS));
    __sync_synchronize();
    say(&s, "wrote the reply word of every page");
    if (make_dir(&s, "/local/domain/0/data/xenguest") < 0 || make_dir(&s, s.home) < 0 ||
        put(&s, "state", "verified") < 0)
        goto out;
    notify(&s);
    told = true;
    say(&s, "state=verified, event sent");

answer:
    if (!told && s.reason[0] != '\0' && s.xs) {
        /* Tell the sharer why, as the protocol says; the node stays. */
        char msg[600];
        snprintf(msg, sizeof(msg), "failed: %s", s.reason);
        if (make_dir(&s, "/local/domain/0/data/xenguest") == 0 && make_dir(&s, s.home) == 0 &&
            put(&s, "state", msg) == 0) {
            notify(&s);
            told = true;
            say(&s, "state=%s, event sent", msg);
        }
    }
    /* Step 4, also after a failure: the sharer waits for it. */
    if (pages) {
        if (xengnttab_unmap(gt, pages, count) < 0)
            failf(&s, "xengnttab_unmap: %s", strerror(errno));
        else
            say(&s, "unmapped %" PRIu32 " grants", count);
        pages = NULL;
    }
    /* Last, so that the sharer, once notified, finds nothing mapped. */
    if (last) {
        if (xengnttab_unmap(gt, last, 1) < 0)
            failf(&s, "xengnttab_unmap of the notify page: %s", strerror(errno));
        else
            say(&s, "unmapped the notify page (the kernel clears byte %u, signals port %d)",
                PAGE_BYTES - 1u, s.port);
        last = NULL;
    }
    if (!told)
        goto out;
    if (!gntdev) {
        if (put(&s, "state", "unmapped") < 0)
            goto out;
        notify(&s);
        say(&s, "state=unmapped, event sent");
    }
    if (s.reason[0] != '\0')
        goto out;

    /* Step 5: the sharer ends access and says done. */
    snprintf(path, sizeof(path), "%s/state", s.peer_home);
    if (wait_node(&s, path, is_done, "done", &state) < 0)
        goto out;
    say(&s, "sharer state: done");
    xenevtchn_unbind(s.xce, (evtchn_port_t)s.port);
    say(&s, "closed event channel %d", s.port);
    s.port = -1;
    rc = 0;

out:
    if (pages)
        xengnttab_unmap(gt, pages, count);
    if (last)
        xengnttab_unmap(gt, last, 1);
    /* Nodes that told the sharer something stay; others are removed. */
    if (s.published && !told && s.xs) {
        remove_home(&s);
        say(&s, "removed %s", s.home);
    }
    if (gt)
        xengnttab_close(gt);
    close_common(&s);
    free(state);
    free(refs);
    return result(&s, rc);
}

/* ---- self-test ---------------------------------------------------------- */

static int run_selftest(uint32_t count, uint32_t seed, unsigned int timeout_ms)
{
    /* Stale nodes of an earlier run would confuse either role. */
    struct xs_handle *xs = xs_open(0);
    if (!xs) {
        printf("RESULT interop-selftest FAIL xs_open: %s\n", strerror(errno));
        return 1;
    }
    xs_rm(xs, XBT_NULL, "/local/domain/0/data/xenguest");
    xs_close(xs);

    printf("selftest: dom0 shares %" PRIu32 " pages with itself (seed %" PRIu32
           "), a second process maps them\n", count, seed);
    fflush(stdout);
    pid_t child = fork();
    if (child < 0) {
        printf("RESULT interop-selftest FAIL fork: %s\n", strerror(errno));
        return 1;
    }
    if (child == 0)
        _exit(run_map(0, timeout_ms, false, 0));
    int share_rc = run_share(0, count, seed, timeout_ms, false);
    int status = 0, map_rc = 1;
    if (waitpid(child, &status, 0) == child && WIFEXITED(status))
        map_rc = WEXITSTATUS(status);
    if (share_rc == 0 && map_rc == 0) {
        printf("RESULT interop-selftest PASS\n");
        return 0;
    }
    printf("RESULT interop-selftest FAIL share %s, map %s\n", share_rc ? "failed" : "passed",
           map_rc ? "failed" : "passed");
    return 1;
}

/* ---- main --------------------------------------------------------------- */

static int usage(void)
{
    fprintf(stderr,
            "usage: xen-interop [-t SECONDS] [-g] share PEER_DOMID N SEED\n"
            "       xen-interop [-t SECONDS] [-g] [-b ROUNDS] map PEER_DOMID\n"
            "       xen-interop [-t SECONDS] selftest N [SEED]\n");
    return 2;
}

int main(int argc, char **argv)
{
    uint32_t timeout_s = 30, peer, count, seed = 0xfffff000u, bench_rounds = 0;
    bool gntdev = false;
    int a = 1;

    setvbuf(stdout, NULL, _IOLBF, 0);
    for (; a < argc && argv[a][0] == '-'; a++) {
        if (strcmp(argv[a], "-g") == 0) {
            gntdev = true;
        } else if (strcmp(argv[a], "-b") == 0 && a + 1 < argc) {
            if (!parse_arg(argv[++a], &bench_rounds) || bench_rounds == 0 || bench_rounds > 1000)
                return usage();
        } else if (strcmp(argv[a], "-t") == 0 && a + 1 < argc) {
            if (!parse_arg(argv[++a], &timeout_s) || timeout_s == 0 || timeout_s > 3600)
                return usage();
        } else {
            return usage();
        }
    }
    if (a >= argc)
        return usage();
    const char *mode = argv[a++];
    int n = argc - a;
    unsigned int timeout_ms = timeout_s * 1000u;

    if (strcmp(mode, "share") == 0 && n == 3 && bench_rounds == 0) {
        if (!parse_arg(argv[a], &peer) || peer >= 0x7ff0 || !parse_arg(argv[a + 1], &count) ||
            count == 0 || count > MAX_PAGES || !parse_arg(argv[a + 2], &seed))
            return usage();
        return run_share(peer, count, seed, timeout_ms, gntdev);
    }
    if (strcmp(mode, "map") == 0 && n == 1) {
        if (!parse_arg(argv[a], &peer) || peer >= 0x7ff0)
            return usage();
        return run_map(peer, timeout_ms, gntdev, bench_rounds);
    }
    if (strcmp(mode, "selftest") == 0 && (n == 1 || n == 2) && !gntdev && bench_rounds == 0) {
        if (!parse_arg(argv[a], &count) || count == 0 || count > MAX_PAGES ||
            (n == 2 && !parse_arg(argv[a + 1], &seed)))
            return usage();
        return run_selftest(count, seed, timeout_ms);
    }
    return usage();
}
