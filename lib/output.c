/*
 * output.c -- a pass's result as JSON (SPEC §5) or as a short summary.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "internal.h"

const char *
sync_status_name(enum sync_status s)
{
	switch (s) {
	case SYNC_ST_OK:		return "ok";
	case SYNC_ST_PARTIAL:		return "partial";
	case SYNC_ST_FAILED:		return "failed";
	case SYNC_ST_SKIPPED:		return "skipped";
	case SYNC_ST_INTERRUPTED:	return "interrupted";
	}
	return "failed";
}

static int
add_counts(cJSON *o, const struct sync_counts *c, int extra)
{
	int bad = 0;

	bad |= cJSON_AddNumberToObject(o, "fetched", (double)c->fetched) == NULL;
	bad |= cJSON_AddNumberToObject(o, "inserted", (double)c->inserted) == NULL;
	bad |= cJSON_AddNumberToObject(o, "updated", (double)c->updated) == NULL;
	bad |= cJSON_AddNumberToObject(o, "unchanged", (double)c->unchanged) == NULL;
	bad |= cJSON_AddNumberToObject(o, "api_calls", (double)c->api_calls) == NULL;
	bad |= cJSON_AddNumberToObject(o, "retries", (double)c->retries) == NULL;
	if (extra) {
		bad |= cJSON_AddNumberToObject(o, "gaps", (double)c->gaps) == NULL;
		bad |= cJSON_AddNumberToObject(o, "sanitized",
		    (double)c->sanitized) == NULL;
		bad |= cJSON_AddNumberToObject(o, "outliers",
		    (double)c->outliers) == NULL;
		bad |= cJSON_AddNumberToObject(o, "rejected",
		    (double)c->rejected) == NULL;
	}
	return bad ? -1 : 0;
}

/* The source's rows of other entities than its streams' own (SPEC §5). */
static int
add_related(cJSON *o, const struct sync_source_result *s)
{
	static const char *const names[SYNC_REL_N] = { "contacts", "conversations" };
	cJSON *rel, *e;
	int k, bad = 0;

	if ((rel = cJSON_AddObjectToObject(o, "related")) == NULL)
		return -1;
	for (k = 0; k < SYNC_REL_N; k++) {
		if ((e = cJSON_AddObjectToObject(rel, names[k])) == NULL)
			return -1;
		bad |= cJSON_AddNumberToObject(e, "inserted",
		    (double)s->related[k].inserted) == NULL;
		bad |= cJSON_AddNumberToObject(e, "updated",
		    (double)s->related[k].updated) == NULL;
	}
	return bad ? -1 : 0;
}

static cJSON *
str_or_null(const char *s)
{
	return s != NULL ? cJSON_CreateString(s) : cJSON_CreateNull();
}

/* o printed on one line with its newline (NULL if bad or on ENOMEM); frees o. */
static char *
json_line(cJSON *o, int bad)
{
	char *p, *out = NULL;

	if (!bad && (p = cJSON_PrintUnformatted(o)) != NULL) {
		size_t n = strlen(p);

		if ((out = malloc(n + 2)) != NULL) {
			memcpy(out, p, n);
			out[n] = '\n';
			out[n + 1] = '\0';
		}
		cJSON_free(p);
	}
	cJSON_Delete(o);
	return out;
}

