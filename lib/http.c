/*
 * http.c -- the HTTP client: one reused libcurl handle per source, capped
 * bodies, retries with backoff and jitter, Retry-After, deadlines.  The
 * only user of libcurl.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>

#include "internal.h"

/* Longest wait a pass sits out inline; longer ones are remembered. */
#define SYNC_MAX_INLINE_WAIT	120.0
#define SYNC_MAX_BACKOFF	60.0

struct sync_http {
	CURL		*curl;
	struct curl_slist *headers;
	char		 errbuf[CURL_ERROR_SIZE];
	long		 retries;
	double		 backoff;
	size_t		 max_body;
	double		 deadline;	/* monotonic; 0: none */
	long		 timeout_ms;	/* http.timeout */
	int		 cut;		/* the deadline cut the last request */
	struct sync_counts *counts;
	struct sync_counts scratch;
	struct sync_buf	*wbuf;		/* body being received */
	int		 too_big;
	unsigned	 rng;
	double		 last_wait;
	sync_http_classify_fn classify;
	/* Query credentials (name, value, ..., NULL), borrowed from the source. */
	const char	*cred[5];
	struct canned	*canned;	/* test only: no network */
	struct sync_tls_cas *cas;	/* ca_file's, added to each SSL_CTX */
	char		*origin;	/* the source's "scheme://host:port" */
	/* sync_http_download(): where a 2xx body goes, and what came */
	const struct sync_http_sink *sink;
	long long	 got, dl_max;
	int		 sink_failed;
};

static enum sync_rc canned_get(struct sync_http *, const char *, const char *,
		    struct sync_http_resp *, struct sync_err *);
static int	auth_place(struct sync_http *, const struct sync_source_cfg *);
static const char *canned_header(struct sync_http *, const char *);
static void	canned_free(struct canned *);

void
sync_http_global(int on)
{
	if (on)
		curl_global_init(CURL_GLOBAL_DEFAULT);
	else
		curl_global_cleanup();
}

double
sync_http_last_wait(const struct sync_http *h)
{
	return h->last_wait;
}

static size_t
on_write(char *p, size_t size, size_t n, void *arg)
{
	struct sync_http *h = arg;
	size_t len = size * n;
	long status = 0;

	/* A download's 2xx body goes to its sink, any other to wbuf. */
	if (h->sink != NULL && curl_easy_getinfo(h->curl, CURLINFO_RESPONSE_CODE,
	    &status) == CURLE_OK && status >= 200 && status < 300) {
		if (h->got + (long long)len > h->dl_max) {
			h->too_big = 1;
			return 0;
		}
		if (h->sink->write(h->sink->arg, p, len) == -1) {
			h->sink_failed = 1;
			return 0;
		}
		h->got += (long long)len;
		return len;
	}
	/* A download's other answers: what fits, for the message. */
	if (h->sink != NULL) {
		size_t room = h->wbuf->max > h->wbuf->len + 1 ?
		    h->wbuf->max - h->wbuf->len - 1 : 0;

		if (room > 0)
			(void)sync_buf_add(h->wbuf, p, len < room ? len : room);
		return len;
	}
	if (h->wbuf->len + len > h->max_body) {
		h->too_big = 1;
		return 0;
	}
	if (sync_buf_add(h->wbuf, p, len) == -1)
		return 0;
	return len;
}

static int
on_progress(void *arg, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
	(void)arg;
	(void)dt;
	(void)dn;
	(void)ut;
	(void)un;
	return sync_stop_signal != 0;
}

static int
setopt_failed(struct sync_err *err)
{
	sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_NETWORK, "cannot set up libcurl");
	return -1;
}

/*
 * TLS trust (SPEC §4): a ca_file adds to the system's CAs, it never
 * replaces them.  With OpenSSL as libcurl's backend (Debian's libcurl4),
 * libcurl loads the system's CAs as it was built to (bundle file and
 * directory) and on_ssl_ctx() then adds the file's certificates to the
 * store of each SSL_CTX it makes.  SSL_CERT_FILE and SSL_CERT_DIR, when
 * set, name the system's CAs instead, as for OpenSSL's own tools and the
 * curl command (libcurl itself, built with a fixed bundle, ignores them).
 * With another backend no certificate can be added beside the bundle: the
 * file becomes CURLOPT_CAINFO, and the CA directory libcurl was built with
 * (CURLINFO_CAPATH, kept as CURLOPT_CAPATH) still holds the system's CAs.
 * pinned_pubkey is independent of all this.
 */
static CURLcode
on_ssl_ctx(CURL *c, void *ssl_ctx, void *arg)
{
	(void)c;
	return sync_tls_cas_add(arg, ssl_ctx) == 0 ? CURLE_OK :
	    CURLE_SSL_CERTPROBLEM;
}

