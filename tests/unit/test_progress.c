/* test_progress -- the progress lines (lib/progress.c), without a terminal. */
#include <stdlib.h>
#include <unistd.h>

#include "internal.h"
#include "t.h"

static char got[4096];
static int saved = -1;
static FILE *cap;

/* stderr goes to a temporary file until captured() reads it back. */
static void
capture(void)
{
	fflush(stderr);
	cap = tmpfile();
	saved = dup(STDERR_FILENO);
	dup2(fileno(cap), STDERR_FILENO);
}

static const char *
captured(void)
{
	size_t n;

	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	rewind(cap);
	n = fread(got, 1, sizeof(got) - 1, cap);
	got[n] = '\0';
	fclose(cap);
	return got;
}

/* Whether s has a line that starts with prefix and holds each of the rest. */
static int
has_line(const char *s, const char *prefix, const char *a, const char *b)
{
	const char *l;
	char line[512];
	size_t n;

	for (l = s; *l != '\0'; l += n + (l[n] == '\n')) {
		n = strcspn(l, "\n");
		snprintf(line, sizeof(line), "%.*s", (int)n, l);
		if (strncmp(line, prefix, strlen(prefix)) == 0 &&
		    (a == NULL || strstr(line, a) != NULL) &&
		    (b == NULL || strstr(line, b) != NULL))
			return 1;
	}
	return 0;
}

int
main(void)
{
	struct sync_opts o;
	struct sync_stream st, tg;
	struct sync_progress *p, *q;
	const char *s;

	memset(&o, 0, sizeof(o));
	o.prog = "/usr/bin/full-sync";
	sync_log_prog(o.prog);		/* plain lines are log lines: its name */

	/* Not asked and not a terminal: nothing, not even a total request. */
	sync_progress_setup(&o);
	memset(&st, 0, sizeof(st));
	capture();
	st.progress = p = sync_progress_open("wa", "messages");
	CHECK(p != NULL && !sync_progress_wanted(&st));
	sync_progress_left(&st, 1000);
	sync_progress_add(p, 100, 100);
	sync_progress_close(p, 1);
	sync_progress_end();
	CHECK_STR(captured(), "");

	/* SIGUSR1 is answered whatever the mode, at the next page boundary. */
	capture();
	st.progress = p = sync_progress_open("wa", "messages");
	sync_progress_left(&st, 1000);
	sync_progress_add(p, 100, 50);
	sync_info_signal = 1;
	sync_progress_add(p, 100, 50);
	CHECK(sync_info_signal == 0);
	sync_progress_close(p, 1);
	sync_progress_end();
	s = captured();
	CHECK(has_line(s, "full-sync: wa/messages: 200 fetched, 100 stored, ",
	    "/s, 20%", NULL));
	CHECK(strchr(s, '\033') == NULL && strchr(s, '\r') == NULL);
	CHECK(strstr(s, "done in") == NULL);

	/* --progress without a terminal: plain lines, a last one per stream. */
	o.progress = 1;
	sync_progress_setup(&o);
	memset(&tg, 0, sizeof(tg));
	capture();
	st.progress = p = sync_progress_open("wa", "messages");
	tg.progress = q = sync_progress_open("tg", "messages");
	CHECK(sync_progress_wanted(&st) && sync_progress_wanted(&tg));
	sync_progress_left(&st, 40);
	sync_progress_add(p, 40, 40);
	sync_progress_steps(&tg, "chats", 3, 12);
	sync_progress_add(q, 7, 7);
	sync_info_signal = 1;
	sync_progress_add(q, 0, 0);
	sync_progress_close(p, 1);
	sync_progress_close(q, 0);
	sync_progress_end();
	s = captured();
	CHECK(has_line(s, "full-sync: wa/messages: 40 fetched, 40 stored, ",
	    ", 100%, done in ", NULL));
	CHECK(has_line(s, "full-sync: tg/messages: 7 fetched, 7 stored, ",
	    ", chats 3/12, 25%", NULL));
	CHECK(has_line(s, "full-sync: tg/messages: 7 fetched, 7 stored, ",
	    ", chats 3/12, 25%, stopped after ", NULL));
	CHECK(strchr(s, '\033') == NULL);

	/* A dry run stores nothing; an unknown total has no percent. */
	o.dry_run = 1;
	sync_progress_setup(&o);
	capture();
	st.progress = p = sync_progress_open("wa", "contacts");
	sync_progress_left(&st, -1);
	sync_progress_add(p, 5, 0);
	sync_progress_close(p, 1);
	sync_progress_end();
	s = captured();
	CHECK(has_line(s, "full-sync: wa/contacts: 5 fetched, dry run, ", "done in",
	    NULL));
	CHECK(strchr(s, '%') == NULL);

	/* Every call takes NULL (a slot that could not be allocated). */
	sync_progress_add(NULL, 1, 1);
	sync_progress_close(NULL, 1);
	return t_done("test_progress");
}
