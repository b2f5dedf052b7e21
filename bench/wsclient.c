/* wsclient.c: the C watcher client of bench/ws_fanout.py (--client c).
 *
 * One process opens its share of the benchmark's WebSocket watchers (sockets idx, idx+clients,
 * idx+2*clients, ... of --watchers, round-robin over the node URLs) and counts the event frames
 * they receive, with the same bookkeeping as the Python clients' _Sock/_Tally. It exists because
 * the Python raw client costs 16-40 us of CPU per received frame (uvloop and a Python callback per
 * socket read); this one is one epoll loop and costs 4-6 us (bench/README.md, Caveats).
 *
 * Build (ws_fanout does this at run time):  gcc -O2 -Wall -Wextra -o wsclient wsclient.c -lm
 * Run:  wsclient --idx I --clients N --watchers W --concurrency C --connect-timeout S --out DIR
 *               [--batch-us US] URL...
 *       URL = ws://127.0.0.1:PORT/path (numeric IPv4 only), one per node. C is the number of
 *       handshakes in flight for all N processes together: this one keeps max(1, C/N) in flight,
 *       and gives up on each after max(1, time left until the S-second connect cap), as in Python.
 *
 * Protocol with the orchestrator (all lines; the payloads are what the Python client sends):
 *   stdout  {"kind":"connected",...}  once every socket has opened or failed
 *   stdin   final SEQ DRAIN_S         count until every socket reached SEQ (or closed), <= DRAIN_S
 *   stdout  {"kind":"result",...,"lat_files":{"0":"DIR/wsclientI-lat0.f64",...},"per_second":{...}}
 *           each lat file holds the latencies (ms) of one node as native doubles; per_second maps
 *           an epoch second to the frames counted in it (the delivery timeline)
 *   stdin   exit                      (or EOF)  -> _exit(0) without closing the sockets
 *   stdout  {"kind":"error","message":...}  a fatal error (also on stderr), exit status 3
 *
 * Per socket: non-blocking connect, an RFC 6455 opening handshake by hand (random key, 101 and
 * Sec-WebSocket-Accept checked, no extensions or subprotocols offered), then the first text frame
 * must be the snapshot {"type":"snapshot",...,"seq":N,"server_time":...}; the LAST "seq": in it is
 * the base. Frames are parsed incrementally (split and coalesced reads, 7/16/64-bit lengths,
 * fragmented messages with control frames in between); pings get a masked pong, a close gets a
 * masked close echoing the code and the fd is closed. Text payloads are not UTF-8 validated.
 *
 * The loop, which decides the CPU per frame: one epoll set, edge-triggered, epoll_wait for up to
 * MAX_EVENTS sockets at a time. Each ready socket is read until a short read (for a stream socket
 * that means its receive queue was empty at that moment, see epoll(7); later data raises a new
 * edge), or until EAGAIN/EOF when the peer hung up. After a batch of fewer than BATCH_SMALL ready
 * sockets the loop sleeps --batch-us (default 200 us) before the next epoll_wait, so that one
 * wakeup serves many sockets; 0 turns this off.
 * Receive time: ONE clock_gettime(CLOCK_REALTIME) per epoll_wait batch, shared by every frame of
 * the batch. A frame's latency can therefore be overstated by up to --batch-us (it waited while we
 * slept) and understated by the time the batch takes to process (well under a ms at these rates).
 * An event's `at` is parsed (timegm) once per seq per process and reused for that seq's frames.
 * Most of the remaining CPU is the kernel's: the recv copy, the TCP ACK that recv sends, epoll.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define MAX_EVENTS 4096
#define BATCH_SMALL 64 /* an epoll_wait batch smaller than this is followed by the --batch-us sleep */
#define RBUF_SIZE (256 * 1024)
#define MAX_FRAME (1 << 20) /* the same cap as the Python clients' max_size */
#define MAX_RESPONSE_HEAD 16384
#define MAX_SEEN_SPAN (1 << 24) /* a seq this far past the snapshot is a broken frame */
#define STDIN_TAG UINT32_MAX
#define MAX_SECONDS 4096 /* per-second frame counts; ws_fanout's phases add up to well under this */
#define SHOW(n) ((int)((n) < 200 ? (n) : 200)) /* how much of a payload an error message quotes */

static const char WS_GUID[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
static const char EVENT_PREFIX[] = "{\"type\":\"event\",\"event\":{\"seq\":";
static const char EVENT_TYPE_PREFIX[] = "{\"type\":\"event\"";
static const char SNAPSHOT_PREFIX[] = "{\"type\":\"snapshot\"";

enum { OP_CONT = 0x0, OP_TEXT = 0x1, OP_BINARY = 0x2, OP_CLOSE = 0x8, OP_PING = 0x9, OP_PONG = 0xA };

/* phases of a socket, as RawWatcher's: connect -> handshake -> snapshot -> open -> closed;
 * failed = the open failed (not counted); idle = not attempted yet */
enum { ST_IDLE, ST_CONNECT, ST_HANDSHAKE, ST_SNAPSHOT, ST_OPEN, ST_CLOSED, ST_FAILED };
static const char *PHASE_NAME[] = {"idle", "connect", "handshake", "snapshot", "open", "closed", "failed"};

/* ------------------------------------------------------------------------------------------ */
/* small helpers                                                                               */
/* ------------------------------------------------------------------------------------------ */

static void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));

static double mono_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double wall_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double cpu_now(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec * 1e-6;
}

static void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) die("out of memory (%zu bytes)", n);
    return q;
}

static char *xstrdup(const char *s) {
    char *d = strdup(s);
    if (!d) die("out of memory");
    return d;
}

/* a JSON string literal of s (bytes >= 0x80 are passed through: close reasons are UTF-8) */
static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') fprintf(f, "\\%c", *p);
        else if (*p < 0x20 || *p == 0x7f) fprintf(f, "\\u%04x", *p);
        else fputc(*p, f);
    }
    fputc('"', f);
}

/* a Python-repr-like quoting of the first n bytes of s, for error messages */
static void quote_bytes(char *out, size_t outsz, const char *s, size_t n) {
    size_t o = 0;
    if (outsz < 4) return;
    out[o++] = '\'';
    for (size_t i = 0; i < n && o + 5 < outsz; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch >= 0x20 && ch < 0x7f && ch != '\'' && ch != '\\') out[o++] = (char)ch;
        else o += (size_t)snprintf(out + o, outsz - o, "\\x%02x", ch);
    }
    out[o++] = '\'';
    out[o] = 0;
}

/* copy at most max bytes of s, cutting only at a UTF-8 character boundary */
static void utf8_trunc(char *dst, size_t dstsz, const char *s, size_t n, size_t max) {
    if (n > max) {
        n = max;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80) n--;
    }
    if (n >= dstsz) n = dstsz - 1;
    memcpy(dst, s, n);
    dst[n] = 0;
}

/* ---- string -> count maps (errors, closes); few distinct keys, linear search is fine ---- */

typedef struct {
    char *key;
    long count;
} kv_t;

typedef struct {
    kv_t *items;
    size_t n, cap;
} counter_t;

static const char *counter_add(counter_t *c, const char *key) {
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->items[i].key, key) == 0) {
            c->items[i].count++;
            return c->items[i].key;
        }
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 8;
        c->items = xrealloc(c->items, c->cap * sizeof(kv_t));
    }
    c->items[c->n].key = xstrdup(key);
    c->items[c->n].count = 1;
    return c->items[c->n++].key;
}

