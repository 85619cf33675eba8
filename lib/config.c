/*
 * config.c -- the configuration file (libconfig), validated up front so
 * that a pass never starts on a bad one.  The only user of libconfig.
 */
#include <sys/stat.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#include <ctype.h>
#include <stddef.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <libconfig.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "internal.h"

/* sync-status and sync-search read no secret and reach no upstream. */
#define DEFAULT_CONFIG "/etc/msgsync/msgsync.conf"

/* State of one load: where errors point, every error found. */
struct loader {
	const char	*path;
	struct sync_err	*err;
	struct stat	 st;
	const struct sync_opts *opts;
	char	       **errs;		/* every error, NULL-terminated */
	size_t		 nerrs;
};

/* Commands that only read the store: they never read a secret. */
static int
reads_only(enum sync_cmd cmd)
{
	return cmd == SYNC_CMD_STATUS || cmd == SYNC_CMD_SEARCH ||
	    cmd == SYNC_CMD_CHANGES;
}

static int
line_of(const config_setting_t *s)
{
	return s != NULL ? config_setting_source_line(s) : 0;
}

static const char *
file_of(struct loader *l, const config_setting_t *s)
{
	const char *f = s != NULL ? config_setting_source_file(s) : NULL;

	return f != NULL ? f : l->path;
}

