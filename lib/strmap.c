/*
 * strmap.c -- a map from strings to numbers (open addressing, FNV-1a):
 * the internal ids of a page's conversations and contacts, the messages a
 * walk has seen.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

void
sync_strmap_clear(struct sync_strmap *m)
{
	size_t i;

	for (i = 0; i < m->cap; i++)
		free(m->keys[i]);
	free(m->keys);
	free(m->vals);
	memset(m, 0, sizeof(*m));
}

/* The slot of key: where it is, or where it would go. */
static size_t
slot(const struct sync_strmap *m, const char *key)
{
	size_t i = (size_t)sync_hash(SYNC_HASH_INIT, key, strlen(key)) &
	    (m->cap - 1);

	while (m->keys[i] != NULL && strcmp(m->keys[i], key) != 0)
		i = (i + 1) & (m->cap - 1);
	return i;
}

int
sync_strmap_get(const struct sync_strmap *m, const char *key, long long *val)
{
	size_t i;

	if (m->cap == 0)
		return 0;
	i = slot(m, key);
	if (m->keys[i] == NULL)
		return 0;
	*val = m->vals[i];
	return 1;
}

int
sync_strmap_put(struct sync_strmap *m, const char *key, long long val)
{
	size_t i;

	if (m->n + 1 > m->cap / 2) {
		struct sync_strmap g;
		size_t k;

		g.cap = m->cap ? m->cap * 2 : 64;
		g.n = 0;
		if ((g.keys = calloc(g.cap, sizeof(*g.keys))) == NULL ||
		    (g.vals = calloc(g.cap, sizeof(*g.vals))) == NULL) {
			free(g.keys);
			return -1;
		}
		for (k = 0; k < m->cap; k++)
			if (m->keys[k] != NULL) {
				i = slot(&g, m->keys[k]);
				g.keys[i] = m->keys[k];
				g.vals[i] = m->vals[k];
				g.n++;
			}
		free(m->keys);
		free(m->vals);
		*m = g;
	}
	i = slot(m, key);
	if (m->keys[i] == NULL) {
		if ((m->keys[i] = strdup(key)) == NULL)
			return -1;
		m->n++;
	}
	m->vals[i] = val;
	return 0;
}