static void counter_json(FILE *f, const counter_t *c) {
    fputc('{', f);
    for (size_t i = 0; i < c->n; i++) {
        if (i) fputc(',', f);
        json_str(f, c->items[i].key);
        fprintf(f, ":%ld", c->items[i].count);
    }
    fputc('}', f);
}

/* ---- growable arrays of doubles ---- */

typedef struct {
    double *v;
    size_t n, cap;
} dvec_t;

static inline void dvec_push(dvec_t *d, double x) {
    if (d->n == d->cap) {
        d->cap = d->cap ? d->cap * 2 : 4096;
        d->v = xrealloc(d->v, d->cap * sizeof(double));
    }
    d->v[d->n++] = x;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* ws_fanout.pct: the same index, Python's round() is round-half-even like nearbyint() */
static double pct(const double *sorted, size_t n, double q) {
    long idx = (long)nearbyint(q / 100.0 * (double)n + 0.5) - 1;
    if (idx < 0) idx = 0;
    if (idx > (long)n - 1) idx = (long)n - 1;
    return sorted[idx];
}

/* ------------------------------------------------------------------------------------------ */
/* SHA-1 (FIPS 180-4) and base64, just enough for Sec-WebSocket-Accept                         */
/* ------------------------------------------------------------------------------------------ */

#define ROL32(x, n) (((x) << (n)) | ((x) >> (32 - (n))))

static void sha1_block(uint32_t h[5], const uint8_t *p) {
    uint32_t w[80];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 80; i++) w[i] = ROL32(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    for (int i = 0; i < 80; i++) {
        uint32_t f, k;
        if (i < 20) f = (b & c) | (~b & d), k = 0x5A827999;
        else if (i < 40) f = b ^ c ^ d, k = 0x6ED9EBA1;
        else if (i < 60) f = (b & c) | (b & d) | (c & d), k = 0x8F1BBCDC;
        else f = b ^ c ^ d, k = 0xCA62C1D6;
        uint32_t t = ROL32(a, 5) + f + e + k + w[i];
        e = d, d = c, c = ROL32(b, 30), b = a, a = t;
    }
    h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e;
}

static void sha1(const uint8_t *msg, size_t len, uint8_t out[20]) {
    uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
    size_t i = 0;
    for (; i + 64 <= len; i += 64) sha1_block(h, msg + i);
    uint8_t tail[128] = {0};
    size_t rest = len - i;
    memcpy(tail, msg + i, rest);
    tail[rest] = 0x80;
    size_t tlen = rest + 1 + 8 <= 64 ? 64 : 128;
    uint64_t bits = (uint64_t)len * 8;
    for (int j = 0; j < 8; j++) tail[tlen - 1 - j] = (uint8_t)(bits >> (8 * j));
    sha1_block(h, tail);
    if (tlen == 128) sha1_block(h, tail + 64);
    for (int j = 0; j < 5; j++) {
        out[4 * j] = (uint8_t)(h[j] >> 24);
        out[4 * j + 1] = (uint8_t)(h[j] >> 16);
        out[4 * j + 2] = (uint8_t)(h[j] >> 8);
        out[4 * j + 3] = (uint8_t)h[j];
    }
}

static void base64(const uint8_t *in, size_t n, char *out) {
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0) | (i + 2 < n ? in[i + 2] : 0);
        out[o++] = tbl[(v >> 18) & 63];
        out[o++] = tbl[(v >> 12) & 63];
        out[o++] = i + 1 < n ? tbl[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < n ? tbl[v & 63] : '=';
    }
    out[o] = 0;
}

/* Sec-WebSocket-Accept for key: base64(sha1(key + GUID)); out holds >= 29 bytes */
static void ws_accept(const char *key, char *out) {
    char buf[128];
    uint8_t dig[20];
    int n = snprintf(buf, sizeof buf, "%s%s", key, WS_GUID);
    sha1((const uint8_t *)buf, (size_t)n, dig);
    base64(dig, 20, out);
}

/* xorshift64* for frame masks (keys come from getrandom) */
static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;
static uint32_t rng32(void) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 0x2545F4914F6CDD1DULL) >> 32);
}

