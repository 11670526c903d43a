/* The live progress line (progress_bar.h). */
#include "progress_bar.h"

#include <errno.h>
#include <stdarg.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>


#include "human.h"
#include "json_field.h"

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void progress_init(struct progress_bar *p, FILE *out, bool is_tty)
{
	memset(p, 0, sizeof(*p));
	p->out = out;
	p->is_tty = is_tty;
	p->last_ms = -1;
}

/* Appends to @buf at *@pos, never past @len (snprintf semantics). */
static void add(char *buf, size_t len, size_t *pos, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void add(char *buf, size_t len, size_t *pos, const char *fmt, ...)
{
	va_list ap;

	if (*pos >= len)
		return;
	va_start(ap, fmt);
	int n = vsnprintf(buf + *pos, len - *pos, fmt, ap);
	va_end(ap);
	if (n > 0)
		*pos += (size_t)n;
	if (*pos >= len)
		*pos = len - 1;
}

struct fields {
	unsigned bad;
	const char *first_bad;
};

static bool get_u64(struct fields *f, json_object *ev, const char *key, uint64_t *v)
{
	int e = jf_u64(ev, key, v);

	if (e < 0) {
		if (!f->bad++)
			f->first_bad = key;
		return false;
	}
	return true;
}

unsigned progress_format(json_object *ev, char *buf, size_t len, const char **first_bad)
{
	struct fields f = {0};
	char b[5][HUMAN_MAX];
	const char *phase = "?";
	uint64_t round = 0, sent = 0, left = 0, rate = 0, down = 0, dirty = 0;
	size_t pos = 0;

	if (!len)
		return 0;
	buf[0] = '\0';
	if (jf_str(ev, "phase", &phase) < 0) {
		phase = "?";
		f.bad++;
		f.first_bad = "phase";
	}
	bool has_round = get_u64(&f, ev, "round", &round);
	bool has_sent = get_u64(&f, ev, "bytes_sent", &sent);
	bool has_left = get_u64(&f, ev, "bytes_remaining", &left);
	bool has_rate = get_u64(&f, ev, "rate_bytes_per_s", &rate);
	bool has_down = get_u64(&f, ev, "predicted_downtime_ms", &down);
	bool has_dirty = get_u64(&f, ev, "dirty_pages", &dirty);

	add(buf, len, &pos, "%-10.10s ", phase);
	if (has_round)
		add(buf, len, &pos, "round %-2llu ", (unsigned long long)round);
	else
		add(buf, len, &pos, "round ?  ");
	/* the bar: share of the bytes known so far that were sent */
	unsigned cells = 0;
	if (has_sent && has_left && sent + left > 0)
		cells = (unsigned)((double)sent / (double)(sent + left) * PROGRESS_BAR_CELLS);
	add(buf, len, &pos, "[");
	for (unsigned i = 0; i < PROGRESS_BAR_CELLS; i++)
		add(buf, len, &pos, "%c", i < cells ? '#' : '.');
	add(buf, len, &pos, "] %s sent, %s left, %s, downtime ~%s ms, %s dirty",
	    has_sent ? human_bytes(b[0], sizeof(b[0]), sent) : "?",
	    has_left ? human_bytes(b[1], sizeof(b[1]), left) : "?",
	    has_rate ? human_rate(b[2], sizeof(b[2]), (double)rate) : "?",
	    has_down ? (snprintf(b[3], sizeof(b[3]), "%llu", (unsigned long long)down), b[3]) : "?",
	    has_dirty ? (snprintf(b[4], sizeof(b[4]), "%llu", (unsigned long long)dirty), b[4])
		      : "?");
	if (first_bad)
		*first_bad = f.first_bad;
	return f.bad;
}

static unsigned term_width(FILE *out)
{
	struct winsize ws;

	if (ioctl(fileno(out), TIOCGWINSZ, &ws) == 0 && ws.ws_col > 1)
		return ws.ws_col;
	return 80;
}

void progress_update(struct progress_bar *p, json_object *ev)
{
	char line[512];
	const char *phase = "";
	const char *first_bad = NULL;
	unsigned bad = progress_format(ev, line, sizeof(line), &first_bad);
	int64_t now = now_ms();

	p->events++;
	if (bad && !p->malformed++) {
		progress_finish(p);
		jf_warn(-EINVAL, "progress event", first_bad ? first_bad : "?");
	}
	if (jf_str(ev, "phase", &phase) < 0)
		phase = "?";
	bool new_phase = strncmp(phase, p->phase, sizeof(p->phase) - 1) != 0;
	int64_t every = p->is_tty ? PROGRESS_TTY_MS : PROGRESS_LOG_MS;

	if (!new_phase && p->last_ms >= 0 && now - p->last_ms < every) {
		if (!p->is_tty) {
			snprintf(p->pending, sizeof(p->pending), "%s", line);
			p->has_pending = true;
		}
		return;
	}
	p->has_pending = false;
	snprintf(p->phase, sizeof(p->phase), "%s", phase);
	p->last_ms = now;
	if (p->is_tty) {
		unsigned w = term_width(p->out);

		if (strlen(line) >= w)
			line[w - 1] = '\0';
		fprintf(p->out, "\r%s\033[K", line);
		p->drawn = true;
	} else {
		fprintf(p->out, "%s\n", line);
	}
	fflush(p->out);
}

void progress_finish(struct progress_bar *p)
{
	if (p->has_pending) {
		fprintf(p->out, "%s\n", p->pending);
		fflush(p->out);
		p->has_pending = false;
	}
	if (p->is_tty && p->drawn) {
		fprintf(p->out, "\r\033[K");
		fflush(p->out);
	}
	p->drawn = false;
}
