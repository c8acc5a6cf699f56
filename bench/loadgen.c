/*
 * loadgen: a small memcached text-protocol load generator (one thread, epoll).
 *
 * Why not memcaslap alone: memcaslap reports latency only as a log2 histogram (no p99.9)
 * and cannot offer a fixed request rate per connection with coordinated-omission
 * correction. This program records every request's latency into a log-linear histogram
 * (64 sub-buckets per power of two: <1.6% error) and prints one JSON object.
 *
 * Modes:
 *   closed loop (default): each connection sends a batch of -P requests (pipelining; 1 = none)
 *     in one write, waits for all replies, and immediately sends the next batch. Latency of a
 *     request = time from the batch's write to the arrival of that request's reply.
 *   open loop (-R rate): a fixed total offered rate spread over the connections, each on its
 *     own schedule (evenly spaced, random phase). A request is timed from its *scheduled*
 *     send time, so a slow server is charged for the queueing it causes (wrk2's rule).
 *   load (-L): set every key 0..keyspace-1 exactly once, pipelined, then exit.
 *
 * Protocol: memcached's text protocol, or with -r Redis's RESP (SET / GET of the same keys
 * and values; replies +OK, $<n> or $-1), so a Redis server can take the same traffic.
 * -m (multi-get) is for the memcached protocol only.
 *
 * Workload: uniform random keys "key:%010u" from [0, keyspace); -g is the fraction of gets;
 * -m N makes each get a multi-get of N keys; sets carry -v bytes of data.
 * The generator's own CPU time is reported (cpu_pct) so it can be shown not to be the
 * bottleneck. Build: gcc -O2 -o loadgen loadgen.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define SUB_BITS 6
#define SUB (1 << SUB_BITS)
#define NBUCKETS (64 * SUB)
#define MAX_INFLIGHT 4096
#define STALL_NS 20000000000ULL /* no reply at all for this long: give up */

enum kind { K_GET = 0, K_SET = 1 };

struct pending {
    uint64_t origin_ns; /* when the request was sent (closed) or scheduled (open) */
    uint8_t kind;
    uint16_t nkeys;
};

struct conn {
    int fd;
    char *out;
    size_t out_len, out_off, out_cap;
    char *in;
    size_t in_len, in_cap;
    struct pending q[MAX_INFLIGHT];
    unsigned q_head, q_len;      /* replies awaited, in order */
    uint64_t backlog[MAX_INFLIGHT]; /* open loop: scheduled but not yet sent */
    unsigned b_head, b_len;
    int want_out;
};

static uint64_t hist[NBUCKETS];
static uint64_t n_all; /* every completed request, warm-up included */
static uint64_t n_ops, n_gets, n_sets, n_hits, n_misses, n_errors, n_dropped;
static uint64_t lat_max, lat_sum;
static int recording;
static uint64_t last_progress; /* last reply, or last send onto an idle connection */
static uint64_t rng_state = 88172645463325252ULL;

/* options */
static const char *host = "127.0.0.1";
static int port = 11211, nconns = 20, pipeline = 1, multiget = 1, load_mode = 0, resp = 0;
static double duration = 10, warmup = 1, get_ratio = 0.9, rate = 0;
static unsigned keyspace = 100000, valsize = 1024;
static char *value;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

