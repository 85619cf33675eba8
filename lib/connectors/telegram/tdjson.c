/*
 * tdjson.c -- TDLib's JSON interface, loaded at run time: msgsync builds and
 * runs without TDLib, and only a telegram source needs it.  The only user
 * of dlopen().  See ../shared/reference/smseagle-telegram.md §B.1.
 *
 * The client-id interface (TDLib >= 1.7): td_create_client_id, td_send,
 * td_receive and td_execute.  td_receive() serves every client of the
 * process and must not be called from two threads at once, while a pass
 * may run several telegram sources in parallel: one mutex guards it, and
 * what one thread receives for another client is queued for that client.
 * Strings TDLib returns are valid only until its next call, so they are
 * parsed (or copied) under the mutex.
 */
#include <dlfcn.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "tdjson.h"

typedef int	(*create_fn)(void);
typedef void	(*send_fn)(int, const char *);
typedef const char *(*receive_fn)(double);
typedef const char *(*execute_fn)(const char *);
typedef void	(*logcb_fn)(int, const char *);
typedef void	(*setlog_fn)(int, logcb_fn);

struct qitem {
	cJSON		*json;
	struct qitem	*next;
};

struct sync_td {
	void		*lib;
	create_fn	 create;
	send_fn		 send;
	receive_fn	 receive;
	execute_fn	 execute;
	int		 id;
	int		 closed;
	long		 extra;		/* the last @extra sent */
	struct qitem	*head, *tail;	/* received for this client */
	sync_td_update_fn on_update;
	void		*arg;
	char		 path[512];	/* the library, as loaded */
	struct sync_td	*next;		/* the process's clients */
};

static struct sync_td *td_clients;

/* TDLib's own log lines, at the verbosity set below, go to our log. */
static void
on_td_log(int level, const char *msg)
{
	sync_log(level <= 1 ? LOG_WARNING : LOG_DEBUG, "TDLib: %s", msg);
}

/* Opens the library: the configured path, else the usual names. */
static void *
open_lib(const char *path, char *used, size_t n, char *why, size_t wn)
{
	static const char *const pats[] = {
		"/usr/lib/*/libtdjson.so.*", "/usr/lib/libtdjson.so.*",
		"/usr/local/lib/libtdjson.so*", "/usr/lib64/libtdjson.so.*", NULL
	};
	const char *e;
	void *h;
	size_t i, k;
	glob_t g;

	if (path != NULL) {
		snprintf(used, n, "%s", path);
		if ((h = dlopen(path, RTLD_NOW | RTLD_LOCAL)) == NULL)
			snprintf(why, wn, "%s", (e = dlerror()) ? e : "dlopen failed");
		return h;
	}
	snprintf(used, n, "libtdjson.so");
	if ((h = dlopen("libtdjson.so", RTLD_NOW | RTLD_LOCAL)) != NULL)
		return h;
	snprintf(why, wn, "%s", (e = dlerror()) ? e : "dlopen failed");
	/* A runtime package ships only the versioned name (Debian: libtdjson1.8.x). */
	for (i = 0; pats[i] != NULL; i++) {
		if (glob(pats[i], 0, NULL, &g) != 0)
			continue;
		for (k = g.gl_pathc; k-- > 0;)
			if ((h = dlopen(g.gl_pathv[k], RTLD_NOW | RTLD_LOCAL)) != NULL) {
				snprintf(used, n, "%s", g.gl_pathv[k]);
				globfree(&g);
				return h;
			}
		globfree(&g);
	}
	return NULL;
}

/* Compares TDLib versions "1.8.6" style: <0, 0, >0. */
static int
version_cmp(const char *a, const char *b)
{
	long x, y;
	char *ea, *eb;

	for (;;) {
		x = strtol(a, &ea, 10);
		y = strtol(b, &eb, 10);
		if (x != y)
			return x < y ? -1 : 1;
		if (*ea != '.' || *eb != '.')
			return (*ea == '.') - (*eb == '.');
		a = ea + 1;
		b = eb + 1;
	}
}

cJSON *
sync_td_execute(struct sync_td *td, const cJSON *req)
{
	char *text = cJSON_PrintUnformatted(req);
	const char *ans;
	cJSON *r = NULL;

	if (text == NULL)
		return NULL;
	sync_shared_lock();
	if ((ans = td->execute(text)) != NULL)
		r = cJSON_Parse(ans);
	sync_shared_unlock();
	free(text);
	return r;
}

/* td_execute() of a request given as text; a helper for fixed requests. */
static cJSON *
execute_text(struct sync_td *td, const char *text)
{
	cJSON *req = cJSON_Parse(text), *r;

	if (req == NULL)
		return NULL;
	r = sync_td_execute(td, req);
	cJSON_Delete(req);
	return r;
}

