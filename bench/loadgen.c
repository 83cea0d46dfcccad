/* The benchmark's load generator: a single-threaded epoll client for 127.0.0.1.
 *
 * Every connection first sends a real Minecraft handshake (protocol 765 = 1.20.4, host = domain,
 * next_state 2) and a login start (name + UUID). The name tells the backend what to do (see
 * backend.c). Each command prints one JSON line on stdout, with the CPU seconds this process used
 * (getrusage) and the wall time, so that the harness can show the load generator is not the
 * bottleneck.
 *
 *   loadgen bulk     port=P [domain=D] streams=N dir=up|down warmup_ms=W ms=M [timeout_ms=T]
 *                    [lowat=131072: SO_RCVLOWAT of the downloading sink, see backend.c]
 *   loadgen ping     port=P [domain=D] size=64 count=N ms=M warmup=K
 *   loadgen connrate port=P [domain=D] conc=50 payload=32 count=N ms=M [grace_ms=G] [status=1]
 *            status=1: server-list pings instead (handshake + status request, response, ping, pong, close)
 *   loadgen hold     port=P [domain=D]     then commands on stdin, one JSON answer each:
 *                    "open N" (open sessions until N are established), "close N" (close down to
 *                    N), "check" (count sessions the peer closed), "quit"
 * Common: splice=0 to send with plain send() instead of tee+splice.
 */
#include "bench_common.h"

#include <arpa/inet.h>
#include <sys/epoll.h>

static int g_port;
static const char *g_domain = "bench.local";
static uint64_t g_uuid = 1;

static void json_common(double t0, double cpu0) {
    printf("\"wall_s\": %.6f, \"cpu_s\": %.6f}\n", now_s() - t0, cpu_self_s() - cpu0);
    fflush(stdout);
}

static int connect_blocking(void) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)g_port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        perror("loadgen: connect");
        exit(1);
    }
    set_nodelay(fd);
    return fd;
}

/* Non-blocking connect: returns the fd (connection in progress or done), or -1. */
static int connect_async(void) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)g_port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    set_nodelay(fd);
    return fd;
}

static size_t login_bytes(unsigned char *out, const char *name) {
    return build_login(out, g_domain, (uint16_t)g_port, name, g_uuid++);
}