static uint64_t rnd(void) {
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

static int bucket_of(uint64_t v) {
    if (v < SUB) return (int)v;
    int msb = 63 - __builtin_clzll(v);
    int shift = msb - SUB_BITS;
    return (shift + 1) * SUB + (int)((v >> shift) & (SUB - 1));
}

static uint64_t bucket_value(int b) {
    if (b < SUB) return (uint64_t)b;
    int shift = b / SUB - 1;
    uint64_t sub = (uint64_t)(b % SUB) + SUB;
    return (sub << shift) + ((1ULL << shift) >> 1); /* bucket midpoint */
}

static void record(uint64_t lat) {
    if (!recording) return;
    hist[bucket_of(lat)]++;
    lat_sum += lat;
    if (lat > lat_max) lat_max = lat;
}

static double percentile(double p) {
    uint64_t total = 0;
    for (int i = 0; i < NBUCKETS; i++) total += hist[i];
    if (!total) return 0;
    uint64_t want = (uint64_t)(p * (double)total);
    if (want >= total) want = total - 1;
    uint64_t seen = 0;
    for (int i = 0; i < NBUCKETS; i++) {
        seen += hist[i];
        if (seen > want) {
            uint64_t v = bucket_value(i);
            return (v < lat_max ? v : lat_max) / 1000.0;
        }
    }
    return lat_max / 1000.0;
}

static void die(const char *what) {
    perror(what);
    exit(2);
}

static void out_reserve(struct conn *c, size_t more) {
    if (c->out_len + more <= c->out_cap) return;
    if (c->out_off) { /* compact first */
        memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
        c->out_len -= c->out_off;
        c->out_off = 0;
        if (c->out_len + more <= c->out_cap) return;
    }
    while (c->out_len + more > c->out_cap) c->out_cap = c->out_cap ? c->out_cap * 2 : 65536;
    c->out = realloc(c->out, c->out_cap);
    if (!c->out) die("realloc");
}

static int put_key(char *dst, unsigned k) { return sprintf(dst, "key:%010u", k); }

/* Append one request to the connection's output; returns its kind. */
static void queue_request(struct conn *c, int kind, uint64_t origin, unsigned load_key) {
    if (c->q_len == 0) last_progress = now_ns();
    struct pending *p = &c->q[(c->q_head + c->q_len) % MAX_INFLIGHT];
    p->origin_ns = origin;
    p->kind = (uint8_t)kind;
    p->nkeys = 1;
    c->q_len++;
    if (kind == K_SET) {
        out_reserve(c, 64 + valsize);
        char *w = c->out + c->out_len;
        unsigned k = load_mode ? load_key : (unsigned)(rnd() % keyspace);
        int n;
        if (resp) {
            n = sprintf(w, "*3\r\n$3\r\nSET\r\n$14\r\n");
            n += put_key(w + n, k);
            n += sprintf(w + n, "\r\n$%u\r\n", valsize);
        } else {
            n = sprintf(w, "set ");
            n += put_key(w + n, k);
            n += sprintf(w + n, " 0 0 %u\r\n", valsize);
        }
        memcpy(w + n, value, valsize);
        n += valsize;
        w[n++] = '\r';
        w[n++] = '\n';
        c->out_len += n;
    } else if (resp) {
        out_reserve(c, 64);
        char *w = c->out + c->out_len;
        int n = sprintf(w, "*2\r\n$3\r\nGET\r\n$14\r\n");
        n += put_key(w + n, (unsigned)(rnd() % keyspace));
        w[n++] = '\r';
        w[n++] = '\n';
        c->out_len += n;
    } else {
        out_reserve(c, 8 + 16 * (size_t)multiget);
        char *w = c->out + c->out_len;
        int n = sprintf(w, "get");
        for (int i = 0; i < multiget; i++) {
            w[n++] = ' ';
            n += put_key(w + n, (unsigned)(rnd() % keyspace));
        }
        w[n++] = '\r';
        w[n++] = '\n';
        c->out_len += n;
        p->nkeys = (uint16_t)multiget;
    }
}

static int flush_out(struct conn *c, int ep) {
    while (c->out_off < c->out_len) {
        ssize_t n = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
        if (n < 0) {
            if (errno == EAGAIN) break;
            if (errno == EINTR) continue;
            return -1;
        }
        c->out_off += (size_t)n;
    }
    if (c->out_off == c->out_len) c->out_off = c->out_len = 0;
    int want = c->out_len > 0;
    if (want != c->want_out) {
        struct epoll_event ev = {.events = EPOLLIN | (want ? EPOLLOUT : 0), .data.ptr = c};
        if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0) die("epoll_ctl");
        c->want_out = want;
    }
    return 0;
}