static cJSON *
source_json(const struct sync_result *res, const struct sync_source_result *s)
{
	cJSON *o = cJSON_CreateObject(), *e, *arr, *t, *st;
	size_t i;
	int bad = 0;

	if (o == NULL)
		return NULL;
	bad |= cJSON_AddStringToObject(o, "name", s->name) == NULL;
	bad |= cJSON_AddStringToObject(o, "type", s->type) == NULL;
	bad |= cJSON_AddStringToObject(o, "status", sync_status_name(s->status)) == NULL;
	if (s->reason[0] != '\0')
		bad |= cJSON_AddStringToObject(o, "reason", s->reason) == NULL;
	if (s->err.rc == SYNC_OK) {
		bad |= cJSON_AddNullToObject(o, "error") == NULL;
	} else if ((e = cJSON_AddObjectToObject(o, "error")) != NULL) {
		bad |= cJSON_AddStringToObject(e, "kind",
		    sync_errkind_name(s->err.kind)) == NULL;
		bad |= cJSON_AddStringToObject(e, "message", s->err.msg) == NULL;
	} else
		bad = 1;
	/* status-poll and media-sync: their counters on the source itself. */
	if (res->cmd == SYNC_CMD_POLL || res->cmd == SYNC_CMD_MEDIA) {
		static const char *const poll_names[] = { "polled", "updated",
		    "finalized", "expired", "still_pending", "api_calls" };
		static const char *const media_names[] = { "downloaded", "bytes",
		    "deduplicated", "refreshed", "unavailable", "failed",
		    "still_pending", "api_calls", "retries" };
		const struct sync_poll_counts *p = &s->poll;
		const struct sync_media_counts *m = &s->media;
		const long long poll_v[] = { p->polled, p->updated, p->finalized,
		    p->expired, p->still_pending, p->api_calls };
		const long long media_v[] = { m->downloaded, m->bytes,
		    m->deduplicated, m->refreshed, m->unavailable, m->failed,
		    m->still_pending, s->totals.api_calls, s->totals.retries };
		int poll = res->cmd == SYNC_CMD_POLL;
		size_t k, n = poll ? sizeof(poll_v) / sizeof(poll_v[0]) :
		    sizeof(media_v) / sizeof(media_v[0]);

		for (k = 0; k < n; k++)
			bad |= cJSON_AddNumberToObject(o, poll ? poll_names[k] :
			    media_names[k], (double)(poll ? poll_v[k] :
			    media_v[k])) == NULL;
		if (bad) {
			cJSON_Delete(o);
			return NULL;
		}
		return o;
	}
	if ((arr = cJSON_AddArrayToObject(o, "streams")) == NULL)
		bad = 1;
	for (i = 0; !bad && i < s->nstreams; i++) {
		const struct sync_stream_result *r = &s->streams[i];

		if ((st = cJSON_CreateObject()) == NULL ||
		    !cJSON_AddItemToArray(arr, st)) {
			cJSON_Delete(st);
			bad = 1;
			break;
		}
		bad |= cJSON_AddStringToObject(st, "stream", r->name) == NULL;
		bad |= !cJSON_AddItemToObject(st, "cursor_before",
		    str_or_null(r->cursor_before));
		bad |= !cJSON_AddItemToObject(st, "cursor_after",
		    str_or_null(r->cursor_after));
		/* full-sync: where an unfinished walk resumes (null: none). */
		if (res->cmd == SYNC_CMD_FULL)
			bad |= !cJSON_AddItemToObject(st, "checkpoint",
			    str_or_null(r->checkpoint));
		bad |= add_counts(st, &r->c, 1) == -1;
		if (res->prune) {	/* SPEC §8 */
			bad |= cJSON_AddNumberToObject(st, "missing",
			    (double)r->c.missing) == NULL;
			bad |= cJSON_AddNumberToObject(st, "pruned",
			    (double)r->c.pruned) == NULL;
		}
		/* since_seq streams: the gaps kept and re-read (gaps.c). */
		if (r->gaps_kept) {
			bad |= cJSON_AddNumberToObject(st, "gaps_healed",
			    (double)r->c.gaps_healed) == NULL;
			bad |= cJSON_AddNumberToObject(st, "gaps_open",
			    (double)r->c.gaps_open) == NULL;
			bad |= cJSON_AddNumberToObject(st, "gaps_unrecoverable",
			    (double)r->c.gaps_unrecoverable) == NULL;
		}
	}
	if (!bad && ((t = cJSON_AddObjectToObject(o, "totals")) == NULL ||
	    add_counts(t, &s->totals, 0) == -1))
		bad = 1;
	if (!bad && add_related(o, s) == -1)
		bad = 1;
	if (bad) {
		cJSON_Delete(o);
		return NULL;
	}
	return o;
}

static char *
format_json(const struct sync_result *res)
{
	cJSON *o = cJSON_CreateObject(), *arr, *s;
	char ts[32];
	size_t i;
	int bad = 0;

	if (o == NULL)
		return NULL;
	sync_time_format(res->started_at, ts, sizeof(ts));
	bad |= cJSON_AddStringToObject(o, "command", sync_cmd_name(res->cmd)) == NULL;
	bad |= cJSON_AddStringToObject(o, "status", sync_status_name(res->status)) == NULL;
	bad |= cJSON_AddStringToObject(o, "started_at", ts) == NULL;
	bad |= cJSON_AddNumberToObject(o, "duration_ms", (double)res->duration_ms) == NULL;
	if (res->dry_run)
		bad |= cJSON_AddTrueToObject(o, "dry_run") == NULL;
	/* A failure after the sources (the identity resolution). */
	if (res->err.rc != SYNC_OK) {
		cJSON *e = cJSON_AddObjectToObject(o, "error");
		char clean[3 * sizeof(res->err.msg)];

		sync_utf8_copy(clean, sizeof(clean), res->err.msg);
		bad |= e == NULL || cJSON_AddStringToObject(e, "kind",
		    sync_errkind_name(res->err.kind)) == NULL ||
		    cJSON_AddStringToObject(e, "message", clean) == NULL;
	}
	if ((arr = cJSON_AddArrayToObject(o, "sources")) == NULL)
		bad = 1;
	for (i = 0; !bad && i < res->nsources; i++) {
		if ((s = source_json(res, &res->sources[i])) == NULL ||
		    !cJSON_AddItemToArray(arr, s)) {
			cJSON_Delete(s);
			bad = 1;
		}
	}
	return json_line(o, bad);
}

