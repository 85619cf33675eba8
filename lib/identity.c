/*
 * identity.c -- one person across sources (SPEC §6, msgsync(7) PEOPLE):
 * the identity resolution at the end of every pass.
 *
 * Every contact belongs to exactly one person.  Contacts whose phones
 * normalise to one E.164 number share a person; person_override's links
 * join contacts and its unlinks keep them apart, whatever the phones say.
 * The resolution is incremental: it decides the contacts changed since the
 * last one (a change-feed range of contact, below the xmin of the
 * snapshot), those named by overrides added, changed or removed
 * (person_queue), or every contact when identity.default_calling_code
 * changed; then everything those decisions can touch (the closure: the
 * contacts sharing a number with them, the other contacts of their
 * persons, their override partners, until nothing is added).  Within the
 * closure, union-find builds the persons; person ids are kept where most
 * members already had them, and only what changed is written, set-based,
 * each contact guarded by the seq it was read with (one changed meanwhile
 * is left to the next resolution, its change being newer).
 *
 * Resolutions are serialised by a session advisory lock taken before the
 * transaction; the transaction is READ COMMITTED and takes the bound B
 * once the lock is held, so every transaction below B has ended for every
 * later statement.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* db.c's key space: (1836279667, 0) guards migrations, this one these. */
#define IDENTITY_LOCK	"SELECT pg_advisory_lock(1836279667, 1)"
#define IDENTITY_UNLOCK	"SELECT pg_advisory_unlock(1836279667, 1)"

/* Rows per FETCH of a full read. */
#define FETCH_ROWS	50000
/* More changed contacts than a quarter of all: read them all at once. */
#define FULL_SHARE	4

/* What a contact read brings: columns of COLS. */
#define COLS								\
    "SELECT c.id, c.seq, c.phone, c.person_id, c.display_name,"		\
    " l.person_id, l.reason, l.evidence, p.phone, p.display_name"	\
    " FROM contact c LEFT JOIN person_link l ON l.contact_id = c.id"	\
    " LEFT JOIN person p ON p.id = c.person_id"

enum { R_SINGLE = 0, R_PHONE, R_MANUAL };
static const char *const reason_name[] = { "single", "phone", "manual" };

struct ct {
	long long	 id, seq, person;	/* person: 0 none */
	unsigned long long e164;		/* its digits; 0 none */
	size_t		 phone, name;		/* arena offsets; 0 none */
	long long	 lperson;		/* person_link as stored */
	int		 lreason;		/* -1: no link */
	size_t		 lev;
	int		 rewrite;		/* phone is not stored as e164 */
	int		 parent, size, next, nunl;
	long long	 manual;		/* manual evidence: a contact id */
	int		 reason;
};

struct pn {				/* a person the closure had */
	long long	 id;
	size_t		 phone, name;
	int		 taken;
};

struct idmap {
	long long	*k;
	int		*v;
	size_t		 cap, n;
};

struct res {
	const struct sync_config *cfg;
	struct sync_db	*db;
	struct ct	*c;
	size_t		 n, cap;
	struct pn	*p;
	size_t		 np, pcap;
	struct idmap	 cmap, pmap;
	struct sync_buf	 arena;
	int		*ustart, *ulist;	/* unlink partners (CSR) */
	long long	(*links)[2];		/* link pairs, as indices */
	size_t		 nlinks;
};

/* ---- a map of ids to indices --------------------------------------- */

static size_t
hash64(long long k, size_t cap)
{
	unsigned long long x = (unsigned long long)k;

	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	return (size_t)x & (cap - 1);
}

static int
idmap_get(const struct idmap *m, long long k)
{
	size_t i;

	if (m->cap == 0)
		return -1;
	for (i = hash64(k, m->cap); m->k[i] != 0; i = (i + 1) & (m->cap - 1))
		if (m->k[i] == k)
			return m->v[i];
	return -1;
}

/* Adds k (never 0) -> v; -1 on ENOMEM. */
static int
idmap_put(struct idmap *m, long long k, int v)
{
	size_t i;

	if ((m->n + 1) * 2 > m->cap) {
		struct idmap g = { NULL, NULL, m->cap ? m->cap * 2 : 1024, 0 };

		if ((g.k = calloc(g.cap, sizeof(*g.k))) == NULL ||
		    (g.v = malloc(g.cap * sizeof(*g.v))) == NULL) {
			free(g.k);
			return -1;
		}
		for (i = 0; i < m->cap; i++)
			if (m->k[i] != 0)
				idmap_put(&g, m->k[i], m->v[i]);
		free(m->k);
		free(m->v);
		*m = g;
	}
	for (i = hash64(k, m->cap); m->k[i] != 0; i = (i + 1) & (m->cap - 1))
		;
	m->k[i] = k;
	m->v[i] = v;
	m->n++;
	return 0;
}

static void
idmap_free(struct idmap *m)
{
	free(m->k);
	free(m->v);
	memset(m, 0, sizeof(*m));
}

/* ---- reading ------------------------------------------------------- */

static enum sync_rc
nomem(struct sync_err *err)
{
	return sync_err_set(err, SYNC_ENOMEM, SYNC_ERR_DATABASE, "identity "
	    "resolution: out of memory");
}

