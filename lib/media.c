/*
 * media.c -- media-sync (SPEC §9): the bytes of a source's pending
 * attachments into the content-addressed store, soonest expiring link
 * first.  Bytes are streamed (memory does not grow with a file's size)
 * and named by their SHA-256: files DIR/ab/<sha256> written under a
 * temporary name in DIR/.tmp, flushed, verified and renamed (store =
 * "dir"), or large objects recorded in media_blob (store = "database").
 * An attachment is marked stored only once its bytes are durable.
 */
#define _GNU_SOURCE		/* sync_file_range() */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <openssl/evp.h>

#include "internal.h"

/* Attempts before an attachment that keeps failing is failed. */
#define MEDIA_MAX_ATTEMPTS	5
/* Pending attachments read per query. */
#define MEDIA_CHUNK		100
/* The read buffer of local files copied into the store. */
#define MEDIA_BUF		(256 * 1024)
/* store = "dir": files made durable together (batch_flush()). */
#define MEDIA_BATCH		16
#define MEDIA_BATCH_BYTES	(64LL << 20)

/* --max-bytes: what the pass may still download, shared by its sources. */
static atomic_llong budget_left;
static int budget_set;

void
sync_media_pass_begin(const struct sync_opts *o)
{
	budget_set = o->max_bytes > 0;
	atomic_store(&budget_left, o->max_bytes);
}

/*
 * store = "dir": the SHA-256 of the file being written, computed by a
 * thread of its own from the page cache, behind the writer, so that
 * hashing overlaps receiving.  The writer says how far it has written
 * (hasher_add()); hasher_wait() waits until all of that is hashed.  The
 * thread touches md and reads the file only while hashed < written, and
 * the writer only while they are equal: they never use either at once.
 */
struct hasher {
	pthread_t	 thread;
	int		 running;
	pthread_mutex_t	 mu;
	pthread_cond_t	 more, done;
	int		 fd;		/* the file, -1: none */
	long long	 written, hashed;
	int		 quit, failed;
	EVP_MD_CTX	*md;
	char		*buf;		/* MEDIA_BUF bytes */
};

static void *
hasher_main(void *arg)
{
	struct hasher *h = arg;
	long long from, n;
	ssize_t r;
	int fd, ok;

	pthread_mutex_lock(&h->mu);
	for (;;) {
		while (!h->quit && (h->fd == -1 || h->failed ||
		    h->hashed >= h->written))
			pthread_cond_wait(&h->more, &h->mu);
		if (h->quit)
			break;
		from = h->hashed;
		n = h->written - from;
		if (n > MEDIA_BUF)
			n = MEDIA_BUF;
		fd = h->fd;
		pthread_mutex_unlock(&h->mu);
		r = pread(fd, h->buf, (size_t)n, (off_t)from);
		ok = r == (ssize_t)n && EVP_DigestUpdate(h->md, h->buf, (size_t)r) == 1;
		pthread_mutex_lock(&h->mu);
		if (ok)
			h->hashed += n;
		else
			h->failed = 1;
		pthread_cond_broadcast(&h->done);
	}
	pthread_mutex_unlock(&h->mu);
	return NULL;
}

static int
hasher_init(struct hasher *h)
{
	memset(h, 0, sizeof(*h));
	h->fd = -1;
	if ((h->md = EVP_MD_CTX_new()) == NULL ||
	    (h->buf = malloc(MEDIA_BUF)) == NULL) {
		EVP_MD_CTX_free(h->md);
		return -1;
	}
	pthread_mutex_init(&h->mu, NULL);
	pthread_cond_init(&h->more, NULL);
	pthread_cond_init(&h->done, NULL);
	if (pthread_create(&h->thread, NULL, hasher_main, h) != 0) {
		pthread_cond_destroy(&h->more);
		pthread_cond_destroy(&h->done);
		pthread_mutex_destroy(&h->mu);
		EVP_MD_CTX_free(h->md);
		free(h->buf);
		return -1;
	}
	h->running = 1;
	return 0;
}

static void
hasher_free(struct hasher *h)
{
	if (!h->running)
		return;
	pthread_mutex_lock(&h->mu);
	h->quit = 1;
	pthread_cond_signal(&h->more);
	pthread_mutex_unlock(&h->mu);
	pthread_join(h->thread, NULL);
	pthread_cond_destroy(&h->more);
	pthread_cond_destroy(&h->done);
	pthread_mutex_destroy(&h->mu);
	EVP_MD_CTX_free(h->md);
	free(h->buf);
	h->running = 0;
}