/* Sets the trust of h's handle; -1 with err set on failure. */
static int
tls_trust(struct sync_http *h, const struct sync_source_cfg *src,
    const char *ca, struct sync_err *err)
{
	const curl_version_info_data *v = curl_version_info(CURLVERSION_NOW);
	const char *env;
	char why[256];
	int bad = 0, dir_env = 0;

	if ((env = getenv("SSL_CERT_FILE")) != NULL && *env != '\0')
		bad |= curl_easy_setopt(h->curl, CURLOPT_CAINFO, env) != CURLE_OK;
	if ((env = getenv("SSL_CERT_DIR")) != NULL && *env != '\0') {
		bad |= curl_easy_setopt(h->curl, CURLOPT_CAPATH, env) != CURLE_OK;
		dir_env = 1;
	}
	if (ca == NULL || *ca == '\0')
		return bad ? setopt_failed(err) : 0;
	if (!sync_tls_is_ours(v != NULL ? v->ssl_version : NULL)) {
		char *capath = NULL;

#if LIBCURL_VERSION_NUM >= 0x075400
		if (!dir_env &&
		    curl_easy_getinfo(h->curl, CURLINFO_CAPATH, &capath) ==
		    CURLE_OK && capath != NULL)
			bad |= curl_easy_setopt(h->curl, CURLOPT_CAPATH, capath) !=
			    CURLE_OK;
#endif
		(void)capath;
		(void)dir_env;
		bad |= curl_easy_setopt(h->curl, CURLOPT_CAINFO, ca) != CURLE_OK;
		return bad ? setopt_failed(err) : 0;
	}
	/* Read once here; the config loader has checked it already. */
	if ((h->cas = sync_tls_cas_load(ca, why, sizeof(why))) == NULL) {
		sync_err_set(err, SYNC_ECONFIG, SYNC_ERR_CONFIG,
		    "source '%s': ca_file '%s': %s", src->name, ca, why);
		return -1;
	}
	bad |= curl_easy_setopt(h->curl, CURLOPT_SSL_CTX_FUNCTION, on_ssl_ctx) !=
	    CURLE_OK;
	bad |= curl_easy_setopt(h->curl, CURLOPT_SSL_CTX_DATA, h->cas) !=
	    CURLE_OK;
	return bad ? setopt_failed(err) : 0;
}

/*
 * "scheme://host:port" of url (the port spelt out), lower case; NULL if
 * url is not a URL (errno EINVAL) or on ENOMEM.
 */
static char *
origin_of(const char *url)
{
	CURLU *u;
	char *scheme = NULL, *host = NULL, *port = NULL, *o = NULL, *p;
	size_t n;

	errno = ENOMEM;
	if ((u = curl_url()) == NULL)
		return NULL;
	errno = EINVAL;
	if (curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) ==
	    CURLUE_OK) {
		n = strlen(scheme) + strlen(host) + strlen(port) + 5;
		if ((o = malloc(n)) == NULL)
			errno = ENOMEM;
		else {
			snprintf(o, n, "%s://%s:%s", scheme, host, port);
			for (p = o; *p != '\0'; p++)
				*p = (char)tolower((unsigned char)*p);
		}
	}
	curl_free(scheme);
	curl_free(host);
	curl_free(port);
	curl_url_cleanup(u);
	return o;
}

struct sync_http *
sync_http_new(const struct sync_config *cfg, const struct sync_source_cfg *src,
    struct sync_err *err)
{
	struct sync_http *h;
	const char *ca;
	CURL *c;
	int bad = 0;

	if ((h = calloc(1, sizeof(*h))) == NULL) {
		sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_NETWORK, "out of memory");
		return NULL;
	}
	if ((h->curl = c = curl_easy_init()) == NULL) {
		free(h);
		sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_NETWORK, "cannot start libcurl");
		return NULL;
	}
	h->retries = cfg->retries;
	h->backoff = cfg->backoff;
	h->max_body = (size_t)cfg->max_body;
	h->timeout_ms = cfg->http_timeout * 1000;
	h->counts = &h->scratch;
	h->rng = (unsigned)time(NULL) ^ (unsigned)(size_t)h;
	ca = src->ca_file != NULL ? src->ca_file : cfg->ca_file;

	bad |= curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L) != CURLE_OK;
	bad |= curl_easy_setopt(c, CURLOPT_ERRORBUFFER, h->errbuf) != CURLE_OK;
	bad |= curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_write) != CURLE_OK;
	bad |= curl_easy_setopt(c, CURLOPT_WRITEDATA, h) != CURLE_OK;
	bad |= curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress) != CURLE_OK;
	bad |= curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L) != CURLE_OK;
	bad |= curl_easy_setopt(c, CURLOPT_TIMEOUT, cfg->http_timeout) != CURLE_OK;
	bad |= curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, cfg->connect_timeout) !=
	    CURLE_OK;
	bad |= curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, "") != CURLE_OK;
	bad |= curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L) != CURLE_OK;
	bad |= curl_easy_setopt(c, CURLOPT_TCP_NODELAY, 1L) != CURLE_OK;
	bad |= curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L) != CURLE_OK;
	bad |= curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE,
	    (curl_off_t)cfg->max_body) != CURLE_OK;
	bad |= curl_easy_setopt(c, CURLOPT_USERAGENT, "msgsync/" SYNC_VERSION) !=
	    CURLE_OK;
	bad |= curl_easy_setopt(c, CURLOPT_BUFFERSIZE, 256L * 1024) != CURLE_OK;
#if LIBCURL_VERSION_NUM >= 0x075500
	bad |= curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK;
#else
	bad |= curl_easy_setopt(c, CURLOPT_PROTOCOLS,
	    (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS)) != CURLE_OK;
#endif
	if (src->pinned_pubkey != NULL && *src->pinned_pubkey != '\0')
		bad |= curl_easy_setopt(c, CURLOPT_PINNEDPUBLICKEY,
		    src->pinned_pubkey) != CURLE_OK;
	if (bad || sync_http_add_header(h, "Accept: application/json") == -1 ||
	    auth_place(h, src) == -1) {
		setopt_failed(err);
		sync_http_free(h);
		return NULL;
	}
	if (tls_trust(h, src, ca, err) == -1) {
		sync_http_free(h);
		return NULL;
	}
	if (src->url != NULL && (h->origin = origin_of(src->url)) == NULL &&
	    errno == ENOMEM) {
		sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_NETWORK, "out of memory");
		sync_http_free(h);
		return NULL;
	}
	return h;
}

void
sync_http_free(struct sync_http *h)
{
	if (h == NULL)
		return;
	curl_easy_cleanup(h->curl);
	curl_slist_free_all(h->headers);
	free(h->origin);
	canned_free(h->canned);
	sync_tls_cas_free(h->cas);
	free(h);
}