static void
fmt_redacted(char *out, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
fmt_redacted(char *out, size_t size, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	sync_vformat_redacted(out, size, fmt, ap);
	va_end(ap);
}

/*
 * Records one configuration error, line (redacted): the first goes to
 * err, every one to the list (an error that does not fit in memory is
 * left out of the list, never out of err).  Returns SYNC_ECONFIG: the
 * load goes on to find the next.
 */
static enum sync_rc
record(struct loader *l, const char *line)
{
	char **v;

	sync_err_set(l->err, SYNC_ECONFIG, SYNC_ERR_CONFIG, "%s", line);
	if ((v = realloc(l->errs, (l->nerrs + 2) * sizeof(*v))) == NULL)
		return SYNC_ECONFIG;
	l->errs = v;
	if ((v[l->nerrs] = strdup(line)) != NULL)
		l->nerrs++;
	v[l->nerrs] = NULL;
	return SYNC_ECONFIG;
}

static enum sync_rc
cerr(struct loader *l, const config_setting_t *s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Records a "FILE:LINE: message" configuration error; SYNC_ECONFIG. */
static enum sync_rc
cerr(struct loader *l, const config_setting_t *s, const char *fmt, ...)
{
	char msg[400], line[sizeof(l->err->msg)];
	va_list ap;

	va_start(ap, fmt);
	sync_vformat_redacted(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fmt_redacted(line, sizeof(line), "%s:%d: %s", file_of(l, s), line_of(s),
	    msg);
	return record(l, line);
}

static enum sync_rc
nomem(struct loader *l)
{
	return sync_err_set(l->err, SYNC_ENOMEM, SYNC_ERR_CONFIG, "out of memory");
}

/*
 * "Did you mean": the restricted Damerau-Levenshtein distance between a
 * and b, ignoring case (names longer than 63 characters: far).
 */
static size_t
distance(const char *a, const char *b)
{
	size_t d[64][64], i, j, n = strlen(a), m = strlen(b), c, v;

	if (n >= 64 || m >= 64)
		return 64;
	for (i = 0; i <= n; i++)
		d[i][0] = i;
	for (j = 0; j <= m; j++)
		d[0][j] = j;
	for (i = 1; i <= n; i++)
		for (j = 1; j <= m; j++) {
			c = tolower((unsigned char)a[i - 1]) !=
			    tolower((unsigned char)b[j - 1]);
			v = d[i - 1][j] + 1;
			if (d[i][j - 1] + 1 < v)
				v = d[i][j - 1] + 1;
			if (d[i - 1][j - 1] + c < v)
				v = d[i - 1][j - 1] + c;
			if (i > 1 && j > 1 && a[i - 1] == b[j - 2] &&
			    a[i - 2] == b[j - 1] && d[i - 2][j - 2] + 1 < v)
				v = d[i - 2][j - 2] + 1;
			d[i][j] = v;
		}
	return d[n][m];
}

/* The closest candidate to a word so far (see near_try()). */
struct near {
	const char	*word;
	const char	*best;
	size_t		 d;
};

#define NEAR_INIT(w)	{ (w), NULL, 0 }

/*
 * Considers cand as what near->word meant: the closest wins, if it is
 * close enough (at most one edit in three characters, at most three).
 */
static void
near_try(struct near *nr, const char *cand)
{
	size_t d = distance(nr->word, cand), n = strlen(cand);

	if (strlen(nr->word) > n)
		n = strlen(nr->word);
	if (d == 0 && strcmp(nr->word, cand) != 0)
		d = 1;			/* the case only */
	if (d == 0 || d > 3 || 3 * d > n)
		return;
	if (nr->best == NULL || d < nr->d) {
		nr->best = cand;
		nr->d = d;
	}
}

/* " (did you mean 'x'?)" or "" */
static const char *
near_hint(const struct near *nr, char *buf, size_t n)
{
	if (nr->best == NULL)
		return "";
	snprintf(buf, n, " (did you mean '%s'?)", nr->best);
	return buf;
}

static const char *
type_name(int t)
{
	switch (t) {
	case CONFIG_TYPE_INT:
	case CONFIG_TYPE_INT64:		return "an integer";
	case CONFIG_TYPE_FLOAT:		return "a number";
	case CONFIG_TYPE_STRING:	return "a string";
	case CONFIG_TYPE_BOOL:		return "a boolean";
	case CONFIG_TYPE_ARRAY:		return "an array";
	case CONFIG_TYPE_LIST:		return "a list";
	case CONFIG_TYPE_GROUP:		return "a group";
	}
	return "a value";
}

static int
is_int(const config_setting_t *s)
{
	int t = config_setting_type(s);

	return t == CONFIG_TYPE_INT || t == CONFIG_TYPE_INT64;
}

static enum sync_rc
get_str(struct loader *l, const config_setting_t *s, char **out)
{
	const char *v;

	if (config_setting_type(s) != CONFIG_TYPE_STRING)
		return cerr(l, s, "'%s' must be a string, not %s",
		    config_setting_name(s), type_name(config_setting_type(s)));
	v = config_setting_get_string(s);
	free(*out);
	if ((*out = strdup(v)) == NULL)
		return sync_err_set(l->err, SYNC_ENOMEM, SYNC_ERR_CONFIG,
		    "out of memory");
	return SYNC_OK;
}

static enum sync_rc
get_int(struct loader *l, const config_setting_t *s, long long lo, long long hi,
    long long *out)
{
	long long v;

	if (!is_int(s))
		return cerr(l, s, "'%s' must be an integer, not %s",
		    config_setting_name(s), type_name(config_setting_type(s)));
	v = config_setting_get_int64(s);
	if (v < lo || v > hi)
		return cerr(l, s, "'%s' must be between %lld and %lld, not %lld",
		    config_setting_name(s), lo, hi, v);
	*out = v;
	return SYNC_OK;
}

static enum sync_rc
get_num(struct loader *l, const config_setting_t *s, double lo, double hi,
    double *out)
{
	double v;

	if (is_int(s))
		v = (double)config_setting_get_int64(s);
	else if (config_setting_type(s) == CONFIG_TYPE_FLOAT)
		v = config_setting_get_float(s);
	else
		return cerr(l, s, "'%s' must be a number, not %s",
		    config_setting_name(s), type_name(config_setting_type(s)));
	if (!(v >= lo && v <= hi))
		return cerr(l, s, "'%s' must be between %g and %g",
		    config_setting_name(s), lo, hi);
	*out = v;
	return SYNC_OK;
}

static enum sync_rc
get_bool(struct loader *l, const config_setting_t *s, int *out)
{
	if (config_setting_type(s) != CONFIG_TYPE_BOOL)
		return cerr(l, s, "'%s' must be true or false, not %s",
		    config_setting_name(s), type_name(config_setting_type(s)));
	*out = config_setting_get_bool(s);
	return SYNC_OK;
}

static enum sync_rc
want_group(struct loader *l, const config_setting_t *s)
{
	if (config_setting_type(s) != CONFIG_TYPE_GROUP)
		return cerr(l, s, "'%s' must be a group { ... }, not %s",
		    config_setting_name(s), type_name(config_setting_type(s)));
	return SYNC_OK;
}

static enum sync_rc
unknown_key(struct loader *l, const config_setting_t *s, const char *where,
    const struct near *nr)
{
	char hint[120];

	return cerr(l, s, "unknown key '%s' in %s%s", config_setting_name(s),
	    where, near_hint(nr, hint, sizeof(hint)));
}

/* The keys of the global groups, as data: type, range, where they go. */
struct gkey {
	const char	*name;
	char		 type;		/* 'l' long, 'L' long long, 'n' double, 's' string */
	double		 lo, hi;
	size_t		 off;
};

#define OFF(f) offsetof(struct sync_config, f)

static const struct gkey database_keys[] = {
	{ "conninfo", 's', 0, 0, OFF(conninfo) },
	{ NULL, 0, 0, 0, 0 }
};

static const struct gkey http_keys[] = {
	{ "timeout", 'l', 1, 86400, OFF(http_timeout) },
	{ "connect_timeout", 'l', 1, 3600, OFF(connect_timeout) },
	{ "retries", 'l', 0, 100, OFF(retries) },
	{ "backoff", 'n', 0, 3600, OFF(backoff) },
	{ "max_body", 'L', 1024, 1099511627776.0, OFF(max_body) },
	{ "ca_file", 's', 0, 0, OFF(ca_file) },
	{ NULL, 0, 0, 0, 0 }
};

static const struct gkey sync_keys[] = {
	{ "batch_size", 'l', 1, 1000000, OFF(batch_size) },
	{ "max_runtime", 'n', 0, 1e9, OFF(max_runtime) },
	{ "jobs", 'l', 1, 256, OFF(jobs) },
	{ NULL, 0, 0, 0, 0 }
};

static const struct gkey media_keys[] = {
	{ "store", 's', 0, 0, OFF(media_store) },
	{ "dir", 's', 0, 0, OFF(media_dir) },
	{ "max_bytes", 'L', 1, 1099511627776.0 * 1024, OFF(media_max_bytes) },
	{ NULL, 0, 0, 0, 0 }
};

static const struct gkey identity_keys[] = {
	{ "default_calling_code", 'l', 0, 999, OFF(default_calling_code) },
	{ NULL, 0, 0, 0, 0 }
};

static const struct gkey search_keys[] = {
	{ "language", 's', 0, 0, OFF(search_language) },
	{ NULL, 0, 0, 0, 0 }
};

/*
 * Checks the ca_file just read (s) into *path (SPEC §4): a relative path
 * is taken from the configuration file's directory (*path is replaced),
 * and, if load, the file must be readable and hold a PEM certificate, or
 * it is a configuration error here rather than a network error at run
 * time.  Empty means none.  src: the source's name, NULL for http.ca_file.
 */
static enum sync_rc
check_ca_file(struct loader *l, const config_setting_t *s, const char *src,
    char **path, int load)
{
	struct sync_tls_cas *cas;
	const char *slash;
	char why[256], buf[4096], *p;

	if (**path == '\0')
		return SYNC_OK;
	if (**path != '/' && (slash = strrchr(l->path, '/')) != NULL) {
		snprintf(buf, sizeof(buf), "%.*s/%s", (int)(slash - l->path),
		    l->path, *path);
		if ((p = strdup(buf)) == NULL)
			return sync_err_set(l->err, SYNC_ENOMEM, SYNC_ERR_CONFIG,
			    "out of memory");
		free(*path);
		*path = p;
	}
	if (!load)
		return SYNC_OK;
	if ((cas = sync_tls_cas_load(*path, why, sizeof(why))) == NULL)
		return cerr(l, s, "%s%s%sca_file '%s': %s", src != NULL ?
		    "source '" : "", src != NULL ? src : "", src != NULL ?
		    "': " : "", *path, why);
	sync_tls_cas_free(cas);
	return SYNC_OK;
}

/* The keys of the top level, for "did you mean". */
static const char *const top_keys[] = { "database", "http", "sync", "log",
    "identity", "search", "media", "sources", NULL };

/*
 * Loads a global group.  A bad key is recorded and the next one checked:
 * only SYNC_ENOMEM stops the load.
 */
static enum sync_rc
load_group(struct loader *l, const config_setting_t *g, struct sync_config *c,
    const struct gkey *keys, const char *where)
{
	unsigned i;
	long long v;

	if (want_group(l, g) != SYNC_OK)
		return SYNC_ECONFIG;
	for (i = 0; i < (unsigned)config_setting_length(g); i++) {
		config_setting_t *s = config_setting_get_elem(g, i);
		const char *k = config_setting_name(s);
		const struct gkey *d;
		char *dst;
		enum sync_rc rc;

		for (d = keys; d->name != NULL && strcmp(d->name, k) != 0; d++)
			;
		if (d->name == NULL) {
			struct near nr = NEAR_INIT(k);

			for (d = keys; d->name != NULL; d++)
				near_try(&nr, d->name);
			unknown_key(l, s, where, &nr);
			continue;
		}
		dst = (char *)c + d->off;
		switch (d->type) {
		case 's':
			rc = get_str(l, s, (char **)(void *)dst);
			if (rc == SYNC_OK && d->off == OFF(ca_file))
				rc = check_ca_file(l, s, NULL,
				    (char **)(void *)dst, l->opts == NULL ||
				    !reads_only(l->opts->cmd));
			break;
		case 'n':
			rc = get_num(l, s, d->lo, d->hi, (double *)(void *)dst);
			break;
		default:
			rc = get_int(l, s, (long long)d->lo, (long long)d->hi, &v);
			if (rc != SYNC_OK)
				break;
			if (d->type == 'l')
				*(long *)(void *)dst = (long)v;
			else
				*(long long *)(void *)dst = v;
			break;
		}
		if (rc == SYNC_ENOMEM)
			return rc;
	}
	return SYNC_OK;
}

/* media = { store, dir, max_bytes }: the store's kind is checked here. */
static enum sync_rc
load_media(struct loader *l, const config_setting_t *g, struct sync_config *c)
{
	const config_setting_t *s;
	enum sync_rc rc;

	if ((rc = load_group(l, g, c, media_keys, "'media'")) != SYNC_OK)
		return rc;
	s = config_setting_get_member(g, "store");
	if (s != NULL && c->media_store != NULL &&
	    strcmp(c->media_store, "dir") != 0 &&
	    strcmp(c->media_store, "database") != 0)
		cerr(l, s, "'store' must be \"dir\" or \"database\"");
	s = config_setting_get_member(g, "dir");
	if (s != NULL && c->media_dir != NULL && c->media_dir[0] != '/')
		cerr(l, s, "'dir' must be an absolute path");
	return SYNC_OK;
}

/*
 * search = { language }: the name of a text search configuration,
 * optionally schema-qualified; whether the database has it is checked
 * when a binary connects (sync_db_search_index()).
 */
static enum sync_rc
load_search(struct loader *l, const config_setting_t *g, struct sync_config *c)
{
	const config_setting_t *s;
	enum sync_rc rc;
	const char *p;

	if ((rc = load_group(l, g, c, search_keys, "'search'")) != SYNC_OK)
		return rc;
	s = config_setting_get_member(g, "language");
	if (s == NULL || c->search_language == NULL)
		return SYNC_OK;
	for (p = c->search_language; *p != '\0'; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
		    *p == '_' || *p == '.'))
			break;
	if (*p != '\0' || p == c->search_language || p - c->search_language > 63)
		cerr(l, s, "'language' must name a text search configuration"
		    " (e.g. \"simple\", \"english\")");
	return SYNC_OK;
}

static const char *const log_keys[] = { "level", "target", "format", NULL };

static enum sync_rc
load_log(struct loader *l, const config_setting_t *g, struct sync_config *c)
{
	static const char *const levels[] = { "error", "warning", "notice",
	    "info", "debug", NULL };
	static const int prios[] = { LOG_ERR, LOG_WARNING, LOG_NOTICE, LOG_INFO,
	    LOG_DEBUG };
	unsigned i;
	int j;

	if (want_group(l, g) != SYNC_OK)
		return SYNC_ECONFIG;
	for (i = 0; i < (unsigned)config_setting_length(g); i++) {
		config_setting_t *s = config_setting_get_elem(g, i);
		const char *k = config_setting_name(s);
		char *v = NULL;
		enum sync_rc rc;

		if (strcmp(k, "level") != 0 && strcmp(k, "target") != 0 &&
		    strcmp(k, "format") != 0) {
			struct near nr = NEAR_INIT(k);

			for (j = 0; log_keys[j] != NULL; j++)
				near_try(&nr, log_keys[j]);
			unknown_key(l, s, "'log'", &nr);
			continue;
		}
		if ((rc = get_str(l, s, &v)) != SYNC_OK) {
			if (rc == SYNC_ENOMEM)
				return rc;
			continue;
		}
		if (strcmp(k, "level") == 0) {
			for (j = 0; levels[j] != NULL; j++)
				if (strcmp(v, levels[j]) == 0)
					break;
			if (levels[j] == NULL)
				cerr(l, s, "'level' must be one of error, "
				    "warning, notice, info, debug");
			else
				c->log_level = prios[j];
		} else if (strcmp(k, "target") == 0) {
			if (strcmp(v, "stderr") != 0 && strcmp(v, "syslog") != 0)
				cerr(l, s, "'target' must be \"stderr\" or \"syslog\"");
			else
				c->log_syslog = strcmp(v, "syslog") == 0;
		} else {
			if (strcmp(v, "text") != 0 && strcmp(v, "json") != 0)
				cerr(l, s, "'format' must be \"text\" or \"json\"");
			else
				c->log_json = strcmp(v, "json") == 0;
		}
		free(v);
	}
	return SYNC_OK;
}

/*
 * Before anything else is checked: the log format the file asks for, so
 * that the errors found next come out in it (log.c).
 */
static void
early_log_format(const config_setting_t *root, struct sync_config *c)
{
	const config_setting_t *g = config_setting_get_member(root, "log"), *f;
	const char *v;

	if (g == NULL || config_setting_type(g) != CONFIG_TYPE_GROUP ||
	    (f = config_setting_get_member(g, "format")) == NULL ||
	    (v = config_setting_get_string(f)) == NULL)
		return;
	if (strcmp(v, "json") == 0 || strcmp(v, "text") == 0) {
		c->log_json = strcmp(v, "json") == 0;
		sync_log_format(c->log_json);
	}
}

/*
 * Refuses a file holding a secret (st is its status) that group or others
 * may read, naming the file and the chmod that fixes it (SPEC §4).
 */
static enum sync_rc
check_private(struct loader *l, const config_setting_t *s, const char *src,
    const char *what, const char *file, const struct stat *st)
{
	if ((st->st_mode & (S_IRWXG | S_IRWXO)) == 0)
		return SYNC_OK;
	return cerr(l, s, "source '%s': %s '%s' is readable by group or others "
	    "(mode %04o): chmod 600 %s", src, what, file,
	    (unsigned)(st->st_mode & 07777), file);
}

/*
 * Reads a secret file (token_file, app_secret_file, api_hash_file): the
 * first line, without trailing white space.  The file must be private.
 */
static enum sync_rc
read_token_file(struct loader *l, const config_setting_t *s, const char *src,
    const char *file, char **out)
{
	char buf[8193], path[4096];
	const char *slash;
	struct stat st;
	ssize_t n;
	size_t len;
	int fd;

	if (file[0] != '/' && (slash = strrchr(l->path, '/')) != NULL) {
		snprintf(path, sizeof(path), "%.*s/%s", (int)(slash - l->path),
		    l->path, file);
		file = path;
	}
	if ((fd = open(file, O_RDONLY | O_CLOEXEC)) == -1)
		return cerr(l, s, "cannot read %s '%s': %s",
		    config_setting_name(s), file, strerror(errno));
	if (fstat(fd, &st) == -1) {
		cerr(l, s, "cannot read %s '%s': %s", config_setting_name(s),
		    file, strerror(errno));
		close(fd);
		return SYNC_ECONFIG;
	}
	if (check_private(l, s, src, config_setting_name(s), file, &st) !=
	    SYNC_OK) {
		close(fd);
		return SYNC_ECONFIG;
	}
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n < 0)
		return cerr(l, s, "cannot read %s '%s': %s",
		    config_setting_name(s), file, strerror(errno));
	buf[n] = '\0';
	len = strcspn(buf, "\r\n");
	while (len > 0 && isspace((unsigned char)buf[len - 1]))
		len--;
	buf[len] = '\0';
	if (len == 0)
		return cerr(l, s, "%s '%s' is empty", config_setting_name(s), file);
	*out = strdup(buf);
	explicit_bzero(buf, sizeof(buf));
	if (*out == NULL)
		return sync_err_set(l->err, SYNC_ENOMEM, SYNC_ERR_CONFIG, "out of memory");
	return SYNC_OK;
}

/*
 * Resolves the secret of key s, whose value v->s names a file or an
 * environment variable (checked by load_value()): v->s becomes the
 * secret, registered for redaction.
 */
static enum sync_rc
load_secret(struct loader *l, const config_setting_t *s, struct sync_value *v,
    const struct sync_source_cfg *src)
{
	const struct sync_keydef *d = v->def;
	char *name = v->s;
	const char *val;
	enum sync_rc rc;

	v->s = NULL;
	if (d->type == SYNC_KEY_SECRET_FILE) {
		rc = read_token_file(l, s, src->name, name, &v->s);
		free(name);
		if (rc != SYNC_OK)
			return rc;
	} else {
		if ((val = getenv(name)) == NULL || *val == '\0') {
			cerr(l, s, "source '%s': environment variable '%s' "
			    "(%s) is not set", src->name, name, d->name);
			free(name);
			return SYNC_ECONFIG;
		}
		free(name);
		if ((v->s = strdup(val)) == NULL)
			return nomem(l);
	}
	if (strlen(v->s) < SYNC_SECRET_MIN)
		return cerr(l, s, "source '%s': '%s' is too short (%zu "
		    "characters; at least %d)", src->name, d->name,
		    strlen(v->s), SYNC_SECRET_MIN);
	if (sync_secret_add(v->s) == -1)
		return nomem(l);
	return SYNC_OK;
}

/*
 * Loads one type-specific key.  A secret key's value is, for now, the
 * name of its file or variable (load_secret() reads it when the source
 * needs it).  Returns SYNC_ECONFIG (recorded) or SYNC_ENOMEM on error.
 */
static enum sync_rc
load_value(struct loader *l, config_setting_t *s, struct sync_value *v,
    const struct sync_source_cfg *src)
{
	const struct sync_keydef *d = v->def;
	long long lo = d->min, hi = d->max;
	unsigned i, n;
	enum sync_rc rc;

	if (lo == 0 && hi == 0) {
		lo = -(1LL << 62);
		hi = 1LL << 62;
	}
	v->set = 1;
	v->line = line_of(s);
	switch (d->type) {
	case SYNC_KEY_STRING:
	case SYNC_KEY_SECRET_FILE:
	case SYNC_KEY_SECRET_ENV:
		return get_str(l, s, &v->s);
	case SYNC_KEY_BOOL: {
		int b;

		if ((rc = get_bool(l, s, &b)) != SYNC_OK)
			return rc;
		v->i = b;
		return SYNC_OK;
	}
	case SYNC_KEY_INT:
		return get_int(l, s, lo, hi, &v->i);
	case SYNC_KEY_INT_PER_STREAM:
		if (is_int(s))
			return get_int(l, s, lo, hi, &v->i);
		if (config_setting_type(s) != CONFIG_TYPE_GROUP)
			return cerr(l, s, "'%s' must be an integer or a group of "
			    "integers by stream", d->name);
		v->i = -1;
		n = (unsigned)config_setting_length(s);
		v->names = calloc(n + 1, sizeof(*v->names));
		v->ints = calloc(n + 1, sizeof(*v->ints));
		if (v->names == NULL || v->ints == NULL)
			return nomem(l);
		for (i = 0; i < n; i++) {
			config_setting_t *e = config_setting_get_elem(s, i);
			const char *name = config_setting_name(e);
			size_t j;

			for (j = 0; src->conn->all_streams[j] != NULL; j++)
				if (strcmp(src->conn->all_streams[j], name) == 0)
					break;
			if (src->conn->all_streams[j] == NULL) {
				struct near nr = NEAR_INIT(name);
				char hint[120];

				for (j = 0; src->conn->all_streams[j] != NULL; j++)
					near_try(&nr, src->conn->all_streams[j]);
				return cerr(l, e, "source '%s': '%s' has no stream "
				    "named '%s'%s", src->name, d->name, name,
				    near_hint(&nr, hint, sizeof(hint)));
			}
			if ((rc = get_int(l, e, lo, hi, &v->ints[v->nints])) !=
			    SYNC_OK)
				return rc;
			if ((v->names[v->nints] = strdup(name)) == NULL)
				return nomem(l);
			v->nints++;
		}
		return SYNC_OK;
	case SYNC_KEY_STRLIST:
		if (config_setting_type(s) != CONFIG_TYPE_ARRAY &&
		    config_setting_type(s) != CONFIG_TYPE_LIST)
			return cerr(l, s, "'%s' must be an array of strings", d->name);
		n = (unsigned)config_setting_length(s);
		if ((v->list = calloc(n + 1, sizeof(*v->list))) == NULL)
			return nomem(l);
		for (i = 0; i < n; i++) {
			config_setting_t *e = config_setting_get_elem(s, i);
			const char *item;
			size_t j;

			if (config_setting_type(e) != CONFIG_TYPE_STRING)
				return cerr(l, s, "'%s' must be an array of strings",
				    d->name);
			item = config_setting_get_string(e);
			if (d->allowed != NULL) {
				for (j = 0; d->allowed[j] != NULL; j++)
					if (strcmp(d->allowed[j], item) == 0)
						break;
				if (d->allowed[j] == NULL) {
					struct near nr = NEAR_INIT(item);
					char hint[120];

					for (j = 0; d->allowed[j] != NULL; j++)
						near_try(&nr, d->allowed[j]);
					return cerr(l, s, "source '%s': '%s' cannot "
					    "contain \"%s\"%s", src->name, d->name,
					    item, near_hint(&nr, hint, sizeof(hint)));
				}
			}
			for (j = 0; j < v->nlist; j++)
				if (strcmp(v->list[j], item) == 0)
					return cerr(l, s, "source '%s': '%s' lists "
					    "\"%s\" twice", src->name, d->name, item);
			if ((v->list[i] = strdup(item)) == NULL)
				return nomem(l);
			v->nlist++;
		}
		if (n == 0)
			return cerr(l, s, "source '%s': '%s' is empty", src->name,
			    d->name);
		return SYNC_OK;
	}
	return SYNC_OK;
}

static int
valid_name(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 64)
		return 0;
	return strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789_-") == n;
}