/* Parse complete replies; returns the number of requests completed. */
static int parse_replies(struct conn *c, uint64_t t) {
    size_t pos = 0;
    int done = 0;
    while (c->q_len) {
        struct pending *p = &c->q[c->q_head];
        size_t scan = pos;
        int hits = 0, complete = 0, error = 0;
        for (;;) {
            char *nl = memchr(c->in + scan, '\n', c->in_len - scan);
            if (!nl) break;
            size_t line_len = (size_t)(nl - (c->in + scan)) + 1;
            char *line = c->in + scan;
            if (resp && p->kind == K_SET) {
                error = !(line_len == 5 && memcmp(line, "+OK\r\n", 5) == 0);
                scan += line_len;
                complete = 1;
                break;
            }
            if (resp) { /* GET: $<n>\r\n<data>\r\n, $-1\r\n (miss) or -ERR ... */
                if (line[0] != '$') {
                    error = 1;
                    scan += line_len;
                } else if (line[1] == '-') {
                    scan += line_len;
                } else {
                    size_t need = line_len + strtoul(line + 1, NULL, 10) + 2;
                    if (c->in_len - scan < need) break;
                    scan += need;
                    hits = 1;
                }
                complete = 1;
                break;
            }
            if (p->kind == K_SET) {
                error = !(line_len == 8 && memcmp(line, "STORED\r\n", 8) == 0);
                scan += line_len;
                complete = 1;
                break;
            }
            if (line_len == 5 && memcmp(line, "END\r\n", 5) == 0) {
                scan += line_len;
                complete = 1;
                break;
            }
            if (line_len > 6 && memcmp(line, "VALUE ", 6) == 0) {
                /* VALUE <key> <flags> <bytes> : bytes is the 4th token */
                char *q = line + 6;
                q = memchr(q, ' ', line_len - 6);
                if (q) q = memchr(q + 1, ' ', (size_t)(nl - q));
                unsigned long nbytes = q ? strtoul(q + 1, NULL, 10) : 0;
                size_t need = line_len + nbytes + 2;
                if (c->in_len - scan < need) break;
                scan += need;
                hits++;
                continue;
            }
            error = 1; /* SERVER_ERROR / CLIENT_ERROR / ERROR ends the reply */
            scan += line_len;
            complete = 1;
            break;
        }
        if (!complete) break;
        pos = scan;
        c->q_head = (c->q_head + 1) % MAX_INFLIGHT;
        c->q_len--;
        done++;
        n_all++;
        if (recording) {
            n_ops++;
            if (error) n_errors++;
            if (p->kind == K_SET) {
                n_sets++;
            } else {
                n_gets++;
                n_hits += (uint64_t)hits;
                n_misses += (uint64_t)(p->nkeys - hits);
            }
        }
        record(t - p->origin_ns);
    }
    if (pos) {
        memmove(c->in, c->in + pos, c->in_len - pos);
        c->in_len -= pos;
    }
    return done;
}

static int connect_one(void) {
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) die("inet_pton");
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) die("socket");
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) die("connect");
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

static void usage(void) {
    fprintf(stderr,
            "usage: loadgen [-s host] [-p port] [-c conns] [-t seconds] [-w warmup_s]\n"
            "               [-k keyspace] [-v value_bytes] [-g get_fraction] [-P pipeline]\n"
            "               [-m keys_per_get] [-R total_rate_per_s] [-L (load keys)]\n"
            "               [-r (Redis protocol)]\n");
    exit(2);
}