/* Waits until what was written is hashed (or hashing failed): -1 if it did. */
static int
hasher_wait(struct hasher *h)
{
	int r;

	pthread_mutex_lock(&h->mu);
	while (!h->failed && h->hashed < h->written)
		pthread_cond_wait(&h->done, &h->mu);
	r = h->failed ? -1 : 0;
	pthread_mutex_unlock(&h->mu);
	return r;
}

/* Starts hashing file fd from its beginning (fd -1: none any more). */
static int
hasher_start(struct hasher *h, int fd)
{
	int r;

	hasher_wait(h);
	pthread_mutex_lock(&h->mu);
	h->fd = fd;
	h->written = h->hashed = 0;
	h->failed = 0;
	r = fd == -1 || EVP_DigestInit_ex(h->md, EVP_sha256(), NULL) == 1 ? 0 : -1;
	pthread_mutex_unlock(&h->mu);
	return r;
}

static void
hasher_add(struct hasher *h, size_t n)
{
	pthread_mutex_lock(&h->mu);
	h->written += (long long)n;
	pthread_cond_signal(&h->more);
	pthread_mutex_unlock(&h->mu);
}

/* The digest of the whole file; the hasher lets go of it.  -1 on failure. */
static int
hasher_final(struct hasher *h, unsigned char *d, unsigned *dn)
{
	int r = hasher_wait(h);

	if (r == 0 && EVP_DigestFinal_ex(h->md, d, dn) != 1)
		r = -1;
	hasher_start(h, -1);
	return r;
}

/* store = "dir": a complete file waiting for batch_flush(). */
struct held {
	int		 fd;
	char		 path[4400];
	char		 sha[2 * EVP_MAX_MD_SIZE + 1];
	long long	 size;
	struct sync_media_row row;	/* id, attempts, ids for messages */
};

/* One source's media-sync. */
struct media {
	struct sync_db	*db;
	int		 id;
	struct sync_ctx	*ctx;
	const struct sync_config *cfg;
	const char	*name;		/* the source's */
	struct sync_media_counts *mc;
	int		 in_db;		/* store = "database" */
	char		 dir[4096];	/* store = "dir": media.dir */
	char		 tmp[4200];	/* its .tmp directory */
	long long	 max;		/* media.max_bytes */
	char		*buf;		/* MEDIA_BUF bytes: local files are copied through it */
	struct held	 held[MEDIA_BATCH];
	size_t		 nheld;
	struct hasher	 hasher;	/* store = "dir" */
	long long	 held_bytes;
};

/* Where a download's bytes go while they arrive (a sync_http_sink). */
struct sink {
	struct media	*m;
	EVP_MD_CTX	*md;
	int		 fd;		/* store = "dir": the temporary file */
	long long	 started;	/* bytes whose writeback was started */
	char		 path[4400];
	long long	 size;
	int		 err;		/* errno of a failed write */
};

static int
sink_write(void *arg, const void *p, size_t n)
{
	struct sink *s = arg;
	const char *c = p;
	size_t left = n;

	if (s->m->in_db) {
		if (EVP_DigestUpdate(s->md, p, n) != 1) {
			s->err = ENOMEM;
			return -1;
		}
		if (sync_db_lo_write(s->m->db, p, n) == -1) {
			s->err = EIO;
			return -1;
		}
	} else {
		while (left > 0) {
			ssize_t w = write(s->fd, c, left);

			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0) {
				s->err = w < 0 ? errno : ENOSPC;
				return -1;
			}
			c += w;
			left -= (size_t)w;
		}
		hasher_add(&s->m->hasher, n);
#ifdef SYNC_FILE_RANGE_WRITE
		/*
		 * The disk starts on what arrived while more arrives: the
		 * flush of batch_flush() then waits for little.
		 */
		if (s->size + (long long)n - s->started >= (1 << 20)) {
			(void)sync_file_range(s->fd, s->started, s->size +
			    (long long)n - s->started, SYNC_FILE_RANGE_WRITE);
			s->started = s->size + (long long)n;
		}
#endif
	}
	s->size += (long long)n;
	return 0;
}

static int
sink_reset(void *arg)
{
	struct sink *s = arg;

	s->size = 0;
	s->started = 0;
	if (s->m->in_db)
		return EVP_DigestInit_ex(s->md, EVP_sha256(), NULL) != 1 ? -1 :
		    sync_db_lo_reset(s->m->db);
	if (hasher_start(&s->m->hasher, s->fd) == -1)
		return -1;
	if (ftruncate(s->fd, 0) == -1 || lseek(s->fd, 0, SEEK_SET) == -1) {
		s->err = errno;
		return -1;
	}
	return 0;
}

