/*
 * tg-tap: the reader of a tracer's output for tcpgadget's benchmark
 * (tests/bench/bench.ts compiles it with cc at bench time, like tg-churn).
 *
 * The benchmark must check that every event of the load generator
 * (tg-churn) arrived, but at hundreds of thousands of lines a second a
 * reader in JavaScript costs the 2-core machine a good share of a core,
 * taken from the workload and the tracer it measures. tg-tap reads the
 * tracer's stdout as cheaply as `cat >/dev/null` would, with large reads,
 * counts the plain lines of the load generator itself (memchr/memmem, no
 * copy), and hands everything else to the benchmark, which checks it as
 * before.
 *
 * Usage: tg-tap --mode json|columns|reference [--sample N] -- COMMAND [ARG...]
 *
 * Runs COMMAND with its stdout on a pipe that tg-tap reads (stdin and
 * stderr are tg-tap's own), in a child that the kernel kills if tg-tap
 * dies (PR_SET_PDEATHSIG). SIGINT, SIGTERM and SIGHUP sent to tg-tap are
 * passed on to it. tg-tap exits once the pipe is closed and the command
 * has exited, with its exit status (128 + the signal if it was killed).
 *
 * Plain lines of the load generator, counted here:
 *   json       ..."pid":N,"comm":"tg-churn"..."operation":"connect|accept|close|unknown"...
 *   columns    ... T <spaces> PID <spaces> tg-churn <spaces> ...
 *   reference  any line containing tg-churn
 *
 * What tg-tap prints on its stdout, one line each, the first character
 * telling what it is:
 *   P<pid>                 first: the command's pid
 *   ><line>                a line of the command's output, to be read by the
 *                          benchmark: the first line (a header, or the first
 *                          event), and every line that is not a plain line of
 *                          the load generator
 *   =<pid> <kind> <line>   one in --sample (default 1024) of the plain lines,
 *                          already counted, as read here (kind C, A, X or U;
 *                          0 - in reference mode), for the benchmark to check
 *   R{...}                 a report: at start, every 100 ms if anything changed,
 *                          and at the end, with "exit"; JSON:
 *     bytes, reads, lines  read so far (lines: all, forwarded ones too)
 *     forwarded            lines printed as ">" (samples are not)
 *     sampled              lines printed as "="
 *     named                plain lines counted (all modes)
 *     pids                 [[pid, C, A, X, U], ...] by pid (json, columns)
 *     overflow             [C, A, X, U] of pids past the table
 *     churnAgeUs           microseconds since the last read that held a plain
 *                          line, or -1 if none yet
 *     cpuUs                tg-tap's own CPU time (user + system)
 *     exit                 {"code": N, "signal": S}: at the end, the command's
 *                          exit code or the signal that killed it (else 0)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define COMM "tg-churn"
#define COMM_LEN (sizeof(COMM) - 1)
#define READ_SIZE (1 << 20)
#define OUT_SIZE (1 << 16)
#define MAX_PIDS 64
/* Each report wakes the benchmark (Deno), which is dear in a VM: reports
 * every 20 ms took about 1% of a core more, in the traced runs only. */
#define REPORT_INTERVAL_US 100000
/* The pipe's size, and how reads gather output (see main). */
#define PIPE_BYTES (4 << 20)
#define CHUNK_BYTES (256 << 10)
#define GATHER_NS 5000000

enum mode { MODE_JSON, MODE_COLUMNS, MODE_REFERENCE };
enum kind { KIND_C, KIND_A, KIND_X, KIND_U, KINDS };
static const char KIND_LETTERS[KINDS] = { 'C', 'A', 'X', 'U' };

struct pid_counts {
	long pid;
	uint64_t kinds[KINDS];
};

static enum mode mode;
static uint64_t sample_every = 1024;

static struct pid_counts pids[MAX_PIDS];
static int npids;
static int last_pid_slot;
static uint64_t overflow[KINDS];

static uint64_t bytes, reads, lines, forwarded, sampled, named;
static uint64_t until_sample; /* plain lines to skip before the next sample */
static bool first_line = true;
static int64_t last_churn_ns = -1;
static bool changed = true;

static pid_t child = -1;
static volatile sig_atomic_t tick;

static char out[OUT_SIZE];
static size_t out_len;

