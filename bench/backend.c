/* The benchmark's backend ("sink/echo server"): a single-threaded epoll server on 127.0.0.1.
 *
 * Every connection starts like a Minecraft login: a handshake packet then a login start packet, both
 * consumed here. The player name in the login start picks what happens next:
 *   sink    read and discard until EOF, then close
 *   source  send without end; the first byte the client sends means "stop": half-close our side,
 *           then discard until EOF and close (so the client can count every byte the relay moved)
 *   echo    echo everything until EOF, then close
 *   echoN   echo N bytes, then close first (so TIME_WAIT lands on this server side, not on the
 *           load generator's ephemeral ports)
 * A handshake asking for the status (next state 1) is a server-list ping instead: each status request
 * gets a small status response, a ping gets its pong, and the server closes after the pong.
 *
 * A sink sets SO_RCVLOWAT (lowat=, 128 KiB by default) so that it is woken once per 128 KiB rather
 * than once per segment: on these VMs a wakeup across CPUs costs tens of microseconds, and the
 * benchmark's own ends must stay cheap next to the relay they measure.
 *
 * usage: backend [port=0] [splice=1] [lowat=131072] [max_s=7200]
 * Prints "port N" on stdout once listening. Stops on SIGTERM/SIGINT, after max_s seconds, or when its
 * parent dies, printing its counters as one JSON line on stdout.
 */
#include "bench_common.h"

#include <arpa/inet.h>
#include <sys/epoll.h>

enum state { ST_LOGIN, ST_SINK, ST_SOURCE, ST_ECHO, ST_DRAIN, ST_STATUS };

#define MAX_FD 65536
#define LOGIN_BUF 640
#define ECHO_BUF 4096

struct conn {
    int fd;
    enum state st;
    unsigned char hbuf[LOGIN_BUF];
    size_t hlen;
    long echo_left; /* -1: unlimited */
    unsigned char *ebuf;
    size_t eoff, elen;
    struct source src;
};

static struct conn *conns[MAX_FD];
static int ep = -1;
static int g_lowat = 131072;
static volatile sig_atomic_t stopping = 0;
static unsigned long long n_statuses;
static unsigned long long n_accepted, n_logins, n_bad, n_closed, n_accept_err, bytes_in, bytes_out;

static void on_signal(int sig) {
    (void)sig;
    stopping = 1;
}

static void set_events(struct conn *c, uint32_t ev) {
    struct epoll_event e = {.events = ev, .data.fd = c->fd};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e);
}

static void conn_close(struct conn *c) {
    conns[c->fd] = NULL;
    close(c->fd);
    source_close(&c->src);
    free(c->ebuf);
    free(c);
    n_closed++;
}

static int parse_string(const unsigned char *p, size_t len, size_t *off, char *out, size_t cap) {
    uint32_t n;
    int k = get_varint(p + *off, len - *off, &n);
    if (k <= 0 || n >= cap || *off + (size_t)k + n > len) return -1;
    memcpy(out, p + *off + k, n);
    out[n] = 0;
    *off += (size_t)k + n;
    return 0;
}

/* 1: both packets parsed (name filled, *consumed set); 0: need more bytes; -1: malformed. */
static int parse_login(const unsigned char *p, size_t len, char *name, size_t *consumed) {
    size_t off = 0;
    uint32_t plen, v;
    for (int packet = 0; packet < 2; packet++) {
        int k = get_varint(p + off, len - off, &plen);
        if (k < 0 || (k > 0 && plen > 512)) return -1;
        if (k == 0 || off + (size_t)k + plen > len) return len >= LOGIN_BUF ? -1 : 0;
        size_t end = off + (size_t)k + plen, q = off + (size_t)k;
        int m = get_varint(p + q, end - q, &v);
        if (m <= 0 || v != 0) return -1; /* both packets have id 0x00 */
        q += (size_t)m;
        if (packet == 0) {
            char host[300];
            m = get_varint(p + q, end - q, &v); /* protocol version */
            if (m <= 0) return -1;
            q += (size_t)m;
            if (parse_string(p, end, &q, host, sizeof host) < 0 || q + 2 > end) return -1;
            q += 2;
            m = get_varint(p + q, end - q, &v);
            if (m > 0 && v == 1) { /* status: the handshake is all there is to parse */
                *consumed = end;
                return 2;
            }
            if (m <= 0 || v != 2) return -1;
        } else {
            if (parse_string(p, end, &q, name, 17) < 0) return -1;
        }
        off = end;
    }
    *consumed = off;
    return 1;
}

