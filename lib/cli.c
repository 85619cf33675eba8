/*
 * cli.c -- the command lines of the pass and status binaries, with
 * getopt_long.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

enum {
	OPT_SINCE = 256, OPT_RESTART, OPT_STREAM, OPT_DRY_RUN, OPT_MAX_RUNTIME,
	OPT_CHECK, OPT_MAX_LAG, OPT_MAX_FAILURES, OPT_PROMETHEUS, OPT_LOGIN,
	OPT_IMPORT, OPT_PROGRESS, OPT_NO_PROGRESS, OPT_WARN_LAG, OPT_PRUNE,
	OPT_PRUNE_WINDOW, OPT_MAX_BYTES, OPT_CONVERSATION, OPT_UNTIL, OPT_LIMIT,
	OPT_TABLE
};

/* Which command accepts which long-only option. */
#define F	(1 << SYNC_CMD_FULL)
#define I	(1 << SYNC_CMD_INCR)
#define P	(1 << SYNC_CMD_POLL)
#define S	(1 << SYNC_CMD_STATUS)
#define M	(1 << SYNC_CMD_MEDIA)
#define X	(1 << SYNC_CMD_SEARCH)
#define C	(1 << SYNC_CMD_CHANGES)

static const struct {
	struct option	 opt;
	int		 cmds;
} options[] = {
	{ { "config", required_argument, NULL, 'c' }, F | I | P | S | M | X | C },
	{ { "source", required_argument, NULL, 's' }, F | I | P | S | M | X | C },
	{ { "json", no_argument, NULL, 'j' }, F | I | P | S | M | X | C },
	{ { "quiet", no_argument, NULL, 'q' }, F | I | P | S | M | X | C },
	{ { "verbose", no_argument, NULL, 'v' }, F | I | P | S | M | X | C },
	{ { "help", no_argument, NULL, 'h' }, F | I | P | S | M | X | C },
	{ { "version", no_argument, NULL, 'V' }, F | I | P | S | M | X | C },
	{ { "since", required_argument, NULL, OPT_SINCE }, F | X | C },
	{ { "until", required_argument, NULL, OPT_UNTIL }, X },
	{ { "conversation", required_argument, NULL, OPT_CONVERSATION }, X },
	{ { "limit", required_argument, NULL, OPT_LIMIT }, X | C },
	{ { "table", required_argument, NULL, OPT_TABLE }, C },
	{ { "restart", no_argument, NULL, OPT_RESTART }, F | M },
	{ { "stream", required_argument, NULL, OPT_STREAM }, F | I },
	{ { "dry-run", no_argument, NULL, OPT_DRY_RUN }, F },
	{ { "prune", no_argument, NULL, OPT_PRUNE }, F },
	{ { "prune-window", required_argument, NULL, OPT_PRUNE_WINDOW }, F },
	{ { "login", no_argument, NULL, OPT_LOGIN }, F },
	{ { "import", required_argument, NULL, OPT_IMPORT }, F },
	{ { "max-runtime", required_argument, NULL, OPT_MAX_RUNTIME }, F | I | P | M },
	{ { "max-bytes", required_argument, NULL, OPT_MAX_BYTES }, M },
	{ { "progress", no_argument, NULL, OPT_PROGRESS }, F | I | P | M },
	{ { "no-progress", no_argument, NULL, OPT_NO_PROGRESS }, F | I | P | M },
	{ { "check", no_argument, NULL, OPT_CHECK }, S },
	{ { "max-lag", required_argument, NULL, OPT_MAX_LAG }, S },
	{ { "warn-lag", required_argument, NULL, OPT_WARN_LAG }, S },
	{ { "max-failures", required_argument, NULL, OPT_MAX_FAILURES }, S },
	{ { "prometheus", no_argument, NULL, OPT_PROMETHEUS }, S },
};

#define NOPTIONS (sizeof(options) / sizeof(options[0]))

