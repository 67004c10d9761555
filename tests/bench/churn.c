/*
 * tg-churn: loopback TCP connection churn for tcpgadget's benchmark
 * (tests/bench/bench.ts compiles it with cc at bench time).
 *
 * Each worker thread runs one epoll loop that is both client and server:
 * it keeps up to --inflight non-blocking connects going to its own
 * listening socket on 127.0.0.1, accepts and closes what arrives, and
 * closes each client socket once the server's FIN is in. One loop per
 * core, no blocking calls: no context switch per connection, so the
 * kernel's TCP work, and what a tracer adds to it, is what is measured.
 *
 * Each connection is fully established and closed, and produces for a
 * tracer of connect/accept/close exactly:
 *
 *   C  client: connect() reaches ESTABLISHED
 *   A  server: accept4() returns it
 *   X  server: close(): ESTABLISHED -> FIN_WAIT1
 *   X  client: close() after the server's FIN: CLOSE_WAIT -> LAST_ACK
 *
 * The server closes first so that TIME_WAIT stays on the server side,
 * keyed on its listening port: a client's ephemeral port is free again as
 * soon as its LAST_ACK is acknowledged, so the 28k ephemeral ports serve
 * any number of connections without tcp_tw_reuse, and a SYN that finds a
 * server TIME_WAIT of the same 4-tuple is accepted (timestamps, RFC 6191).
 * Past net.ipv4.tcp_max_tw_buckets the kernel closes without TIME_WAIT
 * (TcpExtTCPTimeWaitOverflow in nstat), which is harmless here.
 *
 * Usage: tg-churn [--connections N] [--threads T] [--inflight K]
 * Prints one JSON line when done:
 *   {"pid":..,"comm":"tg-churn","ports":[..],"connections":..,"accepted":..,
 *    "seconds":..,"rate":..,"errors":..,"threads":..,"inflight":..}
 * Exit status 0 if every connection completed without error, 1 otherwise.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define COMM "tg-churn"
#define MAX_THREADS 64
#define MAX_INFLIGHT 4096
/* Connections a worker claims from the shared count at a time. */
#define CLAIM 64
/* Give up once this many system calls failed: something is wrong. */
#define MAX_ERRORS 1000
#define LISTENER_TAG (-1)

struct worker {
	pthread_t thread;
	int listen_fd;
	int epoll_fd;
	struct sockaddr_in addr;
	long completed;
	long accepted;
	long errors;
};

static long target = 1000000;
static int inflight_max = 16;
static atomic_long claimed;
static atomic_long total_errors;
static atomic_int stopping;
static pthread_barrier_t start_barrier;

static void set_comm(void)
{
	/* In every thread: a tracer reports the thread's comm. */
	prctl(PR_SET_NAME, COMM, 0, 0, 0);
}

static double now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void count_error(struct worker *w, const char *what, int err)
{
	long n = atomic_fetch_add(&total_errors, 1) + 1;

	w->errors++;
	if (n <= 5)
		fprintf(stderr, "tg-churn: %s: %s\n", what, strerror(err));
	if (n >= MAX_ERRORS) {
		if (n == MAX_ERRORS)
			fprintf(stderr, "tg-churn: %ld errors, giving up\n", n);
		atomic_store(&stopping, 1);
	}
}

/* Starts one connect; 0 if it is in flight. */
static int start_connection(struct worker *w)
{
	struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0) {
		count_error(w, "socket", errno);
		return -1;
	}
	if (connect(fd, (struct sockaddr *)&w->addr, sizeof(w->addr)) < 0 &&
	    errno != EINPROGRESS) {
		count_error(w, "connect", errno);
		close(fd);
		return -1;
	}
	ev.data.fd = fd;
	if (epoll_ctl(w->epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		count_error(w, "epoll_ctl", errno);
		close(fd);
		return -1;
	}
	return 0;
}