static void
hex(const unsigned char *d, size_t n, char *out)
{
	static const char x[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < n; i++) {
		out[2 * i] = x[d[i] >> 4];
		out[2 * i + 1] = x[d[i] & 15];
	}
	out[2 * n] = '\0';
}

/*
 * A failure of the store: a full disk or an I/O error is temporary (75),
 * a directory that cannot be written a configuration error (78).
 */
static enum sync_rc
store_error(struct media *m, int e, const char *what, struct sync_err *err)
{
	int cfg = e == EACCES || e == EPERM || e == EROFS || e == ENOTDIR ||
	    e == ENOENT;

	return sync_err_set(err, cfg ? SYNC_ECONFIG : SYNC_ETEMP, cfg ?
	    SYNC_ERR_CONFIG : SYNC_ERR_DATABASE, "source '%s': media store '%s': "
	    "cannot %s: %s", m->name, m->in_db ? "database" : m->dir, what,
	    strerror(e));
}

static int
fsync_dir(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC), r;

	if (fd == -1)
		return -1;
	r = fsync(fd);
	close(fd);
	return r;
}

/* mkdir that is fine with an existing directory; the parent is flushed. */
static int
make_dir(const char *path, const char *parent)
{
	if (mkdir(path, 0750) == 0)
		return parent != NULL ? fsync_dir(parent) : 0;
	return errno == EEXIST ? 0 : -1;
}

/* store = "dir": media.dir and its .tmp exist; stale temporaries go. */
static enum sync_rc
dir_open(struct media *m, struct sync_err *err)
{
	char pre[128], p[4500], parent[4096], *slash;
	struct dirent *de;
	DIR *d;
	size_t n;

	snprintf(m->dir, sizeof(m->dir), "%s", m->cfg->media_dir);
	n = strlen(m->dir);
	while (n > 1 && m->dir[n - 1] == '/')
		m->dir[--n] = '\0';
	snprintf(m->tmp, sizeof(m->tmp), "%s/.tmp", m->dir);
	snprintf(parent, sizeof(parent), "%s", m->dir);
	if ((slash = strrchr(parent, '/')) != NULL)
		*(slash == parent ? slash + 1 : slash) = '\0';
	if (make_dir(m->dir, parent) == -1)
		return store_error(m, errno, "create the directory", err);
	if (make_dir(m->tmp, m->dir) == -1)
		return store_error(m, errno, "create its .tmp directory", err);
	/*
	 * The source's own temporaries are left by a pass that was killed:
	 * this pass holds the source's media-sync lock, so none is in use.
	 */
	snprintf(pre, sizeof(pre), "%s.", m->name);
	if ((d = opendir(m->tmp)) == NULL)
		return store_error(m, errno, "read its .tmp directory", err);
	while ((de = readdir(d)) != NULL)
		if (strncmp(de->d_name, pre, strlen(pre)) == 0) {
			snprintf(p, sizeof(p), "%s/%s", m->tmp, de->d_name);
			if (unlink(p) == 0)
				sync_log(LOG_INFO, "source '%s': removed the "
				    "unfinished download '%s'", m->name, p);
		}
	closedir(d);
	return SYNC_OK;
}

/* Starts a sink for attachment att. */
static enum sync_rc
sink_open(struct media *m, struct sink *s, long long att, struct sync_err *err)
{
	enum sync_rc rc;

	memset(s, 0, sizeof(*s));
	s->m = m;
	s->fd = -1;
	if (m->in_db) {
		if ((s->md = EVP_MD_CTX_new()) == NULL ||
		    EVP_DigestInit_ex(s->md, EVP_sha256(), NULL) != 1) {
			EVP_MD_CTX_free(s->md);
			s->md = NULL;
			return sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_DATA,
			    "out of memory");
		}
		if ((rc = sync_db_lo_begin(m->db, err)) != SYNC_OK) {
			EVP_MD_CTX_free(s->md);
			s->md = NULL;
		}
		return rc;
	}
	snprintf(s->path, sizeof(s->path), "%s/%s.%ld.%lld", m->tmp, m->name,
	    (long)getpid(), att);
	/* Read and write: the hasher reads what is written. */
	if ((s->fd = open(s->path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC,
	    0640)) == -1)
		return store_error(m, errno, "create a temporary file", err);
	if (hasher_start(&m->hasher, s->fd) == -1) {
		close(s->fd);
		unlink(s->path);
		s->fd = -1;
		return sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_DATA, "cannot hash");
	}
	return SYNC_OK;
}