static const char usage_full[] =
    "usage: full-sync [-jqvhV] [-c file] [-s source]... [--stream name]...\n"
    "                 [--since date] [--restart] [--dry-run]\n"
    "                 [--prune [--prune-window days]]\n"
    "                 [--max-runtime seconds] [--progress | --no-progress]\n"
    "       full-sync [-qv] [-c file] -s source --login\n"
    "       full-sync [-jqv] [-c file] -s source --import file [--dry-run]\n";
static const char usage_incr[] =
    "usage: incr-sync [-jqvhV] [-c file] [-s source]... [--stream name]...\n"
    "                 [--max-runtime seconds] [--progress | --no-progress]\n";
static const char usage_poll[] =
    "usage: status-poll [-jqvhV] [-c file] [-s source]... [--max-runtime seconds]\n"
    "                   [--progress | --no-progress]\n";
static const char usage_media[] =
    "usage: media-sync [-jqvhV] [-c file] [-s source]... [--max-bytes n]\n"
    "                  [--max-runtime seconds] [--restart]\n"
    "                  [--progress | --no-progress]\n";
static const char usage_status[] =
    "usage: sync-status [-jqvhV] [-c file] [-s source]... [--prometheus]\n"
    "                   [--check [--max-lag seconds] [--warn-lag seconds]\n"
    "                            [--max-failures n]]\n";

static const char usage_search[] =
    "usage: sync-search [-jqvhV] [-c file] [-s source]... [--conversation id]\n"
    "                   [--since date] [--until date] [--limit n] query\n";
static const char usage_changes[] =
    "usage: sync-changes [-jqvhV] [-c file] [-s source]... [--table name]...\n"
    "                    [--limit n] --since token\n";

static const char usage_common[] =
    "\n"
    "  -c, --config FILE    configuration (default $MSGSYNC_CONFIG, else\n"
    "                       /etc/msgsync/msgsync.conf)\n"
    "  -s, --source NAME    only this source (repeatable)\n"
    "  -j, --json           print the result (or the error) as JSON on stdout\n"
    "  -q, --quiet          print nothing on success\n"
    "  -v, --verbose        more log detail on stderr (repeatable)\n"
    "  -h, --help           this help\n"
    "  -V, --version        the version\n";

static const char usage_env[] =
    "\nEnvironment: MSGSYNC_CONFIG (the configuration file), MSGSYNC_LOG_FORMAT\n"
    "(text or json: the log format until the file's log.format is read).\n";

const char *
sync_cmd_name(enum sync_cmd c)
{
	switch (c) {
	case SYNC_CMD_FULL:	return "full-sync";
	case SYNC_CMD_INCR:	return "incr-sync";
	case SYNC_CMD_POLL:	return "status-poll";
	case SYNC_CMD_STATUS:	return "sync-status";
	case SYNC_CMD_MEDIA:	return "media-sync";
	case SYNC_CMD_SEARCH:	return "sync-search";
	case SYNC_CMD_CHANGES:	return "sync-changes";
	}
	return "msgsync";
}