/* The keys every source takes, whatever its type. */
static const char *const source_keys[] = { "name", "type", "url", "enabled",
    "allow_insecure_http", "ca_file", "pinned_pubkey", "on_bad_row", "media",
    NULL };
static const char *const token_keys[] = { "token", "token_file", "token_env",
    NULL };

static int
is_token_key(const char *k)
{
	return strcmp(k, "token") == 0 || strcmp(k, "token_file") == 0 ||
	    strcmp(k, "token_env") == 0;
}

/* Whether src may run in this process: its credentials are needed. */
static int
may_run(const struct loader *l, const struct sync_source_cfg *src)
{
	size_t k;

	if (src->enabled)
		return 1;
	for (k = 0; l->opts != NULL && k < l->opts->nsources; k++)
		if (strcmp(l->opts->sources[k], src->name) == 0)
			return 1;
	return 0;
}

/* Reads the source's token (key tok, one of token_keys) into src->token. */
static enum sync_rc
load_token(struct loader *l, const config_setting_t *tok,
    struct sync_source_cfg *src)
{
	const char *tokkey = config_setting_name(tok);
	enum sync_rc rc;
	size_t j;

	if (strcmp(tokkey, "token") == 0) {
		/* The file that holds it: this one, or one it includes. */
		const char *f = config_setting_source_file(tok);
		struct stat st = l->st;

		if (f == NULL)
			f = l->path;
		else if (stat(f, &st) == -1)
			return cerr(l, tok, "source '%s': cannot check '%s': %s",
			    src->name, f, strerror(errno));
		if (st.st_mode & (S_IRWXG | S_IRWXO))
			return cerr(l, tok, "source '%s': inline 'token' refused "
			    "because '%s' is readable by group or others (mode "
			    "%04o): chmod 600 %s, or use token_file or token_env",
			    src->name, f, (unsigned)(st.st_mode & 07777), f);
		if ((src->token = strdup(config_setting_get_string(tok))) == NULL)
			return nomem(l);
	} else if (strcmp(tokkey, "token_file") == 0) {
		if ((rc = read_token_file(l, tok, src->name,
		    config_setting_get_string(tok), &src->token)) != SYNC_OK)
			return rc;
	} else {
		const char *env = config_setting_get_string(tok);
		const char *v = getenv(env);

		if (v == NULL || *v == '\0')
			return cerr(l, tok, "source '%s': environment variable "
			    "'%s' (token_env) is not set", src->name, env);
		if ((src->token = strdup(v)) == NULL)
			return nomem(l);
	}
	for (j = 0; src->token[j] != '\0'; j++)
		if ((unsigned char)src->token[j] < 0x20 || src->token[j] == 0x7f)
			return cerr(l, tok, "source '%s': the token contains "
			    "control characters", src->name);
	/* Shorter ones are not masked (err.c); an upstream would refuse them. */
	if (strlen(src->token) < SYNC_SECRET_MIN)
		return cerr(l, tok, "source '%s': the token is too short (%zu "
		    "characters; at least %d)", src->name, strlen(src->token),
		    SYNC_SECRET_MIN);
	if (sync_secret_add(src->token) == -1)
		return nomem(l);
	return SYNC_OK;
}