void
sync_http_set_counts(struct sync_http *h, struct sync_counts *c)
{
	h->counts = c != NULL ? c : &h->scratch;
}

void
sync_http_set_deadline(struct sync_http *h, double d)
{
	h->deadline = d;
}

int
sync_http_cut(const struct sync_http *h)
{
	return h->cut;
}

/*
 * Bounds the next request by http.timeout and by the time left to the
 * deadline.  *by_deadline is set when the deadline is the nearer; -1 when
 * none is left.
 */
static int
bound_request(struct sync_http *h, int *by_deadline)
{
	double t = sync_http_time_left(h, (double)h->timeout_ms / 1000.0,
	    by_deadline);

	if (t < 0)
		return -1;
	if (t > 0)
		curl_easy_setopt(h->curl, CURLOPT_TIMEOUT_MS, (long)(t * 1000) + 1);
	return 0;
}

double
sync_http_time_left(const struct sync_http *h, double timeout, int *by_deadline)
{
	*by_deadline = 0;
	if (h->deadline > 0) {
		double left = h->deadline - sync_now_mono();

		if (left <= 0)
			return -1;
		if (timeout <= 0 || left < timeout) {
			*by_deadline = 1;
			return left;
		}
	}
	return timeout;
}

void
sync_http_note_cut(struct sync_http *h)
{
	h->cut = 1;
}

int
sync_http_add_header(struct sync_http *h, const char *line)
{
	struct curl_slist *l;

	if ((l = curl_slist_append(h->headers, line)) == NULL)
		return -1;
	h->headers = l;
	if (h->curl == NULL)		/* canned */
		return 0;
	return curl_easy_setopt(h->curl, CURLOPT_HTTPHEADER, h->headers) ==
	    CURLE_OK ? 0 : -1;
}

/* Errors that another attempt cannot mend: configuration, TLS trust. */
static int
curl_fatal(CURLcode cc)
{
	switch (cc) {
	case CURLE_UNSUPPORTED_PROTOCOL:
	case CURLE_URL_MALFORMAT:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_OUT_OF_MEMORY:
		return 1;
	default:
		return 0;
	}
}

static double
jitter(struct sync_http *h)
{
	h->rng = h->rng * 1103515245u + 12345u;
	return 0.5 + (double)((h->rng >> 8) & 0xffff) / 65536.0;
}

/*
 * The source's credentials as its connector declares them (auth): the
 * header now, the query parameters in h->cred for sync_http_get().
 */
static int
auth_place(struct sync_http *h, const struct sync_source_cfg *src)
{
	const struct sync_auth *a;
	const char *how;
	struct sync_buf b = SYNC_BUF_INIT(0);
	size_t n = 0;
	int r;

	if (src->conn == NULL || src->token == NULL)
		return 0;
	a = &src->conn->auth;
	how = a->choice != NULL ? sync_cfg_str(src, a->choice) : NULL;
	if (a->query != NULL && (a->header == NULL ||
	    (how != NULL && strcmp(how, "query") == 0))) {
		h->cred[n++] = a->query;
		h->cred[n++] = src->token;
	} else if (a->header != NULL) {
		r = sync_buf_addf(&b, "%s: %s%s", a->header,
		    a->prefix != NULL ? a->prefix : "", src->token) == -1 ||
		    sync_http_add_header(h, b.data) == -1 ? -1 : 0;
		if (b.data != NULL)
			explicit_bzero(b.data, b.len);
		sync_buf_release(&b);
		if (r == -1)
			return -1;
	}
	if (a->proof_query != NULL && src->proof != NULL) {
		h->cred[n++] = a->proof_query;
		h->cred[n++] = src->proof;
	}
	h->cred[n] = NULL;
	return 0;
}

/*
 * url with the query credentials added (URL-encoded) into *out, which
 * the caller wipes and frees; SYNC_OK, or an error naming url.
 */
static enum sync_rc
with_cred(struct sync_http *h, const char *url, char **out, struct sync_err *err)
{
	struct sync_buf q = SYNC_BUF_INIT(0);
	char *s = NULL;
	enum sync_rc rc = SYNC_OK;
	CURLU *u;
	size_t i;

	*out = NULL;
	if ((u = curl_url()) == NULL)
		return sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_NETWORK, "out of memory");
	if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK) {
		rc = sync_err_set(err, SYNC_ECONFIG, SYNC_ERR_CONFIG,
		    "bad URL '%s'", url);
		goto out;
	}
	for (i = 0; h->cred[i] != NULL; i += 2) {
		sync_buf_reset(&q);
		if (sync_buf_addf(&q, "%s=%s", h->cred[i], h->cred[i + 1]) == -1 ||
		    curl_url_set(u, CURLUPART_QUERY, q.data,
		    CURLU_APPENDQUERY | CURLU_URLENCODE) != CURLUE_OK)
			goto nomem;
	}
	if (curl_url_get(u, CURLUPART_URL, &s, 0) != CURLUE_OK ||
	    (*out = strdup(s)) == NULL)
		goto nomem;
	goto out;
nomem:
	rc = sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_NETWORK,
	    "cannot add the credentials to '%s'", url);
out:
	if (q.data != NULL)
		explicit_bzero(q.data, q.len);
	sync_buf_release(&q);
	if (s != NULL)
		explicit_bzero(s, strlen(s));
	curl_free(s);
	curl_url_cleanup(u);
	return rc;
}

static enum sync_rc	http_get(struct sync_http *, const char *, const char *,
			    struct sync_http_resp *, struct sync_err *);

enum sync_rc
sync_http_get(struct sync_http *h, const char *url, struct sync_http_resp *resp,
    struct sync_err *err)
{
	char *sent = NULL;
	enum sync_rc rc;