const char *
sync_cli_usage(enum sync_cmd cmd)
{
	static char buf[4096];
	const char *u = usage_full, *extra = "";

	switch (cmd) {
	case SYNC_CMD_FULL:
		u = usage_full;
		extra = "      --stream NAME    only this stream (repeatable)\n"
		    "      --since DATE     only items since DATE (YYYY-MM-DD or RFC 3339)\n"
		    "      --restart        start over instead of resuming the checkpoint\n"
		    "      --dry-run        fetch and count, write nothing\n"
		    "      --prune          after a complete walk, mark what it did not see:\n"
		    "                       missing at the first miss, deleted (pruned) at\n"
		    "                       the second\n"
		    "      --prune-window D reconcile (and walk) only the last D days\n"
		    "      --max-runtime S  stop cleanly at a batch boundary after S seconds\n"
		    "      --progress       show live progress on stderr, also when it is\n"
		    "                       not a terminal (plain lines) or with -q, --json\n"
		    "      --no-progress    never show progress (default: shown when stderr\n"
		    "                       is a terminal, without -q and --json)\n"
		    "      --login          sign the source in, asking on the terminal\n"
		    "                       (telegram: phone number, code, password)\n"
		    "      --import FILE    load an export (telegram: Telegram Desktop's\n"
		    "                       result.json; - reads standard input)\n";
		break;
	case SYNC_CMD_INCR:
		u = usage_incr;
		extra = "      --stream NAME    only this stream (repeatable)\n"
		    "      --max-runtime S  stop cleanly at a batch boundary after S seconds\n"
		    "      --progress       show live progress on stderr, also when it is\n"
		    "                       not a terminal (plain lines) or with -q, --json\n"
		    "      --no-progress    never show progress (default: shown when stderr\n"
		    "                       is a terminal, without -q and --json)\n";
		break;
	case SYNC_CMD_POLL:
		u = usage_poll;
		extra = "      --max-runtime S  stop cleanly after S seconds\n"
		    "      --progress       show live progress on stderr, also when it is\n"
		    "                       not a terminal (plain lines) or with -q, --json\n"
		    "      --no-progress    never show progress (default: shown when stderr\n"
		    "                       is a terminal, without -q and --json)\n";
		break;
	case SYNC_CMD_STATUS:
		u = usage_status;
		extra = "      --check          one monitoring line; exit 0 OK, 1 WARNING,\n"
		    "                       2 CRITICAL, 3 UNKNOWN\n"
		    "      --max-lag S      --check: critical when a stream's last\n"
		    "                       success is older than S seconds (default 3600)\n"
		    "      --warn-lag S     --check: warning when it is older than S\n"
		    "                       seconds (default half of --max-lag)\n"
		    "      --max-failures N --check: critical after N consecutive\n"
		    "                       failures (default 3)\n"
		    "      --prometheus     the figures in the Prometheus text format\n";
		break;
	case SYNC_CMD_SEARCH:
		u = usage_search;
		extra = "      --conversation ID only the conversation with this external id\n"
		    "      --since DATE     only messages sent since DATE (YYYY-MM-DD or\n"
		    "                       RFC 3339)\n"
		    "      --until DATE     only messages sent until DATE (a day: to its end)\n"
		    "      --limit N        at most N hits, best first (default 20)\n"
		    "  QUERY: words (all must match), \"a phrase\", -excluded, or\n";
		break;
	case SYNC_CMD_MEDIA:
		u = usage_media;
		extra = "      --max-bytes N    stop after downloading N bytes (suffixes k, M, G)\n"
		    "      --max-runtime S  stop cleanly after S seconds\n"
		    "      --restart        try the failed attachments again\n"
		    "      --progress       show live progress on stderr, also when it is\n"
		    "                       not a terminal (plain lines) or with -q, --json\n"
		    "      --no-progress    never show progress (default: shown when stderr\n"
		    "                       is a terminal, without -q and --json)\n";
		break;
	case SYNC_CMD_CHANGES:
		u = usage_changes;
		extra = "      --since TOKEN    the position to read after: 0 for the beginning,\n"
		    "                       else the next of the last line read (required)\n"
		    "      --table NAME     only contact, conversation or message (repeatable)\n"
		    "      --limit N        at most N changes (default 1000)\n"
		    "  (-s NAME: only this source's rows; the output is always JSON lines)\n";
		break;
	}
	snprintf(buf, sizeof(buf), "%s%s%s%s", u, usage_common, extra, usage_env);
	return buf;
}

static int
parse_num(const char *s, double lo, double hi, double *out)
{
	char *end;
	double v = strtod(s, &end);

	if (end == s || *end != '\0' || !(v >= lo && v <= hi))
		return -1;
	*out = v;
	return 0;
}