/* Drops what the sink holds (nothing stays under any name). */
static void
sink_abort(struct sink *s)
{
	if (s->m->in_db && s->md != NULL)
		sync_db_lo_abort(s->m->db);
	if (s->fd != -1) {
		hasher_start(&s->m->hasher, -1);	/* lets go of the file */
		close(s->fd);
		unlink(s->path);
		s->fd = -1;
	}
	EVP_MD_CTX_free(s->md);
	s->md = NULL;
}

/* What became of one attachment. */
enum outcome {
	O_STORED,
	O_RETRY,	/* an attempt that failed; it stays pending */
	O_FAILED,	/* given up: failed */
	O_UNAVAILABLE	/* will never come back */
};

/*
 * Records an outcome other than stored: the attempt (the row may turn
 * failed after MEDIA_MAX_ATTEMPTS) and the counters.
 */
static enum sync_rc
settle(struct media *m, const struct sync_media_row *a, enum outcome o,
    const char *why, int counts, struct sync_err *err)
{
	static const char *const state[] = { "stored", "pending", "failed",
	    "unavailable" };
	char now[32];
	enum sync_rc rc;

	if ((rc = sync_db_media_attempt(m->db, a->id, state[o], why, counts,
	    MEDIA_MAX_ATTEMPTS, now, sizeof(now), err)) != SYNC_OK)
		return rc;
	if (strcmp(now, "failed") == 0) {
		m->mc->failed++;
		sync_log(LOG_WARNING, "source '%s': attachment %s of message %s "
		    "failed: %s", m->name, a->external_id, a->message_id, why);
	} else if (strcmp(now, "unavailable") == 0) {
		m->mc->unavailable++;
		sync_log(LOG_NOTICE, "source '%s': attachment %s of message %s is "
		    "unavailable: %s", m->name, a->external_id, a->message_id, why);
	} else
		sync_log(LOG_NOTICE, "source '%s': attachment %s of message %s "
		    "not fetched (attempt %d): %s", m->name, a->external_id,
		    a->message_id, a->attempts + 1, why);
	return SYNC_OK;
}

static void
count_stored(struct media *m, long long size, int dedup)
{
	m->mc->downloaded++;
	m->mc->bytes += size;
	m->mc->deduplicated += dedup != 0;
}

static void
held_release(struct held *h)
{
	if (h->fd != -1) {
		close(h->fd);
		unlink(h->path);
	}
	free(h->row.external_id);
	free(h->row.message_id);
	memset(h, 0, sizeof(*h));
	h->fd = -1;
}

/*
 * store = "dir": the files held, made durable together.  Their writeback
 * started as they arrived (sink_write()), so that flushing them costs
 * little: each is flushed, its size checked against the bytes received
 * and hashed, and renamed to its content's name; the directories are
 * flushed, and then one transaction marks them all stored.  A verification that fails is the attachment's (an attempt); a
 * failure of the store stops the source.
 */
