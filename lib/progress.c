/*
 * progress.c -- the live progress of a pass on stderr (SPEC §2): a line
 * per running source and stream with the items fetched and stored, the
 * rate, and the percent and time left where the upstream says how much
 * there is.
 *
 * On a terminal the lines form an area at the bottom that is redrawn in
 * place (at most every 0.1 s, at page boundaries: no thread of its own)
 * and erased before any log line is written and at the end of the pass;
 * with --progress and no terminal (or with JSON log lines), plain lines in
 * the log format (at most one a second per stream, and a last one when the
 * stream ends).  SIGUSR1 prints a line
 * per running stream at the next page boundary, whatever the mode.
 * Connectors only report totals (connector.h); the engine counts.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "internal.h"

#define REDRAW_EVERY	0.1	/* seconds between two redraws on a terminal */
#define PLAIN_EVERY	1.0	/* seconds between two plain lines of a stream */
#define LINE_MAX_LEN	512

enum mode {
	MODE_OFF,		/* nothing but SIGUSR1's lines */
	MODE_TTY,		/* a redrawn area */
	MODE_PLAIN		/* lines, no escape sequences */
};

struct sync_progress {
	struct sync_progress *next, *prev;
	char		 name[160];	/* "source/stream" */
	double		 t0;
	double		 last_plain;
	long long	 fetched;
	long long	 stored;
	long long	 total;		/* items in all, -1: unknown */
	char		 unit[16];	/* steps: what they count, "" if none */
	long long	 done, steps;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static enum mode mode;
static int	 dry;
static const char *prog = "msgsync";
static struct sync_progress *head, *tail;
static size_t	 nslots;
static int	 drawn;		/* lines of the area now on the terminal */
static double	 last_draw;

void
sync_progress_setup(const struct sync_opts *o)
{
	const char *term = getenv("TERM"), *s;
	int tty = isatty(STDERR_FILENO);

	pthread_mutex_lock(&mu);
	if (o->prog != NULL) {
		s = strrchr(o->prog, '/');
		prog = s != NULL ? s + 1 : o->prog;
	}
	dry = o->dry_run;
	if (o->progress < 0 || o->login)
		mode = MODE_OFF;
	else if (o->progress == 0 && (!tty || o->quiet || o->json))
		mode = MODE_OFF;	/* cron, -q, --json: never unasked */
	else if (tty && (term == NULL || strcmp(term, "dumb") != 0))
		mode = MODE_TTY;
	else
		mode = MODE_PLAIN;
	/* JSON log lines: no area drawn; asked-for progress as JSON lines. */
	if (mode == MODE_TTY && sync_log_is_json())
		mode = o->progress > 0 ? MODE_PLAIN : MODE_OFF;
	drawn = 0;
	last_draw = 0;
	pthread_mutex_unlock(&mu);
}

/* Appends to out (n bytes, *k used) like snprintf, never past its end. */
static void
addf(char *out, size_t n, size_t *k, const char *fmt, ...)
{
	va_list ap;
	int r;

	if (*k >= n)
		return;
	va_start(ap, fmt);
	r = vsnprintf(out + *k, n - *k, fmt, ap);
	va_end(ap);
	if (r > 0)
		*k = (size_t)r >= n - *k ? n - 1 : *k + (size_t)r;
}

static void
add_duration(char *out, size_t n, size_t *k, double secs)
{
	long s = secs < 0 ? 0 : secs > 359999 ? 359999 : (long)(secs + 0.5);

	if (s < 60)
		addf(out, n, k, "%lds", s);
	else if (s < 3600)
		addf(out, n, k, "%ldm%02lds", s / 60, s % 60);
	else
		addf(out, n, k, "%ldh%02ldm", s / 3600, s / 60 % 60);
}

/*
 * The text of p's line: end 0 while it runs, 1 when it completed, -1
 * when it stopped short.
 */
static void
line_of(const struct sync_progress *p, double now, int end, char *out, size_t n)
{
	double el = now - p->t0, rate = el > 0.001 ? (double)p->fetched / el : 0,
	    left = -1;
	long long pct = -1;
	size_t k = 0;

	out[0] = '\0';
	addf(out, n, &k, "%s: %lld fetched, ", p->name, p->fetched);
	if (dry)
		addf(out, n, &k, "dry run");
	else
		addf(out, n, &k, "%lld stored", p->stored);
	addf(out, n, &k, ", %.0f/s", rate);
	if (p->steps > 0) {
		pct = end > 0 ? 100 : p->done * 100 / p->steps;
		addf(out, n, &k, ", %s %lld/%lld", p->unit, end > 0 ? p->steps :
		    p->done, p->steps);
		if (p->done > 0 && p->done < p->steps)
			left = el * (double)(p->steps - p->done) / (double)p->done;
	} else if (p->total >= 0) {
		pct = end > 0 || p->fetched >= p->total ? 100 :
		    p->fetched * 100 / p->total;
		if (rate > 0 && p->fetched < p->total)
			left = (double)(p->total - p->fetched) / rate;
	}
	if (pct > 100)
		pct = 100;
	if (pct >= 0)
		addf(out, n, &k, ", %lld%%", pct);
	if (end > 0) {
		addf(out, n, &k, ", done in ");
		add_duration(out, n, &k, el);
	} else if (end < 0) {
		addf(out, n, &k, ", stopped after ");
		add_duration(out, n, &k, el);
	} else if (left >= 0) {
		addf(out, n, &k, ", ");
		add_duration(out, n, &k, left);
		addf(out, n, &k, " left");
	}
}

/* Writes s whole, in one go where stderr allows. */
static void
put(const char *s, size_t n)
{
	if (n > 0) {
		fwrite(s, 1, n, stderr);
		fflush(stderr);
	}
}

/* A plain line, in the log format (a JSON object with log.format json). */
static void
put_line(const struct sync_progress *p, double now, int end)
{
	char text[LINE_MAX_LEN];

	line_of(p, now, end, text, sizeof(text));
	sync_log_line(LOG_INFO, text);
}

/* Takes the area off the terminal (the cursor goes back to its top). */
static void
erase_area(void)
{
	char s[32];
	int r;

	if (drawn == 0)
		return;
	r = snprintf(s, sizeof(s), "\033[%dA\r\033[J", drawn);
	drawn = 0;
	if (r > 0)
		put(s, (size_t)r);
}

static void
term_size(int *cols, int *rows)
{
	struct winsize ws;

	*cols = 80;
	*rows = 24;
	if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0) {
		if (ws.ws_col > 0)
			*cols = ws.ws_col;
		if (ws.ws_row > 0)
			*rows = ws.ws_row;
	}
}