	if (h->cred[0] != NULL && (rc = with_cred(h, url, &sent, err)) != SYNC_OK) {
		resp->status = 0;
		h->last_wait = -1;
		h->cut = 0;
		return rc;
	}
	rc = http_get(h, sent != NULL ? sent : url, url, resp, err);
	if (sent != NULL) {
		explicit_bzero(sent, strlen(sent));
		free(sent);
	}
	return rc;
}

/* GETs url, named safe in logs and errors. */
static enum sync_rc
http_get(struct sync_http *h, const char *url, const char *safe,
    struct sync_http_resp *resp, struct sync_err *err)
{
	char what[1100];
	char why[CURL_ERROR_SIZE + 64];
	enum sync_rc rc;
	enum sync_errkind kind;
	long attempt;
	CURLcode cc;

	resp->status = 0;
	h->last_wait = -1;
	h->cut = 0;
	if (resp->body.max == 0)
		resp->body.max = h->max_body + 1;
	if (h->canned != NULL)
		return canned_get(h, url, safe, resp, err);
	if (curl_easy_setopt(h->curl, CURLOPT_URL, url) != CURLE_OK)
		return sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_NETWORK,
		    "cannot set URL '%s'", safe);
	h->wbuf = &resp->body;
	for (attempt = 0;; attempt++) {
		double wait = -1;
		curl_off_t ra = -1;
		int by_deadline;

		if (sync_stop_signal)
			return sync_err_set(err, SYNC_EINTR, SYNC_ERR_INTERRUPTED,
			    "interrupted by %s", sync_signal_name((int)sync_stop_signal));
		if (bound_request(h, &by_deadline) == -1) {
			h->cut = 1;
			return sync_err_set(err, SYNC_ETEMP, SYNC_ERR_NETWORK,
			    "'%s': not fetched: the pass's run time is up", safe);
		}
		h->counts->api_calls++;
		if (attempt > 0)
			h->counts->retries++;
		sync_buf_reset(&resp->body);
		h->too_big = 0;
		h->errbuf[0] = '\0';
		resp->status = 0;
		cc = curl_easy_perform(h->curl);
		if (cc == CURLE_ABORTED_BY_CALLBACK && sync_stop_signal)
			return sync_err_set(err, SYNC_EINTR, SYNC_ERR_INTERRUPTED,
			    "interrupted by %s while fetching '%s'",
			    sync_signal_name((int)sync_stop_signal), safe);
		if (cc == CURLE_OPERATION_TIMEDOUT && by_deadline) {
			/* Not the upstream's fault: the pass's time is up. */
			h->cut = 1;
			return sync_err_set(err, SYNC_ETEMP, SYNC_ERR_NETWORK,
			    "'%s': cut at the pass's run time limit", safe);
		}
		if (h->too_big || cc == CURLE_FILESIZE_EXCEEDED)
			return sync_err_set(err, SYNC_EDATA, SYNC_ERR_DATA,
			    "'%s': response larger than max_body (%zu bytes)",
			    safe, h->max_body);
		if (cc != CURLE_OK) {
			snprintf(why, sizeof(why), "%s",
			    h->errbuf[0] ? h->errbuf : curl_easy_strerror(cc));
			kind = SYNC_ERR_NETWORK;
			rc = SYNC_EUNAVAIL;
			if (curl_fatal(cc))
				return sync_err_set(err, rc, kind,
				    "cannot fetch '%s': %s", safe, why);
		} else {
			enum sync_http_verdict v = SYNC_HTTP_DEFAULT;

			curl_easy_getinfo(h->curl, CURLINFO_RESPONSE_CODE, &resp->status);
			snprintf(why, sizeof(why), "HTTP %ld", resp->status);
			/* The API's own signals first (Graph: HTTP 400 + code). */
			if (h->classify != NULL)
				v = h->classify(h, resp, &wait, why, sizeof(why));
			if (v == SYNC_HTTP_FINAL || (v == SYNC_HTTP_DEFAULT &&
			    resp->status != 429 && resp->status != 408 &&
			    resp->status < 500))
				return SYNC_OK;
			/* libcurl reads seconds or a date; 0 also means none. */
			if (wait <= 0 && curl_easy_getinfo(h->curl, CURLINFO_RETRY_AFTER,
			    &ra) == CURLE_OK && ra > 0)
				wait = (double)ra;
			if (v == SYNC_HTTP_RATE_LIMIT || (v == SYNC_HTTP_DEFAULT &&
			    resp->status == 429)) {
				kind = SYNC_ERR_RATE_LIMIT;
				rc = SYNC_ETEMP;
			} else {
				kind = SYNC_ERR_HTTP;
				rc = SYNC_EUNAVAIL;
			}
		}
		snprintf(what, sizeof(what), "cannot fetch '%s'", safe);
		if ((rc = sync_http_retry(h, attempt, kind == SYNC_ERR_RATE_LIMIT,
		    wait, what, why, rc, kind, err)) != SYNC_OK)
			return rc;
	}
}

/* Undoes what sync_http_download() changed on the handle. */
static void
download_done(struct sync_http *h)
{
	h->sink = NULL;
	curl_easy_setopt(h->curl, CURLOPT_HTTPHEADER, h->headers);
	curl_easy_setopt(h->curl, CURLOPT_MAXFILESIZE_LARGE,
	    (curl_off_t)h->max_body);
	curl_easy_setopt(h->curl, CURLOPT_TIMEOUT_MS, h->timeout_ms);
	curl_easy_setopt(h->curl, CURLOPT_LOW_SPEED_LIMIT, 0L);
	curl_easy_setopt(h->curl, CURLOPT_LOW_SPEED_TIME, 0L);
	curl_easy_setopt(h->curl, CURLOPT_ACCEPT_ENCODING, "");
}

/*
 * One GET of a download (url sent, safe named), with the policy's
 * retries: SYNC_OK with the final status (a redirect's location in
 * *location, for the caller to follow), or an error.
 */
