/* pass.h -- the main of the three pass commands (full, incr, poll). */
#ifndef PASS_H
#define PASS_H

#include "sync.h"

int	pass_main(enum sync_cmd, int, char **);

#endif