static void accept_all(struct worker *w)
{
	for (;;) {
		int fd = accept4(w->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			/* ECONNABORTED: the peer gave up before accept. */
			if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
				count_error(w, "accept4", errno);
			return;
		}
		close(fd);
		w->accepted++;
	}
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct epoll_event events[256];
	long mine = 0; /* claimed, not yet started */
	int inflight = 0;
	bool more = true;

	set_comm();
	pthread_barrier_wait(&start_barrier);
	while (!atomic_load_explicit(&stopping, memory_order_relaxed)) {
		while (inflight < inflight_max) {
			if (mine == 0 && more) {
				long first = atomic_fetch_add(&claimed, CLAIM);

				mine = first >= target ? 0 : (target - first < CLAIM ? target - first : CLAIM);
				more = mine > 0;
			}
			if (mine == 0)
				break;
			if (start_connection(w) == 0) {
				inflight++;
				mine--;
			} else if (atomic_load(&stopping)) {
				break;
			}
		}
		if (inflight == 0)
			break;
		int n = epoll_wait(w->epoll_fd, events, 256, 1000);

		if (n < 0 && errno != EINTR) {
			count_error(w, "epoll_wait", errno);
			break;
		}
		for (int i = 0; i < n; i++) {
			int fd = events[i].data.fd;
			int err = 0;
			socklen_t len = sizeof(err);

			if (fd == LISTENER_TAG) {
				accept_all(w);
				continue;
			}
			/* Readable or RDHUP: the server's FIN is in (it never
			 * writes). ERR: the connect failed; a new one replaces it. */
			if (events[i].events & EPOLLERR) {
				getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
				count_error(w, "connect", err);
				mine++;
			} else {
				w->completed++;
			}
			close(fd);
			inflight--;
		}
	}
	return NULL;
}

static long parse_long(const char *flag, const char *value, long min, long max)
{
	char *end;
	long n;

	errno = 0;
	n = strtol(value ? value : "", &end, 10);
	if (!value || errno || *end || n < min || n > max) {
		fprintf(stderr, "tg-churn: %s wants a number from %ld to %ld\n", flag, min, max);
		exit(2);
	}
	return n;
}

static int open_listener(struct worker *w)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = LISTENER_TAG };
	socklen_t len = sizeof(w->addr);

	w->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	w->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	if (w->listen_fd < 0 || w->epoll_fd < 0)
		return -1;
	memset(&w->addr, 0, sizeof(w->addr));
	w->addr.sin_family = AF_INET;
	w->addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(w->listen_fd, (struct sockaddr *)&w->addr, sizeof(w->addr)) < 0 ||
	    getsockname(w->listen_fd, (struct sockaddr *)&w->addr, &len) < 0 ||
	    listen(w->listen_fd, 4096) < 0 ||
	    epoll_ctl(w->epoll_fd, EPOLL_CTL_ADD, w->listen_fd, &ev) < 0)
		return -1;
	return 0;
}

int main(int argc, char **argv)
{
	static struct worker workers[MAX_THREADS];
	long completed = 0, accepted = 0;
	int threads = 2;
	double started, seconds;
	int i;

	for (i = 1; i < argc; i += 2) {
		const char *value = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(argv[i], "--connections"))
			target = parse_long(argv[i], value, 1, 1L << 40);
		else if (!strcmp(argv[i], "--threads"))
			threads = parse_long(argv[i], value, 1, MAX_THREADS);
		else if (!strcmp(argv[i], "--inflight"))
			inflight_max = parse_long(argv[i], value, 1, MAX_INFLIGHT);
		else {
			fprintf(stderr,
				"usage: tg-churn [--connections N] [--threads T] [--inflight K]\n");
			return 2;
		}
	}
	set_comm();
	/* Never outlive the benchmark that started us. */
	prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
	if (getppid() == 1)
		return 1;

	for (i = 0; i < threads; i++) {
		if (open_listener(&workers[i]) < 0) {
			perror("tg-churn: listen");
			return 1;
		}
	}
	pthread_barrier_init(&start_barrier, NULL, threads + 1);
	for (i = 0; i < threads; i++)
		pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]);
	pthread_barrier_wait(&start_barrier);
	started = now_seconds();
	for (i = 0; i < threads; i++)
		pthread_join(workers[i].thread, NULL);
	seconds = now_seconds() - started;

	printf("{\"pid\":%d,\"comm\":\"%s\",\"ports\":[", getpid(), COMM);
	for (i = 0; i < threads; i++) {
		printf("%s%d", i ? "," : "", ntohs(workers[i].addr.sin_port));
		completed += workers[i].completed;
		accepted += workers[i].accepted;
		close(workers[i].listen_fd);
	}
	printf("],\"connections\":%ld,\"accepted\":%ld,\"seconds\":%.6f,\"rate\":%.1f,"
	       "\"errors\":%ld,\"threads\":%d,\"inflight\":%d}\n",
	       completed, accepted, seconds, completed / seconds, atomic_load(&total_errors),
	       threads, inflight_max);
	return completed == target && accepted == target && atomic_load(&total_errors) == 0 ? 0 : 1;
}