static enum sync_rc
batch_flush(struct media *m, struct sync_err *err)
{
	char sub[4400], final[4600], done[MEDIA_BATCH][3];
	int stored[MEDIA_BATCH], dedup[MEDIA_BATCH];
	enum sync_rc rc = SYNC_OK;
	size_t i, k, ndone = 0;
	struct stat st;

	for (i = 0; i < m->nheld && rc == SYNC_OK; i++) {
		struct held *h = &m->held[i];

		stored[i] = dedup[i] = 0;
		if (fsync(h->fd) == -1 || fstat(h->fd, &st) == -1 ||
		    close(h->fd) == -1) {
			h->fd = -1;
			rc = store_error(m, errno, "flush a file", err);
			break;
		}
		h->fd = -1;
		/* What the file holds is what was counted and hashed. */
		if ((long long)st.st_size != h->size) {
			unlink(h->path);
			rc = settle(m, &h->row, O_RETRY, "the stored file's size "
			    "does not match the bytes received", 1, err);
			continue;
		}
		snprintf(sub, sizeof(sub), "%s/%.2s", m->dir, h->sha);
		snprintf(final, sizeof(final), "%s/%s", sub, h->sha);
		if (make_dir(sub, m->dir) == -1) {
			rc = store_error(m, errno, "create a directory", err);
			break;
		}
		if (stat(final, &st) == 0 && S_ISREG(st.st_mode) &&
		    (long long)st.st_size == h->size) {
			dedup[i] = 1;
			unlink(h->path);
		} else if (rename(h->path, final) == -1) {
			rc = store_error(m, errno, "rename a file into place", err);
			break;
		}
		stored[i] = 1;
		for (k = 0; k < ndone && memcmp(done[k], h->sha, 2) != 0; k++)
			;
		if (k == ndone) {
			memcpy(done[ndone], h->sha, 2);
			done[ndone++][2] = '\0';
		}
	}
	for (k = 0; rc == SYNC_OK && k < ndone; k++) {
		snprintf(sub, sizeof(sub), "%s/%s", m->dir, done[k]);
		if (fsync_dir(sub) == -1)
			rc = store_error(m, errno, "flush a directory", err);
	}
	/* The bytes are durable: now, and only now, the rows say so. */
	if (rc == SYNC_OK && ndone > 0 && (rc = sync_db_begin(m->db, err)) ==
	    SYNC_OK) {
		for (i = 0; rc == SYNC_OK && i < m->nheld; i++)
			if (stored[i])
				rc = sync_db_media_stored(m->db, m->held[i].row.id,
				    m->held[i].sha, m->held[i].size, err);
		if (rc == SYNC_OK)
			rc = sync_db_commit(m->db, err);
		else
			sync_db_rollback(m->db);
		for (i = 0; rc == SYNC_OK && i < m->nheld; i++)
			if (stored[i])
				count_stored(m, m->held[i].size, dedup[i]);
	}
	for (i = 0; i < m->nheld; i++)
		held_release(&m->held[i]);
	m->nheld = 0;
	m->held_bytes = 0;
	return rc;
}

/*
 * The sink's bytes are complete: under store = "database" they are
 * recorded at once; under "dir" the file is held for batch_flush(),
 * which runs when MEDIA_BATCH files or MEDIA_BATCH_BYTES are held.
 */
static enum sync_rc
sink_commit(struct sink *s, const struct sync_media_row *a, struct sync_err *err)
{
	struct media *m = s->m;
	unsigned char d[EVP_MAX_MD_SIZE];
	char sha[2 * EVP_MAX_MD_SIZE + 1];
	unsigned dn = 0;
	struct held *h;
	enum sync_rc rc;
	int dedup = 0;

	if (m->in_db ? EVP_DigestFinal_ex(s->md, d, &dn) != 1 :
	    hasher_final(&m->hasher, d, &dn) == -1) {
		sink_abort(s);
		return sync_err_set(err, SYNC_ETEMP, SYNC_ERR_DATABASE,
		    "source '%s': media store: cannot hash a file", m->name);
	}
	EVP_MD_CTX_free(s->md);
	s->md = NULL;
	hex(d, dn, sha);
	if (budget_set)
		atomic_fetch_sub(&budget_left, s->size);
	if (m->in_db) {
		if ((rc = sync_db_lo_commit(m->db, a->id, sha, s->size, &dedup,
		    err)) == SYNC_OK)
			count_stored(m, s->size, dedup);
		return rc;
	}
	h = &m->held[m->nheld++];
	h->fd = s->fd;
	s->fd = -1;
	snprintf(h->path, sizeof(h->path), "%s", s->path);
	snprintf(h->sha, sizeof(h->sha), "%s", sha);
	h->size = s->size;
	h->row.id = a->id;
	h->row.attempts = a->attempts;
	h->row.external_id = sync_strdup(a->external_id);
	h->row.message_id = sync_strdup(a->message_id);
	m->held_bytes += s->size;
	if (h->row.external_id == NULL || h->row.message_id == NULL)
		return sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_DATA, "out of memory");
	if (m->nheld == MEDIA_BATCH || m->held_bytes >= MEDIA_BATCH_BYTES)
		return batch_flush(m, err);
	return SYNC_OK;
}

/* Bytes in memory (inline content) into the store. */
static enum sync_rc
store_bytes(struct media *m, const struct sync_media_row *a,
    const struct sync_buf *b, struct sync_err *err)
{
	struct sink s;
	enum sync_rc rc;

	if ((rc = sink_open(m, &s, a->id, err)) != SYNC_OK)
		return rc;
	if (b->len > 0 && sink_write(&s, b->data, b->len) == -1) {
		int e = s.err;

		sink_abort(&s);
		return store_error(m, e, "write a file", err);
	}
	return sink_commit(&s, a, err);
}