/* --max-bytes: a positive whole number, with an optional k, M or G (1024s). */
static int
parse_bytes(const char *s, long long *out)
{
	char *end;
	double v = strtod(s, &end), mul = 1;

	if (end == s || !(v > 0))
		return -1;
	if (*end == 'k' || *end == 'K')
		mul = 1024.0;
	else if (*end == 'M')
		mul = 1024.0 * 1024;
	else if (*end == 'G')
		mul = 1024.0 * 1024 * 1024;
	if (mul > 1)
		end++;
	if (*end != '\0' || v * mul > 9e18 || v * mul < 1)
		return -1;
	*out = (long long)(v * mul);
	return 0;
}

/* --since: a date (midnight UTC) or a full RFC 3339 timestamp. */
static int
parse_since(const char *s, time_t *out)
{
	char buf[64];
	int64_t t;

	if (strlen(s) == 10) {
		snprintf(buf, sizeof(buf), "%sT00:00:00Z", s);
		s = buf;
	}
	if (sync_time_parse(s, &t, NULL) == -1)
		return -1;
	*out = (time_t)t;
	return 0;
}

/*
 * --until: as --since, made an exclusive bound: a date reaches to the end
 * of its day, a timestamp to the end of its second.
 */
static int
parse_until(const char *s, time_t *out)
{
	if (parse_since(s, out) == -1)
		return -1;
	*out += strlen(s) == 10 ? 86400 : 1;
	return 0;
}

enum sync_rc
sync_cli_parse(struct sync_opts *o, enum sync_cmd cmd, int argc, char **argv,
    struct sync_err *err)
{
	struct option longopts[NOPTIONS + 1];
	size_t i, n = 0;
	double v;
	int c;