/* Keeps s in the arena; its offset, 0 for NULL or "", (size_t)-1 ENOMEM. */
static size_t
keep(struct res *r, const char *s)
{
	size_t off;

	if (s == NULL || *s == '\0')
		return 0;
	if (r->arena.len == 0 && sync_buf_add(&r->arena, "", 1) == -1)
		return (size_t)-1;
	off = r->arena.len;
	if (sync_buf_add(&r->arena, s, strlen(s) + 1) == -1)
		return (size_t)-1;
	return off;
}

static const char *
str(const struct res *r, size_t off)
{
	return off == 0 ? NULL : r->arena.data + off;
}

static long long
num(const char *s)
{
	return s != NULL ? strtoll(s, NULL, 10) : 0;
}

/* Row k of rows, one contact as COLS reads it; new ones go in r->c. */
static enum sync_rc
take(struct res *r, const struct sync_rows *rows, int k, struct sync_err *err)
{
	const char *phone = sync_rows_get(rows, k, 2), *reason;
	long long id = num(sync_rows_get(rows, k, 0)), pid;
	char e164[20];
	struct ct *c;
	size_t i;

	if (id <= 0 || idmap_get(&r->cmap, id) >= 0)
		return SYNC_OK;
	if (r->n == r->cap) {
		size_t ncap = r->cap ? r->cap * 2 : 1024;
		struct ct *v = realloc(r->c, ncap * sizeof(*v));

		if (v == NULL)
			return nomem(err);
		r->c = v;
		r->cap = ncap;
	}
	c = &r->c[r->n];
	memset(c, 0, sizeof(*c));
	c->id = id;
	c->seq = num(sync_rows_get(rows, k, 1));
	c->person = num(sync_rows_get(rows, k, 3));
	if (phone != NULL && sync_phone_e164(phone, r->cfg->default_calling_code,
	    e164, sizeof(e164)) == 0) {
		c->e164 = strtoull(e164 + 1, NULL, 10);
		c->rewrite = strcmp(e164, phone) != 0;
	}
	if ((c->phone = keep(r, phone)) == (size_t)-1 ||
	    (c->name = keep(r, sync_rows_get(rows, k, 4))) == (size_t)-1 ||
	    (c->lev = keep(r, sync_rows_get(rows, k, 7))) == (size_t)-1)
		return nomem(err);
	c->lperson = num(sync_rows_get(rows, k, 5));
	c->lreason = -1;
	if ((reason = sync_rows_get(rows, k, 6)) != NULL)
		for (i = 0; i < 3; i++)
			if (strcmp(reason, reason_name[i]) == 0)
				c->lreason = (int)i;
	c->parent = (int)r->n;
	c->size = 1;
	c->next = (int)r->n;
	if (idmap_put(&r->cmap, id, (int)r->n) == -1)
		return nomem(err);
	r->n++;
	/* Its person, as it is now. */
	if (c->person > 0 && idmap_get(&r->pmap, (pid = c->person)) < 0) {
		struct pn *p;

		if (r->np == r->pcap) {
			size_t ncap = r->pcap ? r->pcap * 2 : 1024;
			struct pn *v = realloc(r->p, ncap * sizeof(*v));

			if (v == NULL)
				return nomem(err);
			r->p = v;
			r->pcap = ncap;
		}
		p = &r->p[r->np];
		memset(p, 0, sizeof(*p));
		p->id = pid;
		if ((p->phone = keep(r, sync_rows_get(rows, k, 8))) == (size_t)-1 ||
		    (p->name = keep(r, sync_rows_get(rows, k, 9))) == (size_t)-1 ||
		    idmap_put(&r->pmap, pid, (int)r->np) == -1)
			return nomem(err);
		r->np++;
	}
	return SYNC_OK;
}

/* Runs sql, taking every contact it returns. */
static enum sync_rc
read_rows(struct res *r, const char *what, const char *sql, int n,
    const char *const *v, int *got, struct sync_err *err)
{
	struct sync_rows *rows = NULL;
	enum sync_rc rc;
	int k;

	if ((rc = sync_db_exec(r->db, what, sql, n, v, &rows, err)) != SYNC_OK)
		return rc;
	*got = sync_rows_count(rows);
	for (k = 0; k < *got && rc == SYNC_OK; k++)
		rc = take(r, rows, k, err);
	sync_rows_free(rows);
	return rc;
}

/* Every contact, FETCH_ROWS at a time. */
static enum sync_rc
read_all(struct res *r, struct sync_err *err)
{
	char fetch[64];
	enum sync_rc rc;
	int got;

	if ((rc = sync_db_exec(r->db, "read the contacts", "DECLARE identity_all"
	    " NO SCROLL CURSOR FOR " COLS, 0, NULL, NULL, err)) != SYNC_OK)
		return rc;
	snprintf(fetch, sizeof(fetch), "FETCH %d FROM identity_all", FETCH_ROWS);
	do
		rc = read_rows(r, "read the contacts", fetch, 0, NULL, &got, err);
	while (rc == SYNC_OK && got == FETCH_ROWS);
	if (rc == SYNC_OK)
		rc = sync_db_exec(r->db, "read the contacts", "CLOSE identity_all",
		    0, NULL, NULL, err);
	return rc;
}

static int
add_id(struct sync_buf *a, long long v)
{
	char t[24];

	snprintf(t, sizeof(t), "%lld", v);
	return sync_db_array_add(a, t);
}

/*
 * Adds to the closure, until nothing is added, every contact that shares a
 * number with one in it, the other contacts of their persons and their
 * override partners.
 */
