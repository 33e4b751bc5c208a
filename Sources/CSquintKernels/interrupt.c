// Ctrl-C / SIGTERM for writing commands. The handler only records the signal and posts a semaphore
// (both async-signal-safe); a dedicated thread waiting in sq_interrupt_wait does the cleanup. Using a
// thread of our own matters: a handler queued on a shared worker pool can wait behind the very work
// it should stop (synth keeps every pool worker busy), so a job could finish after Ctrl-C was pressed.
#include <errno.h>
#include <semaphore.h>
#include <signal.h>
#include <string.h>
#include "squint_kernels.h"

static volatile sig_atomic_t requested = 0;
static sem_t wake;

static void on_signal(int sig) {
    if (!requested) requested = sig;
    sem_post(&wake);
}

int sq_interrupt_install(void) {
    if (sem_init(&wake, 0, 0) != 0) return -1;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;   // the writing threads' syscalls resume; only the flag changes
    if (sigaction(SIGINT, &sa, 0) != 0 || sigaction(SIGTERM, &sa, 0) != 0) return -1;
    return 0;
}

int sq_interrupt_requested(void) { return requested; }

void sq_interrupt_clear(void) { requested = 0; }

int sq_interrupt_wait(void) {
    while (sem_wait(&wake) != 0 && errno == EINTR) {}
    return requested;
}