struct sync_td *
sync_td_open(const char *name, const char *path, int verbosity,
    sync_td_update_fn fn, void *arg, char *version, size_t vn, struct sync_err *err)
{
	struct sync_td *td;
	setlog_fn setlog;
	char why[512] = "";
	const char *v;
	cJSON *r;

	if ((td = calloc(1, sizeof(*td))) == NULL) {
		sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_CONFIG, "out of memory");
		return NULL;
	}
	td->on_update = fn;
	td->arg = arg;
	if ((td->lib = open_lib(path, td->path, sizeof(td->path), why,
	    sizeof(why))) == NULL) {
		sync_err_set(err, SYNC_ECONFIG, SYNC_ERR_CONFIG, "source '%s': "
		    "cannot load TDLib (%s): %s; install libtdjson (see the "
		    "README) or set 'tdlib_library' to its path", name,
		    td->path, why);
		free(td);
		return NULL;
	}
	td->create = (create_fn)dlsym(td->lib, "td_create_client_id");
	td->send = (send_fn)dlsym(td->lib, "td_send");
	td->receive = (receive_fn)dlsym(td->lib, "td_receive");
	td->execute = (execute_fn)dlsym(td->lib, "td_execute");
	setlog = (setlog_fn)dlsym(td->lib, "td_set_log_message_callback");
	if (td->create == NULL || td->send == NULL || td->receive == NULL ||
	    td->execute == NULL) {
		sync_err_set(err, SYNC_ECONFIG, SYNC_ERR_CONFIG, "source '%s': "
		    "'%s' is not a TDLib of version 1.8.6 or later (it lacks "
		    "td_create_client_id/td_send/td_receive/td_execute); set "
		    "'tdlib_library' to a newer one", name, td->path);
		goto fail;
	}
	/* TDLib logs to stderr by default: cron would mail every line. */
	r = execute_text(td, "{\"@type\":\"setLogStream\",\"log_stream\":"
	    "{\"@type\":\"logStreamEmpty\"}}");
	cJSON_Delete(r);
	if (setlog != NULL)
		setlog(verbosity, on_td_log);
	/* -v: TDLib's errors, -vv: its warnings, -vvv: its info. */
	r = execute_text(td, verbosity <= 0 ?
	    "{\"@type\":\"setLogVerbosityLevel\",\"new_verbosity_level\":0}" :
	    verbosity == 1 ?
	    "{\"@type\":\"setLogVerbosityLevel\",\"new_verbosity_level\":1}" :
	    verbosity == 2 ?
	    "{\"@type\":\"setLogVerbosityLevel\",\"new_verbosity_level\":2}" :
	    "{\"@type\":\"setLogVerbosityLevel\",\"new_verbosity_level\":3}");
	cJSON_Delete(r);
	r = execute_text(td, "{\"@type\":\"getOption\",\"name\":\"version\"}");
	v = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(r, "value"));
	snprintf(version, vn, "%s", v != NULL ? v : "unknown");
	cJSON_Delete(r);
	/* 1.8.6 made setTdlibParameters flat and dropped the encryption step. */
	if (v == NULL || version_cmp(version, "1.8.6") < 0) {
		sync_err_set(err, SYNC_ECONFIG, SYNC_ERR_CONFIG, "source '%s': "
		    "TDLib '%s' is version %s; msgsync needs 1.8.6 or later (set "
		    "'tdlib_library' to a newer one)", name, td->path, version);
		goto fail;
	}
	sync_shared_lock();
	td->id = td->create();
	td->next = td_clients;
	td_clients = td;
	sync_shared_unlock();
	return td;
fail:
	free(td);
	return NULL;
}

const char *
sync_td_path(const struct sync_td *td)
{
	return td->path;
}

enum sync_rc
sync_td_send(struct sync_td *td, cJSON *req, long *extra, struct sync_err *err)
{
	char *text;

	td->extra++;
	if (cJSON_AddNumberToObject(req, "@extra", (double)td->extra) == NULL ||
	    (text = cJSON_PrintUnformatted(req)) == NULL)
		return sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_PROTOCOL, "out of memory");
	td->send(td->id, text);
	free(text);
	if (extra != NULL)
		*extra = td->extra;
	return SYNC_OK;
}

/* Queues j for the client it names (the shared lock held); frees it if none. */
static void
dispatch(cJSON *j, const struct sync_td *self)
{
	const cJSON *cid = cJSON_GetObjectItemCaseSensitive(j, "@client_id");
	struct sync_td *c;
	struct qitem *q;

	for (c = td_clients; c != NULL; c = c->next)
		if (c->lib == self->lib && cJSON_IsNumber(cid) &&
		    cid->valueint == c->id)
			break;
	if (c == NULL || (q = calloc(1, sizeof(*q))) == NULL) {
		cJSON_Delete(j);
		return;
	}
	q->json = j;
	if (c->tail != NULL)
		c->tail->next = q;
	else
		c->head = q;
	c->tail = q;
}

/*
 * The next object for td within timeout seconds: *out (the caller frees
 * it) or NULL when none came.  -1 on a stop signal.
 */