static enum sync_rc
expand(struct res *r, struct sync_err *err)
{
	static const char sql[] =
	    COLS " WHERE c.phone = ANY($1::text[])"
	    " UNION ALL " COLS " WHERE c.person_id = ANY($2::bigint[])"
	    " UNION ALL " COLS " WHERE c.id IN (SELECT other_contact_id FROM"
	    "  person_override WHERE contact_id = ANY($3::bigint[]) UNION"
	    "  SELECT contact_id FROM person_override"
	    "  WHERE other_contact_id = ANY($3::bigint[]))";
	size_t from = 0, to, i;
	enum sync_rc rc = SYNC_OK;
	int got;

	while (rc == SYNC_OK && from < r->n) {
		struct sync_buf ph = SYNC_BUF_INIT(0), pe = SYNC_BUF_INIT(0),
		    ids = SYNC_BUF_INIT(0);
		const char *v[3];
		int bad = 0;

		to = r->n;
		for (i = from; i < to && !bad; i++) {
			const struct ct *c = &r->c[i];
			char t[24];

			if (c->e164 != 0) {
				snprintf(t, sizeof(t), "+%llu", c->e164);
				bad |= sync_db_array_add(&ph, t) == -1;
			}
			if (c->phone != 0 && c->rewrite)
				bad |= sync_db_array_add(&ph, str(r, c->phone)) == -1;
			if (c->person > 0)
				bad |= add_id(&pe, c->person) == -1;
			bad |= add_id(&ids, c->id) == -1;
		}
		bad |= sync_db_array_end(&ph) == -1 ||
		    sync_db_array_end(&pe) == -1 || sync_db_array_end(&ids) == -1;
		v[0] = ph.data;
		v[1] = pe.data;
		v[2] = ids.data;
		rc = bad ? nomem(err) : read_rows(r, "read the contacts around"
		    " the changed ones", sql, 3, v, &got, err);
		sync_buf_release(&ph);
		sync_buf_release(&pe);
		sync_buf_release(&ids);
		from = to;
	}
	return rc;
}

/* The overrides among the closure's contacts (all: every one). */
static enum sync_rc
read_overrides(struct res *r, int all, struct sync_err *err)
{
	struct sync_buf ids = SYNC_BUF_INIT(0);
	struct sync_rows *rows = NULL;
	const char *v[1];
	enum sync_rc rc;
	size_t i, nu = 0;
	int k, n, *deg = NULL, *fill = NULL;

	for (i = 0; !all && i < r->n; i++)
		if (add_id(&ids, r->c[i].id) == -1) {
			sync_buf_release(&ids);
			return nomem(err);
		}
	if (!all && sync_db_array_end(&ids) == -1) {
		sync_buf_release(&ids);
		return nomem(err);
	}
	v[0] = ids.data;
	rc = sync_db_exec(r->db, "read the overrides", all ?
	    "SELECT contact_id, other_contact_id, action FROM person_override"
	    " ORDER BY 1, 2" :
	    "SELECT contact_id, other_contact_id, action FROM person_override"
	    " WHERE contact_id = ANY($1::bigint[]) UNION SELECT contact_id,"
	    " other_contact_id, action FROM person_override"
	    " WHERE other_contact_id = ANY($1::bigint[]) ORDER BY 1, 2",
	    all ? 0 : 1, v, &rows, err);
	sync_buf_release(&ids);
	if (rc != SYNC_OK)
		return rc;
	n = sync_rows_count(rows);
	if ((r->links = calloc((size_t)n + 1, sizeof(*r->links))) == NULL ||
	    (deg = calloc(r->n + 1, sizeof(*deg))) == NULL ||
	    (r->ustart = calloc(r->n + 1, sizeof(*r->ustart))) == NULL ||
	    (r->ulist = calloc(2 * (size_t)n + 1, sizeof(*r->ulist))) == NULL ||
	    (fill = calloc(r->n + 1, sizeof(*fill))) == NULL) {
		rc = nomem(err);
		goto out;
	}
	/* Links in order; unlinks as each contact's list of partners. */
	for (k = 0; k < n; k++) {
		int a = idmap_get(&r->cmap, num(sync_rows_get(rows, k, 0)));
		int b = idmap_get(&r->cmap, num(sync_rows_get(rows, k, 1)));
		const char *act = sync_rows_get(rows, k, 2);

		if (a < 0 || b < 0 || act == NULL)
			continue;	/* a contact written since */
		if (strcmp(act, "link") == 0) {
			r->links[r->nlinks][0] = a;
			r->links[r->nlinks++][1] = b;
		} else {
			deg[a]++;
			deg[b]++;
			nu += 2;
		}
	}
	for (i = 0; i < r->n; i++) {
		r->ustart[i + 1] = r->ustart[i] + deg[i];
		r->c[i].nunl = deg[i] > 0;
	}
	for (k = 0; k < n; k++) {
		int a = idmap_get(&r->cmap, num(sync_rows_get(rows, k, 0)));
		int b = idmap_get(&r->cmap, num(sync_rows_get(rows, k, 1)));
		const char *act = sync_rows_get(rows, k, 2);

		if (a < 0 || b < 0 || act == NULL || strcmp(act, "link") == 0)
			continue;
		r->ulist[r->ustart[a] + fill[a]++] = b;
		r->ulist[r->ustart[b] + fill[b]++] = a;
	}
	(void)nu;
out:
	free(deg);
	free(fill);
	sync_rows_free(rows);
	return rc;
}