/* A local file (an export's, or TDLib's download) into the store. */
static enum sync_rc
store_file(struct media *m, const struct sync_media_row *a, const char *path,
    struct sync_err *err)
{
	struct sink s;
	struct stat st;
	enum sync_rc rc;
	char why[600];
	ssize_t r;
	int fd, fe;

	/* errno, or -1: not a regular file. */
	fd = open(path, O_RDONLY | O_CLOEXEC);
	fe = fd == -1 || fstat(fd, &st) == -1 ? errno : S_ISREG(st.st_mode) ? 0 : -1;
	if (fe != 0) {
		snprintf(why, sizeof(why), "cannot read '%s': %s", path,
		    fe == -1 ? "not a regular file" : strerror(fe));
		if (fd != -1)
			close(fd);
		/* What is not there (or not a file) will not come back. */
		return settle(m, a, fe == ENOENT || fe == -1 ? O_UNAVAILABLE :
		    O_RETRY, why, 1, err);
	}
	if ((long long)st.st_size > m->max) {
		close(fd);
		snprintf(why, sizeof(why), "larger than media.max_bytes (%lld > "
		    "%lld bytes)", (long long)st.st_size, m->max);
		return settle(m, a, O_FAILED, why, 1, err);
	}
	if ((rc = sink_open(m, &s, a->id, err)) != SYNC_OK) {
		close(fd);
		return rc;
	}
	while ((r = read(fd, m->buf, MEDIA_BUF)) > 0)
		if (sink_write(&s, m->buf, (size_t)r) == -1) {
			int e = s.err;

			close(fd);
			sink_abort(&s);
			return store_error(m, e, "write a file", err);
		}
	close(fd);
	if (r < 0) {
		snprintf(why, sizeof(why), "cannot read '%s': %s", path,
		    strerror(errno));
		sink_abort(&s);
		return settle(m, a, O_RETRY, why, 1, err);
	}
	return sink_commit(&s, a, err);
}

/* An error that stops the whole source rather than one attachment. */
static int
source_wide(const struct sync_err *e)
{
	return e->rc == SYNC_EINTR || e->kind == SYNC_ERR_AUTH ||
	    e->kind == SYNC_ERR_RATE_LIMIT || e->kind == SYNC_ERR_DATABASE ||
	    e->rc == SYNC_ECONFIG || e->rc == SYNC_ENOMEM;
}

/*
 * Downloads link into the store.  *status: the answer's (0 when the
 * request itself failed: *why says how); SYNC_OK unless the source must
 * stop (err), or the deadline cut the download (*cut).
 */
static enum sync_rc
download(struct media *m, const struct sync_media_row *a, const char *link,
    long *status, int *stored, int *cut, char *why, size_t n,
    struct sync_err *err)
{
	struct sync_http_sink hs;
	struct sync_err e;
	struct sink s;
	enum sync_rc rc;

	*status = 0;
	*stored = *cut = 0;
	why[0] = '\0';
	if ((rc = sink_open(m, &s, a->id, err)) != SYNC_OK)
		return rc;
	hs.write = sink_write;
	hs.reset = sink_reset;
	hs.arg = &s;
	sync_err_clear(&e);
	rc = sync_http_download(m->ctx->http, link, m->max, &hs, status, &e);
	if (rc != SYNC_OK) {
		int sunk = sync_http_sink_failed(m->ctx->http), se = s.err;

		sink_abort(&s);
		*status = 0;
		if (sunk)
			return m->in_db ? sync_err_set(err, SYNC_ETEMP,
			    SYNC_ERR_DATABASE, "source '%s': media store: cannot "
			    "write a large object: %s", m->name,
			    sync_db_error_text(m->db)) :
			    store_error(m, se != 0 ? se : EIO, "write a file", err);
		if (sync_http_cut(m->ctx->http)) {
			*cut = 1;
			return SYNC_OK;
		}
		if (source_wide(&e)) {
			*err = e;
			return e.rc;
		}
		snprintf(why, n, "%s", e.msg);
		*status = rc == SYNC_EDATA ? -1 : 0;	/* -1: too large */
		return SYNC_OK;
	}
	if (*status < 200 || *status >= 300) {
		sink_abort(&s);
		snprintf(why, n, "HTTP %ld", *status);
		return SYNC_OK;
	}
	if (a->size > 0 && s.size != a->size) {
		sink_abort(&s);
		snprintf(why, n, "got %lld bytes where the provider says %lld: a "
		    "body cut short", s.size, a->size);
		*status = 0;
		return SYNC_OK;
	}
	*stored = 1;
	return sink_commit(&s, a, err);
}