/*
 * Loads source number idx of the list.  Every error is recorded and the
 * next key checked; only SYNC_ENOMEM is returned.  Credentials are read
 * (and required) only when the source may run (may_run()), and never for
 * sync-status.
 */
static enum sync_rc
load_source(struct loader *l, config_setting_t *g, struct sync_config *c,
    struct sync_source_cfg *src, size_t idx)
{
	config_setting_t *s, *tok = NULL;
	char why[200], hint[120];
	size_t j, nerrs = l->nerrs;
	unsigned i;
	int ntok = 0, need, load;
	enum sync_rc rc;

	src->enabled = 1;
	src->line = line_of(g);
	if (config_setting_type(g) != CONFIG_TYPE_GROUP) {
		cerr(l, g, "each source must be a group { ... }");
		return SYNC_OK;
	}
	/* name and type first: every later message names the source. */
	if ((s = config_setting_get_member(g, "name")) == NULL)
		cerr(l, g, "source without 'name'");
	else if ((rc = get_str(l, s, &src->name)) == SYNC_ENOMEM)
		return rc;
	else if (rc == SYNC_OK && !valid_name(src->name))
		cerr(l, s, "source name '%s' must match [a-z0-9_-]+ "
		    "(at most 64 characters)", src->name);
	else if (rc == SYNC_OK)
		for (j = 0; j < c->nsources; j++)
			if (&c->sources[j] != src && c->sources[j].name != NULL &&
			    strcmp(c->sources[j].name, src->name) == 0) {
				cerr(l, s, "duplicate source name '%s' (first at "
				    "line %d)", src->name, c->sources[j].line);
				break;
			}
	if (src->name == NULL) {
		/* For the messages that follow: its place in the list. */
		snprintf(why, sizeof(why), "#%zu", idx + 1);
		if ((src->name = strdup(why)) == NULL)
			return nomem(l);
	}
	if ((s = config_setting_get_member(g, "type")) == NULL)
		cerr(l, g, "source '%s' has no 'type'", src->name);
	else if ((rc = get_str(l, s, &src->type)) == SYNC_ENOMEM)
		return rc;
	else if (rc == SYNC_OK &&
	    (src->conn = sync_connector_find(src->type)) == NULL) {
		struct near nr = NEAR_INIT(src->type);
		const char *t = sync_connector_types(), *e;
		char name[64];

		/* "seqapi, smseagle, ...": each in turn. */
		for (; *t != '\0'; t = *e != '\0' ? e + 2 : e) {
			e = strchr(t, ',');
			e = e != NULL ? e : t + strlen(t);
			snprintf(name, sizeof(name), "%.*s", (int)(e - t), t);
			if ((src->conn = sync_connector_find(name)) != NULL)
				near_try(&nr, src->conn->type);
		}
		src->conn = NULL;
		cerr(l, s, "source '%s': unknown type '%s'%s (known: %s)",
		    src->name, src->type, near_hint(&nr, hint, sizeof(hint)),
		    sync_connector_types());
	}
	if (src->conn != NULL) {
		for (j = 0; src->conn->keys[j].name != NULL; j++)
			src->nvalues++;
		if ((src->values = calloc(src->nvalues + 1,
		    sizeof(*src->values))) == NULL)
			return nomem(l);
		for (j = 0; j < src->nvalues; j++)
			src->values[j].def = &src->conn->keys[j];
	}