static int64_t now_ns(clockid_t clock)
{
	struct timespec ts;

	clock_gettime(clock, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void write_all(const char *data, size_t len)
{
	while (len > 0) {
		ssize_t n = write(STDOUT_FILENO, data, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			/* The benchmark is gone: so is the command (PDEATHSIG). */
			_exit(141);
		}
		data += n;
		len -= (size_t)n;
	}
}

static void flush(void)
{
	write_all(out, out_len);
	out_len = 0;
}

static void put(const char *data, size_t len)
{
	if (out_len + len > OUT_SIZE) {
		flush();
		if (len > OUT_SIZE) {
			write_all(data, len);
			return;
		}
	}
	memcpy(out + out_len, data, len);
	out_len += len;
}

static void putf(const char *format, ...) __attribute__((format(printf, 1, 2)));

static void putf(const char *format, ...)
{
	char text[256];
	va_list args;
	int n;

	va_start(args, format);
	n = vsnprintf(text, sizeof(text), format, args);
	va_end(args);
	if (n > 0)
		put(text, (size_t)n < sizeof(text) ? (size_t)n : sizeof(text) - 1);
}

/* A line for the benchmark to read: prefix, line, newline. */
static void forward(char prefix, const char *line, size_t len)
{
	put(&prefix, 1);
	put(line, len);
	put("\n", 1);
}

static void count(long pid, enum kind kind, const char *line, size_t len)
{
	struct pid_counts *slot = NULL;
	int i;

	named++;
	if (mode != MODE_REFERENCE) {
		if (npids > 0 && pids[last_pid_slot].pid == pid) {
			slot = &pids[last_pid_slot];
		} else {
			for (i = 0; i < npids && pids[i].pid != pid; i++)
				;
			if (i == npids && npids < MAX_PIDS)
				pids[npids++].pid = pid;
			if (i < npids) {
				slot = &pids[i];
				last_pid_slot = i;
			}
		}
		if (slot)
			slot->kinds[kind]++;
		else
			overflow[kind]++;
	}
	if (until_sample-- == 0) {
		until_sample = sample_every - 1;
		sampled++;
		if (mode == MODE_REFERENCE)
			putf("=0 - ");
		else
			putf("=%ld %c ", pid, KIND_LETTERS[kind]);
		put(line, len);
		put("\n", 1);
	}
}

static bool starts_with(const char *p, const char *end, const char *prefix, size_t len)
{
	return (size_t)(end - p) >= len && memcmp(p, prefix, len) == 0;
}

#define STARTS_WITH(p, end, literal) starts_with(p, end, literal, sizeof(literal) - 1)

/*
 * Where a needle was found in the previous line: lines of one stream put
 * their keys at the same offsets as long as the values before them keep
 * their lengths, so a memcmp there mostly replaces a memmem (which cost
 * more than the rest of reading a line). Only for needles that can occur
 * once in a line: a JSON key with its quote and colon (a quote inside a
 * string is escaped), or a whole column between spaces (no column before
 * the command holds a space).
 */
struct hint {
	size_t offset;
};

/* The first occurrence of needle in [from, end), looked for at the hint first. */
static const char *find_hinted(const char *from, const char *end, const char *needle, size_t len,
			       struct hint *hint)
{
	const char *p;

	if (hint->offset + len <= (size_t)(end - from) &&
	    memcmp(from + hint->offset, needle, len) == 0)
		return from + hint->offset;
	p = memmem(from, (size_t)(end - from), needle, len);
	if (p != NULL)
		hint->offset = (size_t)(p - from);
	return p;
}

static struct hint pid_hint, operation_hint, comm_hint;

/* A JSON event: true if it was a plain line of the load generator, and counted. */
static bool read_json(const char *line, const char *end)
{
	/* As the benchmark's JsonCounter reads it: the first `"pid":` is the key. */
	const char *p = find_hinted(line, end, "\"pid\":", 6, &pid_hint);
	const char *op;
	long pid = 0;
	int n = 0;
	enum kind kind;

	if (p == NULL)
		return false;
	for (p += 6; p < end && *p >= '0' && *p <= '9' && n < 10; p++, n++)
		pid = pid * 10 + (*p - '0');
	if (n == 0 || n == 10 || !STARTS_WITH(p, end, ",\"comm\":\"" COMM "\""))
		return false;
	p += sizeof(",\"comm\":\"" COMM "\"") - 1;
	op = find_hinted(p, end, "\"operation\":\"", 13, &operation_hint);
	if (op == NULL)
		return false;
	op += 13;
	if (STARTS_WITH(op, end, "connect\""))
		kind = KIND_C;
	else if (STARTS_WITH(op, end, "accept\""))
		kind = KIND_A;
	else if (STARTS_WITH(op, end, "close\""))
		kind = KIND_X;
	else if (STARTS_WITH(op, end, "unknown\""))
		kind = KIND_U;
	else
		return false;
	count(pid, kind, line, (size_t)(end - line));
	return true;
}

/* A row of the default columns: ... T <spaces> PID <spaces> tg-churn <space> ... */
static bool read_columns(const char *line, const char *end)
{
	const char *p = line, *at;
	long pid, scale;
	int k, n;

	/* The comm, whole, between spaces. */
	p = find_hinted(line, end, " " COMM " ", COMM_LEN + 2, &comm_hint);
	if (p == NULL)
		return false;
	p++;
	/* Read backwards, as the benchmark's ColumnsCounter does: spaces, the pid, spaces, the kind. */
	at = p - 1;
	while (at > line && *at == ' ')
		at--;
	for (pid = 0, scale = 1, n = 0; at > line && *at >= '0' && *at <= '9'; at--, scale *= 10) {
		if (++n > 9)
			return false;
		pid += (*at - '0') * scale;
	}
	if (n == 0)
		return false;
	while (at > line && *at == ' ')
		at--;
	if (at == line || at[-1] != ' ')
		return false;
	for (k = 0; k < KINDS && KIND_LETTERS[k] != *at; k++)
		;
	if (k == KINDS)
		return false;
	count(pid, (enum kind)k, line, (size_t)(end - line));
	return true;
}

static bool read_reference(const char *line, const char *end)
{
	if (memmem(line, (size_t)(end - line), COMM, COMM_LEN) == NULL)
		return false;
	count(0, KIND_U, line, (size_t)(end - line));
	return true;
}

static void line(const char *start, const char *end)
{
	bool plain;

	lines++;
	if (first_line) {
		first_line = false;
		plain = false;
	} else if (mode == MODE_JSON) {
		plain = read_json(start, end);
	} else if (mode == MODE_COLUMNS) {
		plain = read_columns(start, end);
	} else {
		plain = read_reference(start, end);
	}
	if (!plain) {
		forwarded++;
		forward('>', start, (size_t)(end - start));
	}
}

static void report(int status, bool final)
{
	int i, k;

	putf("R{\"bytes\":%" PRIu64 ",\"reads\":%" PRIu64 ",\"lines\":%" PRIu64
	     ",\"forwarded\":%" PRIu64 ",\"sampled\":%" PRIu64 ",\"named\":%" PRIu64
	     ",\"pids\":[",
	     bytes, reads, lines, forwarded, sampled, named);
	for (i = 0; i < npids; i++) {
		putf("%s[%ld", i ? "," : "", pids[i].pid);
		for (k = 0; k < KINDS; k++)
			putf(",%" PRIu64, pids[i].kinds[k]);
		put("]", 1);
	}
	putf("],\"overflow\":[%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64 "]",
	     overflow[0], overflow[1], overflow[2], overflow[3]);
	putf(",\"churnAgeUs\":%" PRId64,
	     last_churn_ns < 0 ? -1 : (now_ns(CLOCK_MONOTONIC) - last_churn_ns) / 1000);
	putf(",\"cpuUs\":%" PRId64, now_ns(CLOCK_PROCESS_CPUTIME_ID) / 1000);
	if (final) {
		putf(",\"exit\":{\"code\":%d,\"signal\":%d}",
		     WIFEXITED(status) ? WEXITSTATUS(status) : 0,
		     WIFSIGNALED(status) ? WTERMSIG(status) : 0);
	}
	put("}\n", 2);
	flush();
	changed = false;
}

static void on_tick(int sig)
{
	(void)sig;
	tick = 1;
}

static void pass_on(int sig)
{
	if (child > 0)
		kill(child, sig);
}

static void on_signal(int sig, void (*handler)(int), bool restart)
{
	struct sigaction action;

	memset(&action, 0, sizeof(action));
	action.sa_handler = handler;
	action.sa_flags = restart ? SA_RESTART : 0;
	sigemptyset(&action.sa_mask);
	sigaction(sig, &action, NULL);
}

static void set_timer(long interval_us)
{
	struct itimerval timer = { { 0, interval_us }, { 0, interval_us } };

	setitimer(ITIMER_REAL, &timer, NULL);
}

/* Whether the benchmark has stopped reading our stdout. */
static bool reader_gone(void)
{
	struct pollfd fd = { STDOUT_FILENO, 0, 0 };

	return poll(&fd, 1, 0) == 1 && (fd.revents & (POLLERR | POLLHUP)) != 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: tg-tap --mode json|columns|reference [--sample N] -- COMMAND [ARG...]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	static char buffer_storage[READ_SIZE];
	char *buffer = buffer_storage;
	size_t size = READ_SIZE, have = 0;
	pid_t parent = getpid();
	int fds[2], status = 0, i;
	bool mode_given = false;

	for (i = 1; i < argc && strcmp(argv[i], "--") != 0; i += 2) {
		const char *value = i + 1 < argc ? argv[i + 1] : NULL;

		if (value == NULL)
			usage();
		if (!strcmp(argv[i], "--mode")) {
			mode_given = true;
			if (!strcmp(value, "json"))
				mode = MODE_JSON;
			else if (!strcmp(value, "columns"))
				mode = MODE_COLUMNS;
			else if (!strcmp(value, "reference"))
				mode = MODE_REFERENCE;
			else
				usage();
		} else if (!strcmp(argv[i], "--sample")) {
			char *rest;

			sample_every = strtoull(value, &rest, 10);
			if (*rest != '\0' || sample_every == 0)
				usage();
		} else {
			usage();
		}
	}
	if (!mode_given || i + 1 >= argc)
		usage();
	argv += i + 1;

	signal(SIGPIPE, SIG_DFL);
	if (pipe2(fds, O_CLOEXEC) < 0) {
		perror("tg-tap: pipe");
		return 127;
	}
	/* A pipe big enough to hold a few milliseconds of output, read in large
	 * chunks (see below): the tracer's writes then rarely wait for tg-tap,
	 * and neither side is woken for every 64 KiB, a wakeup costing tens of
	 * microseconds of CPU in a VM. As a consumer writing to a file would. */
	if (fcntl(fds[0], F_SETPIPE_SZ, PIPE_BYTES) < 0)
		fcntl(fds[0], F_SETPIPE_SZ, 1 << 20);
	child = fork();
	if (child < 0) {
		perror("tg-tap: fork");
		return 127;
	}
	if (child == 0) {
		/* Never outlive tg-tap: if it dies, the benchmark lost the tracer. */
		prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
		if (getppid() != parent)
			_exit(127);
		if (dup2(fds[1], STDOUT_FILENO) < 0) {
			perror("tg-tap: dup2");
			_exit(127);
		}
		execvp(argv[0], argv);
		fprintf(stderr, "tg-tap: %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	close(fds[1]);
	on_signal(SIGINT, pass_on, true);
	on_signal(SIGTERM, pass_on, true);
	on_signal(SIGHUP, pass_on, true);
	/* Interrupts a blocked read() so that a report goes out in time. */
	on_signal(SIGALRM, on_tick, false);
	set_timer(REPORT_INTERVAL_US);

	putf("P%ld\n", (long)child);
	report(0, false);

	for (;;) {
		ssize_t n = read(fds[0], buffer + have, size - have);
		uint64_t named_before = named;
		bool before_first = first_line;
		char *start, *end, *nl;

		if (n < 0 && errno != EINTR) {
			perror("tg-tap: read");
			break;
		}
		if (n == 0)
			break;
		if (n > 0 && (size_t)n < CHUNK_BYTES) {
			/* Little was waiting: let more gather before the next read. */
			struct timespec pause = { 0, GATHER_NS };

			nanosleep(&pause, NULL);
		}
		if (n > 0) {
			bytes += (uint64_t)n;
			reads++;
			start = buffer;
			end = buffer + have + n;
			while ((nl = memchr(start, '\n', (size_t)(end - start))) != NULL) {
				line(start, nl);
				start = nl + 1;
			}
			have = (size_t)(end - start);
			if (have == size) {
				/* One line longer than the buffer: make room. */
				char *bigger = malloc(size * 2);

				if (bigger == NULL) {
					perror("tg-tap: malloc");
					break;
				}
				memcpy(bigger, buffer, have);
				if (buffer != buffer_storage)
					free(buffer);
				buffer = bigger;
				size *= 2;
			} else if (have > 0 && start != buffer) {
				memmove(buffer, start, have);
			}
			if (named != named_before)
				last_churn_ns = now_ns(CLOCK_MONOTONIC);
			changed = true;
			/*
			 * The first line at once: a header tells that the tracer
			 * attached. The others with the next report: every write
			 * costs the benchmark a wakeup, more than the lines.
			 */
			if (before_first && !first_line)
				flush();
		}
		if (tick) {
			tick = 0;
			if (reader_gone()) {
				kill(child, SIGKILL);
				_exit(141);
			}
			if (changed)
				report(0, false);
		}
	}
	if (have > 0) {
		/* A last line without a newline. */
		uint64_t named_before = named;

		line(buffer, buffer + have);
		if (named != named_before)
			last_churn_ns = now_ns(CLOCK_MONOTONIC);
	}
	set_timer(0);
	close(fds[0]);
	while (waitpid(child, &status, 0) < 0 && errno == EINTR)
		;
	report(status, true);
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return WEXITSTATUS(status);
}