static int write_all(int fd, const unsigned char *p, size_t n) {
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int read_exact(int fd, unsigned char *p, size_t n) {
    while (n > 0) {
        ssize_t r = recv(fd, p, n, 0);
        if (r <= 0) {
            if (r < 0 && errno == EINTR) continue;
            return -1;
        }
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static int64_t pct(const int64_t *v, size_t n, double q) {
    if (n == 0) return -1;
    size_t i = (size_t)(q * (double)(n - 1) + 0.5);
    return v[i < n ? i : n - 1];
}

/* ------------------------------------------------------------------ bulk */

struct stream {
    int fd;
    int done;
    struct source src;
};

static int cmd_bulk(int streams, int up, int warmup_ms, int ms, int timeout_ms, int lowat) {
    double t0 = now_s(), cpu0 = cpu_self_s();
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct stream *s = calloc((size_t)streams, sizeof *s);
    unsigned char login[600];
    for (int i = 0; i < streams; i++) {
        s[i].fd = connect_blocking();
        size_t n = login_bytes(login, up ? "sink" : "source");
        if (write_all(s[i].fd, login, n) != 0) {
            perror("loadgen: send login");
            return 1;
        }
        set_nonblock(s[i].fd);
        /* Woken per 128 KiB, not per segment: see backend.c. */
        if (!up && lowat > 0) setsockopt(s[i].fd, SOL_SOCKET, SO_RCVLOWAT, &lowat, sizeof lowat);
        if (up) source_open(&s[i].src);
        else s[i].src.pipe[0] = s[i].src.pipe[1] = -1;
        struct epoll_event e = {.events = up ? EPOLLOUT : EPOLLIN, .data.u32 = (uint32_t)i};
        epoll_ctl(ep, EPOLL_CTL_ADD, s[i].fd, &e);
    }
    long long total = 0, at_w = -1, at_e = -1, errors = 0;
    double ts = now_s(), tw = ts + warmup_ms / 1e3, te = tw + ms / 1e3, t_w = 0, t_e = 0;
    struct epoll_event evs[64];
    int open = streams;
    /* Steady state: the rate is taken between two snapshots once the buffers on the path are full. */
    while (open > 0) {
        double t = now_s();
        if (at_w < 0 && t >= tw) {
            at_w = total;
            t_w = t;
        }
        if (t >= te) {
            at_e = total;
            t_e = t;
            break;
        }
        int wait_ms = (int)(((at_w < 0 ? tw : te) - t) * 1e3) + 1;
        int n = epoll_wait(ep, evs, 64, wait_ms);
        for (int k = 0; k < n; k++) {
            struct stream *x = &s[evs[k].data.u32];
            if (x->done) continue;
            ssize_t r = up ? source_push(&x->src, x->fd, 4) : sink_pull(x->fd, 8);
            if (r > 0) total += r;
            else if (r == 0 && !up) { /* EOF before we asked for it */
                errors++;
                x->done = 1;
                open--;
            } else if (r == -1) {
                errors++;
                x->done = 1;
                open--;
            }
        }
    }
    if (at_w < 0) at_w = total, t_w = now_s();
    if (at_e < 0) at_e = total, t_e = now_s();
    /* End: upload half-closes (the sink closes once it has read everything); download sends the
     * stop byte and reads what is still in flight. Either way every byte the relay moved is counted. */
    for (int i = 0; i < streams; i++) {
        if (s[i].done) continue;
        if (up) {
            shutdown(s[i].fd, SHUT_WR);
            struct epoll_event e = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
            epoll_ctl(ep, EPOLL_CTL_MOD, s[i].fd, &e);
        } else if (send(s[i].fd, "s", 1, MSG_NOSIGNAL) != 1) {
            errors++;
        }
    }
    double deadline = now_s() + timeout_ms / 1e3;
    int unfinished = 0;
    while (open > 0) {
        int left = (int)((deadline - now_s()) * 1e3);
        if (left <= 0) {
            unfinished = open;
            break;
        }
        int n = epoll_wait(ep, evs, 64, left);
        for (int k = 0; k < n; k++) {
            struct stream *x = &s[evs[k].data.u32];
            if (x->done) continue;
            ssize_t r = sink_pull(x->fd, 8);
            if (r > 0 && !up) total += r;
            else if (r == 0 || r == -1) {
                if (r == -1) errors++;
                x->done = 1;
                open--;
            }
        }
    }
    for (int i = 0; i < streams; i++) {
        close(s[i].fd);
        source_close(&s[i].src);
    }
    double window = t_e - t_w;
    printf("{\"cmd\": \"bulk\", \"streams\": %d, \"dir\": \"%s\", \"bytes_total\": %lld, "
           "\"bytes_window\": %lld, \"window_s\": %.6f, \"rate_Bps\": %.1f, \"errors\": %lld, "
           "\"unfinished\": %d, \"splice\": %d, ",
           streams, up ? "up" : "down", total, at_e - at_w, window,
           window > 0 ? (double)(at_e - at_w) / window : 0.0, errors, unfinished, g_use_splice);
    json_common(t0, cpu0);
    return 0;
}

/* ------------------------------------------------------------------ ping */

static int cmd_ping(int size, int count, int ms, int warmup) {
    double t0 = now_s(), cpu0 = cpu_self_s();
    int fd = connect_blocking();
    unsigned char login[600], out[4096], in[4096];
    if (size <= 0 || size > 4096) size = 64;
    size_t n = login_bytes(login, "echo");
    if (write_all(fd, login, n) != 0) return 1;
    int64_t *lat = calloc((size_t)count + 1, sizeof *lat);
    size_t got = 0;
    long long errors = 0;
    double deadline = now_s() + ms / 1e3;
    for (int i = 0; i < warmup + count && now_s() < deadline; i++) {
        memset(out, 'a' + i % 26, (size_t)size);
        out[0] = (unsigned char)i;
        int64_t a = now_ns();
        if (write_all(fd, out, (size_t)size) != 0 || read_exact(fd, in, (size_t)size) != 0) {
            errors++;
            break;
        }
        int64_t b = now_ns();
        if (memcmp(in, out, (size_t)size) != 0) errors++;
        if (i >= warmup) lat[got++] = b - a;
    }
    shutdown(fd, SHUT_WR);
    while (recv(fd, in, sizeof in, 0) > 0) {
    }
    close(fd);
    qsort(lat, got, sizeof *lat, cmp_i64);
    double sum = 0;
    for (size_t i = 0; i < got; i++) sum += (double)lat[i];
    printf("{\"cmd\": \"ping\", \"size\": %d, \"n\": %zu, \"p50_us\": %.3f, \"p99_us\": %.3f, "
           "\"p999_us\": %.3f, \"mean_us\": %.3f, \"errors\": %lld, ",
           size, got, pct(lat, got, 0.50) / 1e3, pct(lat, got, 0.99) / 1e3, pct(lat, got, 0.999) / 1e3,
           got ? sum / (double)got / 1e3 : -1.0, errors);
    json_common(t0, cpu0);
    return 0;
}

/* ------------------------------------------------------------------ connrate */

enum { C_FREE, C_CONNECTING, C_READING, C_STATUS, C_PONG };

struct slot {
    int fd;
    int st;
    size_t got;
    int64_t start;
    size_t need;           /* status: bytes of the status response frame, once its length is known */
    unsigned char hdr[5];  /* status: the response's length prefix as it arrives */
};

/* A server-list ping's first message: handshake (next state 1, status) and the status request. */
static size_t status_bytes(unsigned char *out) {
    unsigned char body[400];
    size_t n = 0, b = 0;
    b += put_varint(body + b, 0x00);
    b += put_varint(body + b, 765);
    b += put_string(body + b, g_domain);
    body[b++] = (unsigned char)(g_port >> 8);
    body[b++] = (unsigned char)(g_port & 0xff);
    b += put_varint(body + b, 1);
    n += put_varint(out + n, (uint32_t)b);
    memcpy(out + n, body, b);
    n += b;
    out[n++] = 0x01; /* status request: length 1, id 0x00 */
    out[n++] = 0x00;
    return n;
}

static const unsigned char PING[10] = {0x09, 0x01, 1, 2, 3, 4, 5, 6, 7, 8};

static int cmd_connrate(int conc, int payload, int count, int ms, int grace_ms, int status) {
    double t0 = now_s(), cpu0 = cpu_self_s();
    if (payload <= 0 || payload > 1024) payload = 32;
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct slot *sl = calloc((size_t)conc, sizeof *sl);
    int64_t *lat = calloc((size_t)count + 1, sizeof *lat);
    char name[17];
    snprintf(name, sizeof name, "echo%d", payload);
    unsigned char msg[2048], in[2048], expect[1024];
    memset(expect, 'p', (size_t)payload);
    long long done = 0, errors = 0, launched = 0, connect_errors = 0;
    int active = 0;
    double ts = now_s(), t_end = ts + ms / 1e3, hard = t_end + grace_ms / 1e3;

    /* Starts a connection in slot i if the budget (count and time) allows. */
#define LAUNCH(i)                                                                                     \
    do {                                                                                              \
        if (launched < count && now_s() < t_end) {                                                    \
            int fd_ = connect_async();                                                                \
            if (fd_ < 0) {                                                                            \
                connect_errors++;                                                                     \
                break;                                                                                \
            }                                                                                         \
            launched++;                                                                               \
            sl[i] = (struct slot){.fd = fd_, .st = C_CONNECTING, .got = 0, .start = now_ns()};        \
            struct epoll_event e_ = {.events = EPOLLOUT, .data.u32 = (uint32_t)(i)};                  \
            epoll_ctl(ep, EPOLL_CTL_ADD, fd_, &e_);                                                   \
            active++;                                                                                 \
        }                                                                                             \
    } while (0)
#define FINISH(i, ok)                                                                                 \
    do {                                                                                              \
        close(sl[i].fd);                                                                              \
        sl[i].st = C_FREE;                                                                            \
        active--;                                                                                     \
        if (ok) {                                                                                     \
            if (done < count) lat[done] = now_ns() - sl[i].start;                                     \
            done++;                                                                                   \
        } else {                                                                                      \
            errors++;                                                                                 \
        }                                                                                             \
    } while (0)

    for (int i = 0; i < conc; i++) LAUNCH(i);
    struct epoll_event evs[256];
    while (active > 0 && now_s() < hard && connect_errors < 1000) {
        int n = epoll_wait(ep, evs, 256, 100);
        for (int k = 0; k < n; k++) {
            int i = (int)evs[k].data.u32;
            struct slot *x = &sl[i];
            if (x->st == C_CONNECTING) {
                int err = 0;
                socklen_t el = sizeof err;
                getsockopt(x->fd, SOL_SOCKET, SO_ERROR, &err, &el);
                if (err != 0) {
                    FINISH(i, 0);
                    LAUNCH(i);
                    continue;
                }
                size_t m;
                if (status) {
                    m = status_bytes(msg);
                } else {
                    m = login_bytes(msg, name);
                    memcpy(msg + m, expect, (size_t)payload);
                    m += (size_t)payload;
                }
                if (send(x->fd, msg, m, MSG_NOSIGNAL | MSG_DONTWAIT) != (ssize_t)m) {
                    FINISH(i, 0);
                    LAUNCH(i);
                    continue;
                }
                x->st = status ? C_STATUS : C_READING;
                x->need = 0;
                struct epoll_event e = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
                epoll_ctl(ep, EPOLL_CTL_MOD, x->fd, &e);
            } else if (x->st == C_READING) {
                ssize_t r = recv(x->fd, in, sizeof in, MSG_DONTWAIT);
                if (r < 0 && errno == EAGAIN) continue;
                if (r > 0) {
                    if (x->got + (size_t)r > (size_t)payload ||
                        memcmp(in, expect, (size_t)r) != 0) {
                        FINISH(i, 0);
                        LAUNCH(i);
                        continue;
                    }
                    x->got += (size_t)r;
                    continue;
                }
                /* EOF (the backend closes after echoing) or error */
                FINISH(i, r == 0 && x->got == (size_t)payload);
                LAUNCH(i);
            } else if (x->st == C_STATUS || x->st == C_PONG) {
                /* Server-list ping: the status response (one frame), then our ping and its pong. */
                ssize_t r = recv(x->fd, in, sizeof in, MSG_DONTWAIT);
                if (r < 0 && errno == EAGAIN) continue;
                if (r <= 0) {
                    FINISH(i, 0);
                    LAUNCH(i);
                    continue;
                }
                int bad = 0;
                for (ssize_t k2 = 0; k2 < r && !bad; k2++) {
                    if (x->st == C_PONG) {
                        if (x->got >= sizeof PING || in[k2] != PING[x->got]) bad = 1;
                        x->got++;
                        continue;
                    }
                    if (x->need == 0) {
                        if (x->got >= sizeof x->hdr) {
                            bad = 1;
                            break;
                        }
                        x->hdr[x->got++] = in[k2];
                        uint32_t len;
                        int h = get_varint(x->hdr, x->got, &len);
                        if (h < 0) bad = 1;
                        else if (h > 0) x->need = (size_t)h + len;
                        continue;
                    }
                    x->got++;
                    if (x->got == x->need) {
                        if (k2 + 1 != r) bad = 1; /* nothing may come before our ping */
                        else if (send(x->fd, PING, sizeof PING, MSG_NOSIGNAL | MSG_DONTWAIT) != sizeof PING) bad = 1;
                        x->st = C_PONG;
                        x->got = 0;
                    }
                }
                if (bad) {
                    FINISH(i, 0);
                    LAUNCH(i);
                } else if (x->st == C_PONG && x->got == sizeof PING) {
                    FINISH(i, 1); /* a client closes once it has its pong */
                    LAUNCH(i);
                }
            }
        }
        /* Slots left empty by a failed connect() get another chance while time remains. */
        if (active < conc && now_s() < t_end && launched < count)
            for (int i = 0; i < conc; i++)
                if (sl[i].st == C_FREE) LAUNCH(i);
    }
    int unfinished = active;
    for (int i = 0; i < conc; i++)
        if (sl[i].st != C_FREE) close(sl[i].fd);
    double wall = now_s() - ts;
    size_t nl = (size_t)(done < count ? done : count);
    qsort(lat, nl, sizeof *lat, cmp_i64);
    printf("{\"cmd\": \"connrate\", \"conc\": %d, \"done\": %lld, \"errors\": %lld, "
           "\"connect_errors\": %lld, \"unfinished\": %d, \"run_s\": %.6f, \"rate_cps\": %.1f, "
           "\"conn_p50_us\": %.1f, \"conn_p99_us\": %.1f, ",
           conc, done, errors, connect_errors, unfinished, wall, wall > 0 ? (double)done / wall : 0.0,
           pct(lat, nl, 0.5) / 1e3, pct(lat, nl, 0.99) / 1e3);
    json_common(t0, cpu0);
#undef LAUNCH
#undef FINISH
    return 0;
}

/* ------------------------------------------------------------------ hold */

#define HOLD_MAX 20000

enum { H_CONNECTING, H_WAITING, H_UP };

struct held {
    int fd;
    int st;
};

static struct held held[HOLD_MAX];
static int n_held; /* sessions [0, n_held) exist in some state */

/* Opens sessions until `target` are up: connect, login "echo" plus one byte, wait for its echo.
 * At most 200 connecting at once, bounded by timeout_ms. */
static void hold_open(int ep, int target, int timeout_ms) {
    double t0 = now_s(), deadline = t0 + timeout_ms / 1e3;
    int up = 0, pending = 0;
    long long errors = 0;
    for (int i = 0; i < n_held; i++) up += held[i].st == H_UP;
    unsigned char msg[700], b[64];
    struct epoll_event evs[256];
    if (target > HOLD_MAX) target = HOLD_MAX;
    while (up < target && now_s() < deadline && errors < 200) {
        while (pending < 200 && up + pending < target && n_held < HOLD_MAX) {
            int fd = connect_async();
            if (fd < 0) {
                errors++;
                break;
            }
            held[n_held] = (struct held){.fd = fd, .st = H_CONNECTING};
            struct epoll_event e = {.events = EPOLLOUT, .data.u32 = (uint32_t)n_held};
            epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e);
            n_held++;
            pending++;
        }
        int n = epoll_wait(ep, evs, 256, 100);
        for (int k = 0; k < n; k++) {
            int i = (int)evs[k].data.u32;
            if (i >= n_held || held[i].fd < 0) continue; /* moved by a swap below: fires again */
            struct held *h = &held[i];
            int fail = 0;
            if (h->st == H_CONNECTING) {
                int err = 0;
                socklen_t el = sizeof err;
                getsockopt(h->fd, SOL_SOCKET, SO_ERROR, &err, &el);
                size_t m = login_bytes(msg, "echo");
                msg[m++] = '!';
                if (err != 0 || send(h->fd, msg, m, MSG_NOSIGNAL | MSG_DONTWAIT) != (ssize_t)m) {
                    fail = 1;
                } else {
                    h->st = H_WAITING;
                    struct epoll_event e = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
                    epoll_ctl(ep, EPOLL_CTL_MOD, h->fd, &e);
                }
            } else if (h->st == H_WAITING) {
                ssize_t r = recv(h->fd, b, sizeof b, MSG_DONTWAIT);
                if (r < 0 && errno == EAGAIN) continue;
                if (r == 1 && b[0] == '!') {
                    h->st = H_UP;
                    epoll_ctl(ep, EPOLL_CTL_DEL, h->fd, NULL);
                    pending--;
                    up++;
                } else {
                    fail = 1;
                }
            }
            if (fail) { /* drop it: swap the last session into its place */
                epoll_ctl(ep, EPOLL_CTL_DEL, h->fd, NULL);
                close(h->fd);
                errors++;
                pending--;
                n_held--;
                if (i != n_held) {
                    held[i] = held[n_held];
                    if (held[i].st != H_UP) {
                        struct epoll_event e = {.events = held[i].st == H_CONNECTING ? EPOLLOUT : EPOLLIN,
                                                .data.u32 = (uint32_t)i};
                        epoll_ctl(ep, EPOLL_CTL_MOD, held[i].fd, &e);
                    }
                }
                held[n_held] = (struct held){.fd = -1, .st = -1};
            }
        }
    }
    /* Anything still pending at the deadline is closed, so that only complete sessions stay. */
    for (int i = n_held - 1; i >= 0; i--) {
        if (held[i].st == H_UP) continue;
        epoll_ctl(ep, EPOLL_CTL_DEL, held[i].fd, NULL);
        close(held[i].fd);
        held[i] = held[--n_held];
    }
    printf("{\"cmd\": \"open\", \"open\": %d, \"errors\": %lld, \"ms\": %.1f}\n", n_held, errors,
           (now_s() - t0) * 1e3);
    fflush(stdout);
}

static int cmd_hold(void) {
    double t0 = now_s(), cpu0 = cpu_self_s();
    int ep = epoll_create1(EPOLL_CLOEXEC);
    char line[128];
    while (fgets(line, sizeof line, stdin)) {
        int n = 0;
        if (sscanf(line, "open %d", &n) == 1) {
            hold_open(ep, n, 60000);
        } else if (sscanf(line, "close %d", &n) == 1) {
            if (n < 0) n = 0;
            while (n_held > n) close(held[--n_held].fd);
            printf("{\"cmd\": \"close\", \"open\": %d}\n", n_held);
            fflush(stdout);
        } else if (strncmp(line, "check", 5) == 0) {
            int dead = 0;
            char b;
            for (int i = 0; i < n_held; i++) {
                ssize_t r = recv(held[i].fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
                if (r == 0 || (r < 0 && errno != EAGAIN)) dead++;
            }
            printf("{\"cmd\": \"check\", \"open\": %d, \"dead\": %d}\n", n_held, dead);
            fflush(stdout);
        } else {
            break; /* "quit" or anything unknown */
        }
    }
    while (n_held > 0) close(held[--n_held].fd);
    printf("{\"cmd\": \"hold\", ");
    json_common(t0, cpu0);
    return 0;
}

/* ------------------------------------------------------------------ main */

static long arg_long(int argc, char **argv, const char *key, long dflt) {
    size_t k = strlen(key);
    for (int i = 2; i < argc; i++)
        if (strncmp(argv[i], key, k) == 0 && argv[i][k] == '=') return atol(argv[i] + k + 1);
    return dflt;
}

static const char *arg_str(int argc, char **argv, const char *key, const char *dflt) {
    size_t k = strlen(key);
    for (int i = 2; i < argc; i++)
        if (strncmp(argv[i], key, k) == 0 && argv[i][k] == '=') return argv[i] + k + 1;
    return dflt;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: loadgen bulk|ping|connrate|hold port=P [key=value...]\n");
        return 2;
    }
    die_with_parent();
    raise_nofile();
    signal(SIGPIPE, SIG_IGN);
    g_port = (int)arg_long(argc, argv, "port", 0);
    g_domain = arg_str(argc, argv, "domain", g_domain);
    if (g_port <= 0) {
        fprintf(stderr, "loadgen: port=P is required\n");
        return 2;
    }
    source_init((int)arg_long(argc, argv, "splice", 1));
    const char *cmd = argv[1];
    if (strcmp(cmd, "bulk") == 0) {
        const char *dir = arg_str(argc, argv, "dir", "down");
        return cmd_bulk((int)arg_long(argc, argv, "streams", 1), strcmp(dir, "up") == 0,
                        (int)arg_long(argc, argv, "warmup_ms", 300), (int)arg_long(argc, argv, "ms", 2000),
                        (int)arg_long(argc, argv, "timeout_ms", 10000),
                        (int)arg_long(argc, argv, "lowat", 131072));
    }
    if (strcmp(cmd, "ping") == 0)
        return cmd_ping((int)arg_long(argc, argv, "size", 64), (int)arg_long(argc, argv, "count", 20000),
                        (int)arg_long(argc, argv, "ms", 1000), (int)arg_long(argc, argv, "warmup", 200));
    if (strcmp(cmd, "connrate") == 0)
        return cmd_connrate((int)arg_long(argc, argv, "conc", 50), (int)arg_long(argc, argv, "payload", 32),
                            (int)arg_long(argc, argv, "count", 100000), (int)arg_long(argc, argv, "ms", 2000),
                            (int)arg_long(argc, argv, "grace_ms", 3000), (int)arg_long(argc, argv, "status", 0));
    if (strcmp(cmd, "hold") == 0) return cmd_hold();
    fprintf(stderr, "loadgen: unknown command %s\n", cmd);
    return 2;
}
