/*
 * registry.c -- the connectors this build knows, by type.  A new
 * connector is one file in connectors/ and one line here.
 */
#include <stdio.h>
#include <string.h>

#include "internal.h"

static const struct sync_connector *const connectors[] = {
	&sync_seqapi_connector,
	&sync_smseagle_connector,
	&sync_facebook_connector,
	&sync_unipile_connector,
	&sync_telegram_connector,
	NULL
};

const struct sync_connector *
sync_connector_find(const char *type)
{
	size_t i;

	for (i = 0; connectors[i] != NULL; i++)
		if (strcmp(connectors[i]->type, type) == 0)
			return connectors[i];
	return NULL;
}

const char *
sync_connector_types(void)
{
	static char names[128];
	size_t i, n = 0;

	if (names[0] == '\0')
		for (i = 0; connectors[i] != NULL && n < sizeof(names); i++)
			n += (size_t)snprintf(names + n, sizeof(names) - n, "%s%s",
			    i ? ", " : "", connectors[i]->type);
	return names;
}