int main(int argc, char **argv) {
    int opt;
    while ((opt = getopt(argc, argv, "s:p:c:t:w:k:v:g:P:m:R:Lr")) != -1) {
        switch (opt) {
        case 's': host = optarg; break;
        case 'p': port = atoi(optarg); break;
        case 'c': nconns = atoi(optarg); break;
        case 't': duration = atof(optarg); break;
        case 'w': warmup = atof(optarg); break;
        case 'k': keyspace = (unsigned)strtoul(optarg, NULL, 10); break;
        case 'v': valsize = (unsigned)strtoul(optarg, NULL, 10); break;
        case 'g': get_ratio = atof(optarg); break;
        case 'P': pipeline = atoi(optarg); break;
        case 'm': multiget = atoi(optarg); break;
        case 'R': rate = atof(optarg); break;
        case 'L': load_mode = 1; break;
        case 'r': resp = 1; break;
        default: usage();
        }
    }
    if (nconns < 1 || pipeline < 1 || pipeline > MAX_INFLIGHT / 2 || multiget < 1 ||
        keyspace < 1 || (resp && multiget > 1))
        usage();
    if (rate > 0 && pipeline != 1) {
        fprintf(stderr, "open loop (-R) is for unpipelined requests\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    rng_state ^= (uint64_t)getpid() * 0x9E3779B97F4A7C15ULL;
    value = malloc(valsize + 1);
    memset(value, 'x', valsize);

    int ep = epoll_create1(0);
    if (ep < 0) die("epoll_create1");
    struct conn *conns = calloc((size_t)nconns, sizeof *conns);
    if (!conns) die("calloc");
    for (int i = 0; i < nconns; i++) {
        conns[i].fd = connect_one();
        conns[i].in_cap = 65536;
        conns[i].in = malloc(conns[i].in_cap);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &conns[i]};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, conns[i].fd, &ev) < 0) die("epoll_ctl");
    }

    uint64_t start = now_ns();
    uint64_t rec_start = start + (uint64_t)(warmup * 1e9);
    uint64_t end = rec_start + (uint64_t)(duration * 1e9);
    if (load_mode) {
        recording = 1;
        rec_start = start;
        end = UINT64_MAX;
    }
    unsigned next_load_key = 0;
    unsigned get_threshold = (unsigned)(get_ratio * 1000000.0);

    /* open loop schedule: connection i sends at start + phase_i + k * interval */
    uint64_t interval = 0, *next_slot = NULL;
    if (rate > 0) {
        interval = (uint64_t)(1e9 * nconns / rate);
        next_slot = malloc(sizeof(uint64_t) * (size_t)nconns);
        for (int i = 0; i < nconns; i++) next_slot[i] = start + rnd() % interval;
    }

    /* send one closed-loop batch on connection c */