static enum sync_rc
download_get(struct sync_http *h, const char *url, const char *safe,
    struct sync_buf *ebody, long *status, char **location,
    struct sync_err *err)
{
	char what[700], why[CURL_ERROR_SIZE + 64];
	enum sync_errkind kind;
	enum sync_rc rc;
	long attempt;
	CURLcode cc;

	*location = NULL;
	if (curl_easy_setopt(h->curl, CURLOPT_URL, url) != CURLE_OK)
		return sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_NETWORK,
		    "cannot set URL '%s'", safe);
	h->wbuf = ebody;
	snprintf(what, sizeof(what), "cannot fetch '%s'", safe);
	for (attempt = 0;; attempt++) {
		double wait = -1, left = 0;
		curl_off_t ra = -1;
		char *loc = NULL;

		if (sync_stop_signal)
			return sync_err_set(err, SYNC_EINTR, SYNC_ERR_INTERRUPTED,
			    "interrupted by %s", sync_signal_name((int)sync_stop_signal));
		/* No limit on the whole transfer but the deadline's. */
		if (h->deadline > 0 && (left = h->deadline - sync_now_mono()) <= 0) {
			h->cut = 1;
			return sync_err_set(err, SYNC_ETEMP, SYNC_ERR_NETWORK,
			    "'%s': not fetched: the pass's run time is up", safe);
		}
		curl_easy_setopt(h->curl, CURLOPT_TIMEOUT_MS, (long)(left * 1000));
		h->counts->api_calls++;
		if (attempt > 0)
			h->counts->retries++;
		if (h->sink->reset(h->sink->arg) == -1) {
			h->sink_failed = 1;
			return sync_err_set(err, SYNC_ETEMP, SYNC_ERR_DATA,
			    "'%s': cannot start over", safe);
		}
		sync_buf_reset(ebody);
		h->got = 0;
		h->too_big = 0;
		h->sink_failed = 0;
		h->errbuf[0] = '\0';
		*status = 0;
		cc = curl_easy_perform(h->curl);
		curl_easy_getinfo(h->curl, CURLINFO_RESPONSE_CODE, status);
		if (cc == CURLE_ABORTED_BY_CALLBACK && sync_stop_signal)
			return sync_err_set(err, SYNC_EINTR, SYNC_ERR_INTERRUPTED,
			    "interrupted by %s while fetching '%s'",
			    sync_signal_name((int)sync_stop_signal), safe);
		if (h->sink_failed)
			return sync_err_set(err, SYNC_ETEMP, SYNC_ERR_DATA,
			    "'%s': cannot keep the bytes", safe);
		if (h->too_big || cc == CURLE_FILESIZE_EXCEEDED)
			return sync_err_set(err, SYNC_EDATA, SYNC_ERR_DATA,
			    "'%s': larger than media.max_bytes (%lld bytes)", safe,
			    h->dl_max);
		if (cc == CURLE_OPERATION_TIMEDOUT && h->deadline > 0 &&
		    sync_now_mono() >= h->deadline - 0.01) {
			h->cut = 1;
			return sync_err_set(err, SYNC_ETEMP, SYNC_ERR_NETWORK,
			    "'%s': cut at the pass's run time limit", safe);
		}
		if (cc != CURLE_OK) {
			snprintf(why, sizeof(why), "%s",
			    h->errbuf[0] ? h->errbuf : curl_easy_strerror(cc));
			sync_redact(why);
			kind = SYNC_ERR_NETWORK;
			rc = SYNC_EUNAVAIL;
			if (curl_fatal(cc))
				return sync_err_set(err, rc, kind, "%s: %s", what, why);
		} else {
			if (*status >= 300 && *status < 400 && curl_easy_getinfo(h->curl,
			    CURLINFO_REDIRECT_URL, &loc) == CURLE_OK && loc != NULL) {
				if ((*location = strdup(loc)) == NULL)
					return sync_err_set(err, SYNC_ENOMEM,
					    SYNC_ERR_NETWORK, "out of memory");
				return SYNC_OK;
			}
			if (*status != 429 && *status != 408 && *status < 500)
				return SYNC_OK;
			snprintf(why, sizeof(why), "HTTP %ld", *status);
			if (curl_easy_getinfo(h->curl, CURLINFO_RETRY_AFTER, &ra) ==
			    CURLE_OK && ra > 0)
				wait = (double)ra;
			kind = *status == 429 ? SYNC_ERR_RATE_LIMIT : SYNC_ERR_HTTP;
			rc = *status == 429 ? SYNC_ETEMP : SYNC_EUNAVAIL;
		}
		if ((rc = sync_http_retry(h, attempt, kind == SYNC_ERR_RATE_LIMIT,
		    wait, what, why, rc, kind, err)) != SYNC_OK)
			return rc;
	}
}