	for (i = 0; i < (unsigned)config_setting_length(g); i++) {
		const char *k;

		rc = SYNC_OK;
		s = config_setting_get_elem(g, i);
		k = config_setting_name(s);
		if (strcmp(k, "name") == 0 || strcmp(k, "type") == 0)
			continue;
		if (strcmp(k, "url") == 0)
			rc = get_str(l, s, &src->url);
		else if (strcmp(k, "enabled") == 0)
			rc = get_bool(l, s, &src->enabled);
		else if (strcmp(k, "allow_insecure_http") == 0)
			rc = get_bool(l, s, &src->allow_insecure_http);
		else if (strcmp(k, "ca_file") == 0)
			rc = get_str(l, s, &src->ca_file);
		else if (strcmp(k, "pinned_pubkey") == 0)
			rc = get_str(l, s, &src->pinned_pubkey);
		else if (strcmp(k, "media") == 0) {
			const char *v = config_setting_get_string(s);

			src->media_set = 1;
			if (v != NULL && strcmp(v, "download") == 0)
				src->media = SYNC_MEDIA_DOWNLOAD;
			else if (v != NULL && strcmp(v, "link") == 0)
				src->media = SYNC_MEDIA_LINK;
			else if (v != NULL && strcmp(v, "none") == 0)
				src->media = SYNC_MEDIA_NONE;
			else
				cerr(l, s, "source '%s': 'media' must be "
				    "\"download\", \"link\" or \"none\"",
				    src->name);
		} else if (strcmp(k, "on_bad_row") == 0) {
			const char *v = config_setting_get_string(s);

			if (v == NULL || (strcmp(v, "fail") != 0 &&
			    strcmp(v, "quarantine") != 0))
				cerr(l, s, "source '%s': 'on_bad_row' must be "
				    "\"fail\" or \"quarantine\"", src->name);
			else
				src->quarantine = strcmp(v, "quarantine") == 0;
		} else if (is_token_key(k) && src->conn != NULL &&
		    (src->conn->flags & SYNC_CONN_NO_TOKEN))
			cerr(l, s, "source '%s': type %s takes no token ('%s')",
			    src->name, src->type, k);
		else if (is_token_key(k)) {
			if (config_setting_type(s) != CONFIG_TYPE_STRING)
				cerr(l, s, "'%s' must be a string, not %s", k,
				    type_name(config_setting_type(s)));
			tok = s;
			ntok++;
		} else if (src->conn == NULL)
			continue;	/* of an unknown type: cannot tell */
		else {
			for (j = 0; j < src->nvalues; j++)
				if (strcmp(src->values[j].def->name, k) == 0)
					break;
			if (j < src->nvalues)
				rc = load_value(l, s, &src->values[j], src);
			else {
				struct near nr = NEAR_INIT(k);

				for (j = 0; source_keys[j] != NULL; j++)
					near_try(&nr, source_keys[j]);
				for (j = 0; !(src->conn->flags &
				    SYNC_CONN_NO_TOKEN) && token_keys[j] != NULL; j++)
					near_try(&nr, token_keys[j]);
				for (j = 0; j < src->nvalues; j++)
					near_try(&nr, src->values[j].def->name);
				if (nr.best != NULL)
					cerr(l, s, "unknown key '%s' in source '%s'%s",
					    k, src->name, near_hint(&nr, hint,
					    sizeof(hint)));
				else
					cerr(l, s, "unknown key '%s' in source '%s' "
					    "(type %s)", k, src->name, src->type);
			}
		}
		if (rc == SYNC_ENOMEM)
			return rc;
	}
	if (src->conn == NULL)
		return SYNC_OK;

