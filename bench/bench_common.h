/* Shared helpers of the benchmark's load generator and backend (Linux only).
 *
 * Both ends try hard to cost as little CPU as possible, so that the relay under test is what the
 * numbers measure: the data source moves page references with tee(2) + splice(2) instead of copying
 * a buffer into the kernel, and the sink discards with recv(MSG_TRUNC), which skips the copy to user
 * space. Either trick falls back to plain send()/recv() where the kernel refuses it.
 */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define BENCH_CHUNK 65536
#define BENCH_SINK_BUF (1 << 20)

static inline double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static inline int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static inline double cpu_self_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           (double)ru.ru_stime.tv_usec / 1e6;
}

/* Die with the harness: a benchmark helper must never outlive the process that started it. */
static inline void die_with_parent(void) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() == 1) exit(1);
}

static inline void raise_nofile(void) {
    struct rlimit rl = {65536, 65536};
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
        getrlimit(RLIMIT_NOFILE, &rl);
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static inline int set_nonblock(int fd) {
    int fl = fcntl(fd, F_GETFL);
    return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static inline void set_nodelay(int fd) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* ---- Minecraft framing: just enough to write and read a handshake and a login start. ---- */

static inline size_t put_varint(unsigned char *out, uint32_t v) {
    size_t n = 0;
    do {
        unsigned char b = v & 0x7f;
        v >>= 7;
        out[n++] = b | (v ? 0x80 : 0);
    } while (v);
    return n;
}

/* Returns bytes consumed, 0 if more input is needed, -1 if malformed. */
static inline int get_varint(const unsigned char *in, size_t len, uint32_t *v) {
    uint32_t r = 0;
    for (size_t i = 0; i < 5; i++) {
        if (i >= len) return 0;
        r |= (uint32_t)(in[i] & 0x7f) << (7 * i);
        if (!(in[i] & 0x80)) {
            *v = r;
            return (int)i + 1;
        }
    }
    return -1;
}

static inline size_t put_string(unsigned char *out, const char *s) {
    size_t n = strlen(s);
    size_t h = put_varint(out, (uint32_t)n);
    memcpy(out + h, s, n);
    return h + n;
}

/* Handshake (protocol 765 = 1.20.4, next_state 2 = login) then login start (name + UUID), each
 * framed as VarInt length + packet. Returns the number of bytes written to out (>= 512 bytes). */
static inline size_t build_login(unsigned char *out, const char *host, uint16_t port, const char *name,
                                 uint64_t uuid_lo) {
    unsigned char body[400];
    size_t n = 0, b = 0;
    b += put_varint(body + b, 0x00);
    b += put_varint(body + b, 765);
    b += put_string(body + b, host);
    body[b++] = (unsigned char)(port >> 8);
    body[b++] = (unsigned char)(port & 0xff);
    b += put_varint(body + b, 2);
    n += put_varint(out + n, (uint32_t)b);
    memcpy(out + n, body, b);
    n += b;
    b = 0;
    b += put_varint(body + b, 0x00);
    b += put_string(body + b, name);
    for (int i = 0; i < 8; i++) body[b++] = (unsigned char)(0x42 + i);
    for (int i = 7; i >= 0; i--) body[b++] = (unsigned char)(uuid_lo >> (8 * i));
    n += put_varint(out + n, (uint32_t)b);
    memcpy(out + n, body, b);
    n += b;
    return n;
}

/* ---- Cheap data source: a template pipe full of bytes, tee'd into a per-connection pipe. ---- */

static int g_template_pipe[2] = {-1, -1};
static int g_use_splice = 1;
static unsigned char g_src_buf[BENCH_CHUNK];
static unsigned char g_sink_buf[BENCH_SINK_BUF];

static inline void source_init(int allow_splice) {
    memset(g_src_buf, 'x', sizeof g_src_buf);
    g_use_splice = 0;
    if (!allow_splice) return;
    if (pipe2(g_template_pipe, O_NONBLOCK | O_CLOEXEC) != 0) return;
    fcntl(g_template_pipe[1], F_SETPIPE_SZ, BENCH_CHUNK);
    size_t done = 0;
    while (done < BENCH_CHUNK) {
        ssize_t w = write(g_template_pipe[1], g_src_buf + done, BENCH_CHUNK - done);
        if (w <= 0) break;
        done += (size_t)w;
    }
    g_use_splice = done > 0;
}

/* Per connection data source state. */
struct source {
    int pipe[2];
    size_t in_pipe;
    int spliced_any;
};

static inline void source_open(struct source *s) {
    s->pipe[0] = s->pipe[1] = -1;
    s->in_pipe = 0;
    s->spliced_any = 0;
    if (g_use_splice && pipe2(s->pipe, O_NONBLOCK | O_CLOEXEC) == 0)
        fcntl(s->pipe[1], F_SETPIPE_SZ, BENCH_CHUNK);
}

static inline void source_close(struct source *s) {
    if (s->pipe[0] >= 0) close(s->pipe[0]);
    if (s->pipe[1] >= 0) close(s->pipe[1]);
    s->pipe[0] = s->pipe[1] = -1;
}

/* Writes as much as the socket takes, at most max_rounds chunks. Returns bytes written (>= 0), or -1
 * on a socket error. */
static inline ssize_t source_push(struct source *s, int fd, int max_rounds) {
    ssize_t total = 0;
    for (int round = 0; round < max_rounds; round++) {
        if (s->pipe[0] >= 0) {
            if (s->in_pipe == 0) {
                ssize_t t = tee(g_template_pipe[0], s->pipe[1], BENCH_CHUNK, SPLICE_F_NONBLOCK);
                if (t <= 0) { /* tee refused: go back to copying for this connection */
                    source_close(s);
                    continue;
                }
                s->in_pipe = (size_t)t;
            }
            ssize_t w = splice(s->pipe[0], NULL, fd, NULL, s->in_pipe, SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
            if (w < 0) {
                if (errno == EAGAIN) return total;
                if ((errno == EINVAL || errno == ENOSYS) && !s->spliced_any) {
                    source_close(s); /* splice to this socket refused: copy instead */
                    continue;
                }
                return -1;
            }
            s->in_pipe -= (size_t)w;
            s->spliced_any = 1;
            total += w;
        } else {
            ssize_t w = send(fd, g_src_buf, sizeof g_src_buf, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (w < 0) return errno == EAGAIN ? total : -1;
            total += w;
        }
    }
    return total;
}

/* Discards what is readable, at most max_rounds reads. Returns bytes read, 0 on EOF, -1 on error,
 * -2 if nothing was readable. */
static inline ssize_t sink_pull(int fd, int max_rounds) {
    ssize_t total = 0;
    for (int round = 0; round < max_rounds; round++) {
        ssize_t r = recv(fd, g_sink_buf, sizeof g_sink_buf, MSG_TRUNC | MSG_DONTWAIT);
        if (r == 0) return total > 0 ? total : 0;
        if (r < 0) {
            if (errno == EAGAIN) return total > 0 ? total : -2;
            return -1;
        }
        total += r;
    }
    return total;
}

#endif