/* ---- deciding ------------------------------------------------------ */

static int
find(struct ct *c, int i)
{
	while (c[i].parent != i) {
		c[i].parent = c[c[i].parent].parent;
		i = c[i].parent;
	}
	return i;
}

/*
 * Puts a and b in one component unless an unlink override names two
 * contacts that would then be in it: 1 if they are in one now.
 */
static int
unite(struct res *r, int a, int b)
{
	struct ct *c = r->c;
	int m, t, k;

	a = find(c, a);
	b = find(c, b);
	if (a == b)
		return 1;
	if (c[a].size < c[b].size) {
		t = a;
		a = b;
		b = t;
	}
	/* The unlink partners of the smaller side's members. */
	if (c[a].nunl > 0 && c[b].nunl > 0) {
		m = b;
		do {
			for (k = r->ustart[m]; k < r->ustart[m + 1]; k++)
				if (find(c, r->ulist[k]) == a)
					return 0;
			m = c[m].next;
		} while (m != b);
	}
	c[b].parent = a;
	c[a].size += c[b].size;
	c[a].nunl += c[b].nunl;
	t = c[a].next;
	c[a].next = c[b].next;
	c[b].next = t;
	return 1;
}

/* Sorting indices by the roots and a key: the array the comparators see. */
static const struct ct *sort_c;
static const int *sort_root;

static int
by_phone(const void *x, const void *y)
{
	const struct ct *a = &sort_c[*(const int *)x], *b = &sort_c[*(const int *)y];

	if (a->e164 != b->e164)
		return a->e164 < b->e164 ? -1 : 1;
	return (a->id > b->id) - (a->id < b->id);
}

static int
by_root_id(const void *x, const void *y)
{
	int i = *(const int *)x, j = *(const int *)y;
	const struct ct *a = &sort_c[i], *b = &sort_c[j];

	if (sort_root[i] != sort_root[j])
		return sort_root[i] < sort_root[j] ? -1 : 1;
	return (a->id > b->id) - (a->id < b->id);
}

static int
by_root_phone(const void *x, const void *y)
{
	int i = *(const int *)x, j = *(const int *)y;

	if (sort_root[i] != sort_root[j])
		return sort_root[i] < sort_root[j] ? -1 : 1;
	return by_phone(x, y);
}

static int
by_root_person(const void *x, const void *y)
{
	int i = *(const int *)x, j = *(const int *)y;
	const struct ct *a = &sort_c[i], *b = &sort_c[j];

	if (sort_root[i] != sort_root[j])
		return sort_root[i] < sort_root[j] ? -1 : 1;
	if (a->person != b->person)
		return a->person < b->person ? -1 : 1;
	return 0;
}

/* One component: its members in id order are ord[from..to). */
struct comp {
	int		 root, from, to;
	long long	 minid;
	long long	 person;	/* decided */
	int		 fresh;		/* a new person */
	unsigned long long e164;	/* its number, 0 none */
	size_t		 name;
};

static int
comp_order(const void *x, const void *y)
{
	const struct comp *a = x, *b = y;

	if (a->to - a->from != b->to - b->from)
		return (b->to - b->from) - (a->to - a->from);
	return (a->minid > b->minid) - (a->minid < b->minid);
}

struct cand {
	long long	 person;
	int		 count;
};

static int
cand_order(const void *x, const void *y)
{
	const struct cand *a = x, *b = y;

	if (a->count != b->count)
		return b->count - a->count;
	return (a->person > b->person) - (a->person < b->person);
}

/* ---- the resolution ------------------------------------------------ */

struct figures {
	long long	 decided, contacts, links, created, changed, removed,
			 skipped;
};

static int
copy_field(struct sync_buf *o, const char *s, const char *sep)
{
	if (s == NULL)
		return sync_buf_adds(o, "\\N") == -1 || sync_buf_adds(o, sep) == -1;
	return sync_copy_text(o, s) == -1 || sync_buf_adds(o, sep) == -1;
}