static char *
format_text(const struct sync_result *res)
{
	struct sync_buf b = SYNC_BUF_INIT(0);
	size_t i, k;
	int bad = 0;

	for (i = 0; i < res->nsources; i++) {
		const struct sync_source_result *s = &res->sources[i];

		bad |= sync_buf_addf(&b, "%s: %s", s->name,
		    sync_status_name(s->status));
		if (s->reason[0] != '\0')
			bad |= sync_buf_addf(&b, " (%s)", s->reason);
		/* An interruption has its own line on stderr (engine.c). */
		if (s->err.rc != SYNC_OK && s->status != SYNC_ST_INTERRUPTED)
			bad |= sync_buf_addf(&b, ": %s: %s",
			    sync_errkind_name(s->err.kind), s->err.msg);
		bad |= sync_buf_adds(&b, "\n");
		if (res->cmd == SYNC_CMD_POLL) {
			if (s->status != SYNC_ST_SKIPPED)
				bad |= sync_buf_addf(&b, "  polled %lld, updated %lld, "
				    "finalized %lld, expired %lld, still pending "
				    "%lld, %lld API calls\n", s->poll.polled,
				    s->poll.updated, s->poll.finalized,
				    s->poll.expired, s->poll.still_pending,
				    s->poll.api_calls);
			continue;
		}
		if (res->cmd == SYNC_CMD_MEDIA) {
			if (s->status != SYNC_ST_SKIPPED)
				bad |= sync_buf_addf(&b, "  %lld downloaded (%lld "
				    "bytes, %lld already in the store), %lld link(s) "
				    "refreshed, %lld unavailable, %lld failed, %lld "
				    "still pending\n", s->media.downloaded,
				    s->media.bytes, s->media.deduplicated,
				    s->media.refreshed, s->media.unavailable,
				    s->media.failed, s->media.still_pending);
			continue;
		}
		for (k = 0; k < s->nstreams; k++) {
			const struct sync_stream_result *r = &s->streams[k];

			bad |= sync_buf_addf(&b, "  %-14s %lld fetched: %lld new, "
			    "%lld updated, %lld unchanged", r->name, r->c.fetched,
			    r->c.inserted, r->c.updated, r->c.unchanged);
			if (r->c.rejected > 0)
				bad |= sync_buf_addf(&b, ", %lld rejected",
				    r->c.rejected);
			if (r->c.missing > 0 || r->c.pruned > 0)
				bad |= sync_buf_addf(&b, ", %lld newly missing, "
				    "%lld pruned", r->c.missing, r->c.pruned);
			bad |= sync_buf_addf(&b, "; cursor %s -> %s\n",
			    r->cursor_before ? r->cursor_before : "-",
			    r->cursor_after ? r->cursor_after : "-");
			if (r->checkpoint != NULL)
				bad |= sync_buf_addf(&b, "  %-14s full sync not "
				    "finished: the next full-sync resumes from "
				    "checkpoint %s\n", "", r->checkpoint);
		}
	}
	if (res->nsources == 0)
		bad |= sync_buf_adds(&b, "no enabled sources\n");
	if (res->err.rc != SYNC_OK)
		bad |= sync_buf_addf(&b, "%s: %s\n",
		    sync_errkind_name(res->err.kind), res->err.msg);
	if (bad) {
		sync_buf_release(&b);
		return NULL;
	}
	return b.data;
}

char *
sync_result_format(const struct sync_result *res, int json)
{
	return json ? format_json(res) : format_text(res);
}

char *
sync_error_format(enum sync_cmd cmd, time_t started_at, long long duration_ms,
    const struct sync_err *err, char *const *errors)
{
	cJSON *o = cJSON_CreateObject(), *e, *arr;
	char ts[32], clean[3 * sizeof(err->msg)];
	size_t i;
	int bad = 0;

	if (o == NULL)
		return NULL;
	sync_time_format(started_at, ts, sizeof(ts));
	bad |= cJSON_AddStringToObject(o, "command", sync_cmd_name(cmd)) == NULL;
	bad |= cJSON_AddStringToObject(o, "status", "failed") == NULL;
	if (cmd == SYNC_CMD_STATUS)
		bad |= cJSON_AddStringToObject(o, "generated_at", ts) == NULL;
	bad |= cJSON_AddStringToObject(o, "started_at", ts) == NULL;
	bad |= cJSON_AddNumberToObject(o, "duration_ms", (double)duration_ms) == NULL;
	if ((e = cJSON_AddObjectToObject(o, "error")) == NULL)
		bad = 1;
	else {
		bad |= cJSON_AddStringToObject(e, "kind",
		    sync_errkind_name(err->kind)) == NULL;
		sync_utf8_copy(clean, sizeof(clean), err->msg);
		bad |= cJSON_AddStringToObject(e, "message", clean) == NULL;
	}
	/* Every error, the first included (a configuration's are many). */
	if ((arr = cJSON_AddArrayToObject(o, "errors")) == NULL)
		bad = 1;
	for (i = 0; !bad && (errors != NULL ? errors[i] != NULL : i == 0); i++) {
		sync_utf8_copy(clean, sizeof(clean), errors != NULL ? errors[i] :
		    err->msg);
		bad |= !cJSON_AddItemToArray(arr, cJSON_CreateString(clean));
	}
	if (cJSON_AddArrayToObject(o, "sources") == NULL)
		bad = 1;
	return json_line(o, bad);
}