static void echo_flush(struct conn *c) {
    while (c->elen > 0) {
        ssize_t w = send(c->fd, c->ebuf + c->eoff, c->elen, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0) {
            if (errno == EAGAIN) {
                set_events(c, EPOLLOUT);
                return;
            }
            conn_close(c);
            return;
        }
        bytes_out += (unsigned long long)w;
        c->eoff += (size_t)w;
        c->elen -= (size_t)w;
    }
    c->eoff = 0;
    if (c->echo_left == 0) {
        conn_close(c);
        return;
    }
    set_events(c, EPOLLIN);
}

/* Queues bytes to echo (at most what is still owed) and tries to send them. */
static void echo_take(struct conn *c, const unsigned char *data, size_t n) {
    if (c->echo_left >= 0 && (long)n > c->echo_left) n = (size_t)c->echo_left;
    memmove(c->ebuf, data, n);
    c->elen = n;
    c->eoff = 0;
    if (c->echo_left >= 0) c->echo_left -= (long)n;
    echo_flush(c);
}

static void start_mode(struct conn *c, const char *name, const unsigned char *rest, size_t nrest) {
    n_logins++;
    bytes_in += nrest;
    if (strcmp(name, "sink") == 0) {
        c->st = ST_SINK;
        if (g_lowat > 0) setsockopt(c->fd, SOL_SOCKET, SO_RCVLOWAT, &g_lowat, sizeof g_lowat);
    } else if (strcmp(name, "source") == 0) {
        c->st = ST_SOURCE;
        source_open(&c->src);
        if (nrest > 0) { /* the stop byte already: nothing to send */
            shutdown(c->fd, SHUT_WR);
            c->st = ST_DRAIN;
            return;
        }
        set_events(c, EPOLLIN | EPOLLOUT);
    } else if (strncmp(name, "echo", 4) == 0) {
        c->st = ST_ECHO;
        c->echo_left = name[4] ? atol(name + 4) : -1;
        c->ebuf = malloc(ECHO_BUF);
        if (!c->ebuf) {
            conn_close(c);
            return;
        }
        if (nrest > 0 || c->echo_left == 0) echo_take(c, rest, nrest);
    } else {
        n_logins--;
        n_bad++;
        conn_close(c);
    }
}

static const char STATUS_JSON[] =
    "{\"version\":{\"name\":\"1.20.4\",\"protocol\":765},"
    "\"players\":{\"max\":100,\"online\":0},\"description\":{\"text\":\"bench\"}}";

/* Answers the complete status requests and pings in hbuf; 1 once the pong is sent (close then). */
static int status_step(struct conn *c) {
    size_t off = 0;
    int done = 0;
    while (!done) {
        uint32_t plen, id;
        int k = get_varint(c->hbuf + off, c->hlen - off, &plen);
        if (k <= 0 || off + (size_t)k + plen > c->hlen || plen == 0) break;
        unsigned char *body = c->hbuf + off + k;
        if (get_varint(body, plen, &id) != 1) return -1;
        unsigned char out[256];
        size_t n = 0;
        if (id == 0x00) {
            size_t jl = sizeof STATUS_JSON - 1;
            unsigned char inner[200];
            size_t b = put_varint(inner, 0x00);
            b += put_varint(inner + b, (uint32_t)jl);
            n = put_varint(out, (uint32_t)(b + jl));
            memcpy(out + n, inner, b);
            n += b;
            memcpy(out + n, STATUS_JSON, jl);
            n += jl;
        } else if (id == 0x01 && plen == 9) {
            memcpy(out, c->hbuf + off, (size_t)k + plen);
            n = (size_t)k + plen;
            done = 1;
        } else {
            return -1;
        }
        if (send(c->fd, out, n, MSG_NOSIGNAL | MSG_DONTWAIT) != (ssize_t)n) return -1;
        bytes_out += n;
        off += (size_t)k + plen;
    }
    memmove(c->hbuf, c->hbuf + off, c->hlen - off);
    c->hlen -= off;
    return done;
}

static void on_status_readable(struct conn *c) {
    ssize_t r = recv(c->fd, c->hbuf + c->hlen, LOGIN_BUF - c->hlen, MSG_DONTWAIT);
    if (r <= 0) {
        if (r < 0 && errno == EAGAIN) return;
        conn_close(c);
        return;
    }
    c->hlen += (size_t)r;
    int s = status_step(c);
    if (s != 0) {
        if (s < 0) n_bad++;
        else n_statuses++;
        conn_close(c);
    }
}

static void on_login_readable(struct conn *c) {
    ssize_t r = recv(c->fd, c->hbuf + c->hlen, LOGIN_BUF - c->hlen, MSG_DONTWAIT);
    if (r <= 0) {
        if (r < 0 && errno == EAGAIN) return;
        if (c->hlen > 0) n_bad++;
        conn_close(c);
        return;
    }
    c->hlen += (size_t)r;
    char name[17];
    size_t used = 0;
    int p = parse_login(c->hbuf, c->hlen, name, &used);
    if (p < 0) {
        n_bad++;
        conn_close(c);
    } else if (p == 2) {
        c->st = ST_STATUS;
        memmove(c->hbuf, c->hbuf + used, c->hlen - used);
        c->hlen -= used;
        int s = status_step(c);
        if (s != 0) {
            if (s < 0) n_bad++;
            else n_statuses++;
            conn_close(c);
        }
    } else if (p > 0) {
        start_mode(c, name, c->hbuf + used, c->hlen - used);
    }
}

