/* interrupt.c - a flag set by SIGINT/SIGTERM (see interrupt.h). */
#define _POSIX_C_SOURCE 200809L

#include "interrupt.h"

#include <signal.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t interrupted = 0;

/* The first signal asks training to stop at the next batch (and save); the
 * second quits at once, saying that nothing was saved (a save in progress
 * is atomic, so the target keeps its old content or stays absent). */
static void on_signal(int sig) {
  (void)sig;
  if (interrupted) {
    static const char msg[] = "\nbackprop: interrupted again; quitting now, nothing was saved\n";
    ssize_t r = write(STDERR_FILENO, msg, sizeof msg - 1); /* async-signal-safe */
    (void)r;
    _exit(130);
  }
  interrupted = 1;
  static const char msg[] =
      "\nbackprop: interrupted; stopping at the next batch (Ctrl-C again to quit at once, "
      "saving nothing)\n";
  ssize_t r = write(STDERR_FILENO, msg, sizeof msg - 1); /* async-signal-safe */
  (void)r;
}

static void set_handler(int sig, void (*handler)(int), int flags) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = handler;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = flags;
  sigaction(sig, &sa, NULL);
}

void cli_interrupt_install(void) {
  set_handler(SIGINT, on_signal, SA_RESTART);
  set_handler(SIGTERM, on_signal, SA_RESTART);
}

void cli_interrupt_uninstall(void) {
  set_handler(SIGINT, SIG_DFL, 0);
  set_handler(SIGTERM, SIG_DFL, 0);
}

int cli_interrupted(void) { return interrupted != 0; }