	if (src->url == NULL && src->conn->default_url != NULL &&
	    (src->url = strdup(src->conn->default_url)) == NULL)
		return nomem(l);
	s = config_setting_get_member(g, "url");
	if (src->url == NULL && !(src->conn->flags & SYNC_CONN_NO_URL))
		cerr(l, g, "source '%s' has no 'url'", src->name);
	/* A type without an HTTP API accepts a url (SPEC §4) and ignores it. */
	else if (src->url != NULL && !(src->conn->flags & SYNC_CONN_NO_URL) &&
	    sync_url_check(src->url, src->allow_insecure_http, why,
	    sizeof(why)) != SYNC_OK)
		cerr(l, s, "source '%s': url '%s': %s", src->name, src->url, why);
	/* A ca_file is read only where HTTP may be used (not by sync-status). */
	if (src->ca_file != NULL && check_ca_file(l,
	    config_setting_get_member(g, "ca_file"), src->name, &src->ca_file,
	    may_run(l, src) && (l->opts == NULL ||
	    !reads_only(l->opts->cmd))) == SYNC_ENOMEM)
		return SYNC_ENOMEM;
	for (j = 0; j < src->nvalues; j++)
		if (src->values[j].def->required && !src->values[j].set)
			cerr(l, g, "source '%s' has no '%s' (required for type %s)",
			    src->name, src->values[j].def->name, src->type);