static void
link_release(struct sync_media_link *l)
{
	if (l->url != NULL)
		explicit_bzero(l->url, strlen(l->url));
	free(l->url);
	free(l->expires_at);
	free(l->path);
	memset(l, 0, sizeof(*l));
}

/* A refused link: one that a fresh link may cure. */
static int
refused(long status)
{
	return status == 401 || status == 403 || status == 404 || status == 410;
}

/* One attachment; SYNC_OK unless the source stops (*cut: the deadline). */
static enum sync_rc
fetch_one(struct media *m, const struct sync_media_row *a, int *cut,
    struct sync_err *err)
{
	const struct sync_connector *conn = m->ctx->src->conn;
	struct sync_media_link fresh;
	struct sync_media_item it;
	struct sync_buf content = SYNC_BUF_INIT(0);
	struct sync_err e;
	cJSON *raw = NULL;
	const char *link = NULL;
	char why[600];
	enum sync_rc rc = SYNC_OK;
	long status = 0;
	int stored = 0, asked = 0, tries;

	*cut = 0;
	why[0] = '\0';
	if (a->size > m->max) {
		snprintf(why, sizeof(why), "larger than media.max_bytes (%lld > "
		    "%lld bytes)", a->size, m->max);
		return settle(m, a, O_FAILED, why, 1, err);
	}
	if (a->inline_content) {
		if ((rc = sync_db_media_content(m->db, a->id, &content, err)) ==
		    SYNC_OK)
			rc = (long long)content.len > m->max ? settle(m, a,
			    O_FAILED, "larger than media.max_bytes", 1, err) :
			    store_bytes(m, a, &content, err);
		sync_buf_release(&content);
		return rc;
	}
	if (a->local_path != NULL)
		return store_file(m, a, a->local_path, err);
	memset(&fresh, 0, sizeof(fresh));
	if (a->url != NULL && !a->stripped && !a->expired)
		link = a->url;
	for (tries = 0; tries < 2 && !stored; tries++) {
		if (link == NULL) {
			if (conn->media_refresh == NULL || asked) {
				/* Nothing fresher to ask for: the old link, once. */
				if (a->url != NULL && !a->stripped && tries == 0) {
					link = a->url;
				} else {
					rc = settle(m, a, a->url == NULL ?
					    O_UNAVAILABLE : O_RETRY, a->url == NULL ?
					    "no link to the file, and this source "
					    "type cannot ask for one" : a->stripped ?
					    "its link needs a credential that is not "
					    "kept, and no fresh link could be had" :
					    why[0] ? why : "its link has expired",
					    1, err);
					goto out;
				}
			} else {
				if (raw == NULL && a->raw != NULL)
					raw = cJSON_Parse(a->raw);
				it.message_id = a->message_id;
				it.conversation_id = a->conversation_id;
				it.external_id = a->external_id;
				it.kind = a->kind;
				it.url = a->url;
				it.size = a->size;
				it.raw = raw;
				sync_err_clear(&e);
				link_release(&fresh);
				asked = 1;
				if (conn->media_refresh(m->ctx, &it, &fresh, &e) !=
				    SYNC_OK) {
					if (sync_http_cut(m->ctx->http)) {
						*cut = 1;
						goto out;
					}
					if (source_wide(&e)) {
						*err = e;
						rc = e.rc;
						goto out;
					}
					rc = settle(m, a, O_RETRY, e.msg, 1, err);
					goto out;
				}
				if (fresh.unavailable[0] != '\0') {
					rc = settle(m, a, O_UNAVAILABLE,
					    fresh.unavailable, 1, err);
					goto out;
				}
				m->mc->refreshed++;
				if (fresh.path != NULL) {
					rc = store_file(m, a, fresh.path, err);
					goto out;
				}
				if ((link = fresh.url) == NULL) {
					rc = settle(m, a, O_RETRY, "the provider gave "
					    "no link", 1, err);
					goto out;
				}
			}
		}
		if ((rc = download(m, a, link, &status, &stored, cut, why,
		    sizeof(why), err)) != SYNC_OK || *cut)
			goto out;
		if (stored)
			break;
		if (status == -1) {
			rc = settle(m, a, O_FAILED, why, 1, err);
			goto out;
		}
		if (!refused(status) || conn->media_refresh == NULL || asked) {
			if (refused(status) && (status == 404 || status == 410) &&
			    (asked || conn->media_refresh == NULL))
				rc = settle(m, a, conn->media_refresh == NULL ?
				    O_RETRY : O_UNAVAILABLE, why, 1, err);
			else
				rc = settle(m, a, O_RETRY, why, 1, err);
			goto out;
		}
		link = NULL;		/* refused: ask for a fresh one */
	}
out:
	link_release(&fresh);
	cJSON_Delete(raw);
	return rc;
}