enum sync_rc
sync_http_download(struct sync_http *h, const char *url, long long max,
    const struct sync_http_sink *sink, long *status, struct sync_err *err)
{
	struct sync_buf ebody = SYNC_BUF_INIT(4096);
	char safe[600], *cur, *sent = NULL, *o, *loc = NULL;
	enum sync_rc rc = SYNC_OK;
	int hops, own;

	*status = 0;
	h->last_wait = -1;
	h->cut = 0;
	if (h->canned != NULL)
		return sync_err_set(err, SYNC_EUNAVAIL, SYNC_ERR_NETWORK,
		    "downloads are not canned");
	if ((cur = strdup(url)) == NULL)
		return sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_NETWORK, "out of memory");
	h->sink = sink;
	h->dl_max = max;
	curl_easy_setopt(h->curl, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)max);
	curl_easy_setopt(h->curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(h->curl, CURLOPT_LOW_SPEED_TIME, h->timeout_ms / 1000);
	/* The bytes as they are: no decoding that changes their hash. */
	curl_easy_setopt(h->curl, CURLOPT_ACCEPT_ENCODING, NULL);
	for (hops = 0;; hops++) {
		sync_link_safe(cur, safe, sizeof(safe));
		if (hops > 5) {
			rc = sync_err_set(err, SYNC_EUNAVAIL, SYNC_ERR_HTTP,
			    "'%s': too many redirects", safe);
			break;
		}
		/* The source's credentials go only to its own origin. */
		o = origin_of(cur);
		own = o != NULL && h->origin != NULL && strcmp(o, h->origin) == 0;
		free(o);
		curl_easy_setopt(h->curl, CURLOPT_HTTPHEADER, own ? h->headers : NULL);
		if (own && h->cred[0] != NULL && (rc = with_cred(h, cur, &sent,
		    err)) != SYNC_OK)
			break;
		rc = download_get(h, sent != NULL ? sent : cur, safe, &ebody, status,
		    &loc, err);
		if (sent != NULL) {
			explicit_bzero(sent, strlen(sent));
			free(sent);
			sent = NULL;
		}
		if (rc != SYNC_OK || loc == NULL)
			break;
		free(cur);
		cur = loc;
		loc = NULL;
	}
	download_done(h);
	sync_buf_release(&ebody);
	explicit_bzero(cur, strlen(cur));
	free(cur);
	return rc;
}

int
sync_http_sink_failed(const struct sync_http *h)
{
	return h->sink_failed;
}

void
sync_http_set_classify(struct sync_http *h, sync_http_classify_fn fn)
{
	h->classify = fn;
}

const char *
sync_http_header(struct sync_http *h, const char *name)
{
	struct curl_header *hdr = NULL;

	if (h->canned != NULL)
		return canned_header(h, name);
	if (curl_easy_header(h->curl, name, 0, CURLH_HEADER, -1, &hdr) != CURLHE_OK ||
	    hdr == NULL)
		return NULL;
	return hdr->value;
}

enum sync_rc
sync_http_status_error(const struct sync_http_resp *r, const char *safe,
    struct sync_err *err)
{
	char snip[161], win[2048];
	size_t i, n = 0;

	/*
	 * A short, printable excerpt of the body helps the operator.  It is
	 * redacted before it is cut, so that a secret the upstream echoes
	 * across the cut is masked whole.
	 */
	if (r->body.data != NULL)
		for (i = 0; i < r->body.len && n < sizeof(win) - 1; i++) {
			unsigned char c = (unsigned char)r->body.data[i];

			win[n++] = (c >= 0x20 && c < 0x7f) ? (char)c : ' ';
		}
	win[n] = '\0';
	sync_redact_excerpt(snip, sizeof(snip), win);
	if (r->status == 401 || r->status == 403)
		return sync_err_set(err, SYNC_EPERM, SYNC_ERR_AUTH,
		    "'%s': credentials rejected: HTTP %ld %s", safe, r->status, snip);
	return sync_err_set(err, SYNC_EUNAVAIL, SYNC_ERR_HTTP,
	    "'%s': HTTP %ld %s", safe, r->status, snip);
}

enum sync_rc
sync_http_parse_json(struct sync_http_resp *r, const char *safe, cJSON **json,
    long *sanitized, struct sync_err *err)
{
	const char *end = NULL;
	long n;

	*json = NULL;
	if ((n = sync_json_sanitize(&r->body)) < 0)
		return sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_DATA, "out of memory");
	if (sanitized != NULL)
		*sanitized = n;
	if (r->body.len == 0)
		return sync_err_set(err, SYNC_EDATA, SYNC_ERR_DATA,
		    "'%s': empty response body", safe);
	*json = cJSON_ParseWithLengthOpts(r->body.data, r->body.len, &end, 0);
	if (*json == NULL) {
		size_t off = end != NULL ? (size_t)(end - r->body.data) : 0;

		return sync_err_set(err, SYNC_EDATA, SYNC_ERR_DATA,
		    "'%s': response is not valid JSON (at byte %zu of %zu)", safe,
		    off, r->body.len);
	}
	return SYNC_OK;
}

enum sync_rc
sync_http_get_json(struct sync_http *h, const char *url, cJSON **json,
    long *sanitized, struct sync_err *err)
{
	struct sync_http_resp r = { 0, SYNC_BUF_INIT(0) };
	enum sync_rc rc;

	*json = NULL;
	if ((rc = sync_http_get(h, url, &r, err)) == SYNC_OK) {
		if (r.status < 200 || r.status > 299)
			rc = sync_http_status_error(&r, url, err);
		else
			rc = sync_http_parse_json(&r, url, json, sanitized, err);
	}
	sync_buf_release(&r.body);
	return rc;
}

char *
sync_url_escape(const char *s)
{
	char *e = curl_easy_escape(NULL, s, 0), *out;

	if (e == NULL)
		return NULL;
	out = strdup(e);
	curl_free(e);
	return out;
}