	/*
	 * Credentials: required when the source may run, read only when,
	 * besides, this is no sync-status (which never reads a secret).
	 */
	need = may_run(l, src);
	load = need && (l->opts == NULL || !reads_only(l->opts->cmd));
	src->secrets_optional = !need;
	for (j = 0; j < src->nvalues; j++) {
		struct sync_value *v = &src->values[j];

		if (!v->set || v->s == NULL ||
		    (v->def->type != SYNC_KEY_SECRET_FILE &&
		    v->def->type != SYNC_KEY_SECRET_ENV))
			continue;
		if (load) {
			s = config_setting_get_member(g, v->def->name);
			if ((rc = load_secret(l, s, v, src)) == SYNC_ENOMEM)
				return rc;
		} else {
			/* Given, not read: "" (sync_cfg_str() says it is set). */
			free(v->s);
			if ((v->s = strdup("")) == NULL)
				return nomem(l);
		}
	}
	if (!(src->conn->flags & SYNC_CONN_NO_TOKEN)) {
		if (ntok > 1 || (ntok == 0 && need))
			cerr(l, ntok > 1 ? tok : g, "source '%s' needs exactly one "
			    "of 'token', 'token_file', 'token_env'", src->name);
		else if (ntok == 1 && load &&
		    config_setting_type(tok) == CONFIG_TYPE_STRING &&
		    (rc = load_token(l, tok, src)) == SYNC_ENOMEM)
			return rc;
	}
	/* The connector's own checks, on values that are all well-formed. */
	if (l->nerrs == nerrs && src->conn->check != NULL) {
		struct sync_err e;

		sync_err_clear(&e);
		if (src->conn->check(src, &e) != SYNC_OK) {
			if (e.rc == SYNC_ENOMEM)
				return nomem(l);
			cerr(l, g, "%s", e.msg);
		}
	}
	/* A derived credential, masked before any thread of a pass starts. */
	if (l->nerrs == nerrs && src->conn->proof != NULL && src->token != NULL) {
		struct sync_err e;

		sync_err_clear(&e);
		if (src->conn->proof(src, &src->proof, &e) != SYNC_OK)
			return sync_err_set(l->err, e.rc, SYNC_ERR_CONFIG, "%s",
			    e.msg);
		if (src->proof != NULL && sync_secret_add(src->proof) == -1)
			return nomem(l);
	}
	return SYNC_OK;
}

/* Resolves the streams of src: its configured list or the default. */
static enum sync_rc
source_streams(struct loader *l, struct sync_source_cfg *src)
{
	const char *const *def = src->conn->default_streams;
	size_t j, n = 0;

	for (j = 0; j < src->nvalues; j++)
		if (src->values[j].def->type == SYNC_KEY_STRLIST &&
		    src->values[j].def->allowed == src->conn->all_streams &&
		    src->values[j].set) {
			src->streams = src->values[j].list;
			src->nstreams = src->values[j].nlist;
			return SYNC_OK;
		}
	while (def[n] != NULL)
		n++;
	if ((src->streams = calloc(n + 1, sizeof(*src->streams))) == NULL)
		return sync_err_set(l->err, SYNC_ENOMEM, SYNC_ERR_CONFIG, "out of memory");
	src->nstreams = n;
	for (j = 0; j < n; j++)
		if ((src->streams[j] = strdup(def[j])) == NULL)
			return sync_err_set(l->err, SYNC_ENOMEM, SYNC_ERR_CONFIG,
			    "out of memory");
	return SYNC_OK;
}

static enum sync_rc
load_sources(struct loader *l, config_setting_t *list, struct sync_config *c)
{
	unsigned i, n;
	enum sync_rc rc;

	if (config_setting_type(list) != CONFIG_TYPE_LIST)
		return cerr(l, list, "'sources' must be a list ( { ... }, ... )");
	n = (unsigned)config_setting_length(list);
	if ((c->sources = calloc(n + 1, sizeof(*c->sources))) == NULL)
		return nomem(l);
	for (i = 0; i < n; i++) {
		c->nsources++;
		if ((rc = load_source(l, config_setting_get_elem(list, i), c,
		    &c->sources[i], i)) != SYNC_OK && rc != SYNC_ECONFIG)
			return rc;
		if (c->sources[i].conn != NULL &&
		    (rc = source_streams(l, &c->sources[i])) != SYNC_OK)
			return rc;
	}
	return SYNC_OK;
}

void
sync_strv_free(char **v)
{
	size_t i;

	for (i = 0; v != NULL && v[i] != NULL; i++)
		free(v[i]);
	free(v);
}

enum sync_rc
sync_config_load(const struct sync_opts *o, struct sync_config **out,
    struct sync_err *err)
{
	return sync_config_load_all(o, out, NULL, err);
}