enum sync_rc
sync_media_source(struct sync_db *db, int id, struct sync_ctx *ctx,
    double deadline, struct sync_media_counts *mc, int *stopped,
    struct sync_err *err)
{
	struct media m;
	struct sync_media_rows l;
	struct sync_progress *prog;
	char after[96] = "";
	enum sync_rc rc = SYNC_OK;
	size_t i;
	int complete = 0, cut = 0;

	memset(&m, 0, sizeof(m));
	m.db = db;
	m.id = id;
	m.ctx = ctx;
	m.cfg = ctx->cfg;
	m.name = ctx->src->name;
	m.mc = mc;
	m.in_db = strcmp(ctx->cfg->media_store, "database") == 0;
	m.max = ctx->cfg->media_max_bytes;
	if (ctx->src->media != SYNC_MEDIA_DOWNLOAD) {
		sync_log(LOG_INFO, "source '%s': media = \"%s\": nothing to "
		    "download", m.name, ctx->src->media == SYNC_MEDIA_LINK ?
		    "link" : "none");
		return SYNC_OK;
	}
	if ((m.buf = malloc(MEDIA_BUF)) == NULL)
		return sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_DATA, "out of memory");
	if (!m.in_db && hasher_init(&m.hasher) == -1) {
		free(m.buf);
		return sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_DATA,
		    "cannot start the hashing thread");
	}
	if ((!m.in_db && (rc = dir_open(&m, err)) != SYNC_OK) ||
	    (rc = sync_db_media_prepare(db, id, ctx->opts->restart, err)) !=
	    SYNC_OK) {
		hasher_free(&m.hasher);
		free(m.buf);
		return rc;
	}
	prog = sync_progress_open(m.name, "attachments");
	for (;;) {
		if (sync_stop_signal) {
			rc = sync_err_set(err, SYNC_EINTR, SYNC_ERR_INTERRUPTED,
			    "interrupted by %s", sync_signal_name((int)sync_stop_signal));
			break;
		}
		if ((rc = sync_db_media_load(db, id, after[0] ? after : NULL,
		    MEDIA_CHUNK, &l, err)) != SYNC_OK)
			break;
		for (i = 0; i < l.n && rc == SYNC_OK; i++) {
			if (sync_stop_signal)
				break;
			if ((deadline > 0 && sync_now_mono() >= deadline) ||
			    (budget_set && atomic_load(&budget_left) <= 0)) {
				*stopped = 1;
				break;
			}
			rc = fetch_one(&m, &l.v[i], &cut, err);
			if (cut) {
				*stopped = 1;
				break;
			}
			sync_progress_add(prog, 1, 1);
			snprintf(after, sizeof(after), "%s", l.v[i].key);
		}
		if (l.n < MEDIA_CHUNK && i == l.n && rc == SYNC_OK && !*stopped)
			complete = 1;
		sync_media_rows_release(&l);
		if (rc != SYNC_OK || *stopped || complete)
			break;
	}
	/* The files held are complete, whatever stopped the pass. */
	if (m.nheld > 0) {
		struct sync_err e;

		sync_err_clear(&e);
		if (batch_flush(&m, &e) != SYNC_OK && rc == SYNC_OK)
			rc = sync_err_set(err, e.rc, e.kind, "%s", e.msg);
	}
	sync_progress_close(prog, complete);
	hasher_free(&m.hasher);
	free(m.buf);
	/* What is left, whatever stopped the pass (a failure included). */
	{
		struct sync_err e;

		sync_err_clear(&e);
		if (sync_db_media_pending(db, id, &mc->still_pending, &e) != SYNC_OK &&
		    rc == SYNC_OK)
			rc = sync_err_set(err, e.rc, e.kind, "%s", e.msg);
	}
	if (*stopped && budget_set && atomic_load(&budget_left) <= 0)
		sync_log(LOG_INFO, "source '%s': --max-bytes reached", m.name);
	return rc;
}