static enum sync_rc
decide_and_write(struct res *r, int full, struct figures *f, struct sync_err *err)
{
	struct sync_buf dec = SYNC_BUF_INIT(0), per = SYNC_BUF_INIT(0),
	    drop = SYNC_BUF_INIT(0);
	struct sync_rows *rows = NULL;
	struct comp *comps = NULL;
	struct cand *cands = NULL;
	int *ord = NULL, *root = NULL, *heads = NULL, *byp = NULL;
	size_t i, j, k, ncomp = 0, nnew = 0, nh;
	enum sync_rc rc = SYNC_OK;
	struct ct *c = r->c;
	char t[32], u[32];
	int bad = 0;

	if (r->n == 0)
		goto out;
	if ((ord = malloc(r->n * sizeof(*ord))) == NULL ||
	    (root = malloc(r->n * sizeof(*root))) == NULL ||
	    (heads = malloc(r->n * sizeof(*heads))) == NULL ||
	    (byp = malloc(r->n * sizeof(*byp))) == NULL ||
	    (comps = calloc(r->n, sizeof(*comps))) == NULL ||
	    (cands = calloc(r->n, sizeof(*cands))) == NULL) {
		rc = nomem(err);
		goto out;
	}
	/* Links first, then one number, one person (unlinks permitting). */
	for (i = 0; i < r->nlinks; i++)
		unite(r, (int)r->links[i][0], (int)r->links[i][1]);
	for (i = 0; i < r->n; i++)
		ord[i] = (int)i;
	sort_c = c;
	qsort(ord, r->n, sizeof(*ord), by_phone);
	for (i = 0; i < r->n; i = j) {
		for (j = i + 1; j < r->n && c[ord[j]].e164 == c[ord[i]].e164; j++)
			;
		if (c[ord[i]].e164 == 0)
			continue;
		/* Each joins the first of the number's groups that takes it. */
		nh = 0;
		for (k = i; k < j; k++) {
			size_t h;

			for (h = 0; h < nh; h++)
				if (unite(r, heads[h], ord[k]))
					break;
			if (h == nh)
				heads[nh++] = ord[k];
		}
	}
	for (i = 0; i < r->n; i++)
		root[i] = find(c, (int)i);
	sort_root = root;
	/* Why: a manual link inside the person, else a shared number. */
	for (i = 0; i < r->nlinks; i++) {
		int a = (int)r->links[i][0], b = (int)r->links[i][1];

		if (root[a] != root[b])
			continue;
		if (c[a].manual == 0 || c[b].id < c[a].manual)
			c[a].manual = c[b].id;
		if (c[b].manual == 0 || c[a].id < c[b].manual)
			c[b].manual = c[a].id;
	}
	qsort(ord, r->n, sizeof(*ord), by_root_phone);
	for (i = 0; i < r->n; i = j) {
		for (j = i + 1; j < r->n && root[ord[j]] == root[ord[i]] &&
		    c[ord[j]].e164 == c[ord[i]].e164; j++)
			;
		for (k = i; k < j; k++)
			c[ord[k]].reason = c[ord[k]].manual != 0 ? R_MANUAL :
			    j - i > 1 && c[ord[i]].e164 != 0 ? R_PHONE : R_SINGLE;
	}
	/* The components; each one's number: the most common (ties lowest). */
	for (i = 0; i < r->n; i = j) {
		struct comp *m = &comps[ncomp++];
		size_t best = 0;

		m->root = root[ord[i]];
		for (j = i; j < r->n && root[ord[j]] == m->root; j = k) {
			for (k = j + 1; k < r->n && root[ord[k]] == m->root &&
			    c[ord[k]].e164 == c[ord[j]].e164; k++)
				;
			if (c[ord[j]].e164 != 0 && k - j > best) {
				best = k - j;
				m->e164 = c[ord[j]].e164;
			}
		}
	}
	/* Members in id order: the name, the smallest id. */
	qsort(ord, r->n, sizeof(*ord), by_root_id);
	for (i = 0, k = 0; i < r->n; i = j, k++) {
		struct comp *m = &comps[k];

		for (j = i; j < r->n && root[ord[j]] == root[ord[i]]; j++)
			if (m->name == 0 && c[ord[j]].name != 0)
				m->name = c[ord[j]].name;
		m->from = (int)i;
		m->to = (int)j;
		m->minid = c[ord[i]].id;
	}
	/* ord by (root, id) is kept; comps go biggest first. */
	qsort(comps, ncomp, sizeof(*comps), comp_order);
	/* By root, then person: a component has the same range as in ord. */
	memcpy(byp, ord, r->n * sizeof(*byp));
	qsort(byp, r->n, sizeof(*byp), by_root_person);
	for (k = 0; k < ncomp; k++) {
		struct comp *m = &comps[k];
		size_t nc = 0;
		int x;

		/* Its members' persons, most members first (ties: lowest). */
		for (x = m->from; x < m->to; x++) {
			long long p = c[byp[x]].person;

			if (p <= 0)
				continue;
			if (nc == 0 || cands[nc - 1].person != p) {
				cands[nc].person = p;
				cands[nc++].count = 0;
			}
			cands[nc - 1].count++;
		}
		qsort(cands, nc, sizeof(*cands), cand_order);
		for (j = 0; j < nc; j++) {
			int pi = idmap_get(&r->pmap, cands[j].person);

			if (pi >= 0 && !r->p[pi].taken) {
				r->p[pi].taken = 1;
				m->person = cands[j].person;
				break;
			}
		}
		if (m->person == 0) {
			m->fresh = 1;
			nnew++;
		}
	}
	/* Ids for the new persons. */
	if (nnew > 0) {
		const char *v[1];

		snprintf(t, sizeof(t), "%zu", nnew);
		v[0] = t;
		if ((rc = sync_db_exec(r->db, "number the new persons", "SELECT"
		    " nextval(pg_get_serial_sequence('person', 'id'))"
		    " FROM generate_series(1, $1::integer)", 1, v, &rows,
		    err)) != SYNC_OK)
			goto out;
		for (k = 0, j = 0; k < ncomp; k++)
			if (comps[k].fresh)
				comps[k].person = num(sync_rows_get(rows, (int)j++, 0));
		sync_rows_free(rows);
		rows = NULL;
	}
	/* The persons that are new or change, the contacts that change. */
	for (k = 0; k < ncomp && !bad; k++) {
		struct comp *m = &comps[k];
		const char *name = str(r, m->name);
		int x;

		snprintf(t, sizeof(t), "%lld", m->person);
		u[0] = '\0';
		if (m->e164 != 0)
			snprintf(u, sizeof(u), "+%llu", m->e164);
		if (!m->fresh) {
			const struct pn *p = &r->p[idmap_get(&r->pmap, m->person)];
			const char *pp = str(r, p->phone), *pname = str(r, p->name);

			if (((pp == NULL) != (u[0] == '\0') || (pp != NULL &&
			    strcmp(pp, u) != 0)) || (pname == NULL) != (name == NULL) ||
			    (name != NULL && strcmp(name, pname) != 0))
				f->changed++;
			else
				goto members;
		} else
			f->created++;
		bad |= copy_field(&per, t, "\t") || copy_field(&per, name, "\t") ||
		    copy_field(&per, u[0] ? u : NULL, "\t") ||
		    copy_field(&per, m->fresh ? "t" : "f", "\n");
		if (m->fresh && !full)	/* one whose contacts all changed */
			bad |= sync_db_array_add(&drop, t) == -1;
members:
		for (x = m->from; x < m->to && !bad; x++) {
			struct ct *e = &c[ord[x]];
			char ev[24], ph[20], id[24], sq[24];
			const char *evs = NULL, *lev = str(r, e->lev);
			int cw, lw;

			if (e->reason == R_MANUAL) {
				snprintf(ev, sizeof(ev), "%lld", e->manual);
				evs = ev;
			} else if (e->reason == R_PHONE) {
				snprintf(ev, sizeof(ev), "+%llu", e->e164);
				evs = ev;
			}
			cw = e->person != m->person || e->rewrite;
			lw = e->lperson != m->person || e->lreason != e->reason ||
			    (evs == NULL) != (lev == NULL) || (evs != NULL &&
			    strcmp(evs, lev) != 0);
			if (!cw && !lw)
				continue;
			f->contacts += cw;
			f->links += lw;
			snprintf(id, sizeof(id), "%lld", e->id);
			snprintf(sq, sizeof(sq), "%lld", e->seq);
			if (e->rewrite)
				snprintf(ph, sizeof(ph), "+%llu", e->e164);
			bad |= copy_field(&dec, id, "\t") ||
			    copy_field(&dec, sq, "\t") || copy_field(&dec, t, "\t") ||
			    copy_field(&dec, e->rewrite ? ph : NULL, "\t") ||
			    copy_field(&dec, reason_name[e->reason], "\t") ||
			    copy_field(&dec, evs, "\t") ||
			    copy_field(&dec, cw ? "t" : "f", "\n");
		}
	}
	/* The persons the closure had that no component kept. */
	for (i = 0; i < r->np && !bad; i++)
		if (!r->p[i].taken) {
			snprintf(t, sizeof(t), "%lld", r->p[i].id);
			if (!full)	/* else every empty one goes below */
				bad |= sync_db_array_add(&drop, t) == -1;
			f->removed++;
		}
	if (bad || sync_db_array_end(&drop) == -1) {
		rc = nomem(err);
		goto out;
	}
	if (per.len > 0 && ((rc = sync_db_exec(r->db, "stage the persons",
	    "CREATE TEMP TABLE identity_person (id bigint, display_name text,"
	    " phone text, fresh boolean) ON COMMIT DROP", 0, NULL, NULL,
	    err)) != SYNC_OK || (rc = sync_db_copy(r->db,
	    "COPY identity_person FROM STDIN", &per, err)) != SYNC_OK ||
	    (rc = sync_db_exec(r->db, "stage the persons", "ANALYZE"
	    " identity_person", 0, NULL, NULL, err)) != SYNC_OK ||
	    (rc = sync_db_exec(r->db, "create the persons", "INSERT INTO person"
	    " (id, display_name, phone) SELECT id, display_name, phone"
	    " FROM identity_person WHERE fresh", 0, NULL, NULL, err)) != SYNC_OK ||
	    (rc = sync_db_exec(r->db, "update the persons", "UPDATE person p SET"
	    " display_name = i.display_name, phone = i.phone, updated_at = now(),"
	    " seq = nextval('msgsync_seq') FROM identity_person i"
	    " WHERE p.id = i.id AND NOT i.fresh", 0, NULL, NULL, err)) != SYNC_OK))
		goto out;
	if (dec.len > 0 && ((rc = sync_db_exec(r->db, "stage the decisions",
	    "CREATE TEMP TABLE identity_decision (id bigint, seq bigint,"
	    " person_id bigint, phone text, reason text, evidence text,"
	    " contact boolean) ON COMMIT DROP", 0, NULL, NULL, err)) != SYNC_OK ||
	    (rc = sync_db_copy(r->db, "COPY identity_decision FROM STDIN", &dec,
	    err)) != SYNC_OK ||
	    (rc = sync_db_exec(r->db, "stage the decisions", "ANALYZE"
	    " identity_decision", 0, NULL, NULL, err)) != SYNC_OK ||
	    /* A contact changed since it was read is left to the next one. */
	    (rc = sync_db_exec(r->db, "set the contacts' persons", "UPDATE contact"
	    " c SET person_id = d.person_id, phone = coalesce(d.phone, c.phone),"
	    " updated_at = now(), seq = nextval('msgsync_seq'),"
	    " txid = pg_current_xact_id()::text::bigint"
	    " FROM identity_decision d WHERE d.contact AND c.id = d.id"
	    " AND c.seq = d.seq", 0, NULL, NULL, err)) != SYNC_OK ||
	    (rc = sync_db_exec(r->db, "drop the decisions left", "WITH g AS"
	    " (DELETE FROM identity_decision d WHERE NOT EXISTS (SELECT 1"
	    " FROM contact c WHERE c.id = d.id AND c.person_id = d.person_id)"
	    " RETURNING 1) SELECT count(*) FROM g", 0, NULL, &rows,
	    err)) != SYNC_OK))
		goto out;
	if (rows != NULL) {
		f->skipped = num(sync_rows_get(rows, 0, 0));
		sync_rows_free(rows);
		rows = NULL;
	}
	if (dec.len > 0 && (rc = sync_db_exec(r->db, "record why",
	    "INSERT INTO person_link AS l (contact_id, person_id, reason, evidence)"
	    " SELECT id, person_id, reason, evidence FROM identity_decision"
	    " ON CONFLICT (contact_id) DO UPDATE SET person_id = EXCLUDED.person_id,"
	    " reason = EXCLUDED.reason, evidence = EXCLUDED.evidence,"
	    " updated_at = now(), seq = nextval('msgsync_seq')"
	    " WHERE (l.person_id, l.reason, l.evidence) IS DISTINCT FROM"
	    " (EXCLUDED.person_id, EXCLUDED.reason, EXCLUDED.evidence)", 0, NULL,
	    NULL, err)) != SYNC_OK)
		goto out;
	if (strcmp(drop.data, "{}") != 0) {
		const char *v[1] = { drop.data };

		rc = sync_db_exec(r->db, "remove the persons left empty",
		    "DELETE FROM person p WHERE p.id = ANY($1::bigint[]) AND NOT"
		    " EXISTS (SELECT 1 FROM contact c WHERE c.person_id = p.id)",
		    1, v, NULL, err);
	}
out:
	free(ord);
	free(root);
	free(heads);
	free(byp);
	free(comps);
	free(cands);
	sync_buf_release(&dec);
	sync_buf_release(&per);
	sync_buf_release(&drop);
	sync_rows_free(rows);
	return rc;
}