enum sync_rc
sync_config_load_all(const struct sync_opts *o, struct sync_config **out,
    char ***errors, struct sync_err *err)
{
	struct loader l;
	struct sync_config *c;
	config_t cf;
	config_setting_t *root, *s;
	const char *path;
	char line[sizeof(err->msg)];
	unsigned i;
	FILE *fp;
	enum sync_rc rc = SYNC_OK;

	*out = NULL;
	if (errors != NULL)
		*errors = NULL;
#ifdef __linux__
	/* Before any secret is read: no core dump, no ptrace by others. */
	(void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
#endif
	path = o->config_path;
	if (path == NULL && (path = getenv("MSGSYNC_CONFIG")) != NULL && *path == '\0')
		path = NULL;
	if (path == NULL)
		path = DEFAULT_CONFIG;
	memset(&l, 0, sizeof(l));
	l.path = path;
	l.err = err;
	l.opts = o;
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return nomem(&l);
	c->http_timeout = 30;
	c->connect_timeout = 10;
	c->retries = 4;
	c->backoff = 1.0;
	c->max_body = 64LL * 1024 * 1024;
	c->media_max_bytes = 100LL * 1024 * 1024;
	c->batch_size = 500;
	c->jobs = 4;
	c->log_level = LOG_INFO;
	c->log_json = sync_log_env_json();	/* the file's log.format wins */
	if ((c->path = strdup(path)) == NULL) {
		free(c);
		return nomem(&l);
	}
	l.path = c->path;

	config_init(&cf);
	if ((fp = fopen(path, "r")) == NULL || fstat(fileno(fp), &l.st) == -1) {
		fmt_redacted(line, sizeof(line), "%s: cannot read configuration: %s",
		    path, strerror(errno));
		rc = record(&l, line);
		if (fp != NULL)
			fclose(fp);
		goto out;
	}
	if (config_read(&cf, fp) != CONFIG_TRUE) {
		/* libconfig stops at its first syntax error: one error. */
		fmt_redacted(line, sizeof(line), "%s:%d: %s",
		    config_error_file(&cf) ? config_error_file(&cf) : path,
		    config_error_line(&cf), config_error_text(&cf));
		rc = record(&l, line);
		fclose(fp);
		goto out;
	}
	fclose(fp);
	root = config_root_setting(&cf);
	early_log_format(root, c);
	for (i = 0; i < (unsigned)config_setting_length(root); i++) {
		const char *k;

		s = config_setting_get_elem(root, i);
		k = config_setting_name(s);
		if (strcmp(k, "database") == 0)
			rc = load_group(&l, s, c, database_keys, "'database'");
		else if (strcmp(k, "http") == 0)
			rc = load_group(&l, s, c, http_keys, "'http'");
		else if (strcmp(k, "sync") == 0)
			rc = load_group(&l, s, c, sync_keys, "'sync'");
		else if (strcmp(k, "log") == 0)
			rc = load_log(&l, s, c);
		else if (strcmp(k, "media") == 0)
			rc = load_media(&l, s, c);
		else if (strcmp(k, "identity") == 0)
			rc = load_group(&l, s, c, identity_keys, "'identity'");
		else if (strcmp(k, "search") == 0)
			rc = load_search(&l, s, c);
		else if (strcmp(k, "sources") == 0)
			rc = load_sources(&l, s, c);
		else {
			struct near nr = NEAR_INIT(k);
			size_t j;

			for (j = 0; top_keys[j] != NULL; j++)
				near_try(&nr, top_keys[j]);
			rc = unknown_key(&l, s, "the top level", &nr);
		}
		if (rc != SYNC_OK && rc != SYNC_ECONFIG)
			goto out;
	}
	rc = l.nerrs > 0 || err->rc == SYNC_ECONFIG ? SYNC_ECONFIG : SYNC_OK;
	if (rc != SYNC_OK)
		goto out;
	if ((c->conninfo == NULL && (c->conninfo = strdup("")) == NULL) ||
	    (c->media_store == NULL && (c->media_store = strdup("dir")) == NULL) ||
	    (c->search_language == NULL &&
	    (c->search_language = strdup("simple")) == NULL) ||
	    (c->media_dir == NULL && (c->media_dir =
	    strdup("/var/lib/msgsync/media")) == NULL))
		rc = nomem(&l);
	/* The database password is a secret like any token. */
	else if (sync_db_conninfo_secrets(c->conninfo) == -1)
		rc = nomem(&l);
out:
	config_destroy(&cf);
	if (rc != SYNC_OK && errors != NULL) {
		*errors = l.errs;
		l.errs = NULL;
	}
	sync_strv_free(l.errs);
	if (rc != SYNC_OK) {
		sync_config_free(c);
		return rc;
	}
	*out = c;
	return SYNC_OK;
}

static void
free_strv(char **v, size_t n)
{
	size_t i;

	if (v == NULL)
		return;
	for (i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

enum sync_rc
sync_config_check_sources(const struct sync_config *cfg,
    const struct sync_opts *o, struct sync_err *err)
{
	size_t i, k;

	for (i = 0; i < o->nsources; i++) {
		for (k = 0; k < cfg->nsources; k++)
			if (strcmp(cfg->sources[k].name, o->sources[i]) == 0)
				break;
		if (k == cfg->nsources)
			return sync_err_set(err, SYNC_EUSAGE, SYNC_ERR_CONFIG,
			    "no source named '%s' in %s", o->sources[i], cfg->path);
	}
	return SYNC_OK;
}

void
sync_config_free(struct sync_config *c)
{
	size_t i, j;

	if (c == NULL)
		return;
	for (i = 0; i < c->nsources; i++) {
		struct sync_source_cfg *s = &c->sources[i];
		int streams_borrowed = 0;

		for (j = 0; j < s->nvalues; j++) {
			struct sync_value *v = &s->values[j];

			if (v->list != NULL && v->list == s->streams)
				streams_borrowed = 1;
			free(v->s);
			free_strv(v->list, v->nlist);
			free_strv(v->names, v->nints);
			free(v->ints);
		}
		if (!streams_borrowed)
			free_strv(s->streams, s->nstreams);
		free(s->values);
		free(s->name);
		free(s->type);
		free(s->url);
		if (s->token != NULL)
			explicit_bzero(s->token, strlen(s->token));
		free(s->token);
		if (s->proof != NULL)
			explicit_bzero(s->proof, strlen(s->proof));
		free(s->proof);
		free(s->ca_file);
		free(s->pinned_pubkey);
	}
	free(c->sources);
	free(c->path);
	free(c->conninfo);
	free(c->ca_file);
	free(c->media_store);
	free(c->search_language);
	free(c->media_dir);
	free(c);
}

static const struct sync_value *
find_value(const struct sync_source_cfg *src, const char *key)
{
	size_t j;

	for (j = 0; j < src->nvalues; j++)
		if (strcmp(src->values[j].def->name, key) == 0)
			return src->values[j].set ? &src->values[j] : NULL;
	return NULL;
}

const char *
sync_cfg_str(const struct sync_source_cfg *src, const char *key)
{
	const struct sync_value *v = find_value(src, key);

	return v != NULL ? v->s : NULL;
}

long long
sync_cfg_int(const struct sync_source_cfg *src, const char *key, long long dflt)
{
	const struct sync_value *v = find_value(src, key);

	return v != NULL ? v->i : dflt;
}

long long
sync_cfg_stream_int(const struct sync_source_cfg *src, const char *key,
    const char *stream, long long dflt)
{
	const struct sync_value *v = find_value(src, key);
	size_t j;

	if (v == NULL)
		return dflt;
	for (j = 0; j < v->nints; j++)
		if (strcmp(v->names[j], stream) == 0)
			return v->ints[j];
	return v->i >= 0 ? v->i : dflt;
}

double
sync_config_timeout(const struct sync_config *cfg)
{
	return cfg->http_timeout > 0 ? (double)cfg->http_timeout : 30;
}