enum sync_rc
sync_url_build(const char *base, const char *path, const char *const *query,
    char **out, struct sync_err *err)
{
	CURLU *u;
	char *old = NULL, *url = NULL;
	struct sync_buf p = SYNC_BUF_INIT(0), q = SYNC_BUF_INIT(0);
	enum sync_rc rc = SYNC_OK;
	size_t i, n;

	*out = NULL;
	if ((u = curl_url()) == NULL)
		return sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_CONFIG, "out of memory");
	if (curl_url_set(u, CURLUPART_URL, base, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_PATH, &old, 0) != CURLUE_OK) {
		rc = sync_err_set(err, SYNC_ECONFIG, SYNC_ERR_CONFIG,
		    "bad base URL '%s'", base);
		goto out;
	}
	n = strlen(old);
	while (n > 0 && old[n - 1] == '/')
		n--;
	if (sync_buf_add(&p, old, n) == -1 || sync_buf_adds(&p, path) == -1)
		goto nomem;
	if (curl_url_set(u, CURLUPART_PATH, p.data, 0) != CURLUE_OK)
		goto nomem;
	for (i = 0; query != NULL && query[i] != NULL && query[i + 1] != NULL; i += 2) {
		sync_buf_reset(&q);
		if (sync_buf_addf(&q, "%s=%s", query[i], query[i + 1]) == -1 ||
		    curl_url_set(u, CURLUPART_QUERY, q.data,
		    CURLU_APPENDQUERY | CURLU_URLENCODE) != CURLUE_OK)
			goto nomem;
	}
	if (curl_url_get(u, CURLUPART_URL, &url, 0) != CURLUE_OK)
		goto nomem;
	if ((*out = strdup(url)) == NULL)
		goto nomem;
	goto out;
nomem:
	rc = sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_CONFIG,
	    "cannot build a URL from '%s'", base);
out:
	curl_free(old);
	curl_free(url);
	curl_url_cleanup(u);
	sync_buf_release(&p);
	sync_buf_release(&q);
	return rc;
}

static int
is_loopback(const char *host)
{
	if (strcmp(host, "localhost") == 0 || strcmp(host, "[::1]") == 0 ||
	    strcmp(host, "::1") == 0)
		return 1;
	if (strncmp(host, "127.", 4) == 0)
		return strspn(host, "0123456789.") == strlen(host);
	return 0;
}

enum sync_rc
sync_url_check(const char *url, int allow_insecure, char *why, size_t n)
{
	CURLU *u;
	char *scheme = NULL, *host = NULL, *user = NULL;
	enum sync_rc rc = SYNC_ECONFIG;
	CURLUcode uc;

	if ((u = curl_url()) == NULL) {
		snprintf(why, n, "out of memory");
		return SYNC_ENOMEM;
	}
	if ((uc = curl_url_set(u, CURLUPART_URL, url, 0)) != CURLUE_OK) {
		snprintf(why, n, "%s", curl_url_strerror(uc));
		goto out;
	}
	curl_url_get(u, CURLUPART_SCHEME, &scheme, 0);
	curl_url_get(u, CURLUPART_HOST, &host, 0);
	if (curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK && user != NULL) {
		snprintf(why, n, "credentials in the URL are not allowed (use "
		    "token, token_file or token_env)");
		goto out;
	}
	if (scheme == NULL || (strcmp(scheme, "https") != 0 &&
	    strcmp(scheme, "http") != 0)) {
		snprintf(why, n, "scheme must be https:// or http://");
		goto out;
	}
	if (host == NULL || *host == '\0') {
		snprintf(why, n, "no host");
		goto out;
	}
	if (strcmp(scheme, "http") == 0 && !allow_insecure && !is_loopback(host)) {
		snprintf(why, n, "plain http:// is accepted only for loopback hosts "
		    "(set allow_insecure_http = true to override)");
		goto out;
	}
	rc = SYNC_OK;
out:
	curl_free(scheme);
	curl_free(host);
	curl_free(user);
	curl_url_cleanup(u);
	return rc;
}

enum sync_rc
sync_http_retry(struct sync_http *h, long attempt, int rate_limited, double wait,
    const char *what, const char *why, enum sync_rc rc, enum sync_errkind kind,
    struct sync_err *err)
{
	if (attempt >= h->retries) {
		if (rate_limited)
			h->last_wait = wait > 0 ? wait : h->backoff;
		return sync_err_set(err, rc, kind, "%s: %s after %ld retries", what,
		    why, attempt);
	}
	if (wait < 0) {
		wait = h->backoff * pow(2.0, (double)attempt) * jitter(h);
		if (wait > SYNC_MAX_BACKOFF)
			wait = SYNC_MAX_BACKOFF;
	}
	if (wait > SYNC_MAX_INLINE_WAIT ||
	    (h->deadline > 0 && sync_now_mono() + wait > h->deadline)) {
		h->last_wait = wait;
		if (rate_limited)
			return sync_err_set(err, SYNC_ETEMP, SYNC_ERR_RATE_LIMIT,
			    "%s: rate limited (%s): the wait of %.0f s is longer "
			    "than this pass can afford", what, why, wait);
		if (wait > SYNC_MAX_INLINE_WAIT)
			return sync_err_set(err, rc, kind, "%s: %s; the wait of "
			    "%.0f s before another attempt is too long", what, why,
			    wait);
		/*
		 * Another attempt would come after the deadline: the pass
		 * stops there cleanly (SPEC §2), as when the deadline cuts a
		 * request; the next pass retries.
		 */
		h->cut = 1;
		sync_log(LOG_NOTICE, "%s: %s; no time left before the run time "
		    "limit for another attempt", what, why);
		return sync_err_set(err, SYNC_ETEMP, SYNC_ERR_NETWORK, "%s: %s; not "
		    "retried: the pass's run time is up", what, why);
	}
	sync_log(LOG_INFO, "%s: %s; retrying in %.2f s", what, why, wait);
	if (sync_sleep(wait) == -1)
		return sync_err_set(err, SYNC_EINTR, SYNC_ERR_INTERRUPTED,
		    "interrupted by %s", sync_signal_name((int)sync_stop_signal));
	return SYNC_OK;
}

/* ---- canned answers (tests only) ---------------------------------------- */

struct canned_answer {
	long		 status;
	char		*headers;	/* "Name: value\n" lines, may be NULL */
	char		*body;
	size_t		 len;
};

struct canned {
	struct canned_answer *v;
	size_t		 n, next;
	char	       **urls;		/* asked, in order */
	size_t		 nurls;
	const char	*headers;	/* of the last answer */
	struct sync_buf	 value;		/* sync_http_header()'s */
};