static void
res_release(struct res *r)
{
	free(r->c);
	free(r->p);
	idmap_free(&r->cmap);
	idmap_free(&r->pmap);
	sync_buf_release(&r->arena);
	free(r->ustart);
	free(r->ulist);
	free(r->links);
}

/* One value of a one-row query. */
static enum sync_rc
one(struct sync_db *db, const char *what, const char *sql, int n,
    const char *const *v, long long *out, int *null, struct sync_err *err)
{
	struct sync_rows *rows = NULL;
	enum sync_rc rc;

	if ((rc = sync_db_exec(db, what, sql, n, v, &rows, err)) != SYNC_OK)
		return rc;
	if (null != NULL)
		*null = sync_rows_get(rows, 0, 0) == NULL;
	*out = num(sync_rows_get(rows, 0, 0));
	sync_rows_free(rows);
	return SYNC_OK;
}

static enum sync_rc
resolve(struct res *r, struct figures *f, struct sync_err *err)
{
	struct sync_rows *st = NULL, *q = NULL;
	long long b, ptx = 0, pseq = 0, own, oldcc, changed, total;
	char bs[24], ps[24], ss[24], os[24], cc[24], pos[64];
	struct sync_buf ids = SYNC_BUF_INIT(0);
	const char *v[5], *p;
	enum sync_rc rc;
	int full, nocc, got, k;

	/* Hash joins of a million staged rows in memory, not in batches. */
	if ((rc = sync_db_exec(r->db, "configure the resolution", "SET LOCAL"
	    " work_mem = '128MB'", 0, NULL, NULL, err)) != SYNC_OK ||
	    (rc = one(r->db, "take the snapshot's bound", "SELECT"
	    " pg_snapshot_xmin(pg_current_snapshot())::text::bigint", 0, NULL,
	    &b, NULL, err)) != SYNC_OK ||
	    (rc = sync_db_exec(r->db, "read identity_state", "INSERT INTO"
	    " identity_state DEFAULT VALUES ON CONFLICT DO NOTHING", 0, NULL, NULL,
	    err)) != SYNC_OK ||
	    (rc = sync_db_exec(r->db, "read identity_state", "SELECT position,"
	    " own_txid, calling_code FROM identity_state FOR UPDATE", 0, NULL,
	    &st, err)) != SYNC_OK)
		goto out;
	if ((p = sync_rows_get(st, 0, 0)) != NULL &&
	    sscanf(p, "%lld:%lld", &ptx, &pseq) < 1)
		ptx = pseq = 0;
	own = num(sync_rows_get(st, 0, 1));
	nocc = sync_rows_get(st, 0, 2) == NULL;
	oldcc = num(sync_rows_get(st, 0, 2));
	snprintf(bs, sizeof(bs), "%lld", b);
	snprintf(ps, sizeof(ps), "%lld", ptx);
	snprintf(ss, sizeof(ss), "%lld", pseq);
	snprintf(os, sizeof(os), "%lld", own);
	snprintf(cc, sizeof(cc), "%ld", r->cfg->default_calling_code);
	v[0] = ps;
	v[1] = ss;
	v[2] = bs;
	v[3] = os;
	/* The queue first: an override added after this still counts next. */
	if ((rc = sync_db_exec(r->db, "take the queued contacts", "DELETE FROM"
	    " person_queue RETURNING contact_id", 0, NULL, &q, err)) != SYNC_OK ||
	    (rc = one(r->db, "count the changed contacts", "SELECT count(*)"
	    " FROM contact WHERE (txid, seq) > ($1::bigint, $2::bigint)"
	    " AND txid < $3::bigint AND txid <> $4::bigint", 4, v, &changed, NULL,
	    err)) != SYNC_OK)
		goto out;
	full = nocc || oldcc != r->cfg->default_calling_code;
	if (!full && changed + sync_rows_count(q) > 10000) {
		if ((rc = one(r->db, "count the contacts", "SELECT count(*) FROM"
		    " contact", 0, NULL, &total, NULL, err)) != SYNC_OK)
			goto out;
		full = (changed + sync_rows_count(q)) * FULL_SHARE > total;
	}
	if (full) {
		if ((rc = read_all(r, err)) != SYNC_OK)
			goto out;
		f->decided = (long long)r->n;
	} else {
		for (k = 0; k < sync_rows_count(q); k++)
			if (sync_db_array_add(&ids, sync_rows_get(q, k, 0)) == -1) {
				rc = nomem(err);
				goto out;
			}
		if (sync_db_array_end(&ids) == -1) {
			rc = nomem(err);
			goto out;
		}
		v[4] = ids.data;
		if ((rc = read_rows(r, "read the changed contacts", COLS
		    " WHERE (c.txid, c.seq) > ($1::bigint, $2::bigint)"
		    " AND c.txid < $3::bigint AND c.txid <> $4::bigint"
		    " UNION ALL " COLS " WHERE c.id = ANY($5::bigint[])", 5, v,
		    &got, err)) != SYNC_OK)
			goto out;
		f->decided = (long long)r->n;
		if ((rc = expand(r, err)) != SYNC_OK)
			goto out;
	}
	if ((rc = read_overrides(r, full, err)) != SYNC_OK ||
	    (rc = decide_and_write(r, full, f, err)) != SYNC_OK)
		goto out;
	/*
	 * A full resolution also drops persons nothing points to, and the
	 * links of contacts gone (no foreign key does: see migration 7).
	 */
	if (full && ((rc = sync_db_exec(r->db, "remove the persons left empty",
	    "DELETE FROM person p WHERE NOT EXISTS (SELECT 1 FROM contact c"
	    " WHERE c.person_id = p.id)", 0, NULL, NULL, err)) != SYNC_OK ||
	    (rc = sync_db_exec(r->db, "remove the links of contacts gone",
	    "DELETE FROM person_link l WHERE NOT EXISTS (SELECT 1 FROM contact c"
	    " WHERE c.id = l.contact_id)", 0, NULL, NULL, err)) != SYNC_OK))
		goto out;
	snprintf(pos, sizeof(pos), "%lld:0", b);
	v[0] = pos;
	v[1] = cc;
	rc = sync_db_exec(r->db, "save identity_state", "UPDATE identity_state"
	    " SET position = $1, own_txid = pg_current_xact_id()::text::bigint,"
	    " calling_code = $2::integer, resolved_at = now(), updated_at = now()",
	    2, v, NULL, err);
out:
	sync_buf_release(&ids);
	sync_rows_free(st);
	sync_rows_free(q);
	return rc;
}