static void on_event(struct conn *c, uint32_t ev) {
    switch (c->st) {
    case ST_LOGIN:
        on_login_readable(c);
        return;
    case ST_STATUS:
        on_status_readable(c);
        return;
    case ST_SINK:
    case ST_DRAIN: {
        ssize_t r = sink_pull(c->fd, 8);
        if (r > 0) bytes_in += (unsigned long long)r;
        else if (r == 0 || r == -1) conn_close(c);
        return;
    }
    case ST_SOURCE:
        if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
            char b[64];
            ssize_t r = recv(c->fd, b, sizeof b, MSG_DONTWAIT);
            if (r > 0) {
                bytes_in += (unsigned long long)r;
                shutdown(c->fd, SHUT_WR);
                c->st = ST_DRAIN;
                set_events(c, EPOLLIN);
                return;
            }
            if (r == 0 || errno != EAGAIN) {
                conn_close(c);
                return;
            }
        }
        if (ev & EPOLLOUT) {
            ssize_t w = source_push(&c->src, c->fd, 4);
            if (w < 0) conn_close(c);
            else bytes_out += (unsigned long long)w;
        }
        return;
    case ST_ECHO:
        if (c->elen > 0) {
            echo_flush(c);
            return;
        }
        {
            ssize_t r = recv(c->fd, c->ebuf, ECHO_BUF, MSG_DONTWAIT);
            if (r < 0 && errno == EAGAIN) return;
            if (r <= 0) {
                conn_close(c);
                return;
            }
            bytes_in += (unsigned long long)r;
            echo_take(c, c->ebuf, (size_t)r);
        }
        return;
    }
}

static void accept_all(int lfd) {
    for (int i = 0; i < 256; i++) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN) n_accept_err++;
            return;
        }
        if (fd >= MAX_FD) {
            close(fd);
            n_accept_err++;
            continue;
        }
        struct conn *c = calloc(1, sizeof *c);
        if (!c) {
            close(fd);
            n_accept_err++;
            continue;
        }
        c->fd = fd;
        c->st = ST_LOGIN;
        c->src.pipe[0] = c->src.pipe[1] = -1;
        set_nodelay(fd);
        conns[fd] = c;
        struct epoll_event e = {.events = EPOLLIN, .data.fd = fd};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e);
        n_accepted++;
    }
}

int main(int argc, char **argv) {
    int port = 0, allow_splice = 1;
    double max_s = 7200;
    for (int i = 1; i < argc; i++) {
        if (strncmp(argv[i], "port=", 5) == 0) port = atoi(argv[i] + 5);
        else if (strncmp(argv[i], "splice=", 7) == 0) allow_splice = atoi(argv[i] + 7);
        else if (strncmp(argv[i], "max_s=", 6) == 0) max_s = atof(argv[i] + 6);
        else if (strncmp(argv[i], "lowat=", 6) == 0) g_lowat = atoi(argv[i] + 6);
        else {
            fprintf(stderr, "backend: unknown argument %s\n", argv[i]);
            return 2;
        }
    }
    die_with_parent();
    raise_nofile();
    signal(SIGPIPE, SIG_IGN);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    source_init(allow_splice);

    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd, (struct sockaddr *)&a, sizeof a) != 0 || listen(lfd, 8192) != 0) {
        perror("backend: bind/listen");
        return 1;
    }
    socklen_t al = sizeof a;
    getsockname(lfd, (struct sockaddr *)&a, &al);
    printf("port %d\n", ntohs(a.sin_port));
    fflush(stdout);

    ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event le = {.events = EPOLLIN, .data.fd = lfd};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &le);
    struct epoll_event evs[256];
    double deadline = now_s() + max_s;
    while (!stopping && now_s() < deadline) {
        int n = epoll_wait(ep, evs, 256, 200);
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == lfd) accept_all(lfd);
            else if (conns[fd]) on_event(conns[fd], evs[i].events);
        }
    }
    printf("{\"accepted\": %llu, \"logins\": %llu, \"bad_logins\": %llu, \"closed\": %llu, "
           "\"accept_errors\": %llu, \"bytes_in\": %llu, \"bytes_out\": %llu, \"splice\": %d, "
           "\"statuses\": %llu}\n",
           n_accepted, n_logins, n_bad, n_closed, n_accept_err, bytes_in, bytes_out, g_use_splice, n_statuses);
    return 0;
}