static void random_bytes(void *buf, size_t n) {
    uint8_t *p = buf;
    while (n) {
        ssize_t r = getrandom(p, n, 0);
        if (r < 0) {
            if (errno == EINTR) continue;
            die("getrandom: %s", strerror(errno));
        }
        p += r, n -= (size_t)r;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* the state                                                                                   */
/* ------------------------------------------------------------------------------------------ */

typedef struct conn {
    int fd;
    uint8_t state;
    uint8_t done;         /* reached the final seq (or closed) after "final" */
    uint8_t frag_op;      /* opcode of the fragmented message being assembled, 0 = none */
    uint8_t want_out;     /* EPOLLOUT is in the interest set */
    int node;
    int slot;             /* index in the in-flight table while opening, -1 otherwise */
    int64_t base, last;   /* snapshot seq, highest seq seen */
    uint8_t *seen;        /* seen[seq - base - 1] */
    size_t seen_cap;
    long frames, dups, ooo, gaps;
    const char *closed;   /* interned reason once closed after opening */
    uint8_t *rbuf;        /* the handshake head, then an incomplete frame carried over */
    size_t rlen, rcap, need;
    uint8_t *frag;        /* the fragmented message so far */
    size_t flen, fcap;
    uint8_t *wbuf;        /* output not yet accepted by the kernel */
    size_t wlen, wcap;
    double t0, deadline;  /* monotonic: attempt start, give-up time */
    char key[25];
} conn_t;

typedef struct {
    struct sockaddr_in addr;
    char hostport[64];
    char path[1024];
} node_t;

typedef struct {
    uint32_t count;
    double first, last, at;
} pe_t;

static struct {
    int idx, clients, watchers, concurrency, sem;
    long batch_us;
    double connect_timeout;
    const char *outdir;
    node_t *nodes;
    int nnodes;
    conn_t *conns;
    int nconns;
    int epfd;
    /* opening */
    int next_start, ok, failed_n;
    int *inflight;
    int ninflight;
    double connect_deadline;
    counter_t errors;
    dvec_t handshake_ms;
    long *per_node_ok;
    /* counting */
    dvec_t *lat;          /* per node, ms */
    pe_t *pe;             /* per event, indexed seq - pe_lo */
    int64_t pe_lo;
    size_t pe_n;
    long per_sec[MAX_SECONDS]; /* frames counted in epoch second sec_lo + k */
    int64_t sec_lo;
    counter_t closed_during;
    int have_final;
    int64_t final_seq;
    long pending;
    double now;           /* wall time of the current epoll_wait batch */
    /* stdin */
    char in_buf[4096];
    size_t in_len;
    int got_exit;
    double drain_s;
    /* diagnostics: epoll_wait calls and ready sockets they returned */
    long epoll_waits, ready_events;
} G;

static uint8_t RBUF[RBUF_SIZE];

static void die(const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "wsclient%d: fatal: %s\n", G.idx, msg);
    fputs("{\"kind\":\"error\",\"message\":", stdout);
    json_str(stdout, msg);
    fputs("}\n", stdout);
    fflush(stdout);
    _exit(3);
}

/* ------------------------------------------------------------------------------------------ */
/* output to a socket                                                                          */
/* ------------------------------------------------------------------------------------------ */

static void set_interest(conn_t *c, uint32_t ev) {
    struct epoll_event e = {.events = ev, .data.u32 = (uint32_t)(c - G.conns)};
    if (epoll_ctl(G.epfd, EPOLL_CTL_MOD, c->fd, &e) < 0) die("epoll_ctl MOD: %s", strerror(errno));
}

static void conn_write(conn_t *c, const void *data, size_t n) {
    if (c->fd < 0) return;
    if (c->wlen == 0) {
        ssize_t r = send(c->fd, data, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (r == (ssize_t)n) return;
        if (r < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK) return; /* broken: the read side will see it */
            r = 0;
        }
        data = (const uint8_t *)data + r;
        n -= (size_t)r;
    }
    if (c->wlen + n > c->wcap) {
        c->wcap = (c->wlen + n) * 2;
        c->wbuf = xrealloc(c->wbuf, c->wcap);
    }
    memcpy(c->wbuf + c->wlen, data, n);
    c->wlen += n;
    if (!c->want_out) {
        c->want_out = 1;
        set_interest(c, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET);
    }
}

static void conn_flush(conn_t *c) {
    while (c->wlen) {
        ssize_t r = send(c->fd, c->wbuf, c->wlen, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (r < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;
            c->wlen = 0; /* broken */
            break;
        }
        memmove(c->wbuf, c->wbuf + r, c->wlen - (size_t)r);
        c->wlen -= (size_t)r;
    }
    if (c->want_out) {
        c->want_out = 0;
        set_interest(c, EPOLLIN | EPOLLRDHUP | EPOLLET);
    }
}

/* one masked client frame (RFC 6455 5.1: client frames MUST be masked) */
static void send_frame(conn_t *c, int opcode, const uint8_t *payload, size_t n) {
    uint8_t f[14 + 125];
    if (n > 125) n = 125; /* only control frames are sent */
    uint32_t m = rng32();
    uint8_t mask[4] = {(uint8_t)m, (uint8_t)(m >> 8), (uint8_t)(m >> 16), (uint8_t)(m >> 24)};
    f[0] = (uint8_t)(0x80 | opcode);
    f[1] = (uint8_t)(0x80 | n);
    memcpy(f + 2, mask, 4);
    for (size_t i = 0; i < n; i++) f[6 + i] = payload[i] ^ mask[i & 3];
    conn_write(c, f, 6 + n);
}

static void send_close(conn_t *c, int code) {
    uint8_t p[2] = {(uint8_t)(code >> 8), (uint8_t)code};
    send_frame(c, OP_CLOSE, p, code == 1005 ? 0 : 2);
}

/* close our side; whatever is still unsent goes with one last try (close replies are 8 bytes) */
static void conn_close_fd(conn_t *c) {
    if (c->fd < 0) return;
    if (c->wlen) send(c->fd, c->wbuf, c->wlen, MSG_NOSIGNAL | MSG_DONTWAIT);
    close(c->fd); /* also leaves the epoll set */
    c->fd = -1;
    c->wlen = 0;
    free(c->rbuf);
    c->rbuf = NULL;
    c->rlen = c->rcap = c->need = 0;
    free(c->frag);
    c->frag = NULL;
    c->flen = c->fcap = 0;
    free(c->wbuf);
    c->wbuf = NULL;
    c->wcap = 0;
}

/* ------------------------------------------------------------------------------------------ */
/* outcomes of one socket                                                                      */
/* ------------------------------------------------------------------------------------------ */

static void start_more(void);

static void leave_inflight(conn_t *c) {
    if (c->slot < 0) return;
    int last = G.inflight[--G.ninflight];
    G.inflight[c->slot] = last;
    G.conns[last].slot = c->slot;
    c->slot = -1;
}

/* the open failed: counted under `why`, the socket is closed and never counted */
static void connect_failed(conn_t *c, const char *why) {
    char key[256];
    utf8_trunc(key, sizeof key, why, strlen(why), 200);
    counter_add(&G.errors, key);
    G.failed_n++;
    c->state = ST_FAILED;
    leave_inflight(c);
    conn_close_fd(c);
}

static void mark_done(conn_t *c) {
    if (G.have_final && !c->done) {
        c->done = 1;
        G.pending--;
    }
}

/* an open socket ended: closed by the server, lost, or a protocol error */
static void sock_closed(conn_t *c, const char *why) {
    char key[200];
    utf8_trunc(key, sizeof key, why, strlen(why), 160);
    c->closed = counter_add(&G.closed_during, key);
    c->state = ST_CLOSED;
    mark_done(c); /* a closed socket gets nothing more: do not wait for it in the drain */
    conn_close_fd(c);
}

/* EOF or an error from recv/connect */
static void conn_lost(conn_t *c, int err) {
    char why[256];
    if (err) snprintf(why, sizeof why, "connection lost: [Errno %d] %s", err, strerror(err));
    else snprintf(why, sizeof why, "connection lost");
    if (c->state == ST_OPEN) {
        sock_closed(c, why);
    } else {
        char w2[300];
        snprintf(w2, sizeof w2, "%s %s", c->state == ST_SNAPSHOT ? "snapshot" : "handshake", why);
        connect_failed(c, w2);
    }
}

/* the server broke RFC 6455: answer with a close carrying `code`, then as RawWatcher._fail */
static void protocol_error(conn_t *c, int code, const char *msg) {
    char why[300];
    send_close(c, code);
    if (c->state == ST_SNAPSHOT) {
        snprintf(why, sizeof why, "snapshot WsProtocolError: %.140s", msg);
        connect_failed(c, why);
    } else {
        snprintf(why, sizeof why, "WsProtocolError: %.140s", msg);
        sock_closed(c, why);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* frames                                                                                      */
/* ------------------------------------------------------------------------------------------ */

/* "YYYY-MM-DDTHH:MM:SS[.f...](Z|+HH:MM|-HH:MM)" -> epoch seconds; NAN if malformed.
 * core.timefmt.iso writes milliseconds and Z; any fraction length is accepted. */
static double parse_at(const char *s, size_t n) {
    int v[6];
    static const int pos[6] = {0, 5, 8, 11, 14, 17}, len[6] = {4, 2, 2, 2, 2, 2};
    if (n < 20 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') || s[13] != ':' ||
        s[16] != ':')
        return NAN;
    for (int k = 0; k < 6; k++) {
        int x = 0;
        for (int j = 0; j < len[k]; j++) {
            char ch = s[pos[k] + j];
            if (ch < '0' || ch > '9') return NAN;
            x = x * 10 + (ch - '0');
        }
        v[k] = x;
    }
    size_t i = 19;
    double frac = 0, scale = 0.1;
    if (i < n && s[i] == '.') {
        i++;
        size_t d0 = i;
        while (i < n && s[i] >= '0' && s[i] <= '9') frac += (s[i++] - '0') * scale, scale /= 10;
        if (i == d0) return NAN;
    }
    double offset = 0;
    if (i + 1 == n && (s[i] == 'Z' || s[i] == 'z')) {
        /* UTC */
    } else if (i + 6 == n && (s[i] == '+' || s[i] == '-') && s[i + 3] == ':') {
        int hh = (s[i + 1] - '0') * 10 + (s[i + 2] - '0'), mm = (s[i + 4] - '0') * 10 + (s[i + 5] - '0');
        offset = (s[i] == '+' ? 1 : -1) * (hh * 3600.0 + mm * 60.0);
    } else {
        return NAN;
    }
    struct tm tm = {0};
    tm.tm_year = v[0] - 1900, tm.tm_mon = v[1] - 1, tm.tm_mday = v[2];
    tm.tm_hour = v[3], tm.tm_min = v[4], tm.tm_sec = v[5];
    return (double)timegm(&tm) + frac - offset;
}

/* one more frame in the second of `now`; a clock stepped back or a run longer than MAX_SECONDS
 * counts in the first or last slot rather than nowhere */
static void count_second(double now) {
    int64_t sec = (int64_t)now;
    if (!G.sec_lo) G.sec_lo = sec;
    int64_t k = sec - G.sec_lo;
    if (k < 0) k = 0;
    if (k >= MAX_SECONDS) k = MAX_SECONDS - 1;
    G.per_sec[k]++;
}

static pe_t *pe_slot(int64_t seq) {
    if (G.pe_n == 0) {
        G.pe_lo = seq;
        G.pe_n = 64;
        G.pe = xrealloc(NULL, G.pe_n * sizeof(pe_t));
        memset(G.pe, 0, G.pe_n * sizeof(pe_t));
    }
    if (seq < G.pe_lo) { /* a lower seq than the first one counted: shift up */
        size_t shift = (size_t)(G.pe_lo - seq);
        if (shift > MAX_SEEN_SPAN) die("event seq %lld is far below %lld", (long long)seq, (long long)G.pe_lo);
        G.pe = xrealloc(G.pe, (G.pe_n + shift) * sizeof(pe_t));
        memmove(G.pe + shift, G.pe, G.pe_n * sizeof(pe_t));
        memset(G.pe, 0, shift * sizeof(pe_t));
        G.pe_n += shift;
        G.pe_lo = seq;
    }
    size_t off = (size_t)(seq - G.pe_lo);
    if (off >= G.pe_n) {
        if (off > 4 * (size_t)MAX_SEEN_SPAN) die("event seq %lld is far above %lld", (long long)seq, (long long)G.pe_lo);
        size_t n = G.pe_n * 2 > off + 64 ? G.pe_n * 2 : off + 64;
        G.pe = xrealloc(G.pe, n * sizeof(pe_t));
        memset(G.pe + G.pe_n, 0, (n - G.pe_n) * sizeof(pe_t));
        G.pe_n = n;
    }
    return &G.pe[off];
}

/* one text frame on an open socket: count it if it is an event (the _Tally.on_text rules) */
static void on_event_text(conn_t *c, const char *p, size_t n) {
    const size_t pl = sizeof EVENT_PREFIX - 1;
    if (n < pl || memcmp(p, EVENT_PREFIX, pl) != 0) {
        if (n >= sizeof EVENT_TYPE_PREFIX - 1 && memcmp(p, EVENT_TYPE_PREFIX, sizeof EVENT_TYPE_PREFIX - 1) == 0)
            die("an event frame in an unexpected format: %.*s", SHOW(n), p);
        return; /* pong, error, other frames */
    }
    size_t i = pl;
    int64_t seq = 0;
    size_t d0 = i;
    while (i < n && p[i] >= '0' && p[i] <= '9' && i - d0 < 18) seq = seq * 10 + (p[i++] - '0');
    if (i == d0 || i >= n || p[i] != ',') die("an event frame without a numeric seq: %.*s", SHOW(n), p);
    c->frames++;
    int64_t off = seq - c->base - 1;
    if (off < 0) { /* already in the snapshot */
        c->dups++;
        return;
    }
    if (off >= MAX_SEEN_SPAN) die("event seq %lld is more than %d past the snapshot's %lld", (long long)seq,
                                  MAX_SEEN_SPAN, (long long)c->base);
    if ((size_t)off >= c->seen_cap) {
        size_t cap = c->seen_cap * 2 > (size_t)off + 64 ? c->seen_cap * 2 : (size_t)off + 64;
        c->seen = xrealloc(c->seen, cap);
        memset(c->seen + c->seen_cap, 0, cap - c->seen_cap);
        c->seen_cap = cap;
    }
    if (c->seen[off]) {
        c->dups++;
        return;
    }
    c->seen[off] = 1;
    if (seq < c->last) c->ooo++;
    else if (seq > c->last + 1) c->gaps++;
    if (seq > c->last) c->last = seq;

    double now = G.now;
    pe_t *e = pe_slot(seq);
    if (e->count == 0) {
        /* the first frame of this seq in this process: parse its `at` */
        static const char AT[] = "\"at\":\"";
        const char *a = memmem(p + i, n - i, AT, sizeof AT - 1);
        if (!a) die("an event frame without \"at\": %.*s", SHOW(n), p);
        a += sizeof AT - 1;
        const char *q = memchr(a, '"', (size_t)(p + n - a));
        if (!q) die("an event frame with an unterminated \"at\": %.*s", SHOW(n), p);
        double at = parse_at(a, (size_t)(q - a));
        if (isnan(at)) die("an event frame with an unparsable \"at\" %.*s", (int)(q - a), a);
        e->count = 1, e->first = now, e->last = now, e->at = at;
    } else {
        e->count++;
        if (now < e->first) e->first = now;
        if (now > e->last) e->last = now;
    }
    dvec_push(&G.lat[c->node], (now - e->at) * 1000.0);
    count_second(now);
    if (G.have_final && c->last >= G.final_seq) mark_done(c);
}

/* the first text frame: the snapshot; its last "seq": is the base */
static void on_snapshot_text(conn_t *c, const char *p, size_t n) {
    char why[300], q[200];
    const size_t sl = sizeof SNAPSHOT_PREFIX - 1;
    if (n < sl || memcmp(p, SNAPSHOT_PREFIX, sl) != 0) {
        utf8_trunc(q, sizeof q, p, n, 120);
        snprintf(why, sizeof why, "first frame not a snapshot: %s", q);
        connect_failed(c, why);
        return;
    }
    static const char SEQ[] = "\"seq\":";
    const char *hit = NULL;
    for (const char *s = p; (s = memmem(s, (size_t)(p + n - s), SEQ, sizeof SEQ - 1)) != NULL; s++) hit = s;
    int64_t seq = 0;
    int neg = 0;
    size_t i = hit ? (size_t)(hit - p) + sizeof SEQ - 1 : n;
    if (i < n && p[i] == '-') neg = 1, i++;
    size_t d0 = i;
    while (i < n && p[i] >= '0' && p[i] <= '9' && i - d0 < 18) seq = seq * 10 + (p[i++] - '0');
    if (!hit || i == d0 || i >= n || (p[i] != ',' && p[i] != '}')) {
        connect_failed(c, hit ? "snapshot ValueError: \"seq\" is not an integer" : "snapshot KeyError: 'seq'");
        return;
    }
    c->base = c->last = neg ? -seq : seq;
    c->state = ST_OPEN;
    dvec_push(&G.handshake_ms, (mono_now() - c->t0) * 1000.0);
    G.ok++;
    G.per_node_ok[c->node]++;
    leave_inflight(c);
}

static void on_text(conn_t *c, const char *p, size_t n) {
    if (c->state == ST_OPEN) on_event_text(c, p, n);
    else if (c->state == ST_SNAPSHOT) on_snapshot_text(c, p, n);
}

static void on_close_frame(conn_t *c, const uint8_t *p, size_t n) {
    int code = 1005;
    char reason[200] = "", why[260];
    if (n >= 2) {
        code = p[0] << 8 | p[1];
        utf8_trunc(reason, sizeof reason, (const char *)p + 2, n - 2, 160);
    }
    send_close(c, code); /* echo the code, then close our side (RFC 6455 5.5.1) */
    snprintf(why, sizeof why, "close %d: %s", code, reason);
    if (c->state == ST_OPEN) {
        sock_closed(c, why);
    } else {
        char w2[300];
        snprintf(w2, sizeof w2, "snapshot ConnectionClosed: %.160s", why);
        connect_failed(c, w2);
    }
}

/* a frame other than the hot path (FIN text outside a fragmented message) */
static void on_frame(conn_t *c, int fin, int op, const uint8_t *p, size_t n) {
    char msg[100];
    if (op >= 8) {
        if (!fin || n > 125) {
            protocol_error(c, 1002, "fragmented or oversized control frame");
            return;
        }
        if (op == OP_PING) send_frame(c, OP_PONG, p, n);
        else if (op == OP_PONG) { /* nothing */
        } else if (op == OP_CLOSE) on_close_frame(c, p, n);
        else {
            snprintf(msg, sizeof msg, "unknown opcode %d", op);
            protocol_error(c, 1002, msg);
        }
        return;
    }
    if (op == OP_CONT) {
        if (!c->frag_op) {
            protocol_error(c, 1002, "continuation frame without a message to continue");
            return;
        }
        if (c->flen + n > MAX_FRAME) {
            snprintf(msg, sizeof msg, "message of more than %d bytes", MAX_FRAME);
            protocol_error(c, 1009, msg);
            return;
        }
    } else if (op == OP_TEXT || op == OP_BINARY) {
        if (c->frag_op) {
            protocol_error(c, 1002, "new message while a fragmented one is unfinished");
            return;
        }
        if (fin) {
            if (op == OP_TEXT) on_text(c, (const char *)p, n);
            else if (c->state == ST_SNAPSHOT) {
                char q[600], why[700];
                quote_bytes(q, sizeof q, (const char *)p, n < 120 ? n : 120);
                snprintf(why, sizeof why, "first frame not a snapshot: b%s", q);
                connect_failed(c, why);
            }
            return;
        }
        c->frag_op = (uint8_t)op;
        c->flen = 0;
    } else {
        snprintf(msg, sizeof msg, "unknown opcode %d", op);
        protocol_error(c, 1002, msg);
        return;
    }
    if (c->flen + n > c->fcap) {
        c->fcap = (c->flen + n) * 2;
        c->frag = xrealloc(c->frag, c->fcap);
    }
    memcpy(c->frag + c->flen, p, n);
    c->flen += n;
    if (!fin) return;
    int mop = c->frag_op;
    c->frag_op = 0;
    size_t len = c->flen;
    c->flen = 0;
    if (mop == OP_TEXT) on_text(c, (const char *)c->frag, len);
    else if (c->state == ST_SNAPSHOT) connect_failed(c, "first frame not a snapshot: (a binary message)");
}

/* parse whole frames from p[0..n); returns the bytes consumed (the rest is an incomplete frame,
 * c->need = its length so far needed to make progress), or n if the socket ended meanwhile */
static size_t parse_frames(conn_t *c, const uint8_t *p, size_t n) {
    size_t i = 0;
    char msg[100];
    while (c->state == ST_OPEN || c->state == ST_SNAPSHOT) {
        size_t avail = n - i;
        if (avail < 2) {
            c->need = 2;
            return i;
        }
        uint8_t b0 = p[i], b1 = p[i + 1];
        uint64_t len = b1 & 0x7F;
        size_t h = 2;
        if (len == 126) {
            if (avail < 4) {
                c->need = 4;
                return i;
            }
            len = (uint64_t)p[i + 2] << 8 | p[i + 3];
            h = 4;
        } else if (len == 127) {
            if (avail < 10) {
                c->need = 10;
                return i;
            }
            len = 0;
            for (int k = 0; k < 8; k++) len = len << 8 | p[i + 2 + k];
            h = 10;
        }
        if (b1 & 0x80) {
            protocol_error(c, 1002, "masked frame from the server");
            break;
        }
        if (b0 & 0x70) {
            protocol_error(c, 1002, "RSV bits set, but no extension was negotiated");
            break;
        }
        if (len > MAX_FRAME) {
            snprintf(msg, sizeof msg, "frame of %llu bytes > %d", (unsigned long long)len, MAX_FRAME);
            protocol_error(c, 1009, msg);
            break;
        }
        if (avail < h + len) {
            c->need = h + (size_t)len;
            return i;
        }
        const uint8_t *payload = p + i + h;
        i += h + (size_t)len;
        if (b0 == 0x81 && !c->frag_op) on_text(c, (const char *)payload, (size_t)len); /* the hot path */
        else on_frame(c, b0 & 0x80, b0 & 0x0F, payload, (size_t)len);
    }
    return n;
}

static void rbuf_append(conn_t *c, const uint8_t *data, size_t n) {
    if (c->rlen + n > c->rcap) {
        c->rcap = (c->rlen + n) * 2 > 4096 ? (c->rlen + n) * 2 : 4096;
        c->rbuf = xrealloc(c->rbuf, c->rcap);
    }
    memcpy(c->rbuf + c->rlen, data, n);
    c->rlen += n;
}

/* frames from a read: parse straight from the read buffer unless a partial frame is pending */
static void feed_frames(conn_t *c, const uint8_t *data, size_t n) {
    if (c->rlen) {
        rbuf_append(c, data, n);
        if (c->rlen < c->need) return;
        size_t used = parse_frames(c, c->rbuf, c->rlen);
        if (c->fd < 0) return;
        memmove(c->rbuf, c->rbuf + used, c->rlen - used);
        c->rlen -= used;
    } else {
        size_t used = parse_frames(c, data, n);
        if (c->fd < 0 || used == n) return;
        rbuf_append(c, data + used, n - used);
    }
    if (c->rlen == 0 && c->rcap > 65536) { /* do not keep a big frame's buffer per socket */
        free(c->rbuf);
        c->rbuf = NULL;
        c->rcap = 0;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* the opening handshake                                                                       */
/* ------------------------------------------------------------------------------------------ */

static int ieq(const char *a, size_t an, const char *b) {
    size_t bn = strlen(b);
    return an == bn && strncasecmp(a, b, an) == 0;
}

static void trim(const char **s, size_t *n) {
    while (*n && (**s == ' ' || **s == '\t')) (*s)++, (*n)--;
    while (*n && ((*s)[*n - 1] == ' ' || (*s)[*n - 1] == '\t')) (*n)--;
}

/* NULL if the response head (status line + headers, no blank line) accepts the upgrade, else why
 * (written into out), as ws_fanout.check_upgrade_response */
static const char *check_upgrade(const char *head, size_t n, const char *key, char *out, size_t outsz) {
    const char *eol = memmem(head, n, "\r\n", 2);
    size_t sl = eol ? (size_t)(eol - head) : n;
    char status[200];
    const char *st = head;
    size_t stn = sl;
    trim(&st, &stn);
    utf8_trunc(status, sizeof status, st, stn, 160);
    const char *sp = memchr(st, ' ', stn);
    if (stn < 12 || strncmp(st, "HTTP/1.", 7) != 0 || !sp || (size_t)(sp - st) + 4 > stn ||
        memcmp(sp + 1, "101", 3) != 0 || ((size_t)(sp - st) + 4 < stn && sp[4] != ' ')) {
        snprintf(out, outsz, "%s", status[0] ? status : "empty response");
        return out;
    }
    char accept[32];
    ws_accept(key, accept);
    int upgrade_ok = 0, upgrade_seen = 0, conn_upgrade = 0, accept_ok = 0, accept_seen = 0;
    char upgrade_val[100] = "None", conn_val[200] = "None", accept_val[100] = "None";
    const char *p = eol ? eol + 2 : head + n;
    const char *end = head + n;
    while (p < end) {
        const char *le = memmem(p, (size_t)(end - p), "\r\n", 2);
        size_t ln = le ? (size_t)(le - p) : (size_t)(end - p);
        const char *colon = memchr(p, ':', ln);
        if (!colon) {
            char q[300];
            quote_bytes(q, sizeof q, p, ln < 80 ? ln : 80);
            snprintf(out, outsz, "%s: malformed header line %s", status, q);
            return out;
        }
        const char *name = p, *val = colon + 1;
        size_t nn = (size_t)(colon - p), vn = ln - nn - 1;
        trim(&name, &nn);
        trim(&val, &vn);
        if (ieq(name, nn, "upgrade")) {
            upgrade_ok = !upgrade_seen && ieq(val, vn, "websocket");
            upgrade_seen = 1;
            quote_bytes(upgrade_val, sizeof upgrade_val, val, vn < 40 ? vn : 40);
        } else if (ieq(name, nn, "connection")) {
            quote_bytes(conn_val, sizeof conn_val, val, vn < 80 ? vn : 80);
            const char *t = val, *ve = val + vn;
            while (t < ve) {
                const char *comma = memchr(t, ',', (size_t)(ve - t));
                const char *te = comma ? comma : ve;
                const char *tok = t;
                size_t tn = (size_t)(te - t);
                trim(&tok, &tn);
                if (ieq(tok, tn, "upgrade")) conn_upgrade = 1;
                t = comma ? comma + 1 : ve;
            }
        } else if (ieq(name, nn, "sec-websocket-accept")) {
            accept_ok = !accept_seen && vn == strlen(accept) && memcmp(val, accept, vn) == 0;
            accept_seen = 1;
            quote_bytes(accept_val, sizeof accept_val, val, vn < 40 ? vn : 40);
        } else if (ieq(name, nn, "sec-websocket-extensions") || ieq(name, nn, "sec-websocket-protocol")) {
            char q[200], lname[40];
            size_t k;
            for (k = 0; k < nn && k < sizeof lname - 1; k++) lname[k] = (char)(name[k] | 0x20);
            lname[k] = 0;
            quote_bytes(q, sizeof q, val, vn < 80 ? vn : 80);
            snprintf(out, outsz, "%s: unexpected %s %s", status, lname, q);
            return out;
        }
        p = le ? le + 2 : end;
    }
    if (!upgrade_ok) snprintf(out, outsz, "%s: Upgrade is %s", status, upgrade_val);
    else if (!conn_upgrade) snprintf(out, outsz, "%s: Connection is %s", status, conn_val);
    else if (!accept_ok) snprintf(out, outsz, "%s: Sec-WebSocket-Accept %s does not match the key", status, accept_val);
    else return NULL;
    return out;
}

static void on_handshake_data(conn_t *c, const uint8_t *data, size_t n) {
    size_t from = c->rlen > 3 ? c->rlen - 3 : 0;
    rbuf_append(c, data, n);
    const uint8_t *e = memmem(c->rbuf + from, c->rlen - from, "\r\n\r\n", 4);
    char why[800], problem[700];
    if (!e) {
        if (c->rlen > MAX_RESPONSE_HEAD) {
            snprintf(why, sizeof why, "InvalidHandshake: response head over %d bytes", MAX_RESPONSE_HEAD);
            connect_failed(c, why);
        }
        return;
    }
    size_t headlen = (size_t)(e - c->rbuf);
    if (check_upgrade((const char *)c->rbuf, headlen, c->key, problem, sizeof problem)) {
        snprintf(why, sizeof why, "InvalidHandshake: %s", problem);
        connect_failed(c, why);
        return;
    }
    c->state = ST_SNAPSHOT;
    /* whatever followed the head are frames; the head's buffer goes (no 4 KB kept per socket) */
    size_t rest = c->rlen - headlen - 4;
    uint8_t *head = c->rbuf;
    c->rbuf = NULL;
    c->rlen = c->rcap = c->need = 0;
    if (rest) feed_frames(c, head + headlen + 4, rest);
    free(head);
}

/* ------------------------------------------------------------------------------------------ */
/* sockets                                                                                     */
/* ------------------------------------------------------------------------------------------ */

static const char *errno_class(int err) {
    switch (err) {
    case ECONNREFUSED: return "ConnectionRefusedError";
    case ECONNRESET: return "ConnectionResetError";
    case ECONNABORTED: return "ConnectionAbortedError";
    case ETIMEDOUT: return "TimeoutError";
    default: return "OSError";
    }
}

static void send_request(conn_t *c) {
    char req[1400];
    node_t *nd = &G.nodes[c->node];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n",
                     nd->path, nd->hostport, c->key);
    c->state = ST_HANDSHAKE;
    conn_write(c, req, (size_t)n);
}

static void start_one(conn_t *c) {
    char why[200];
    c->t0 = mono_now();
    if (c->t0 > G.connect_deadline) {
        counter_add(&G.errors, "connect cap reached before attempt");
        G.failed_n++;
        c->state = ST_FAILED;
        return;
    }
    double left = G.connect_deadline - c->t0;
    c->deadline = c->t0 + (left > 1.0 ? left : 1.0);
    uint8_t raw[16];
    random_bytes(raw, sizeof raw);
    base64(raw, sizeof raw, c->key);
    c->state = ST_CONNECT;
    c->slot = G.ninflight;
    G.inflight[G.ninflight++] = (int)(c - G.conns);
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        snprintf(why, sizeof why, "OSError: [Errno %d] %s", errno, strerror(errno));
        connect_failed(c, why);
        return;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct epoll_event e = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.u32 = (uint32_t)(c - G.conns)};
    c->want_out = 1;
    if (epoll_ctl(G.epfd, EPOLL_CTL_ADD, c->fd, &e) < 0) die("epoll_ctl ADD: %s", strerror(errno));
    if (connect(c->fd, (struct sockaddr *)&G.nodes[c->node].addr, sizeof(struct sockaddr_in)) < 0 &&
        errno != EINPROGRESS) {
        int err = errno;
        snprintf(why, sizeof why, "%s: [Errno %d] %s", errno_class(err), err, strerror(err));
        connect_failed(c, why);
    }
    /* the connect's completion shows up as EPOLLOUT */
}

/* start attempts while fewer than --concurrency/--clients are in flight (the semaphore) */
static void start_more(void) {
    while (G.next_start < G.nconns && G.ninflight < G.sem) start_one(&G.conns[G.next_start++]);
}

static void check_timeouts(double mono) {
    char why[100];
    for (int k = 0; k < G.ninflight;) {
        conn_t *c = &G.conns[G.inflight[k]];
        if (mono >= c->deadline) {
            snprintf(why, sizeof why, "TimeoutError: timed out during %s", PHASE_NAME[c->state]);
            connect_failed(c, why); /* swaps another entry into slot k */
        } else {
            k++;
        }
    }
}

static void on_readable(conn_t *c, uint32_t events) {
    /* stop at a short read unless the peer hung up: then read to EOF/EAGAIN to see the end */
    int to_the_end = (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0;
    for (;;) {
        ssize_t r = recv(c->fd, RBUF, RBUF_SIZE, 0);
        if (r > 0) {
            if (c->state == ST_HANDSHAKE) on_handshake_data(c, RBUF, (size_t)r);
            else feed_frames(c, RBUF, (size_t)r);
            if (c->fd < 0) return;
            if ((size_t)r < RBUF_SIZE && !to_the_end) return;
        } else if (r == 0) {
            conn_lost(c, 0);
            return;
        } else if (errno == EINTR) {
            continue;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return;
        } else {
            conn_lost(c, errno);
            return;
        }
    }
}

static void on_conn_event(conn_t *c, uint32_t events) {
    if (c->fd < 0) return; /* closed earlier in this batch */
    if (c->state == ST_CONNECT) {
        if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) {
            char why[200];
            snprintf(why, sizeof why, "%s: [Errno %d] %s", errno_class(err), err, strerror(err));
            connect_failed(c, why);
            return;
        }
        send_request(c);
        if (c->fd >= 0 && c->wlen == 0 && c->want_out) {
            c->want_out = 0;
            set_interest(c, EPOLLIN | EPOLLRDHUP | EPOLLET);
        }
    } else if ((events & EPOLLOUT) && c->wlen) {
        conn_flush(c);
    }
    if (c->fd >= 0 && (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))) on_readable(c, events);
}

/* ------------------------------------------------------------------------------------------ */
/* the orchestrator's commands and the reports                                                 */
/* ------------------------------------------------------------------------------------------ */

static void on_command(char *line) {
    long long seq;
    double drain;
    if (sscanf(line, "final %lld %lf", &seq, &drain) == 2) {
        G.have_final = 1;
        G.final_seq = seq;
        G.drain_s = drain;
        G.pending = 0;
        for (int k = 0; k < G.nconns; k++) {
            conn_t *c = &G.conns[k];
            if (c->state != ST_OPEN && c->state != ST_CLOSED) continue; /* not one of the sockets */
            c->done = c->last >= seq || c->state == ST_CLOSED;
            if (!c->done) G.pending++;
        }
    } else if (strncmp(line, "exit", 4) == 0) {
        G.got_exit = 1;
    } else {
        die("unknown command %.100s", line);
    }
}

static void on_stdin(void) {
    for (;;) {
        ssize_t r = read(0, G.in_buf + G.in_len, sizeof G.in_buf - 1 - G.in_len);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        if (r <= 0) _exit(0); /* the orchestrator is gone or done with us */
        G.in_len += (size_t)r;
        char *nl;
        while ((nl = memchr(G.in_buf, '\n', G.in_len)) != NULL) {
            *nl = 0;
            on_command(G.in_buf);
            size_t used = (size_t)(nl - G.in_buf) + 1;
            memmove(G.in_buf, nl + 1, G.in_len - used);
            G.in_len -= used;
        }
        if (G.in_len == sizeof G.in_buf - 1) die("command line too long");
    }
}

/* one epoll_wait batch; timeout_ms < 0 waits for ever */
static void poll_once(int timeout_ms) {
    static struct epoll_event evs[MAX_EVENTS];
    int n = epoll_wait(G.epfd, evs, MAX_EVENTS, timeout_ms);
    if (n < 0) {
        if (errno == EINTR) return;
        die("epoll_wait: %s", strerror(errno));
    }
    G.now = wall_now(); /* one receive time for every frame of this batch */
    G.epoll_waits++;
    G.ready_events += n;
    for (int k = 0; k < n; k++) {
        if (evs[k].data.u32 == STDIN_TAG) on_stdin();
        else on_conn_event(&G.conns[evs[k].data.u32], evs[k].events);
    }
    /* A node writes an event to its sockets one after another, a few us apart, so without this
     * nearly every frame costs a wakeup (a context switch into and out of epoll_wait). After a
     * small batch, sleep --batch-us so the next epoll_wait finds many sockets ready: about 11 ->
     * 4.5 us of CPU per frame at 1,000 watchers. A frame is read (and timed) at most that much
     * later than without it. */
    if (G.batch_us > 0 && n > 0 && n < BATCH_SMALL) {
        struct timespec ts = {G.batch_us / 1000000, (G.batch_us % 1000000) * 1000};
        nanosleep(&ts, NULL);
    }
}

static void report_connected(double seconds, double cpu) {
    FILE *f = stdout;
    qsort(G.handshake_ms.v, G.handshake_ms.n, sizeof(double), cmp_double);
    fprintf(f, "{\"kind\":\"connected\",\"ok\":%d,\"failed\":%d,\"errors\":", G.ok, G.nconns - G.ok);
    counter_json(f, &G.errors);
    fprintf(f, ",\"seconds\":%.6f,\"per_node\":{", seconds);
    int first = 1;
    for (int n = 0; n < G.nnodes; n++) {
        if (!G.per_node_ok[n]) continue;
        fprintf(f, "%s\"%d\":%ld", first ? "" : ",", n, G.per_node_ok[n]);
        first = 0;
    }
    fprintf(f, "},\"loop\":\"epoll (C), batch %ld us\",\"handshake_ms\":[", G.batch_us);
    static const double qs[4] = {50, 95, 99, 100};
    for (int k = 0; k < 4; k++) {
        if (k) fputc(',', f);
        if (G.handshake_ms.n) fprintf(f, "%.3f", pct(G.handshake_ms.v, G.handshake_ms.n, qs[k]));
        else fputs("null", f);
    }
    fprintf(f, "],\"connect_cpu_s\":%.6f}\n", cpu);
    fflush(f);
}

/* distinct seqs in (base, final] that socket c received */
static long distinct_upto_final(const conn_t *c, long *expected) {
    int64_t want = G.final_seq - c->base;
    if (want < 0) want = 0;
    *expected = (long)want;
    long got = 0;
    size_t lim = (size_t)want < c->seen_cap ? (size_t)want : c->seen_cap;
    for (size_t k = 0; k < lim; k++) got += c->seen[k];
    return got;
}

static void report_result(double cpu, double done_wall) {
    FILE *f = stdout;
    long expected = 0, received = 0, frames = 0, dups = 0, ooo = 0, gaps = 0, incomplete = 0;
    long *n_sockets = calloc((size_t)G.nnodes, sizeof(long)), *n_exp = calloc((size_t)G.nnodes, sizeof(long)),
         *n_recv = calloc((size_t)G.nnodes, sizeof(long));
    if (!n_sockets || !n_exp || !n_recv) die("out of memory");
    for (int k = 0; k < G.nconns; k++) {
        const conn_t *c = &G.conns[k];
        if (c->state != ST_OPEN && c->state != ST_CLOSED) continue;
        long exp, got = distinct_upto_final(c, &exp);
        expected += exp, received += got;
        frames += c->frames, dups += c->dups, ooo += c->ooo, gaps += c->gaps;
        if (c->last < G.final_seq) incomplete++;
        n_sockets[c->node]++, n_exp[c->node] += exp, n_recv[c->node] += got;
    }
    fprintf(f, "{\"kind\":\"result\",\"expected\":%ld,\"received\":%ld,\"frames\":%ld,\"dups\":%ld,\"ooo\":%ld,"
               "\"gaps\":%ld,\"sockets_incomplete\":%ld,\"closed\":",
            expected, received, frames, dups, ooo, gaps, incomplete);
    counter_json(f, &G.closed_during);
    fputs(",\"per_node\":{", f);
    for (int n = 0; n < G.nnodes; n++)
        fprintf(f, "%s\"%d\":{\"sockets\":%ld,\"expected\":%ld,\"received\":%ld}", n ? "," : "", n, n_sockets[n],
                n_exp[n], n_recv[n]);
    fputs("},\"lat_files\":{", f);
    for (int n = 0; n < G.nnodes; n++) {
        char path[4200];
        snprintf(path, sizeof path, "%s/wsclient%d-lat%d.f64", G.outdir, G.idx, n);
        FILE *lf = fopen(path, "wb");
        if (!lf) die("cannot write %s: %s", path, strerror(errno));
        if (G.lat[n].n && fwrite(G.lat[n].v, sizeof(double), G.lat[n].n, lf) != G.lat[n].n)
            die("cannot write %s: %s", path, strerror(errno));
        if (fclose(lf) != 0) die("cannot write %s: %s", path, strerror(errno));
        fprintf(f, "%s\"%d\":", n ? "," : "", n);
        json_str(f, path);
    }
    fputs("},\"per_event\":{", f);
    int first = 1;
    for (size_t k = 0; k < G.pe_n; k++) {
        const pe_t *e = &G.pe[k];
        if (!e->count) continue;
        fprintf(f, "%s\"%lld\":[%u,%.6f,%.6f,%.6f]", first ? "" : ",", (long long)(G.pe_lo + (int64_t)k), e->count,
                e->first, e->last, e->at);
        first = 0;
    }
    fputs("},\"per_second\":{", f);
    first = 1;
    for (int64_t k = 0; k < MAX_SECONDS; k++) {
        if (!G.per_sec[k]) continue;
        fprintf(f, "%s\"%lld\":%ld", first ? "" : ",", (long long)(G.sec_lo + k), G.per_sec[k]);
        first = 0;
    }
    fprintf(f, "},\"cpu_s\":%.6f,\"done_wall\":%.6f,\"epoll_waits\":%ld,\"ready_events\":%ld}\n", cpu, done_wall,
            G.epoll_waits, G.ready_events);
    fflush(f);
    free(n_sockets), free(n_exp), free(n_recv);
}

/* ------------------------------------------------------------------------------------------ */
/* main                                                                                        */
/* ------------------------------------------------------------------------------------------ */

static void parse_url(const char *url, node_t *nd) {
    const char *p = url;
    if (strncmp(p, "ws://", 5) != 0) die("the C client speaks plain ws:// only, not %s", url);
    p += 5;
    const char *slash = strchr(p, '/');
    size_t hl = slash ? (size_t)(slash - p) : strlen(p);
    if (hl == 0 || hl >= sizeof nd->hostport) die("bad host in %s", url);
    memcpy(nd->hostport, p, hl);
    nd->hostport[hl] = 0;
    snprintf(nd->path, sizeof nd->path, "%s", slash ? slash : "/");
    char host[64];
    int port = 80;
    const char *colon = strrchr(nd->hostport, ':');
    size_t hn = colon ? (size_t)(colon - nd->hostport) : hl;
    memcpy(host, nd->hostport, hn);
    host[hn] = 0;
    if (colon) port = atoi(colon + 1);
    if (port <= 0 || port > 65535) die("bad port in %s", url);
    if (!colon || port == 80) snprintf(nd->hostport, sizeof nd->hostport, "%s", host);
    memset(&nd->addr, 0, sizeof nd->addr);
    nd->addr.sin_family = AF_INET;
    nd->addr.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &nd->addr.sin_addr) != 1) die("not a numeric IPv4 host: %s", url);
}

static void usage(void) {
    die("usage: wsclient --idx I --clients N --watchers W --concurrency C --connect-timeout S --out DIR "
        "[--batch-us US] URL...");
}

int main(int argc, char **argv) {
    /* die with the orchestrator; if it is already gone we were re-parented. stdin's EOF is the
     * other way we learn of it (on_stdin). */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() == 1) _exit(1);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, SIG_IGN); /* the orchestrator decides when we stop */
    G.clients = 1;
    G.concurrency = 100;
    G.connect_timeout = 300;
    G.outdir = ".";
    G.batch_us = 200;
    int a = 1;
    for (; a < argc && strncmp(argv[a], "--", 2) == 0; a += 2) {
        if (a + 1 >= argc) usage();
        const char *k = argv[a], *v = argv[a + 1];
        if (!strcmp(k, "--idx")) G.idx = atoi(v);
        else if (!strcmp(k, "--clients")) G.clients = atoi(v);
        else if (!strcmp(k, "--watchers")) G.watchers = atoi(v);
        else if (!strcmp(k, "--concurrency")) G.concurrency = atoi(v);
        else if (!strcmp(k, "--connect-timeout")) G.connect_timeout = atof(v);
        else if (!strcmp(k, "--out")) G.outdir = v;
        else if (!strcmp(k, "--batch-us")) G.batch_us = atol(v);
        else usage();
    }
    G.nnodes = argc - a;
    if (G.nnodes < 1 || G.clients < 1 || G.idx < 0 || G.idx >= G.clients || G.watchers < 0 || G.batch_us < 0 ||
        G.batch_us > 1000000)
        usage();
    G.nodes = calloc((size_t)G.nnodes, sizeof(node_t));
    if (!G.nodes) die("out of memory");
    for (int n = 0; n < G.nnodes; n++) parse_url(argv[a + n], &G.nodes[n]);

    /* as ws_fanout.raise_nofile */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    random_bytes(&rng_state, sizeof rng_state);
    rng_state |= 1;

    /* my sockets: idx, idx+clients, ...; socket i goes to node i % nodes */
    G.nconns = G.watchers > G.idx ? (G.watchers - G.idx + G.clients - 1) / G.clients : 0;
    G.conns = calloc((size_t)(G.nconns ? G.nconns : 1), sizeof(conn_t));
    G.sem = G.concurrency / G.clients > 1 ? G.concurrency / G.clients : 1;
    G.inflight = calloc((size_t)G.sem, sizeof(int));
    G.per_node_ok = calloc((size_t)G.nnodes, sizeof(long));
    G.lat = calloc((size_t)G.nnodes, sizeof(dvec_t));
    if (!G.conns || !G.inflight || !G.per_node_ok || !G.lat) die("out of memory");
    for (int k = 0; k < G.nconns; k++) {
        G.conns[k].fd = -1;
        G.conns[k].slot = -1;
        G.conns[k].node = (G.idx + k * G.clients) % G.nnodes;
    }

    G.epfd = epoll_create1(EPOLL_CLOEXEC);
    if (G.epfd < 0) die("epoll_create1: %s", strerror(errno));
    fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
    struct epoll_event se = {.events = EPOLLIN, .data.u32 = STDIN_TAG};
    if (epoll_ctl(G.epfd, EPOLL_CTL_ADD, 0, &se) < 0) die("epoll_ctl stdin: %s", strerror(errno));

    /* 1. open every socket, at most G.sem at a time, within the connect cap */
    double t_start = mono_now(), cpu0 = cpu_now();
    G.connect_deadline = t_start + G.connect_timeout;
    start_more();
    while (G.ok + G.failed_n < G.nconns && mono_now() < G.connect_deadline + 5) {
        poll_once(20);
        double mono = mono_now();
        check_timeouts(mono);
        start_more();
        if (G.got_exit) _exit(0);
    }
    double t_connect = mono_now() - t_start;
    for (int k = 0; k < G.nconns; k++) /* nothing is left in flight, but be sure */
        if (G.conns[k].state < ST_OPEN && G.conns[k].state != ST_IDLE) connect_failed(&G.conns[k], "TimeoutError: connect phase over");
    report_connected(t_connect, cpu_now() - cpu0);
    G.epoll_waits = G.ready_events = 0; /* the diagnostics cover the counting phase only */

    /* 2. count frames until the orchestrator tells the final seq, then drain */
    while (!G.have_final) {
        poll_once(1000);
        if (G.got_exit) _exit(0);
    }
    double drain_end = mono_now() + G.drain_s;
    for (;;) {
        double left = drain_end - mono_now();
        if (G.pending <= 0 || left <= 0) break;
        poll_once(left > 0.1 ? 100 : (int)(left * 1000) + 1);
        if (G.got_exit) _exit(0);
    }
    double done_wall = wall_now();
    report_result(cpu_now() - cpu0, done_wall);

    /* 3. keep the sockets serviced until the go-ahead to exit (the orchestrator reads our CPU) */
    while (!G.got_exit) poll_once(1000);
    _exit(0); /* do not close thousands of sockets one by one */
}