/* Adds text to b, cut to fit in cols - 1 columns (at a UTF-8 boundary). */
static int
add_cut(struct sync_buf *b, const char *text, int cols)
{
	size_t n = strlen(text), max = cols > 1 ? (size_t)cols - 1 : 1;

	if (n > max) {
		n = max;
		while (n > 0 && ((unsigned char)text[n] & 0xC0) == 0x80)
			n--;
	}
	return sync_buf_add(b, text, n) == -1 || sync_buf_adds(b, "\n") == -1 ?
	    -1 : 0;
}

/* Redraws the area in place: one line per running stream. */
static void
draw_area(double now)
{
	struct sync_buf b = SYNC_BUF_INIT(1 << 16);
	const struct sync_progress *p;
	char text[LINE_MAX_LEN];
	int cols, rows, max, n = 0, fail = 0;
	char s[32];

	last_draw = now;
	term_size(&cols, &rows);
	max = rows > 2 ? rows - 2 : 1;
	if (max > 20)
		max = 20;
	if (drawn > 0) {
		snprintf(s, sizeof(s), "\033[%dA\r\033[J", drawn);
		fail |= sync_buf_adds(&b, s);
	}
	for (p = head; p != NULL && !fail; p = p->next) {
		if (n == max - 1 && nslots > (size_t)max) {
			snprintf(text, sizeof(text), "... and %zu more stream(s)",
			    nslots - (size_t)n);
			fail |= add_cut(&b, text, cols);
			n++;
			break;
		}
		line_of(p, now, 0, text, sizeof(text));
		fail |= add_cut(&b, text, cols);
		n++;
	}
	if (!fail) {
		put(b.data, b.len);
		drawn = n;
	}
	sync_buf_release(&b);
}