	memset(o, 0, sizeof(*o));
	o->cmd = cmd;
	o->prog = argc > 0 ? argv[0] : "msgsync";
	o->max_runtime = -1;
	o->max_lag = 3600;
	o->max_failures = 3;
	o->limit = cmd == SYNC_CMD_CHANGES ? 1000 : 20;
	for (i = 0; i < NOPTIONS; i++)
		if (options[i].cmds & (1 << cmd))
			longopts[n++] = options[i].opt;
	memset(&longopts[n], 0, sizeof(longopts[n]));
	opterr = 0;
	/* --json first: a usage error anywhere is then reported as JSON. */
	for (optind = 0; (c = getopt_long(argc, argv, ":c:s:jqvhV", longopts,
	    NULL)) != -1;)
		o->json |= c == 'j';
	optind = 0;
	while ((c = getopt_long(argc, argv, ":c:s:jqvhV", longopts, NULL)) != -1) {
		switch (c) {
		case 'c':
			o->config_path = optarg;
			break;
		case 's':
			if (o->nsources == SYNC_MAX_SELECT)
				return sync_err_set(err, SYNC_EUSAGE, SYNC_ERR_CONFIG,
				    "too many --source options");
			o->sources[o->nsources++] = optarg;
			break;
		case 'j':
			o->json = 1;
			break;
		case 'q':
			o->quiet = 1;
			break;
		case 'v':
			o->verbose++;
			break;
		case 'h':
			return SYNC_EHELP;
		case 'V':
			o->version = 1;
			return SYNC_EHELP;
		case OPT_SINCE:
			o->since = optarg;
			if (cmd == SYNC_CMD_CHANGES) {
				if (!sync_changes_token_ok(optarg))
					return sync_err_set(err, SYNC_EUSAGE,
					    SYNC_ERR_CONFIG, "--since '%s': not a "
					    "position (0, or a next that sync-changes "
					    "printed)", optarg);
				break;
			}
			if (parse_since(optarg, &o->since_t) == -1)
				return sync_err_set(err, SYNC_EUSAGE, SYNC_ERR_CONFIG,
				    "--since '%s': not a date (YYYY-MM-DD) or an "
				    "RFC 3339 timestamp", optarg);
			break;
		case OPT_TABLE:
			if (strcmp(optarg, "contact") != 0 &&
			    strcmp(optarg, "conversation") != 0 &&
			    strcmp(optarg, "message") != 0)
				return sync_err_set(err, SYNC_EUSAGE, SYNC_ERR_CONFIG,
				    "--table '%s': not contact, conversation or "
				    "message", optarg);
			if (o->ntables == SYNC_MAX_SELECT)
				return sync_err_set(err, SYNC_EUSAGE, SYNC_ERR_CONFIG,
				    "too many --table options");
			o->tables[o->ntables++] = optarg;
			break;
		case OPT_LIMIT: {
			/* sync-search ranks its hits in memory; a feed streams. */
			double max = cmd == SYNC_CMD_SEARCH ? 10000 : 1e9;

			if (parse_num(optarg, 1, max, &v) == -1 || v != (double)(long)v)
				return sync_err_set(err, SYNC_EUSAGE, SYNC_ERR_CONFIG,
				    "--limit '%s': not a whole number from 1 to %.0f",
				    optarg, max);
			o->limit = (long)v;
			break;
		}
		case OPT_RESTART:
			o->restart = 1;
			break;
		case OPT_STREAM:
			if (o->nstreams == SYNC_MAX_SELECT)
				return sync_err_set(err, SYNC_EUSAGE, SYNC_ERR_CONFIG,
				    "too many --stream options");
			o->streams[o->nstreams++] = optarg;
			break;
		case OPT_DRY_RUN:
			o->dry_run = 1;
			break;
		case OPT_PRUNE:
			o->prune = 1;
			break;
		case OPT_PRUNE_WINDOW:
			if (parse_num(optarg, 1, 36500, &v) == -1 || v != (double)(long)v)
				return sync_err_set(err, SYNC_EUSAGE, SYNC_ERR_CONFIG,
				    "--prune-window '%s': not a whole number of days "
				    "(1 to 36500)", optarg);
			o->prune_window = (long)v;
			break;
		case OPT_MAX_BYTES:
			if (parse_bytes(optarg, &o->max_bytes) == -1)
				return sync_err_set(err, SYNC_EUSAGE, SYNC_ERR_CONFIG,
				    "--max-bytes '%s': not a positive number of "
				    "bytes (suffixes k, M, G)", optarg);
			break;
		case OPT_LOGIN:
			o->login = 1;
			break;
		case OPT_IMPORT:
			o->import = optarg;
			break;
		case OPT_MAX_RUNTIME:
			if (parse_num(optarg, 0, 1e9, &o->max_runtime) == -1)
				return sync_err_set(err, SYNC_EUSAGE, SYNC_ERR_CONFIG,
				    "--max-runtime '%s': not a number of seconds",
				    optarg);
			break;
		case OPT_PROGRESS:
			o->progress = 1;	/* the last of the two wins */
			break;
		case OPT_NO_PROGRESS:
			o->progress = -1;
			break;
		case OPT_CHECK:
			o->check = 1;
			break;
		case OPT_MAX_LAG:
			if (parse_num(optarg, 1, 1e10, &v) == -1)
				return sync_err_set(err, SYNC_EUSAGE, SYNC_ERR_CONFIG,
				    "--max-lag '%s': not a number of seconds", optarg);
			o->max_lag = (long)v;
			break;
		case OPT_WARN_LAG:
			if (parse_num(optarg, 1, 1e10, &v) == -1)
				return sync_err_set(err, SYNC_EUSAGE, SYNC_ERR_CONFIG,
				    "--warn-lag '%s': not a number of seconds", optarg);
			o->warn_lag = (long)v;
			break;
		case OPT_MAX_FAILURES:
			if (parse_num(optarg, 1, 1e6, &v) == -1)
				return sync_err_set(err, SYNC_EUSAGE, SYNC_ERR_CONFIG,
				    "--max-failures '%s': not a positive number", optarg);
			o->max_failures = (long)v;
			break;
		case OPT_PROMETHEUS:
			o->prometheus = 1;
			break;
		case OPT_CONVERSATION:
			o->conversation = optarg;
			break;
		case OPT_UNTIL:
			if (parse_until(optarg, &o->until_t) == -1)
				return sync_err_set(err, SYNC_EUSAGE, SYNC_ERR_CONFIG,
				    "--until '%s': not a date (YYYY-MM-DD) or an "
				    "RFC 3339 timestamp", optarg);
			break;
		case ':':
			return sync_err_set(err, SYNC_EUSAGE, SYNC_ERR_CONFIG,
			    "option '%s' needs an argument", argv[optind - 1]);
		default:
			return sync_err_set(err, SYNC_EUSAGE, SYNC_ERR_CONFIG,
			    "unknown option '%s'", argv[optind - 1]);
		}
	}
	if (cmd == SYNC_CMD_SEARCH) {
		if (optind == argc)
			return sync_err_set(err, SYNC_EUSAGE, SYNC_ERR_CONFIG,
			    "no query given");
		o->query = argv[optind++];
		if (optind < argc)
			return sync_err_set(err, SYNC_EUSAGE, SYNC_ERR_CONFIG,
			    "unexpected argument '%s' (quote a query of several "
			    "words: '%s %s')", argv[optind], o->query, argv[optind]);
	}
	if (optind < argc)
		return sync_err_set(err, SYNC_EUSAGE, SYNC_ERR_CONFIG,
		    "unexpected argument '%s'", argv[optind]);
	if (o->quiet && o->verbose)
		o->verbose = 0;
	if (cmd == SYNC_CMD_CHANGES && o->since == NULL)
		return sync_err_set(err, SYNC_EUSAGE, SYNC_ERR_CONFIG,
		    "--since is required (0 for the beginning)");
	if ((o->max_lag != 3600 || o->max_failures != 3 || o->warn_lag != 0) &&
	    !o->check)
		return sync_err_set(err, SYNC_EUSAGE, SYNC_ERR_CONFIG,
		    "--max-lag, --warn-lag and --max-failures go with --check");
	if (o->warn_lag == 0)
		o->warn_lag = o->max_lag / 2 > 0 ? o->max_lag / 2 : 1;
	if (o->warn_lag > o->max_lag && o->check)
		return sync_err_set(err, SYNC_EUSAGE, SYNC_ERR_CONFIG,
		    "--warn-lag %ld is more than --max-lag %ld", o->warn_lag,
		    o->max_lag);
	if ((o->login || o->import != NULL) && o->nsources != 1)
		return sync_err_set(err, SYNC_EUSAGE, SYNC_ERR_CONFIG,
		    "--%s needs exactly one --source", o->login ? "login" : "import");
	if (o->login && (o->import != NULL || o->json || o->dry_run ||
	    o->restart || o->since != NULL || o->nstreams > 0))
		return sync_err_set(err, SYNC_EUSAGE, SYNC_ERR_CONFIG,
		    "--login goes with no other option than -c, -s, -q and -v");
	if (o->import != NULL && (o->restart || o->since != NULL ||
	    o->nstreams > 0))
		return sync_err_set(err, SYNC_EUSAGE, SYNC_ERR_CONFIG,
		    "--import goes with neither --restart, --since nor --stream");
	if (o->prune_window > 0 && !o->prune)
		return sync_err_set(err, SYNC_EUSAGE, SYNC_ERR_CONFIG,
		    "--prune-window goes with --prune");
	if (o->prune && (o->dry_run || o->import != NULL))
		return sync_err_set(err, SYNC_EUSAGE, SYNC_ERR_CONFIG,
		    "--prune goes with neither --dry-run nor --import");
	if (o->prune_window > 0) {
		/* The window also bounds the walk (SPEC §8). */
		time_t from = time(NULL) - (time_t)o->prune_window * 86400;

		if (from > o->since_t)
			o->since_t = from;
	}
	if (o->check + o->prometheus + o->json > 1 && cmd == SYNC_CMD_STATUS)
		return sync_err_set(err, SYNC_EUSAGE, SYNC_ERR_CONFIG,
		    "--check, --prometheus and --json exclude each other");
	return SYNC_OK;
}
