// Debian's libedit (libedit-dev): line editing and history for `squint chat` on a terminal.
#include <stdio.h>
#include <editline/readline.h>