/* SIGUSR1: a line per running stream, like dd's status (under mu). */
static void
answer_info(double now)
{
	const struct sync_progress *p;

	if (!sync_info_signal)
		return;
	sync_info_signal = 0;
	erase_area();
	for (p = head; p != NULL; p = p->next)
		put_line(p, now, 0);
	if (mode == MODE_TTY && head != NULL)
		draw_area(now);
}

struct sync_progress *
sync_progress_open(const char *source, const char *stream)
{
	struct sync_progress *p;

	if ((p = calloc(1, sizeof(*p))) == NULL)
		return NULL;
	snprintf(p->name, sizeof(p->name), "%s/%s", source, stream);
	p->t0 = p->last_plain = sync_now_mono();
	p->total = -1;
	pthread_mutex_lock(&mu);
	p->prev = tail;
	if (tail != NULL)
		tail->next = p;
	else
		head = p;
	tail = p;
	nslots++;
	if (mode == MODE_TTY)
		draw_area(p->t0);	/* a new stream shows at once */
	pthread_mutex_unlock(&mu);
	return p;
}

void
sync_progress_add(struct sync_progress *p, long long fetched, long long stored)
{
	double now = sync_now_mono();

	if (p == NULL)
		return;
	pthread_mutex_lock(&mu);
	p->fetched += fetched;
	p->stored += stored;
	answer_info(now);
	if (mode == MODE_TTY && (last_draw == 0 || now - last_draw >= REDRAW_EVERY))
		draw_area(now);
	else if (mode == MODE_PLAIN && now - p->last_plain >= PLAIN_EVERY) {
		p->last_plain = now;
		put_line(p, now, 0);
	}
	pthread_mutex_unlock(&mu);
}

void
sync_progress_close(struct sync_progress *p, int complete)
{
	double now = sync_now_mono();

	if (p == NULL)
		return;
	pthread_mutex_lock(&mu);
	answer_info(now);
	if (mode == MODE_PLAIN)
		put_line(p, now, complete ? 1 : -1);
	if (p->prev != NULL)
		p->prev->next = p->next;
	else
		head = p->next;
	if (p->next != NULL)
		p->next->prev = p->prev;
	else
		tail = p->prev;
	nslots--;
	if (mode == MODE_TTY) {
		if (head != NULL)
			draw_area(now);
		else
			erase_area();
	}
	pthread_mutex_unlock(&mu);
	free(p);
}

void
sync_progress_end(void)
{
	pthread_mutex_lock(&mu);
	erase_area();
	mode = MODE_OFF;
	pthread_mutex_unlock(&mu);
}

void
sync_progress_log_begin(void)
{
	pthread_mutex_lock(&mu);
	erase_area();
}

void
sync_progress_log_end(void)
{
	if (mode == MODE_TTY && head != NULL)
		draw_area(sync_now_mono());
	pthread_mutex_unlock(&mu);
}

/* ---- what connectors report (connector.h) ---------------------------- */

void
sync_progress_left(struct sync_stream *st, long long left)
{
	struct sync_progress *p = st->progress;

	if (p == NULL)
		return;
	pthread_mutex_lock(&mu);
	p->total = left < 0 ? -1 : p->fetched + left;
	pthread_mutex_unlock(&mu);
}

void
sync_progress_steps(struct sync_stream *st, const char *unit, long long done,
    long long total)
{
	struct sync_progress *p = st->progress;

	if (p == NULL)
		return;
	pthread_mutex_lock(&mu);
	snprintf(p->unit, sizeof(p->unit), "%s", unit != NULL ? unit : "steps");
	p->done = done < 0 ? 0 : done;
	p->steps = total < 0 ? 0 : total;
	pthread_mutex_unlock(&mu);
}

int
sync_progress_wanted(const struct sync_stream *st)
{
	return st->progress != NULL && mode != MODE_OFF;
}