enum sync_rc
sync_identity_resolve(const struct sync_config *cfg, struct sync_db *db,
    struct sync_err *err)
{
	struct res r;
	struct figures f;
	struct sync_err scratch;
	double t0 = sync_now_mono();
	enum sync_rc rc;

	memset(&r, 0, sizeof(r));
	memset(&f, 0, sizeof(f));
	r.cfg = cfg;
	if (db != NULL && sync_db_reusable(db))
		r.db = db;
	else if ((r.db = sync_db_open(cfg, err)) == NULL)
		return err->rc;
	/*
	 * The lock before the transaction: B is taken while it is held.  Its
	 * wait is as long as the other resolution (a first one over a big
	 * store takes a minute), not the session's lock_timeout.
	 */
	if ((rc = sync_db_exec(r.db, "wait for another identity resolution",
	    "SET lock_timeout = 0", 0, NULL, NULL, err)) != SYNC_OK ||
	    (rc = sync_db_exec(r.db, "wait for another identity resolution",
	    IDENTITY_LOCK, 0, NULL, NULL, err)) != SYNC_OK ||
	    (rc = sync_db_exec(r.db, "wait for another identity resolution",
	    "SET lock_timeout = '60s'", 0, NULL, NULL, err)) != SYNC_OK)
		goto out;
	if ((rc = sync_db_begin(r.db, err)) == SYNC_OK) {
		if ((rc = resolve(&r, &f, err)) == SYNC_OK)
			rc = sync_db_commit(r.db, err);
		if (rc != SYNC_OK)
			sync_db_rollback(r.db);
	}
	sync_err_clear(&scratch);
	sync_db_exec(r.db, "release the identity lock", IDENTITY_UNLOCK, 0,
	    NULL, NULL, &scratch);
	if (rc == SYNC_OK)
		sync_log(LOG_DEBUG, "identity: %lld contact(s) decided, %lld in "
		    "the closure; %lld contact(s) and %lld link(s) changed%s; "
		    "persons: %lld created, %lld changed, %lld removed; %.3f s",
		    f.decided, (long long)r.n, f.contacts, f.links,
		    f.skipped > 0 ? " (some left for the next pass: changed "
		    "meanwhile)" : "", f.created, f.changed, f.removed,
		    sync_now_mono() - t0);
out:
	if (rc != SYNC_OK && err->kind != SYNC_ERR_DATABASE) {
		/* Keep the database kind (SPEC §5): the store failed us. */
		err->kind = SYNC_ERR_DATABASE;
	}
	if (r.db != db)
		sync_db_free(r.db);
	res_release(&r);
	return rc;
}