static void
canned_free(struct canned *c)
{
	size_t i;

	if (c == NULL)
		return;
	for (i = 0; i < c->n; i++) {
		free(c->v[i].headers);
		free(c->v[i].body);
	}
	for (i = 0; i < c->nurls; i++)
		free(c->urls[i]);
	free(c->v);
	free(c->urls);
	sync_buf_release(&c->value);
	free(c);
}

struct sync_http *
sync_http_new_canned(const struct sync_config *cfg,
    const struct sync_source_cfg *src)
{
	struct sync_http *h;

	if ((h = calloc(1, sizeof(*h))) == NULL)
		return NULL;
	if ((h->canned = calloc(1, sizeof(*h->canned))) == NULL) {
		free(h);
		return NULL;
	}
	h->retries = cfg->retries;
	h->backoff = cfg->backoff;
	h->max_body = (size_t)cfg->max_body;
	h->counts = &h->scratch;
	h->last_wait = -1;
	if (src != NULL && auth_place(h, src) == -1) {
		sync_http_free(h);
		return NULL;
	}
	return h;
}

int
sync_http_canned_add(struct sync_http *h, long status, const char *headers,
    const void *body, size_t len)
{
	struct canned *c = h->canned;
	struct canned_answer *a, *v;

	if ((v = realloc(c->v, (c->n + 1) * sizeof(*v))) == NULL)
		return -1;
	c->v = v;
	a = &v[c->n];
	a->status = status;
	a->len = len;
	a->headers = sync_strdup(headers);
	if ((a->body = malloc(len + 1)) == NULL || (headers != NULL &&
	    a->headers == NULL)) {
		free(a->body);
		free(a->headers);
		return -1;
	}
	if (len > 0)
		memcpy(a->body, body, len);
	a->body[len] = '\0';
	c->n++;
	return 0;
}

size_t
sync_http_canned_asked(const struct sync_http *h)
{
	return h->canned->nurls;
}

const char *
sync_http_canned_url(const struct sync_http *h, size_t i)
{
	return i < h->canned->nurls ? h->canned->urls[i] : NULL;
}

const char *
sync_http_canned_sent(const struct sync_http *h, const char *prefix)
{
	const struct curl_slist *l;

	for (l = h->headers; l != NULL; l = l->next)
		if (strncasecmp(l->data, prefix, strlen(prefix)) == 0)
			return l->data;
	return NULL;
}

/* The next answer, as sync_http_get() would return it after its retries. */
static enum sync_rc
canned_get(struct sync_http *h, const char *url, const char *safe,
    struct sync_http_resp *resp, struct sync_err *err)
{
	struct canned *c = h->canned;
	struct canned_answer *a;
	enum sync_http_verdict v = SYNC_HTTP_DEFAULT;
	double wait = -1;
	char why[128], **u;

	if ((u = realloc(c->urls, (c->nurls + 1) * sizeof(*u))) == NULL ||
	    (u[c->nurls] = strdup(url)) == NULL) {
		if (u != NULL)
			c->urls = u;
		return sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_NETWORK,
		    "out of memory");
	}
	c->urls = u;
	c->nurls++;
	h->counts->api_calls++;
	c->headers = NULL;
	sync_buf_reset(&resp->body);
	if (c->next >= c->n)
		return sync_err_set(err, SYNC_EUNAVAIL, SYNC_ERR_NETWORK,
		    "cannot fetch '%s': no canned answer left", safe);
	a = &c->v[c->next++];
	c->headers = a->headers;
	if (a->len > h->max_body)
		return sync_err_set(err, SYNC_EDATA, SYNC_ERR_DATA,
		    "'%s': response larger than max_body (%zu bytes)", safe,
		    h->max_body);
	if (sync_buf_add(&resp->body, a->body, a->len) == -1)
		return sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_NETWORK,
		    "out of memory");
	resp->status = a->status;
	snprintf(why, sizeof(why), "HTTP %ld", a->status);
	if (h->classify != NULL)
		v = h->classify(h, resp, &wait, why, sizeof(why));
	if (v == SYNC_HTTP_FINAL || (v == SYNC_HTTP_DEFAULT && a->status != 429 &&
	    a->status != 408 && a->status < 500))
		return SYNC_OK;
	if (v == SYNC_HTTP_RATE_LIMIT || (v == SYNC_HTTP_DEFAULT &&
	    a->status == 429)) {
		const char *ra = canned_header(h, "retry-after");

		if (wait <= 0 && ra != NULL)
			wait = strtod(ra, NULL);	/* seconds only */
		h->last_wait = wait > 0 ? wait : h->backoff;
		return sync_err_set(err, SYNC_ETEMP, SYNC_ERR_RATE_LIMIT,
		    "cannot fetch '%s': %s after 0 retries", safe, why);
	}
	return sync_err_set(err, SYNC_EUNAVAIL, SYNC_ERR_HTTP,
	    "cannot fetch '%s': %s after 0 retries", safe, why);
}

static const char *
canned_header(struct sync_http *h, const char *name)
{
	struct canned *c = h->canned;
	const char *p, *e, *v;
	size_t n = strlen(name);

	for (p = c->headers; p != NULL && *p != '\0'; p = *e ? e + 1 : e) {
		if ((e = strchr(p, '\n')) == NULL)
			e = p + strlen(p);
		if ((size_t)(e - p) <= n || strncasecmp(p, name, n) != 0 ||
		    p[n] != ':')
			continue;
		for (v = p + n + 1; v < e && (*v == ' ' || *v == '\t'); v++)
			;
		sync_buf_reset(&c->value);
		if (sync_buf_add(&c->value, v, (size_t)(e - v)) == -1)
			return NULL;
		return c->value.data;
	}
	return NULL;
}