static int
next_object(struct sync_td *td, double timeout, cJSON **out)
{
	double end = sync_now_mono() + timeout, left;
	struct qitem *q;
	const char *s;
	cJSON *j;

	*out = NULL;
	for (;;) {
		if (sync_stop_signal)
			return -1;
		sync_shared_lock();
		if ((q = td->head) != NULL) {
			if ((td->head = q->next) == NULL)
				td->tail = NULL;
			sync_shared_unlock();
			*out = q->json;
			free(q);
			return 0;
		}
		left = end - sync_now_mono();
		if (left > 0.2)
			left = 0.2;	/* stay responsive to signals */
		if (left < 0)
			left = 0;
		s = td->receive(left);
		j = s != NULL ? cJSON_Parse(s) : NULL;
		if (j != NULL)
			dispatch(j, td);
		sync_shared_unlock();
		if (j == NULL && sync_now_mono() >= end)
			return 0;
	}
}

enum sync_rc
sync_td_call(struct sync_td *td, cJSON *req, double timeout, cJSON **answer,
    struct sync_err *err)
{
	const char *what = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(req,
	    "@type"));
	char name[64];
	double end;
	long extra;
	enum sync_rc rc;
	cJSON *j;

	*answer = NULL;
	snprintf(name, sizeof(name), "%s", what != NULL ? what : "?");
	if ((rc = sync_td_send(td, req, &extra, err)) != SYNC_OK)
		return rc;
	end = sync_now_mono() + timeout;
	for (;;) {
		const cJSON *x;
		double left = end - sync_now_mono();

		if (left <= 0)
			return sync_err_set(err, SYNC_EUNAVAIL, SYNC_ERR_NETWORK,
			    "TDLib did not answer '%s' within %.0f s", name, timeout);
		if (next_object(td, left, &j) == -1)
			return sync_err_set(err, SYNC_EINTR, SYNC_ERR_INTERRUPTED,
			    "interrupted by %s", sync_signal_name((int)sync_stop_signal));
		if (j == NULL)
			continue;
		x = cJSON_GetObjectItemCaseSensitive(j, "@extra");
		if (x == NULL) {
			if (td->on_update != NULL)
				td->on_update(td->arg, j);
			cJSON_Delete(j);
			continue;
		}
		if (cJSON_IsNumber(x) && (long)x->valuedouble == extra) {
			*answer = j;
			return SYNC_OK;
		}
		cJSON_Delete(j);	/* the late answer of an abandoned call */
	}
}

enum sync_rc
sync_td_pump(struct sync_td *td, double timeout, struct sync_err *err)
{
	cJSON *j;

	if (next_object(td, timeout, &j) == -1)
		return sync_err_set(err, SYNC_EINTR, SYNC_ERR_INTERRUPTED,
		    "interrupted by %s", sync_signal_name((int)sync_stop_signal));
	if (j != NULL && cJSON_GetObjectItemCaseSensitive(j, "@extra") == NULL &&
	    td->on_update != NULL)
		td->on_update(td->arg, j);
	cJSON_Delete(j);
	return SYNC_OK;
}

void
sync_td_free(struct sync_td *td, double timeout)
{
	struct sync_td **pp;
	struct qitem *q;
	double end;
	cJSON *req, *j;

	if (td == NULL)
		return;
	/*
	 * "All TDLib client instances must be closed before application
	 * termination": close, then wait for authorizationStateClosed.
	 */
	if ((req = cJSON_CreateObject()) != NULL &&
	    cJSON_AddStringToObject(req, "@type", "close") != NULL) {
		char *text = cJSON_PrintUnformatted(req);

		if (text != NULL)
			td->send(td->id, text);
		free(text);
		end = sync_now_mono() + timeout;
		while (!td->closed && sync_now_mono() < end) {
			const cJSON *st;
			const char *t;
			int stop;

			/* A stop signal must not cut the close short. */
			stop = (int)sync_stop_signal;
			sync_stop_signal = 0;
			next_object(td, end - sync_now_mono(), &j);
			if (stop)
				sync_stop_signal = stop;
			if (j == NULL)
				continue;
			st = cJSON_GetObjectItemCaseSensitive(j, "authorization_state");
			t = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(st,
			    "@type"));
			if (t != NULL && strcmp(t, "authorizationStateClosed") == 0)
				td->closed = 1;
			cJSON_Delete(j);
		}
		if (!td->closed)
			sync_log(LOG_WARNING, "TDLib did not confirm 'close' within "
			    "%.0f s", timeout);
	}
	cJSON_Delete(req);
	sync_shared_lock();
	for (pp = &td_clients; *pp != NULL; pp = &(*pp)->next)
		if (*pp == td) {
			*pp = td->next;
			break;
		}
	while ((q = td->head) != NULL) {
		td->head = q->next;
		cJSON_Delete(q->json);
		free(q);
	}
	sync_shared_unlock();
	/* Not dlclose(): TDLib keeps threads and state for the process. */
	free(td);
}
