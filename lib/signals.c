/*
 * signals.c -- SIGINT/SIGTERM as a flag every loop of a pass checks, and a
 * sleep that ends early when one arrives; SIGUSR1 as a request for a
 * progress line (answered by progress.c at the next page boundary, never
 * here).
 */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <time.h>

#include "internal.h"

volatile sig_atomic_t sync_stop_signal;
volatile sig_atomic_t sync_info_signal;

static void
on_signal(int signo)
{
	sync_stop_signal = signo;
}

static void
on_info(int signo)
{
	(void)signo;
	sync_info_signal = 1;
}

void
sync_signals_install(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sa.sa_handler = on_info;
	sigaction(SIGUSR1, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
	/* A file-size limit makes write() fail with EFBIG, a store error. */
	sigaction(SIGXFSZ, &sa, NULL);
}

int
sync_sleep(double secs)
{
	struct timespec ts;
	double end = sync_now_mono() + secs, left;

	/*
	 * In slices: a signal may be delivered to another thread of the pass,
	 * and this one must still notice it soon.
	 */
	while (!sync_stop_signal && (left = end - sync_now_mono()) > 0) {
		if (left > 0.1)
			left = 0.1;
		ts.tv_sec = (time_t)left;
		ts.tv_nsec = (long)((left - (double)ts.tv_sec) * 1e9);
		if (nanosleep(&ts, NULL) == -1 && errno != EINTR)
			break;
	}
	return sync_stop_signal ? -1 : 0;
}