#define SEND_BATCH(c, t)                                                                       \
    do {                                                                                       \
        for (int j = 0; j < pipeline; j++) {                                                   \
            if (load_mode) {                                                                   \
                if (next_load_key >= keyspace) break;                                          \
                queue_request((c), K_SET, (t), next_load_key++);                               \
            } else {                                                                           \
                int kind = (rnd() % 1000000) < get_threshold ? K_GET : K_SET;                  \
                queue_request((c), kind, (t), 0);                                              \
            }                                                                                  \
        }                                                                                      \
    } while (0)

    if (rate == 0) {
        for (int i = 0; i < nconns; i++) {
            uint64_t t = now_ns();
            SEND_BATCH(&conns[i], t);
            if (flush_out(&conns[i], ep) < 0) die("write");
        }
    }

    struct epoll_event events[1024];
    int stopping = 0;
    last_progress = now_ns();
    for (;;) {
        uint64_t t = now_ns();
        if (t - last_progress > STALL_NS) {
            fprintf(stderr, "no reply for %d s: the server stalled\n", (int)(STALL_NS / 1000000000ULL));
            exit(3);
        }
        if (!recording && t >= rec_start) recording = 1;
        if (!stopping && t >= end) {
            stopping = 1;
            recording = 0; /* replies still in flight are drained, not counted */
        }
        if (stopping) {
            int busy = 0;
            for (int i = 0; i < nconns && !busy; i++) busy = conns[i].q_len > 0;
            if (!busy || t >= end + 5000000000ULL) break;
        }
        uint64_t wake = stopping ? t + 100000000ULL : end;
        if (rate > 0 && !stopping) {
            for (int i = 0; i < nconns; i++) {
                struct conn *c = &conns[i];
                while (next_slot[i] <= t) {
                    if (c->b_len < MAX_INFLIGHT) {
                        c->backlog[(c->b_head + c->b_len) % MAX_INFLIGHT] = next_slot[i];
                        c->b_len++;
                    } else {
                        n_dropped++;
                    }
                    next_slot[i] += interval;
                }
                if (c->q_len == 0 && c->b_len) {
                    int kind = (rnd() % 1000000) < get_threshold ? K_GET : K_SET;
                    queue_request(c, kind, c->backlog[c->b_head], 0);
                    c->b_head = (c->b_head + 1) % MAX_INFLIGHT;
                    c->b_len--;
                    if (flush_out(c, ep) < 0) die("write");
                }
                if (next_slot[i] < wake) wake = next_slot[i];
            }
        }
        if (load_mode) {
            int busy = 0;
            for (int i = 0; i < nconns && !busy; i++) busy = conns[i].q_len > 0;
            if (!busy && next_load_key >= keyspace) break;
            wake = t + 1000000000ULL;
        }
        struct timespec ts = {0, 0};
        if (wake > t) {
            uint64_t d = wake - t;
            ts.tv_sec = (time_t)(d / 1000000000ULL);
            ts.tv_nsec = (long)(d % 1000000000ULL);
        }
        int n = epoll_pwait2(ep, events, 1024, &ts, NULL);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_pwait2");
        }
        t = now_ns();
        for (int e = 0; e < n; e++) {
            struct conn *c = events[e].data.ptr;
            if (events[e].events & EPOLLOUT) {
                if (flush_out(c, ep) < 0) die("write");
            }
            if (!(events[e].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) continue;
            for (;;) {
                if (c->in_cap - c->in_len < 16384) {
                    c->in_cap *= 2;
                    c->in = realloc(c->in, c->in_cap);
                    if (!c->in) die("realloc");
                }
                ssize_t r = read(c->fd, c->in + c->in_len, c->in_cap - c->in_len);
                if (r < 0) {
                    if (errno == EAGAIN) break;
                    if (errno == EINTR) continue;
                    die("read");
                }
                if (r == 0) {
                    fprintf(stderr, "server closed a connection\n");
                    exit(3);
                }
                c->in_len += (size_t)r;
                if ((size_t)r < c->in_cap - c->in_len + (size_t)r) break;
            }
            if (parse_replies(c, t)) last_progress = t;
            if (c->q_len == 0 && !stopping) {
                if (rate > 0) {
                    if (c->b_len) {
                        int kind = (rnd() % 1000000) < get_threshold ? K_GET : K_SET;
                        queue_request(c, kind, c->backlog[c->b_head], 0);
                        c->b_head = (c->b_head + 1) % MAX_INFLIGHT;
                        c->b_len--;
                    }
                } else {
                    SEND_BATCH(c, t);
                }
                if (flush_out(c, ep) < 0) die("write");
            }
        }
    }
    uint64_t finish = now_ns();
    double secs = load_mode ? (finish - start) / 1e9 : duration;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
                 ru.ru_stime.tv_usec / 1e6;
    double wall = (finish - start) / 1e9;
    printf("{\"ops\": %llu, \"gets\": %llu, \"sets\": %llu, \"hits\": %llu, \"misses\": %llu, "
           "\"errors\": %llu, \"dropped\": %llu, \"seconds\": %.3f, \"ops_per_sec\": %.1f, "
           "\"mean_us\": %.1f, \"p50_us\": %.1f, \"p99_us\": %.1f, \"p999_us\": %.1f, "
           "\"max_us\": %.1f, \"cpu_pct\": %.1f, \"all_ops\": %llu, \"wall_s\": %.3f}\n",
           (unsigned long long)n_ops, (unsigned long long)n_gets, (unsigned long long)n_sets,
           (unsigned long long)n_hits, (unsigned long long)n_misses,
           (unsigned long long)n_errors, (unsigned long long)n_dropped, secs, n_ops / secs,
           n_ops ? lat_sum / 1000.0 / n_ops : 0.0, percentile(0.50), percentile(0.99),
           percentile(0.999), lat_max / 1000.0, 100.0 * cpu / wall, (unsigned long long)n_all, wall);
    return 0;
}
